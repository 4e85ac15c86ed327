"""`vm snapshot create|ls|restore|rm`: qcow2 internal snapshots.

A running VM is snapshotted live through QMP (the monitor's savevm/loadvm/delvm via
human-monitor-command): every writable disk plus the RAM and device state, so a restore
brings back the running guest as it was. A VM that is not running is snapshotted with
`qemu-img snapshot` on each of its disks (disk state only). All writable disks must be
qcow2; read-only ones (the cloud-init seed) are left out.
"""

from __future__ import annotations

import re

from berth.vm import disks
from berth.vm.errors import InvalidState, VMError
from berth.vm.qmp import QMP
from berth.vm.status import refresh
from berth.vm.store import Store

_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise VMError(f"invalid snapshot name {tag!r}: use letters, digits, '_', '.', '-'")
    return tag


def _disk_files(name: str, store: Store) -> list[str]:
    rec = store.get(name)
    paths = store.paths(name)
    files = []
    for i, d in enumerate(rec.spec["disks"]):
        if d.get("readonly"):
            continue
        path = d["path"] or d.get("file") or paths.disk(i)
        if d["path"] and d["format"] != "qcow2":
            raise VMError(f"vm {name!r}: disk {i} ({path}) is raw: only qcow2 disks take"
                          " snapshots")
        files.append(path)
    if not files:
        raise VMError(f"vm {name!r} has no writable qcow2 disk to hold a snapshot: add one"
                      f" with `berth vm disk add {name} --size 1G`")
    return files


def _running(name: str, store: Store) -> bool:
    return refresh(store, store.get(name)).status in ("running", "paused")


def _hmp(name: str, store: Store, line: str, timeout: float = 300) -> None:
    out = QMP(store.paths(name).qmp, timeout=timeout).hmp(line).strip()
    if out:  # the monitor prints nothing on success
        raise VMError(f"vm {name!r}: {line.split()[0]} failed: {out.splitlines()[-1]}")


def create(name: str, store: Store, tag: str) -> str:
    """'live' (disks + RAM + devices) or 'disk' (qemu-img, the VM being stopped)."""
    _tag(tag)
    files = _disk_files(name, store)
    if any(s["name"] == tag for s in disks.snapshot_list(files[0])):
        raise VMError(f"vm {name!r} already has a snapshot {tag!r}")
    if _running(name, store):
        _hmp(name, store, f"savevm {tag}")
        return "live"
    for f in files:
        disks.snapshot_create(f, tag)
    return "disk"


def ls(name: str, store: Store) -> list[dict]:
    files = _disk_files(name, store)
    return [{"name": s["name"], "vm_state_size": s.get("vm-state-size", 0),
             "date": s.get("date-sec"), "live": bool(s.get("vm-state-size"))}
            for s in disks.snapshot_list(files[0])]


def _exists(name: str, store: Store, tag: str) -> dict:
    for s in ls(name, store):
        if s["name"] == tag:
            return s
    raise VMError(f"vm {name!r} has no snapshot {tag!r} (see `berth vm snapshot ls {name}`)")


def restore(name: str, store: Store, tag: str) -> None:
    snap = _exists(name, store, _tag(tag))
    if _running(name, store):
        if not snap["live"]:
            raise InvalidState(f"snapshot {tag!r} holds disks only: stop vm {name!r} to "
                               "restore it")
        _hmp(name, store, f"loadvm {tag}")
        return
    for f in _disk_files(name, store):
        disks.snapshot_apply(f, tag)


def rm(name: str, store: Store, tag: str) -> None:
    _exists(name, store, _tag(tag))
    if _running(name, store):
        _hmp(name, store, f"delvm {tag}")
        return
    for f in _disk_files(name, store):
        disks.snapshot_delete(f, tag)
