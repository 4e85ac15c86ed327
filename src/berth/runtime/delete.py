"""`delete`: remove a stopped container (with --force, stop it first), then poststop hooks."""

from __future__ import annotations

import os
import time

from berth.runtime.errors import ContainerNotFound, InvalidState
from berth.runtime.state import OCI_VERSION, alive, status
from berth.runtime.store import Store


def cgroup_of(st: dict):
    cg = st.get("cgroup") or {}
    if cg.get("version") == 2:
        from berth.runtime.cgroups.v2 import V2
        return V2.from_state(cg)
    from berth.runtime.cgroups.v1 import V1
    return V1.from_state(cg)


def delete(store: Store, cid: str, force: bool = False) -> None:
    try:
        st = store.load(cid)
    except ContainerNotFound:
        if force and os.path.isdir(store.dir(cid)):
            store.remove(cid)  # a create that died before it wrote its record
            return
        raise
    s = status(store, cid, st)
    if s != "stopped" and not force:
        raise InvalidState(f"cannot delete container {cid!r}: it is {s}, not stopped "
                           "(stop it first or use --force)")
    cg = cgroup_of(st) if st.get("cgroup") else None
    if s != "stopped":
        from berth.runtime.linux import signal_process
        signal_process(st.get("pid") or 0, 9)
        for _ in range(500):
            if not alive(st):
                break
            time.sleep(0.002)
    if cg is not None:
        cg.kill_all()
        cg.destroy()
    store.remove(cid)
    poststop = (st.get("hooks") or {}).get("poststop")
    if poststop:
        from berth.runtime import hooks
        hooks.run_warn("poststop", poststop, {
            "ociVersion": OCI_VERSION, "id": cid, "status": "stopped", "pid": st.get("pid", 0),
            "bundle": st["bundle"], "annotations": st.get("annotations") or {}})
