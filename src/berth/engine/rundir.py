"""Where a root's supervisor keeps its lock and socket, and whether one is alive.

Apart from supervisor.py so that a CLI asking these questions (rm, stop, attach)
does not import the supervisor's server side (json, selectors, signal, socket:
~5 ms of `berth run --rm`).
"""

from __future__ import annotations

import fcntl
import os


def run_dir(root: str) -> str:
    return os.path.join(root, "run")


def socket_path(root: str) -> str:
    return os.path.join(run_dir(root), "supervisor.sock")


def alive(root: str) -> bool:
    """Is a supervisor serving `root`? (It holds the lock file for as long as it lives.)"""
    try:
        fd = os.open(os.path.join(run_dir(root), "supervisor.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
