"""Disk images through qemu-img: new qcow2 disks, thin clones with a backing file, info,
and offline snapshots (`qemu-img snapshot`) for a VM that is not running.

Every failure is a QemuError carrying the command and qemu-img's stderr.
"""

from __future__ import annotations

import json
import os
import subprocess

from berth.vm.errors import QemuError

QEMU_IMG = "qemu-img"


def _run(args: list[str], what: str) -> str:
    cmd = [QEMU_IMG, *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise QemuError("qemu-img is not installed: `apt-get install qemu-utils`", cmd) from None
    if p.returncode != 0:
        raise QemuError(what, cmd, p.stderr)
    return p.stdout


def create(path: str, size: int) -> None:
    """A new, empty qcow2 image of `size` bytes (thin: it grows as the guest writes)."""
    _run(["create", "-q", "-f", "qcow2", path, str(size)], f"cannot create disk {path}")


def clone(path: str, base: str, size: int | None = None) -> None:
    """A qcow2 whose backing file is `base`: reads fall through, writes stay in `path`."""
    fmt = info(base)["format"]
    args = ["create", "-q", "-f", "qcow2", "-b", os.path.abspath(base), "-F", fmt, path]
    if size is not None:
        args.append(str(size))
    _run(args, f"cannot clone {base} into {path}")


def info(path: str) -> dict:
    """qemu-img info as a dict (format, virtual-size, actual-size, backing-filename...)."""
    out = _run(["info", "--output=json", "-U", path], f"cannot read disk {path}")
    return json.loads(out)


def snapshot_create(path: str, tag: str) -> None:
    _run(["snapshot", "-c", tag, path], f"cannot snapshot {path}")


def snapshot_apply(path: str, tag: str) -> None:
    _run(["snapshot", "-a", tag, path], f"cannot restore snapshot {tag} of {path}")


def snapshot_delete(path: str, tag: str) -> None:
    _run(["snapshot", "-d", tag, path], f"cannot delete snapshot {tag} of {path}")


def snapshot_list(path: str) -> list[dict]:
    """The image's internal snapshots: [{name, vm-state-size, date-sec, ...}]."""
    return list(info(path).get("snapshots", []))
