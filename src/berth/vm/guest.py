"""The test guest: Debian's kernel plus a busybox initramfs that berth builds itself.

Debian builds virtio as modules, so the initramfs carries the .ko files the guest needs
(virtio_pci, virtio_blk, virtio_net, the balloon, the ACPI power button, xhci and
usb-storage) with their dependencies from modules.dep, loaded with insmod in dependency
order. /init mounts proc/sys/dev, loads the modules, brings NICs up (DHCP or a static
address from the kernel command line), serves HTTP with busybox httpd, prints the
machine's facts to the serial console as `BERTH-FACT ...` lines and then the marker
`BERTH-GUEST-READY`, and finally runs a shell on the console. The ACPI power button
(QMP system_powerdown) powers the guest off.

Kernel command line switches read by /init:
  berth.net=dhcp|none|ADDR/PREFIX[,GATEWAY]   (default dhcp when a NIC exists)
  berth.httpd=PORT|0                          (default 80)
  berth.hostname=NAME                         (default berth-guest)
  berth.probe=1                               print BERTH-GUEST-READY and power off at once

The build is cached: `build(outdir)` does nothing when outdir already holds a guest made
from the same kernel, busybox and init script. Beside vmlinuz it writes vmlinux, the same
kernel uncompressed, which qemu boots through PVH without decompressing it: under TCG
that halves the boot (docs/vm.md, "fast profile"). The initramfs is uncompressed on purpose:
decompressing under TCG costs more than reading the extra bytes.

Command line: `python -m berth.vm.guest OUTDIR [--kernel VMLINUZ]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from berth.vm.errors import GuestBuildError
from berth.vm.guest_init import FACT, INIT, MARKER, UDHCPC_SCRIPT
from berth.vm.initramfs import (
    BUSYBOX,
    DEFAULT_CMDLINE,
    MODULES,
    extract_vmlinux,
    find_kernel,
    initramfs,
)

__all__ = ["MARKER", "FACT", "MODULES", "Guest", "build", "find_kernel", "parse_facts"]


@dataclass(frozen=True)
class Guest:
    """A built test guest: the files to give qemu -kernel/-initrd and the default cmdline."""

    kernel: str
    initrd: str
    cmdline: str
    kernel_version: str
    modules: tuple[str, ...]
    vmlinux: str | None = None   # the same kernel uncompressed, for PVH boot (fast profile)


def _fingerprint(kernel: str, busybox: str, init: str) -> str:
    h = hashlib.sha256()
    for p in (kernel, busybox):
        st = os.stat(p)
        h.update(f"{os.path.realpath(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(init.encode())
    h.update(UDHCPC_SCRIPT.encode())
    h.update(",".join(MODULES).encode())
    return h.hexdigest()


def default_dir() -> str:
    """build/guest in a source checkout, else ~/.cache/berth/guest."""
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file() and (repo / "src" / "berth").is_dir():
        return str(repo / "build" / "guest")
    return os.path.join(os.path.expanduser("~"), ".cache", "berth", "guest")


def build(outdir: str | None = None, kernel: str | None = None) -> Guest:
    """Build (or reuse) the test guest in outdir: vmlinuz, initramfs.cpio, guest.json."""
    outdir = os.path.abspath(outdir or default_dir())
    if kernel:
        ver = os.path.basename(kernel).removeprefix("vmlinuz-")
        modules_dir = f"/lib/modules/{ver}"
        if not os.path.isfile(kernel):
            raise GuestBuildError(f"kernel {kernel} does not exist")
    else:
        kernel, modules_dir = find_kernel()
        ver = os.path.basename(modules_dir)
    meta_path = os.path.join(outdir, "guest.json")
    fp = _fingerprint(kernel, BUSYBOX, INIT)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("fingerprint") == fp and all(
                os.path.isfile(os.path.join(outdir, n)) for n in ("vmlinuz", "initramfs.cpio")):
            return _guest(outdir, meta)
    except (FileNotFoundError, ValueError):
        pass
    os.makedirs(outdir, exist_ok=True)
    data, names = initramfs(modules_dir)
    tmp = os.path.join(outdir, ".initramfs.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(outdir, "initramfs.cpio"))
    shutil.copyfile(kernel, os.path.join(outdir, ".vmlinuz.tmp"))
    os.replace(os.path.join(outdir, ".vmlinuz.tmp"), os.path.join(outdir, "vmlinuz"))
    elf = extract_vmlinux(kernel, f"/boot/config-{ver}")
    if elf is not None:
        with open(os.path.join(outdir, ".vmlinux.tmp"), "wb") as f:
            f.write(elf)
        os.replace(os.path.join(outdir, ".vmlinux.tmp"), os.path.join(outdir, "vmlinux"))
    meta = {"fingerprint": fp, "kernel_version": ver, "source_kernel": kernel,
            "modules": names, "cmdline": DEFAULT_CMDLINE, "pvh": elf is not None}
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return _guest(outdir, meta)


def _guest(outdir: str, meta: dict) -> Guest:
    vmlinux = os.path.join(outdir, "vmlinux")
    return Guest(kernel=os.path.join(outdir, "vmlinuz"),
                 initrd=os.path.join(outdir, "initramfs.cpio"),
                 cmdline=meta["cmdline"], kernel_version=meta["kernel_version"],
                 modules=tuple(meta["modules"]),
                 vmlinux=vmlinux if meta.get("pvh") and os.path.isfile(vmlinux) else None)


def parse_facts(serial: str) -> dict:
    """The guest's BERTH-FACT lines as a dict: nproc, memtotal_kb, block{}, net{}, usb{}."""
    facts: dict = {"block": {}, "net": {}, "usb": {}}
    for raw in serial.splitlines():
        line = raw.strip()
        if not line.startswith(FACT + " "):
            continue
        words = line[len(FACT) + 1:].split()
        if len(words) == 1 and "=" in words[0]:
            k, _, v = words[0].partition("=")
            facts[k] = int(v) if v.isdigit() else v
        elif len(words) >= 2 and words[0] in ("block", "net", "usb"):
            kv = dict(w.partition("=")[::2] for w in words[2:])
            facts[words[0]][words[1]] = {k: int(v) if v.isdigit() else v
                                         for k, v in kv.items()}
    return facts


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m berth.vm.guest",
                                description="build berth's test guest (kernel + initramfs)")
    p.add_argument("outdir", nargs="?", default=None)
    p.add_argument("--kernel", default=None, help="a vmlinuz-<ver> with /lib/modules/<ver>")
    a = p.parse_args(argv)
    try:
        g = build(a.outdir, a.kernel)
    except GuestBuildError as e:
        print(f"berth: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"kernel": g.kernel, "vmlinux": g.vmlinux, "initrd": g.initrd,
                      "cmdline": g.cmdline,
                      "kernel_version": g.kernel_version, "modules": list(g.modules)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
