"""Whether a VM's qemu really runs: the pid from its pid file, checked against /proc.

The table says what berth last did; this module says what is true now. A pid counts only
if the process is alive (not a zombie) and its command line names this VM's QMP socket,
so a recycled pid never passes for the VM. A VM recorded as running whose qemu is gone
is marked stopped and its sockets and pid file are removed.
"""

from __future__ import annotations

import os

from berth.vm.store import Paths, Record, Store


def qemu_alive(pid: int | None, paths: Paths) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    if stat[stat.rindex(b")") + 2:][:1] in (b"Z", b"X"):
        return False
    return paths.qmp.encode() in cmdline


def read_pid(paths: Paths) -> int | None:
    try:
        with open(paths.pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def clear_runtime_files(paths: Paths) -> None:
    for p in (paths.qmp, paths.serial, paths.pidfile):
        try:
            os.unlink(p)
        except OSError:
            pass
    if paths.sock_dir != paths.dir:
        try:
            os.rmdir(paths.sock_dir)
        except OSError:
            pass


def refresh(store: Store, rec: Record) -> Record:
    """The record, corrected to what is true: a dead qemu makes the VM stopped."""
    if rec.status in ("running", "paused"):
        paths = store.paths(rec.name)
        if not qemu_alive(rec.pid, paths):
            mark_stopped(store, rec.name)
            rec.status, rec.pid = "stopped", None
    return rec


def mark_stopped(store: Store, name: str) -> None:
    from berth.vm.network import teardown

    paths = store.paths(name)
    clear_runtime_files(paths)
    rec = store.get(name)
    try:
        teardown(rec.spec)
    except Exception:  # noqa: BLE001 - a tap left behind (e.g. `ls` run without root)
        pass           # is taken away by the next start of this vm (network.setup)
    store.update(name, status="stopped", pid=None)
