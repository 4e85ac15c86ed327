"""`run`: create, start and (unless detached) wait for the container, then delete it.

The runtime makes itself a child subreaper so that init, forked by a
short-lived intermediate process, is re-parented to it and can be waited for.
Signals the runtime receives are forwarded to init, as runc does.
"""

from __future__ import annotations

import os

from berth.runtime import linux
from berth.runtime.create import create_unrecorded
from berth.runtime.delete import delete
from berth.runtime.start import start
from berth.runtime.store import Store

_FORWARD = (1, 2, 3, 10, 12, 14, 15, 20, 28)  # HUP INT QUIT USR1 USR2 ALRM TERM TSTP WINCH


def run(store: Store, cid: str, bundle: str, pid_file: str | None = None,
        console_socket: str | None = None, detach: bool = False, keep: bool = False,
        preserve_fds: int = 0, no_pivot: bool = False) -> int:
    if not detach:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    pid = create_and_start(store, cid, bundle, pid_file, console_socket, preserve_fds, no_pivot,
                           forward=not detach)
    if detach:
        return 0
    code = wait_for(pid)
    if not keep:
        delete(store, cid, force=True)
    return code


def create_and_start(store: Store, cid: str, bundle: str, pid_file: str | None = None,
                     console_socket: str | None = None, preserve_fds: int = 0,
                     no_pivot: bool = False, stdio: tuple[int, int, int] | None = None,
                     forward: bool = False, between=None, started=None,
                     config: dict | None = None) -> int:
    """create, then start; a start that fails deletes the container. Return init's pid.

    `between(pid)`, when given, runs after create and before start (an engine plugs
    the container's network namespace in there, as CNI does); `started(pid)` once init
    is released, while it execs the process. `config`: the bundle's config.json as the
    caller just wrote it (not read back).
    """
    pid, st = create_unrecorded(store, cid, bundle, pid_file, console_socket, preserve_fds,
                                no_pivot, stdio, config=config)
    if forward:
        forward_signals(pid)
    try:
        if between is not None:
            between(pid)
        start(store, cid, None if started is None else lambda: started(pid), created=st)
    except BaseException:
        delete(store, cid, force=True)
        raise
    return pid


def forward_signals(pid: int) -> None:
    import _signal

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for s in _FORWARD:
        _signal.signal(s, forward)


def long_wait() -> None:
    """Before a wait of any length: the launchers start with the cyclic garbage collector
    off (during a run's imports and set-up it ran ~9 times, ~1.5 ms); it collects again
    from here on, leaving the objects that exist now alone (frozen)."""
    import gc
    gc.freeze()
    gc.enable()


def wait_for(pid: int) -> int:
    """Reap children until `pid` exits; return its exit code (128+N for a signal)."""
    long_wait()
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
