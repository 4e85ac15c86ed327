"""The qemu command line: the one narrow seam between a VMSpec and the qemu process.

`command()` is a pure function of the definition, the VM's paths and the accelerator,
so unit tests compare it with golden files (tests/golden/vm/). What it always does:
no default devices (-nodefaults, -no-user-config), no display, no NIC option ROMs;
QMP and the serial port on unix sockets (the serial also logged to a file); a pid file;
-daemonize, so qemu returns once the VM is set up (or prints why it could not be).
User-mode port forwards listen on 127.0.0.1 unless an address is given.
"""

from __future__ import annotations

import os

from berth.vm.definition import Disk, Nic, VMSpec
from berth.vm.store import Paths

QEMU = "qemu-system-x86_64"


def mac_address(name: str, index: int) -> str:
    """A stable, locally administered MAC (QEMU's 52:54:00 prefix) for NIC `index`."""
    import hashlib

    h = hashlib.sha256(f"{name}/{index}".encode()).digest()
    return f"52:54:00:{h[0]:02x}:{h[1]:02x}:{h[2]:02x}"


def tap_name(name: str, index: int) -> str:
    """The tap device of a bridged NIC (at most 15 characters)."""
    import hashlib

    return "bt" + hashlib.sha256(f"{name}/{index}".encode()).hexdigest()[:10] + str(index)


HOTPLUG_PORTS = 2  # spare PCIe root ports on q35 for `vm disk add`


def disk_path(disk: Disk, paths: Paths, index: int) -> str:
    """Where disk `index` lives: its own path, or the image berth made in the VM dir."""
    return disk.path or disk.file or paths.disk(index)


def disk_id(disk: Disk, index: int) -> str:
    return disk.id or f"disk{index}"


def _esc(value: str) -> str:
    """A value inside a qemu option list: commas doubled."""
    return value.replace(",", ",,")


def hostfwd(rule: str) -> str:
    proto, haddr, hport, gaddr, gport = _split_fwd(rule)
    return f"{proto}:{haddr or '127.0.0.1'}:{hport}-{gaddr}:{gport}"


def _split_fwd(rule: str) -> tuple[str, str, str, str, str]:
    proto, haddr, rest = rule.split(":", 2)
    hport, gpart = rest.split("-", 1)
    gaddr, gport = gpart.rsplit(":", 1)
    return proto, haddr, hport, gaddr, gport


def command(spec: VMSpec, paths: Paths, accel: str, seed: bool = False,
            daemonize: bool = True) -> list[str]:
    cmd = [QEMU, "-name", f"{_esc(spec.name)},process=berth-vm-{_esc(spec.name)}",
           "-machine", spec.machine]
    if accel == "kvm":
        cmd += ["-accel", "kvm", "-cpu", "host"]
    else:
        cmd += ["-accel", "tcg"]
    cmd += ["-smp", str(spec.cpus), "-m", f"{spec.memory_mib}M",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", f"socket,id=qmp,path={_esc(paths.qmp)},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"socket,id=serial0,path={_esc(paths.serial)},server=on,wait=off,"
                        f"logfile={_esc(paths.serial_log)},logappend=on",
            "-serial", "chardev:serial0",
            "-pidfile", paths.pidfile]
    if daemonize:
        cmd.append("-daemonize")
    if spec.kernel:
        cmd += ["-kernel", spec.kernel]
        if spec.initrd:
            cmd += ["-initrd", spec.initrd]
        if spec.cmdline:
            cmd += ["-append", spec.cmdline]
    for i, d in enumerate(spec.disks):
        fmt = "qcow2" if d.path is None else d.format
        ro = ",readonly=on" if d.readonly else ""
        dev = disk_id(d, i)
        cmd += ["-drive", f"file={_esc(disk_path(d, paths, i))},format={fmt},if=none,"
                          f"id=drive-{dev},cache=writeback,discard=unmap{ro}",
                "-device", f"virtio-blk-pci,drive=drive-{dev},id={dev}"
                           + (",bootindex=0" if i == 0 and spec.image else "")]
    if seed:
        cmd += ["-drive", f"file={_esc(paths.seed)},format=raw,if=none,id=drive-seed,"
                          "readonly=on",
                "-device", "virtio-blk-pci,drive=drive-seed,id=seed"]
    for i, n in enumerate(spec.nics):
        cmd += ["-netdev", _netdev(n, spec.name, i),
                "-device", f"virtio-net-pci,netdev=net{i},id=nic{i},"
                           f"mac={n.mac or mac_address(spec.name, i)},romfile="]
    if spec.usb:
        cmd += ["-device", "qemu-xhci,id=usb"]
        for i, u in enumerate(spec.usb):
            dev = u.id or f"usb{i}"
            if u.kind == "tablet":
                cmd += ["-device", f"usb-tablet,bus=usb.0,id={dev}"]
            else:
                assert u.path is not None
                cmd += ["-drive", f"file={_esc(u.path)},format=raw,if=none,id=drive-{dev}",
                        "-device", f"usb-storage,bus=usb.0,drive=drive-{dev},id={dev}"]
    if spec.machine == "q35":
        for i in range(HOTPLUG_PORTS):
            cmd += ["-device", f"pcie-root-port,id=hp{i},bus=pcie.0,chassis={i + 1}"]
    cmd += ["-device", "virtio-balloon-pci,id=balloon0",
            "-device", "virtio-rng-pci,id=rng0"]
    return cmd


def _netdev(n: Nic, name: str, i: int) -> str:
    if n.mode == "user":
        fwds = "".join(f",hostfwd={hostfwd(r)}" for r in n.hostfwd)
        return f"user,id=net{i}{fwds}"
    return f"tap,id=net{i},ifname={tap_name(name, i)},script=no,downscript=no"


def version(qemu: str = QEMU) -> str:
    import subprocess

    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return ""
    return out.splitlines()[0] if out else ""


def installed(qemu: str = QEMU) -> bool:
    import shutil

    return shutil.which(qemu) is not None or os.path.isfile(qemu)
