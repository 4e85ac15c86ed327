"""The test guest's initramfs: busybox, the kernel modules it needs, in dependency order,
and /init; written as a newc cpio archive in memory (no cpio tool, no root: device nodes
are just archive entries). Also the kernel: found under /boot, and unpacked from its
bzImage into an ELF vmlinux that qemu can boot through PVH.
"""

from __future__ import annotations

import glob
import lzma
import os
import subprocess
import zlib

from berth.vm.errors import GuestBuildError
from berth.vm.guest_init import INIT, UDHCPC_SCRIPT

BUSYBOX = "/bin/busybox"
# what the guest needs; dependencies come from modules.dep. The USB ones are loaded only
# when the VM has an xHCI controller (they cost about a second under TCG).
CORE_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_balloon", "virtio_rng",
                "button", "evdev")
USB_MODULES = ("xhci_pci", "usb_storage", "sd_mod", "usbhid", "hid_generic")
MODULES = CORE_MODULES + USB_MODULES
DEFAULT_CMDLINE = "console=ttyS0 quiet panic=-1"


def find_kernel() -> tuple[str, str]:
    """(vmlinuz path, modules directory) of the newest kernel under /boot with its modules."""
    override = os.environ.get("BERTH_GUEST_KERNEL")
    candidates = [override] if override else sorted(glob.glob("/boot/vmlinuz-*"), reverse=True)
    for k in candidates:
        ver = os.path.basename(k).removeprefix("vmlinuz-")
        mods = f"/lib/modules/{ver}"
        if os.path.isfile(k) and os.path.isfile(f"{mods}/modules.dep"):
            return k, mods
    raise GuestBuildError("no guest kernel: need /boot/vmlinuz-<ver> and /lib/modules/<ver>/"
                          "modules.dep; install it with `apt-get install linux-image-amd64`")


def _mod_name(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return base.replace("-", "_")


def module_order(modules_dir: str, wanted: tuple[str, ...] = MODULES) -> list[tuple[str, str]]:
    """[(name, relative path)] of wanted modules and their dependencies, dependencies first.

    Modules that are built into the kernel (modules.builtin) are skipped; a wanted module
    that is neither built in nor in modules.dep is an error.
    """
    deps: dict[str, tuple[str, list[str]]] = {}
    with open(os.path.join(modules_dir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[_mod_name(path)] = (path, [_mod_name(d) for d in rest.split()])
    builtin: set[str] = set()
    try:
        with open(os.path.join(modules_dir, "modules.builtin")) as f:
            builtin = {_mod_name(line.strip()) for line in f if line.strip()}
    except FileNotFoundError:
        pass
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name not in deps:
            raise GuestBuildError(f"module {name} (needed by {' <- '.join(chain) or 'the guest'})"
                                  f" is not in {modules_dir}/modules.dep")
        seen.add(name)
        path, needs = deps[name]
        for d in needs:
            visit(d, (name, *chain))
        order.append((name, path))

    for w in wanted:
        visit(w.replace("-", "_"), ())
    return order


def _read_module(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    return data


class Cpio:
    """A newc ("070701") cpio archive written in memory: what the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self.ino += 1
        head = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
        self.parts.append(head + b"\0" * (-len(head) % 4))
        if data:
            self.parts.append(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    return sorted(a for a in out.stdout.split() if a and a != "bin/busybox")


def initramfs(modules_dir: str, init: str = INIT, busybox: str = BUSYBOX,
              wanted: tuple[str, ...] = MODULES) -> tuple[bytes, list[str]]:
    """The initramfs bytes and the module names it loads, in load order."""
    if not os.access(busybox, os.X_OK):
        raise GuestBuildError(f"{busybox} is missing: install it with `apt-get install "
                              "busybox-static`")
    order = module_order(modules_dir, wanted)
    c = Cpio()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "etc",
              "lib", "lib/modules", "root", "www", "run", "var", "mnt"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    with open(busybox, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    for a in applets(busybox):
        if a.split("/")[0] in ("bin", "sbin", "usr") and a != "bin/busybox":
            c.symlink(a, "/bin/busybox")
    c.file("init", init.encode(), 0o755)
    c.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    c.file("etc/group", b"root:x:0:\n")
    c.file("etc/hosts", b"127.0.0.1\tlocalhost\n")
    core = [n for n, _ in module_order(modules_dir, tuple(m for m in wanted
                                                            if m in CORE_MODULES))]
    c.file("etc/modules.core", "".join(f"{n}\n" for n in core).encode())
    c.file("etc/modules.usb", "".join(f"{n}\n" for n, _ in order if n not in core).encode())
    for name, rel in order:
        c.file(f"lib/modules/{name}.ko", _read_module(os.path.join(modules_dir, rel)))
    return c.bytes(), [n for n, _ in order]


def extract_vmlinux(bzimage: str, config: str | None = None) -> bytes | None:
    """The uncompressed ELF kernel inside a bzImage, if it can boot through PVH.

    qemu boots an ELF kernel carrying the PVH note directly: no real-mode setup and, above
    all, no decompression, which under TCG costs several seconds. None when the kernel
    was built without CONFIG_PVH or its payload is in a format we cannot unpack.
    """
    if config and os.path.isfile(config):
        with open(config) as f:
            if "CONFIG_PVH=y\n" not in f.read():
                return None
    with open(bzimage, "rb") as f:
        data = f.read()
    for magic, unpack in ((b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor().decompress(b)),
                          (b"\x1f\x8b\x08\x00",
                           lambda b: zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(b))):
        i = data.find(magic)
        while i >= 0:
            try:
                out = unpack(data[i:])
            except (lzma.LZMAError, zlib.error, EOFError):
                out = b""
            if out.startswith(b"\x7fELF"):
                return out
            i = data.find(magic, i + 1)
    return None
