"""`start`: release a created container's init to exec the user's process.

init blocks opening exec.fifo for writing; start opens it for reading, gets
init's "0", removes the fifo (the container is now running) and reads on
until end of file, which comes when init's close-on-exec descriptor closes
at execve. Anything init writes after "0" is an error (a failed
startContainer hook, an exec that failed). Then the poststart hooks run.
"""

from __future__ import annotations

import os
import select

from berth.runtime.errors import InvalidState, SetupError
from berth.runtime.state import alive, status
from berth.runtime.store import Store


def start(store: Store, cid: str, released=None, created: dict | None = None) -> None:
    """Start container `cid`; `released()`, when given, runs as soon as init is let go,
    while it execs (an engine records the container running meanwhile). `created`: the
    record create_unrecorded() has just returned, written here once init is released."""
    if created is None:
        st = store.load(cid)
        s = status(store, cid, st)
        if s != "created":
            raise InvalidState(f"cannot start container {cid!r}: it is {s}, not created")
    else:
        st = created
    prestart = (st.get("hooks") or {}).get("prestart")
    if prestart:
        from berth.runtime import hooks
        try:
            hooks.run("prestart", prestart, _state(st, cid, "created"))
        except SetupError:
            from berth.runtime.delete import delete
            delete(store, cid, force=True)
            raise
    fifo = os.path.join(store.dir(cid), "exec.fifo")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        data = _release(fd, st)
        os.unlink(fifo)
        if created is not None:
            store.save(cid, st)  # created; running, now that the fifo is gone
        if released is not None:
            released()
        os.set_blocking(fd, True)
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if data[1:].startswith(b"E"):
        raise SetupError(data[2:].decode(errors="replace"))
    poststart = (st.get("hooks") or {}).get("poststart")
    if poststart:
        from berth.runtime import hooks
        hooks.run_warn("poststart", poststart, _state(st, cid, "running"))


def _release(fd: int, st: dict) -> bytes:
    """Wait for init's writer to appear and say "0"."""
    idle = 0
    while True:
        try:
            chunk = os.read(fd, 1)
        except BlockingIOError:  # a writer is there but has not written yet
            select.select([fd], [], [], 1.0)
            continue
        if chunk:
            return chunk
        # no writer yet: init is between READY and its open, or it died
        if not alive(st):
            raise SetupError("container init exited before start")
        idle += 1
        select.select([], [], [], 0.001 if idle < 100 else 0.01)


def _state(st: dict, cid: str, status_: str) -> dict:
    from berth.runtime.state import OCI_VERSION
    return {"ociVersion": OCI_VERSION, "id": cid, "status": status_, "pid": st.get("pid", 0),
            "bundle": st["bundle"], "annotations": st.get("annotations") or {}}
