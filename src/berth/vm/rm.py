"""`vm rm`: forget a VM and delete the files berth made for it (its qcow2 disks, seed,
logs). Disks the definition named by path belong to the user and are left alone."""

from __future__ import annotations

from berth.vm.errors import InvalidState
from berth.vm.status import refresh
from berth.vm.stop import kill
from berth.vm.store import Store


def rm(name: str, store: Store, force: bool = False) -> None:
    rec = refresh(store, store.get(name))
    if rec.status in ("running", "paused"):
        if not force:
            raise InvalidState(f"vm {name!r} is running: stop it first"
                               f" (`berth vm stop {name}`) or use --force")
        kill(name, store)
    store.delete(name)
