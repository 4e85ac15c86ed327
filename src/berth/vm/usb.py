"""`vm usb add|rm`: USB devices on the VM's xHCI controller (usb-tablet, usb-storage from
an image file), hot through QMP when it runs. The controller exists when the definition
has at least one USB device (`--usb tablet`)."""

from __future__ import annotations

import os

from berth.vm.definition import Usb, VMSpec
from berth.vm.errors import DefinitionError, VMError
from berth.vm.hotplug import attach_block, detach
from berth.vm.qmp import QMP
from berth.vm.status import refresh
from berth.vm.store import Store


def add(name: str, store: Store, kind: str, path: str | None = None) -> str:
    if kind not in ("tablet", "storage"):
        raise DefinitionError("usb", f"{kind!r} is not tablet or storage", "flags")
    if kind == "storage":
        if not path or not os.path.isfile(path):
            raise DefinitionError("usb.storage", f"{path}: no such file", "flags")
        path = os.path.abspath(path)
    rec = refresh(store, store.get(name))
    spec = VMSpec.from_dict(rec.spec)
    used = {u.id for u in spec.usb}
    n = 0
    while f"usb{n}" in used:
        n += 1
    dev = f"usb{n}"
    if rec.status in ("running", "paused"):
        if not spec.usb:
            raise VMError(f"vm {name!r} was started without a USB controller: stop it, add"
                          " the device, and start it again")
        q = QMP(store.paths(name).qmp)
        if kind == "tablet":
            q.execute("device_add", {"driver": "usb-tablet", "bus": "usb.0", "id": dev})
        else:
            attach_block(q, f"drive-{dev}", path or "", "raw",
                         {"driver": "usb-storage", "bus": "usb.0", "drive": f"drive-{dev}",
                          "id": dev})
    spec.usb.append(Usb(kind, path, dev))
    store.update(name, spec=spec.to_dict())
    return dev


def rm(name: str, store: Store, dev: str) -> None:
    rec = refresh(store, store.get(name))
    spec = VMSpec.from_dict(rec.spec)
    found = [u for u in spec.usb if u.id == dev]
    if not found:
        raise VMError(f"vm {name!r} has no usb device {dev!r}")
    if rec.status in ("running", "paused"):
        detach(QMP(store.paths(name).qmp), dev,
               f"drive-{dev}" if found[0].kind == "storage" else None)
    spec.usb.remove(found[0])
    store.update(name, spec=spec.to_dict())
