"""Overlay snapshots: an image's layers as read-only lowerdirs and a fresh upper per container.

Mount options are limited to one page (4096 bytes). Every layer has a short
symlink in layers/l/, and the mount is made with the layers directory as
working directory and relative lowerdir names (as docker's overlay2 driver
does), so an image of 100+ layers still fits.

`changes()` and `upper_tar()` read a container's upper directory back: what
`berth diff` prints and what `berth commit` turns into a new layer (overlay
whiteouts become OCI .wh. entries again).
"""

from __future__ import annotations

import os
import stat

from berth.images.errors import ImageFailure
from berth.oci import image as oci

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from berth.images.store import Store

_PAGE = 4096
_EINVAL = 22  # errno.EINVAL, without the import on the run path


def lower_option(store: Store, image_id: str) -> str:
    """The lowerdir option value (relative to store.layers), top layer first."""
    chains = oci.chain_ids(store.config(image_id)["rootfs"]["diff_ids"])
    return ":".join("l/" + store.layer_short(c) for c in reversed(chains))


def mount(store: Store, image_id: str, target: str, upper: str | None, work: str | None,
          readonly: bool = False, volatile: bool = False) -> None:
    """Mount the image at `target`: with upper/work a writable overlay, else read-only.

    `volatile` (for a container removed when it exits, as podman does for --rm): the
    overlay skips every sync of the upper filesystem, above all the syncfs of the whole
    host filesystem when it is unmounted (~0.7 ms of a run here; far more while other
    writes are pending). Its upper is not meant to outlive a crash; the kernel marks the
    work directory so that it is not mounted again as it is."""
    from berth.runtime import linux  # the one ctypes seam for mount(2)

    lower = lower_option(store, image_id)
    if upper is None or work is None:
        if ":" not in lower:  # one layer, nothing to write: a read-only bind mount will do
            src = os.path.join(store.layers, lower)
            linux.mount(src, target, "bind", linux.MS_BIND)
            linux.mount(None, target, None,
                        linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)
            return
        opts = f"lowerdir={lower}"
    else:
        os.makedirs(upper, 0o755, exist_ok=True)
        os.makedirs(work, 0o700, exist_ok=True)
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        if volatile:
            _forget_volatile(work)
            opts += ",volatile"
    if len(opts) >= _PAGE:
        raise ImageFailure(f"image {image_id[7:19]} has too many layers for one overlay mount "
                           f"({lower.count(':') + 1})")
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(store.layers)
        flags = linux.MS_RDONLY if readonly else 0
        try:
            linux.mount("overlay", target, "overlay", flags, opts)
        except OSError as e:
            if not volatile or e.errno != _EINVAL:
                raise
            # a kernel before 5.10 has no such option: an ordinary overlay then
            linux.mount("overlay", target, "overlay", flags, opts.removesuffix(",volatile"))
    finally:
        os.fchdir(cwd)
        os.close(cwd)


def _forget_volatile(work: str) -> None:
    """A volatile overlay leaves work/work/incompat/volatile, and the kernel refuses that
    work directory until it is gone. The engine mounts a volatile snapshot again only in
    the boot that made it (a reboot removes containers that were to be removed), after
    a clean unmount: the upper is whole, and the mark can go."""
    incompat = os.path.join(work, "work", "incompat")
    mark = os.path.join(incompat, "volatile")
    try:
        for name in os.listdir(mark):  # the kernel puts a file ("dirty") in it
            os.unlink(os.path.join(mark, name))
        os.rmdir(mark)
        os.rmdir(incompat)
    except FileNotFoundError:
        pass


def unmount(target: str) -> None:
    from berth.runtime import linux
    linux.umount2(target, linux.MNT_DETACH)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def changes(upper: str, lowers: list[str]) -> list[tuple[str, str]]:
    """(kind, path) like `docker diff`: A added, C changed, D deleted; sorted by path."""
    out: list[tuple[str, str]] = []

    def in_lower(rel: str) -> bool:
        return any(os.path.lexists(os.path.join(lo, rel)) for lo in lowers)

    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = os.lstat(os.path.join(dirpath, name))
            if _is_whiteout(st):
                out.append(("D", "/" + rel))
            elif in_lower(rel):
                out.append(("C", "/" + rel))
            else:
                out.append(("A", "/" + rel))
    return sorted(out, key=lambda c: c[1])


def upper_tar(upper: str, out: BinaryIO) -> None:
    """Write the upper directory as an OCI layer tar (whiteouts as .wh. entries)."""
    import tarfile  # only commit needs it: keep it off the run path
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(upper):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, upper)
            if rel_dir != ".":
                try:
                    if os.getxattr(dirpath, "trusted.overlay.opaque") == b"y":
                        info = tarfile.TarInfo(f"{rel_dir}/.wh..wh..opq")
                        tar.addfile(info)
                except OSError:
                    pass
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                st = os.lstat(full)
                if _is_whiteout(st):
                    parent, _, base = rel.rpartition("/")
                    tar.addfile(tarfile.TarInfo(f"{parent}/.wh.{base}" if parent
                                                else f".wh.{base}"))
                    continue
                info = tar.gettarinfo(full, arcname=rel)
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
