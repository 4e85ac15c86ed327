"""`ps`: the processes of a container, from its cgroup."""

from __future__ import annotations

from berth.runtime.delete import cgroup_of
from berth.runtime.errors import InvalidState
from berth.runtime.state import status
from berth.runtime.store import Store


def pids(store: Store, cid: str) -> list[int]:
    st = store.load(cid)
    if status(store, cid, st) == "stopped":
        raise InvalidState(f"container {cid!r} is not running")
    return sorted(cgroup_of(st).pids())


def table(store: Store, cid: str, ps_args: list[str]) -> str:
    """`ps` output (default -ef) reduced to the container's processes."""
    import subprocess

    wanted = set(pids(store, cid))
    out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    if not out:
        return ""
    header = out[0].split()
    col = header.index("PID") if "PID" in header else 1
    lines = [out[0]] + [line for line in out[1:]
                        if len(line.split()) > col and line.split()[col].isdigit()
                        and int(line.split()[col]) in wanted]
    return "\n".join(lines) + "\n"
