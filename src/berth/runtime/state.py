"""`state`: the container's status as the OCI runtime spec defines it.

The status is derived from the kernel, never trusted from the record: init's
pid must still exist with the start time recorded at create (so a recycled
pid is not mistaken for the container), and the exec fifo marks a container
that was created but not started.
"""

from __future__ import annotations

import os

from berth.runtime.store import Store

OCI_VERSION = "1.2.0"


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def alive(st: dict) -> bool:
    pid = st.get("pid") or 0
    if pid <= 0:
        return False
    ps = proc_stat(pid)
    return ps is not None and ps[0] not in ("Z", "X") and ps[1] == st.get("starttime")


def status(store: Store, cid: str, st: dict) -> str:
    if st.get("status") == "creating":
        return "creating" if alive(st) or not st.get("pid") else "stopped"
    if not alive(st):
        return "stopped"
    if os.path.exists(os.path.join(store.dir(cid), "exec.fifo")):
        return "created"
    return "running"


def to_oci(store: Store, cid: str, st: dict) -> dict:
    s = status(store, cid, st)
    return {
        "ociVersion": OCI_VERSION,
        "id": cid,
        "status": s,
        "pid": st.get("pid", 0) if s in ("created", "running", "creating") else 0,
        "bundle": st["bundle"],
        "rootfs": st.get("rootfs", ""),
        "created": st.get("created", ""),
        "owner": "",
        "annotations": st.get("annotations") or {},
    }


def state(store: Store, cid: str) -> dict:
    return to_oci(store, cid, store.load(cid))
