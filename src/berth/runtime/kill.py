"""`kill`: send a signal to a created or running container's init (or all its processes)."""

from __future__ import annotations

import os

from berth.runtime.errors import InvalidState, UsageError
from berth.runtime.state import status
from berth.runtime.store import Store

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}


def parse_signal(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
    else:
        t = t.removeprefix("SIG")
        if t.startswith("RTMIN"):
            n = 34 + int(t[5:] or 0)
        elif t.startswith("RTMAX"):
            n = 64 + int(t[5:] or 0)
        elif t in SIGNALS:
            n = SIGNALS[t]
        else:
            raise UsageError(f"unknown signal {text!r}")
    if not 0 < n < 65:
        raise UsageError(f"signal {text!r} is out of range (1-64)")
    return n


def kill(store: Store, cid: str, sig: int = 15, all_processes: bool = False) -> None:
    st = store.load(cid)
    s = status(store, cid, st)
    if s not in ("created", "running"):
        raise InvalidState(f"cannot kill container {cid!r}: it is {s}")
    if all_processes:
        from berth.runtime.delete import cgroup_of
        for pid in cgroup_of(st).pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return
    from berth.runtime.linux import signal_process
    if not signal_process(st.get("pid") or 0, sig):
        raise InvalidState(f"cannot kill container {cid!r}: its process is gone")
