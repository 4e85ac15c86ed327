"""Control groups behind one interface, on cgroup v1 (and hybrid hosts) and v2.

`open_cgroup(path, cid)` finds how the host mounts cgroups and returns a V1
or V2 object with the same methods: plan, create, apply(resources),
join_files (what a process writes "0" to, to move itself in: join_self), pids,
freeze/thaw, kill_all, destroy. The container's cgroupsPath is
resolved the way runc resolves it: an absolute path is relative to each
hierarchy's root, a relative one to the runtime's own cgroup.
"""

from __future__ import annotations

import os

from berth.runtime.errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.runtime.cgroups.v1 import V1
    from berth.runtime.cgroups.v2 import V2

CGROUP_ROOT = "/sys/fs/cgroup"
_ENODEV = 19  # errno.ENODEV (the errno module is one more import on the run path)


def write(path: str, value: str) -> None:
    """Write one value to a cgroup file; errors name the file and the value."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SetupError(f"cgroup: {path} does not exist on this host "
                         "(the controller or the feature is not available)") from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise SetupError(f"cgroup: writing {value!r} to {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def procs(directory: str) -> list[int]:
    """The pids in a cgroup's cgroup.procs; none if the cgroup is gone or going (another
    delete won: ENOENT, or ENODEV for a read while it is being removed)."""
    try:
        with open(directory + "/cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        if e.errno != _ENODEV:
            raise
        return []


def missing(path: str) -> list[str]:
    """The directories `mkdirs(path)` would make, top first."""
    out = []
    p = path
    while not os.path.isdir(p):
        out.append(p)
        p = os.path.dirname(p)
    return out[::-1]


def mkdirs(path: str) -> list[str]:
    """mkdir -p; return the directories this call created, top first."""
    created = []
    for d in missing(path):
        try:
            os.mkdir(d)
            created.append(d)
        except FileExistsError:
            pass
    return created


def rmdirs(created: list[str]) -> None:
    """Remove what mkdirs created, deepest first; never a cgroup someone else made.

    The leaf may be busy for a moment while its last task exits; a parent that
    still has other children is left alone.
    """
    import time

    for i, d in enumerate(reversed(created)):
        for _ in range(100 if i == 0 else 1):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                if i == 0:
                    time.sleep(0.005)


def join_self(files: list[str]) -> None:
    """Move the calling process into a cgroup: write "0" (the writer) to each of `files`.

    The files are a V1's or V2's join_files(). On v1 they are `tasks`: a thread that
    moves itself takes no cgroup_threadgroup_rwsem, whose write lock, when it finds it
    idle, first waits for an RCU grace period (~10 ms here, 30 under load; runc pays
    it writing init's pid to cgroup.procs). For a process with one thread, as a fresh
    fork is, moving its thread moves the process.
    """
    for f in files:
        write(f, "0")


_warm_up: list | None = None


def start_warm_up() -> None:
    """On cgroup v2, keep writing our own pid to our own cgroup, in a thread, until
    the container joins its.

    v2 has no per-thread way in (see join_self), so the join pays the rwsem's grace
    period unless a write came just before: writing where we already are changes
    nothing, and doing it every millisecond while the verb's modules load keeps the
    lock warm for the join right after fork (see finish_warm_up). Errors end the
    thread quietly: without the right to write, the join pays the wait as before.
    On v1 nothing is started: join_self takes no such lock, and the thread's own
    first write would hold cgroup_mutex through a grace period, stalling create's
    mkdirs.
    """
    global _warm_up
    if not is_unified():
        return
    import _thread

    done = _thread.allocate_lock()
    done.acquire()
    state = [done, False]  # [lock released when the thread ends, stop requested]

    def run() -> None:
        try:
            path = None
            with open("/proc/self/cgroup", "rb") as f:
                for line in f:
                    _, ctrls, cg = line.rstrip(b"\n").split(b":", 2)
                    if ctrls in (b"pids", b"memory", b""):
                        base = CGROUP_ROOT + ("/" + ctrls.decode() if ctrls else "")
                        path = base + cg.decode() + "/cgroup.procs"
                        break
            if path is None:
                return
            import time
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                while not state[1]:
                    os.write(fd, b"0")  # "0": the writing thread's own process
                    time.sleep(0.001)
            finally:
                os.close(fd)
        except OSError:
            pass
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    _warm_up = state


def finish_warm_up() -> None:
    """Stop the warm-up thread and wait for it (no thread may run across fork)."""
    global _warm_up
    if _warm_up is not None:
        _warm_up[1] = True
        _warm_up[0].acquire()
        _warm_up = None


def kill_pids(pids, sig: int) -> None:
    """Signal every process `pids()` lists until it lists none (or half a second passes)."""
    import time

    for _ in range(50):
        found = pids()
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def own_cgroups() -> dict[str, str]:
    """The calling process's cgroup per controller ("" is the v2 unified one)."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def mounts() -> tuple[str | None, dict[str, str]]:
    """(cgroup2 mount point or None, {v1 controller: mount point}) from mountinfo."""
    v2 = None
    v1: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if "cgroup" not in line:  # most lines, more with every container's rootfs
                continue
            fields = line.split()
            sep = fields.index("-")
            fstype, super_opts = fields[sep + 1], fields[sep + 3]
            mnt = fields[4]
            if fstype == "cgroup2":
                if v2 is None or mnt == CGROUP_ROOT:
                    v2 = mnt
            elif fstype == "cgroup":
                for opt in super_opts.split(","):
                    if opt in ("rw", "ro") or opt.startswith(("release_agent", "clone_children")):
                        continue
                    v1.setdefault(opt, mnt)
    return v2, v1


def is_unified() -> bool:
    return os.path.exists(CGROUP_ROOT + "/cgroup.controllers")


def open_cgroup(cgroups_path: str | None, cid: str) -> V1 | V2:
    """The container's cgroup (not yet created) for the host's cgroup layout."""
    path = cgroups_path or f"/berth/{cid}"
    if ":" in path and not path.startswith("/"):
        raise SetupError(f"cgroup: cgroupsPath {path!r} is a systemd slice path; "
                         "berth manages cgroups directly (use a filesystem path)")
    if is_unified():
        from berth.runtime.cgroups.v2 import V2
        return V2(CGROUP_ROOT, path)
    from berth.runtime.cgroups.v1 import V1
    return V1(path)


def resolve(mountpoint: str, own: str, path: str) -> str:
    rel = path if path.startswith("/") else os.path.join(own, path)
    full = os.path.normpath(mountpoint + "/" + rel.lstrip("/"))
    if not (full + "/").startswith(mountpoint.rstrip("/") + "/"):
        raise SetupError(f"cgroup: cgroupsPath {path!r} leaves the cgroup hierarchy")
    return full
