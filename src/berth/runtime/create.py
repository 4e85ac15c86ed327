"""`create`: validate the bundle, make the cgroup, fork init, wait until it is created.

Everything that can be checked is checked before anything is changed; after
that, any failure undoes what was done (init killed, cgroup removed, state
directory removed), so a failed create leaves nothing behind.
"""

from __future__ import annotations

import os
import time

from berth.oci import jsonfast
from berth.oci.errors import SpecError
from berth.oci.runtime_config import validate, validate_process
from berth.runtime.errors import ConfigError, SetupError
from berth.runtime.init import Channel, InitArgs, init_alone, one_stage, stage1
from berth.runtime.state import OCI_VERSION, proc_stat
from berth.runtime.store import SECCOMP_CACHE, Store, check_id


def load_config(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError("(file)", f"{path} does not exist") from None
    try:
        doc = jsonfast.loads(data)
    except ValueError as e:
        raise ConfigError("(document)", str(e)) from None
    try:
        validate(doc)
        if doc.get("process") is None:
            raise SpecError("process", "is required to create a container")
        validate_process(doc["process"], "process")
    except SpecError as e:
        raise ConfigError(e.field, e.problem) from None
    return doc


def check(config: dict, rootfs: str) -> None:
    """Semantic checks that need more than one field."""
    from berth.runtime.mounts import check_sysctls

    if not os.path.isdir(rootfs):
        raise ConfigError("root.path", f"{rootfs} does not exist or is not a directory")
    lcfg = config.get("linux") or {}
    ns = {n["type"]: n.get("path") or "" for n in lcfg.get("namespaces") or ()}
    new = {t for t, p in ns.items() if not p}
    if config.get("hostname") and "uts" not in ns:
        raise ConfigError("hostname", "setting a hostname needs a uts namespace")
    if config.get("domainname") and "uts" not in ns:
        raise ConfigError("domainname", "setting a domainname needs a uts namespace")
    check_sysctls(lcfg.get("sysctl") or {}, new | {t for t, p in ns.items() if p})
    if "user" in new and not (lcfg.get("uidMappings") and lcfg.get("gidMappings")):
        raise ConfigError("linux.uidMappings", "a new user namespace needs uidMappings "
                          "and gidMappings")
    for t, p in ns.items():
        if p and not os.path.exists(p):
            raise ConfigError(f"linux.namespaces ({t})", f"{p} does not exist")
    from berth.runtime.capabilities import Capabilities
    Capabilities.from_config(config["process"].get("capabilities"))
    # linux.seccomp: validated as create_unrecorded prepares its filter (seccomp.prepare)


def create(store: Store, cid: str, bundle: str, pid_file: str | None = None,
           console_socket: str | None = None, preserve_fds: int = 0,
           no_pivot: bool = False, stdio: tuple[int, int, int] | None = None) -> int:
    """Create container `cid` from `bundle`; return init's pid.

    The container's stdin, stdout and stderr are the caller's, or the three
    descriptors in `stdio` (what a supervisor that keeps the logs passes).
    """
    return create_unrecorded(store, cid, bundle, pid_file, console_socket, preserve_fds,
                             no_pivot, stdio, record=True)[0]


def create_unrecorded(store: Store, cid: str, bundle: str, pid_file: str | None = None,
                      console_socket: str | None = None, preserve_fds: int = 0,
                      no_pivot: bool = False, stdio: tuple[int, int, int] | None = None,
                      record: bool = False, config: dict | None = None) -> tuple[int, dict]:
    """create, for a caller that starts the container next (run): return init's pid and
    the container's record, which says `created` in memory only (unless `record`) -
    start writes it while init execs (one write fewer before the process runs). `config`:
    the bundle's config.json, when the caller has it in hand."""
    check_id(cid)
    bundle = os.path.abspath(bundle)
    if config is None:
        config = load_config(bundle)
    root_path = config["root"]["path"]
    rootfs = os.path.realpath(os.path.join(bundle, root_path))
    check(config, rootfs)
    if config["process"].get("terminal") and not console_socket:
        raise ConfigError("process.terminal", "a terminal needs --console-socket")
    lcfg = config.get("linux") or {}
    filt = None
    if lcfg.get("seccomp"):  # validated and compiled (or taken from the cache) here, once
        from berth.runtime import seccomp
        filt = seccomp.prepare(lcfg["seccomp"],
                               cache_dir=os.path.join(store.root, SECCOMP_CACHE))
    from berth.runtime.cgroups import open_cgroup

    cg = open_cgroup(lcfg.get("cgroupsPath"), cid)
    cg.plan()  # the directories it will make, in the first record (a kill may come next)
    state_dir = store.reserve(cid)
    st = {"id": cid, "status": "creating", "pid": 0, "bundle": bundle, "rootfs": rootfs,
          "created": _now(), "annotations": config.get("annotations") or {},
          "cgroup": cg.to_state(), "hooks": _late_hooks(config),
          "config": {"process": config["process"], "linux": lcfg}}
    pid = 0
    try:
        store.save(cid, st)
        fifo = os.path.join(state_dir, "exec.fifo")
        os.mkfifo(fifo, 0o600)
        os.chown(fifo, *_root_owner(lcfg))  # init opens it as the container's root
        # the directories exist before init is forked: it bind-mounts them for a cgroup mount
        cg.create()
        st["cgroup"] = cg.to_state()  # saved with init's pid
        pid = _spawn(config, bundle, rootfs, state_dir, cg, console_socket, preserve_fds,
                     no_pivot, st, store, cid, stdio, record, filt)
    except BaseException:
        _undo(store, cid, cg, pid)
        raise
    if pid_file:
        _write_pid_file(pid_file, pid)
    return pid, st


def _root_owner(lcfg: dict) -> tuple[int, int]:
    """The host uid and gid that the container's root maps to (0, 0 without a user ns)."""
    out = []
    for key in ("uidMappings", "gidMappings"):
        host = 0
        for m in lcfg.get(key) or ():
            if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                host = m["hostID"] - m["containerID"]
        out.append(host)
    return out[0], out[1]


def _late_hooks(config: dict) -> dict:
    h = config.get("hooks") or {}
    # prestart runs at start (as runc does, and the runtime-tools suite expects)
    return {k: h[k] for k in ("prestart", "poststart", "poststop") if h.get(k)}


def _apply_device_rules(cg, lcfg: dict) -> None:
    from berth.runtime.mounts import DEFAULT_DEVICE_RULES

    # deny everything, then the config's rules in their order, then berth's defaults
    # (the devices every container needs) unless a config rule denies that device by number
    user = list((lcfg.get("resources") or {}).get("devices") or ())
    denied = [r for r in user if not r.get("allow") and r.get("major") not in (None, -1)]
    rules = [{"allow": False, "access": "rwm"}] + user
    rules += [d for d in DEFAULT_DEVICE_RULES if not any(_covers(r, d) for r in denied)]
    for d in lcfg.get("devices") or ():
        if d["type"] != "p":
            rules.append({"allow": True, "type": d["type"], "major": d["major"],
                          "minor": d["minor"], "access": "rwm"})
    cg.apply_devices(rules)


def _covers(rule: dict, dev: dict) -> bool:
    return (rule.get("type") in (None, "a", dev["type"]) and rule.get("major") == dev["major"]
            and rule.get("minor") in (None, -1, dev["minor"]))


def _spawn(config, bundle, rootfs, state_dir, cg, console_socket, preserve_fds,
           no_pivot, st, store, cid, stdio=None, record=True, seccomp_filter=None) -> int:
    p2c_r, p2c_w = os.pipe()
    c2p_r, c2p_w = os.pipe()
    args = InitArgs(config, bundle, rootfs, state_dir, cg.dirs, console_socket, preserve_fds,
                    no_pivot)
    args.stdio = stdio
    args.seccomp = seccomp_filter  # init loads it before execve
    args.cgroup_join = cg.join_files()  # stage 1 moves itself in: init is born inside
    # what init imports, imported here: a module read after fork costs the child 3-5
    # times as much (every object it makes or touches copies a page of ours), ~1.5 ms
    if config.get("hooks"):
        import berth.runtime.hooks  # noqa: F401
    import berth.runtime.mounts
    import berth.runtime.process  # noqa: F401
    from berth.runtime.cgroups import finish_warm_up
    finish_warm_up()  # no thread may run across fork
    alone = one_stage(args.namespaces)
    pid1 = _fork_init("pid" in args.namespaces) if alone else os.fork()
    if pid1 == 0:
        os.close(p2c_w)
        os.close(c2p_r)
        (init_alone if alone else stage1)(args, Channel(p2c_r, c2p_w))
        os._exit(1)
    os.close(p2c_r)
    os.close(c2p_w)
    os.close(args.state_fd)
    ch = Channel(c2p_r, p2c_w)
    pid = 0
    try:
        lcfg = config.get("linux") or {}
        # limits are written while the children set up namespaces and mounts; init waits
        # for the OK below (after PID) before it makes device nodes, which they govern
        cg.apply(lcfg.get("resources"))
        _apply_device_rules(cg, lcfg)
        while True:
            msg = ch.recv()
            if msg is None:
                raise SetupError("container init exited during setup")
            if msg.startswith("ERR "):
                raise SetupError(msg[4:])
            if msg == "USERNS":
                _write_id_maps(pid1, lcfg)
                ch.answer("OK")
            elif msg.startswith("PID"):
                if alone:
                    pid = pid1  # init itself
                else:
                    pid = int(msg[4:])
                    os.waitpid(pid1, 0)  # stage 1, done
                st["pid"] = pid
                pid1 = 0
                oom = config["process"].get("oomScoreAdj")
                if oom is not None:
                    from berth.runtime.process import set_oom_score_adj
                    set_oom_score_adj(pid, oom)
                ch.answer("OK")  # record init while it goes on
                ps = proc_stat(pid)
                st["starttime"] = ps[1] if ps else 0
                store.save(cid, st)
            elif msg == "HOOKS":
                h = config.get("hooks") or {}
                if h.get("createRuntime"):
                    from berth.runtime import hooks
                    hs = hook_state(cid, "creating", pid, bundle, config)
                    hooks.run("createRuntime", h["createRuntime"], hs)
                ch.answer("OK")
            elif msg == "READY":
                st["status"] = "created"
                if record:
                    store.save(cid, st)
                return pid
    except BaseException:
        if pid1:
            _kill_wait(pid1)
        if pid:
            st["pid"] = pid
        raise
    finally:
        os.close(c2p_r)
        os.close(p2c_w)


def _fork_init(new_pid_ns: bool) -> int:
    """fork(), the child being pid 1 of a new pid namespace when asked (see one_stage)."""
    if not new_pid_ns:
        return os.fork()
    from berth.runtime import linux
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWPID)  # for our children from now on
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:  # the runtime (not init): its next children are in its own again
                linux.setns(own, linux.CLONE_NEWPID)
    finally:
        os.close(own)
    return pid


def hook_state(cid: str, status: str, pid: int, bundle: str, config: dict) -> dict:
    return {"ociVersion": OCI_VERSION, "id": cid, "status": status, "pid": pid,
            "bundle": bundle, "annotations": config.get("annotations") or {}}


def _write_id_maps(pid: int, lcfg: dict) -> None:
    for key, fname in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in lcfg.get(key) or ())
        try:
            with open(f"/proc/{pid}/{fname}", "w") as f:
                f.write(lines)
        except OSError as e:
            raise SetupError(f"linux.{key}: the kernel refused the mapping: {e.strerror}") \
                from None


def _kill_wait(pid: int) -> None:
    from berth.runtime.linux import signal_process
    if signal_process(pid, 9):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _undo(store: Store, cid: str, cg, pid: int) -> None:
    st = None
    try:
        st = store.load(cid)
    except Exception:  # noqa: BLE001
        pass
    from berth.runtime.linux import signal_process
    signal_process(pid or (st or {}).get("pid") or 0, 9)
    try:
        cg.kill_all()
        cg.destroy()
    except Exception:  # noqa: BLE001
        pass
    store.remove(cid)


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _now() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000)) + \
        f".{t % 1_000_000_000:09d}Z"
