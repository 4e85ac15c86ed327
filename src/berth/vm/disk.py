"""`vm disk add|rm`: disks added to or removed from a VM, hot through QMP when it runs.

A new disk is a qcow2 in the VM's directory (or an existing image by path); the
definition is updated so the disk is there on the next start too.
"""

from __future__ import annotations

import os

from berth.vm import disks
from berth.vm.definition import Disk, VMSpec
from berth.vm.errors import DefinitionError, VMError
from berth.vm.hotplug import attach_block, detach, free_root_port
from berth.vm.qmp import QMP
from berth.vm.status import refresh
from berth.vm.store import Store


def _next_id(spec: VMSpec) -> str:
    used = {d.id for d in spec.disks}
    n = 0
    while f"disk{n}" in used:
        n += 1
    return f"disk{n}"


def add(name: str, store: Store, size: int | None = None, path: str | None = None) -> str:
    """Add a disk (a new qcow2 of `size` bytes, or the image at `path`); its device id."""
    if (size is None) == (path is None):
        raise DefinitionError("disk", "give --size (a new disk) or --path (an image)", "flags")
    rec = refresh(store, store.get(name))
    spec = VMSpec.from_dict(rec.spec)
    dev = _next_id(spec)
    d = Disk(id=dev, size=size)
    if path is not None:
        d.path = os.path.abspath(path)
        if not os.path.isfile(d.path):
            raise DefinitionError("path", f"{d.path}: no such file", "flags")
        d.format = disks.info(d.path)["format"]
        if d.format not in ("qcow2", "raw"):
            raise DefinitionError("path", f"{d.path} is {d.format}: use qcow2 or raw", "flags")
    else:
        assert size is not None
        d.file = os.path.join(store.paths(name).dir, f"{dev}.qcow2")
        disks.create(d.file, size)
    try:
        if rec.status in ("running", "paused"):
            q = QMP(store.paths(name).qmp)
            device = {"driver": "virtio-blk-pci", "drive": f"drive-{dev}", "id": dev}
            port = free_root_port(q)
            if port:
                device["bus"] = port
            attach_block(q, f"drive-{dev}", d.path or d.file or "", d.format, device)
        spec.disks.append(d)
        store.update(name, spec=spec.to_dict())
    except BaseException:
        if d.file:
            os.unlink(d.file)
        raise
    return dev


def rm(name: str, store: Store, dev: str) -> None:
    rec = refresh(store, store.get(name))
    spec = VMSpec.from_dict(rec.spec)
    found = [d for d in spec.disks if d.id == dev]
    if not found:
        raise VMError(f"vm {name!r} has no disk {dev!r} (see `berth vm inspect {name}`)")
    if spec.image and spec.disks[0].id == dev:
        raise VMError(f"{dev} is vm {name!r}'s boot disk")
    if rec.status in ("running", "paused"):
        detach(QMP(store.paths(name).qmp), dev, f"drive-{dev}")
    spec.disks.remove(found[0])
    store.update(name, spec=spec.to_dict())
    if found[0].file:
        try:
            os.unlink(found[0].file)
        except FileNotFoundError:
            pass
