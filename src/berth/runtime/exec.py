"""`exec`: run another process inside a created or running container.

A forked child joins the container's cgroup and namespaces (read from
/proc/<init>/ns), forks once more so the process lands inside the pid
namespace, and execs it with the same ProcessPlan steps as init. Errors
before execve come back on a close-on-exec pipe; end of file means execve
succeeded.
"""

from __future__ import annotations

import os

from berth.oci.errors import SpecError
from berth.oci.runtime_config import validate_process
from berth.runtime import linux
from berth.runtime.errors import ConfigError, InvalidState, RuntimeFailure, SetupError
from berth.runtime.state import status
from berth.runtime.store import SECCOMP_CACHE, Store

_PROC_NS = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid",
            "cgroup": "cgroup", "time": "time", "mount": "mnt"}


def exec_process(store: Store, cid: str, proc: dict, detach: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None,
                 preserve_fds: int = 0) -> int:
    st = store.load(cid)
    s = status(store, cid, st)
    if s not in ("created", "running"):
        raise InvalidState(f"cannot exec in container {cid!r}: it is {s}")
    try:
        validate_process(proc, "process")
    except SpecError as e:
        raise ConfigError(e.field, e.problem) from None
    if proc.get("terminal") and not console_socket:
        raise ConfigError("process.terminal", "a terminal needs --console-socket")
    cfg = st.get("config") or {}
    lcfg = cfg.get("linux") or {}
    init = st["pid"]
    paths = {}
    for ns in lcfg.get("namespaces") or ():
        t = ns["type"]
        p = f"/proc/{init}/ns/{_PROC_NS[t]}"
        if os.stat(p).st_ino != os.stat(f"/proc/self/ns/{_PROC_NS[t]}").st_ino:
            paths[t] = p
    from berth.runtime.delete import cgroup_of
    from berth.runtime.process import ProcessPlan

    cg = cgroup_of(st)
    plan = ProcessPlan(proc, lcfg, userns="user" in paths,
                       seccomp_cache=os.path.join(store.root, SECCOMP_CACHE))
    if not detach:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        _child(w, cg, paths, plan, proc, console_socket, preserve_fds)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    head, _, rest = data.partition(b"\n")
    if not head.startswith(b"PID "):
        raise SetupError(rest.decode(errors="replace") or head.decode(errors="replace")
                         or "exec: the process could not be started")
    pid = int(head[4:])
    if rest:
        raise SetupError(rest.decode(errors="replace"))
    if pid_file:
        from berth.runtime.create import _write_pid_file
        _write_pid_file(pid_file, pid)
    if detach:
        return 0
    from berth.runtime.run import forward_signals, wait_for
    forward_signals(pid)
    return wait_for(pid)


def _child(w: int, cg, paths: dict[str, str], plan, proc: dict,
           console_socket: str | None, preserve_fds: int) -> None:
    from berth.runtime.init import join_namespaces

    try:
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
        from berth.runtime.cgroups import join_self
        join_self(cg.join_files())
        console = None
        if proc.get("terminal"):
            from berth.runtime.init import _connect_console
            console = _connect_console(console_socket)
        join_namespaces(paths)
        pid = os.fork()
        if pid:
            os.write(w, f"PID {pid}\n".encode())
            os._exit(0)
        if console is not None:
            os.setsid()
            from berth.runtime.init import _setup_tty
            _setup_tty(console, proc)
        plan.lookup()
        plan.execute(preserve_fds)
    except BaseException as e:  # noqa: BLE001 - reported through the pipe
        msg = str(e) if isinstance(e, RuntimeFailure | OSError) else repr(e)
        try:
            os.write(w, msg.encode())
        except OSError:
            pass
    os._exit(127)
