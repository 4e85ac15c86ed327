"""`vm stop`, `vm kill`, `vm restart`, `vm pause`, `vm resume`.

stop asks the guest to power off (ACPI power button through QMP system_powerdown) and
waits; if the guest has not gone after the timeout, QMP `quit` ends qemu, and if even
that fails, SIGKILL. kill is SIGKILL at once. Both leave the VM stopped with its sockets
and pid file removed.
"""

from __future__ import annotations

import os
import signal
import time

from berth.vm.errors import InvalidState, QMPError
from berth.vm.qmp import QMP
from berth.vm.status import mark_stopped, qemu_alive, refresh
from berth.vm.store import Record, Store


def _running(store: Store, name: str) -> Record:
    rec = refresh(store, store.get(name))
    if rec.status not in ("running", "paused"):
        raise InvalidState(f"vm {name!r} is not running")
    return rec


def _wait_gone(pid: int, store: Store, name: str, timeout: float) -> bool:
    paths = store.paths(name)
    deadline = time.monotonic() + timeout
    while qemu_alive(pid, paths):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(name: str, store: Store, timeout: float = 30.0) -> str:
    """How it ended: 'powered off', 'quit' (after the timeout) or 'killed'."""
    rec = _running(store, name)
    assert rec.pid is not None
    q = QMP(store.paths(name).qmp, timeout=5)
    how = "powered off"
    try:
        if rec.status == "paused":
            q.execute("cont")
        q.execute("system_powerdown")
    except QMPError:
        timeout = 0
    if not _wait_gone(rec.pid, store, name, timeout):
        how = "quit"
        try:
            q.execute("quit")
        except QMPError:
            pass
        if not _wait_gone(rec.pid, store, name, 5):
            how = "killed"
            _kill(rec.pid)
            _wait_gone(rec.pid, store, name, 5)
    mark_stopped(store, name)
    return how


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill(name: str, store: Store) -> None:
    rec = _running(store, name)
    assert rec.pid is not None
    _kill(rec.pid)
    _wait_gone(rec.pid, store, name, 10)
    mark_stopped(store, name)


def pause(name: str, store: Store) -> None:
    _running(store, name)
    QMP(store.paths(name).qmp).execute("stop")
    store.update(name, status="paused")


def resume(name: str, store: Store) -> None:
    rec = _running(store, name)
    if rec.status != "paused":
        raise InvalidState(f"vm {name!r} is not paused")
    QMP(store.paths(name).qmp).execute("cont")
    store.update(name, status="running")
