"""Containers: create from an image, run in the foreground, list, remove.

A container lives in <berth root>/containers/<id>/: upper/ and work/ of its
overlay snapshot, rootfs/ where the snapshot is mounted while it runs, and
bundle/config.json for the runtime. The runtime keeps its own state under
/run/berth/runtime (root) with the same container id.

Detached containers belong to the supervisor (engine/supervisor.py), which
keeps their logs and exit codes and applies restart policies. Not here yet:
networking beyond loopback, volumes, exec (issue 4's next steps).
"""

from __future__ import annotations

import os
import time

from berth.engine.errors import ContainerNotFound, ContainerRunning, EngineError, NameInUse
from berth.engine.names import generate
from berth.engine.spec import ContainerSpec, endpoints_of, oci_config, process_args
from berth.engine.state import State
from berth.oci import jsonfast as json

_ENOENT, _EINVAL = 2, 22  # errno's, without its import on the run path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.images.store import Store


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _rmtree(top: str) -> None:
    """rm -rf of a container's directory, never through a symlink: each directory is
    opened with O_NOFOLLOW and emptied through its descriptor (shutil.rmtree's import
    costs `berth run --rm` ~9 ms: fnmatch, re, bz2, lzma; os.fwalk stats every entry)."""
    try:
        fd = os.open(top, _DIR_FLAGS)
    except FileNotFoundError:  # top is gone, or went meanwhile
        return
    try:
        _empty(fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass


def _empty(dfd: int) -> None:
    with os.scandir(dfd) as it:  # the types come with the names (no stat)
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        try:
            if is_dir:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                try:
                    _empty(fd)
                finally:
                    os.close(fd)
                os.rmdir(name, dir_fd=dfd)
            else:
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass


def runtime_store():
    from berth.runtime.store import Store as RuntimeStore
    base = "/run/berth/runtime" if os.geteuid() == 0 else None
    return RuntimeStore(os.environ.get("BERTH_RUNTIME_ROOT") or base)


def create(state: State, store: Store, spec: ContainerSpec) -> str:
    """Record a new container (nothing is mounted or started yet); return its id."""
    image_id = store.resolve(spec.image)
    image_cfg = store.config(image_id).get("config") or {}
    args = process_args(spec, image_cfg)
    if spec.mounts:
        from berth.engine import volumes
        spec.mounts = volumes.resolve(state.root, spec.mounts)
    cid = os.urandom(32).hex()  # secrets would import base64, hmac, re: ~15 ms
    if spec.name is not None:
        check_name(spec.name)
    d = state.dir(cid)
    os.mkdir(d, 0o755)  # (the containers directory exists: State made it)
    for sub in ("upper", "work", "rootfs", "bundle"):
        os.mkdir(os.path.join(d, sub), 0o700 if sub == "work" else 0o755)
    try:
        for attempt in range(20):
            name = spec.name or generate(state.names())
            try:
                state.add(cid, name, spec.image, image_id, args, spec.to_dict())
                break
            except NameInUse:
                # a generated name can be taken by a concurrent create between the pick
                # and the insert: pick again (a name the user gave is simply in use)
                if spec.name or attempt == 19:
                    raise
    except BaseException:
        _rmtree(d)
        raise
    return cid


def _mount(state: State, store: Store, c: dict, volatile: bool = False) -> str:
    from berth.images import snapshots
    d = state.dir(c["id"])
    rootfs = os.path.join(d, "rootfs")
    if not os.path.ismount(rootfs):
        snapshots.mount(store, c["image_id"], rootfs, os.path.join(d, "upper"),
                        os.path.join(d, "work"), volatile=volatile)
    return rootfs


def unmount(state: State, cid: str) -> None:
    """Unmount the container's snapshot if it is mounted (the supervisor and a CLI may race)."""
    rootfs = os.path.join(state.dir(cid), "rootfs")
    if os.path.ismount(rootfs):
        from berth.images import snapshots
        try:
            snapshots.unmount(rootfs)
        except OSError as e:
            if e.errno not in (_EINVAL, _ENOENT):
                raise


def prepare_bundle(state: State, store: Store, c: dict) -> tuple[str, dict]:
    """Mount the container's snapshot and write its config.json; return the bundle dir
    and the config (which the runtime then need not read back)."""
    spec = ContainerSpec.from_dict(json.loads(c["spec"]))
    rootfs = _mount(state, store, c, volatile=spec.remove)  # as podman's --rm
    extra_mounts = []
    extra = getattr(spec, "extra", None) or {}
    try:
        if spec.network.startswith("container:"):
            other = refresh(state, state.get(spec.network.partition(":")[2]))
            if other["status"] != "running":
                raise EngineError(f"cannot join the network of container {other['name']}: "
                                  "it is not running")
            netns = f"/proc/{other['pid']}/ns/net"
        else:
            netns = None
        wanted = endpoints_of(spec.to_dict())
        eps = []
        if wanted or extra.get("add_hosts"):
            from berth.engine import networks
            ip, peer_list = None, []
            for i, (name, cfg) in enumerate(wanted.items()):  # eth0, eth1, ... in order
                eps.append(networks.allocate(state, c["id"], name, cfg.get("ip"),
                                             cfg.get("aliases"), f"eth{i}"))
            if eps:
                ip, peer_list = eps[0]["IP"], networks.peers(state, c["id"], eps[0]["Name"])
            hosts = os.path.join(state.dir(c["id"]), "hosts")
            with open(hosts, "w") as f:
                f.write(networks.hosts_file(ip, spec.hostname or c["id"][:12],
                                            peer_list + [(a, n) for n, a in
                                                         extra.get("add_hosts") or []]))
            extra_mounts.append({"destination": "/etc/hosts", "type": "bind", "source": hosts,
                                 "options": ["rbind", "rprivate"]})
        nameservers = list(extra.get("dns") or [])
        if not nameservers and eps:  # docker: the embedded DNS, on its user networks
            from berth.engine.networks import DEFAULT
            nameservers = [ep["Gateway"] for ep in eps if ep["Name"] != DEFAULT][:1]
        if nameservers:
            resolv = os.path.join(state.dir(c["id"]), "resolv.conf")
            with open(resolv, "w") as f:
                f.write("".join(f"nameserver {d}\n" for d in nameservers))
            extra_mounts.append({"destination": "/etc/resolv.conf", "type": "bind",
                                 "source": resolv, "options": ["rbind", "rprivate"]})
        for m in spec.mounts:
            if m["type"] == "volume" and not m.get("nocopy"):
                from berth.engine import volumes
                from berth.runtime.mounts import secure_join
                volumes.seed(state.root, m["source"], secure_join(rootfs, m["target"]))
        config = oci_config(spec, store.config(c["image_id"]).get("config") or {}, rootfs,
                            f"/berth/{c['id']}", spec.hostname or c["id"][:12], state.root)
        config["mounts"] += extra_mounts
        if netns is not None:  # --network container:ID joins that container's namespace
            for ns in config["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = netns
        bundle = os.path.join(state.dir(c["id"]), "bundle")
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(json.dumps(config))
    except BaseException:
        unmount(state, c["id"])
        release_network(state, c["id"])
        raise
    return bundle, config


def plug_network(state: State, cid: str, dns=None):
    """The create->start hook that plugs the container into its networks (None: nothing).

    On a user-defined network the supervisor must answer DNS on it: `dns(network)` asks
    it (the supervisor passes its own method; a CLI goes through the socket).
    """
    wanted = endpoints_of(json.loads(state.get(cid)["spec"]))
    if not wanted:
        return None
    from berth.engine import networks

    def plug(pid: int) -> None:
        for i, (network, cfg) in enumerate(wanted.items()):
            ep = networks.attach(state, cid, pid, network, i == 0, cfg.get("ip"),
                                 cfg.get("aliases"), f"eth{i}")
            if ep["Name"] != networks.DEFAULT:
                if dns is not None:
                    dns(ep["Name"])
                else:
                    from berth.engine.client import request
                    request(state.root, {"op": "dns", "network": ep["Name"]})

    return plug


def release_network(state: State, cid: str, spec: ContainerSpec | None = None) -> None:
    """Unplug the container from its networks; with its spec, nothing for one that has
    none (--network none or host: no endpoint, no published port)."""
    if spec is not None and not endpoints_of(spec.to_dict()):
        return
    from berth.engine import networks
    networks.detach(state, cid)


def run_foreground(state: State, store: Store, cid: str, remove: bool = False) -> int:
    """Start a created container attached to this process's stdio; return its exit code.
    With `remove` (run --rm), delete it once it has exited, anonymous volumes included."""
    from berth.runtime import linux
    from berth.runtime.delete import delete as rt_delete
    from berth.runtime.run import create_and_start, long_wait, wait_for

    c = state.get(cid)
    if c["status"] == "running":
        raise ContainerRunning(f"container {c['name']} is already running")
    spec = ContainerSpec.from_dict(json.loads(c["spec"]))
    bundle, config = prepare_bundle(state, store, c)
    rts = runtime_store()
    console = None
    stdio = None
    try:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        if os.path.isdir(rts.dir(cid)):
            rt_delete(rts, cid, force=True)  # a leftover of a crashed run
        if spec.tty:
            console = console_socket()
        else:  # a container that stays logs its run, as docker's (not a --rm one)
            from berth.engine.foreground import ForegroundStdio
            stdio = ForegroundStdio(spec.interactive, None if remove else
                                    os.path.join(state.dir(cid), "json.log"))
        def running(pid: int) -> None:
            state.update(cid, status="running", pid=pid, started=time.time(), exit_code=None,
                         finished=None)
        pid = create_and_start(rts, cid, bundle, console_socket=console.path if console else None,
                               stdio=stdio.child if stdio else None, forward=True,
                               between=plug_network(state, cid), started=running,
                               config=config)
        if console is not None or (stdio is not None and stdio.relays):
            long_wait()  # copies for as long as the container runs (wait_for's wait after)
        if console is not None:
            from berth.engine.tty import proxy
            master = console.master()
            console.close()
            proxy(master, spec.interactive)
        if stdio is not None:
            stdio.started()
            stdio.copy()
            stdio.close()
        code = wait_for(pid)
        if not remove:
            rt_delete(rts, cid, force=True)
    except BaseException:
        if stdio is not None:
            stdio.close()
        if console is not None:
            console.close()
        state.update(cid, status="exited", pid=0, exit_code=125, finished=time.time())
        unmount(state, cid)
        release_network(state, cid)
        raise
    if remove:
        _take_apart(state, cid, spec, volumes=True)
        return code
    state.update(cid, status="exited", pid=0, exit_code=code, finished=time.time(), paused=0)
    unmount(state, cid)
    release_network(state, cid, spec)
    return code


def console_socket():
    """A console socket at a short path (unix socket paths are limited to 108 bytes)."""
    import tempfile

    from berth.engine.tty import ConsoleSocket
    d = tempfile.mkdtemp(prefix="berth-tty-")
    return ConsoleSocket(os.path.join(d, "s"))


def start_detached(state: State, cid: str) -> int:
    """Hand the container to the supervisor (started on demand); return init's pid."""
    from berth.engine.client import request
    c = state.get(cid)
    return int(request(state.root, {"op": "start", "id": c["id"]})["pid"])


def stop(state: State, ref: str, timeout: float | None = None, sig: int | None = None) -> str:
    """Stop a container: its stop signal, then SIGKILL after `timeout` seconds (by default
    --stop-signal and --stop-timeout of its run, else SIGTERM and 10 s)."""
    c = refresh(state, state.get(ref))
    extra = json.loads(c["spec"]).get("extra") or {}
    if sig is None:
        from berth.runtime.kill import parse_signal
        sig = parse_signal(extra.get("stop_signal") or "TERM")
    if timeout is None:
        timeout = float(extra.get("stop_timeout", 10))
    state.update(c["id"], stop_requested=1)
    if c["status"] != "running":
        return c["name"]
    from berth.engine.client import request
    from berth.engine.rundir import socket_path
    if os.path.exists(socket_path(state.root)):
        try:
            request(state.root, {"op": "stop", "id": c["id"], "timeout": timeout, "signal": sig},
                    timeout=timeout + 30)
            return c["name"]
        except EngineError:
            pass
    from berth.runtime.errors import ContainerNotFound as RtNotFound
    from berth.runtime.errors import InvalidState
    # a foreground container: its own CLI records the exit (and deletes the runtime's
    # record, maybe between our look and our kill: then it has stopped, as asked)
    try:
        kill(state, c["id"], sig)
    except (InvalidState, RtNotFound, EngineError):
        return c["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and refresh(state, state.get(c["id"]))["status"] == \
            "running":
        time.sleep(0.05)
    if refresh(state, state.get(c["id"]))["status"] == "running":
        try:
            kill(state, c["id"], 9)
        except (InvalidState, RtNotFound, EngineError):
            pass
    return c["name"]


def should_restart(c: dict, code: int) -> bool:
    policy = json.loads(c["spec"]).get("restart", "no")
    name, _, limit = policy.partition(":")
    if c["stop_requested"] or name == "no":
        return False
    if name == "on-failure":
        return code != 0 and (not limit or c["restart_count"] < int(limit))
    return True  # always, unless-stopped


def wait(state: State, ref: str) -> int:
    c = state.get(ref)
    while True:
        try:
            c = refresh(state, state.get(c["id"]))
        except ContainerNotFound:  # removed as it exited (run -d --rm): its code is left
            code = _left_exit_code(state, c["id"])
            if code is None:
                raise
            return code
        if c["status"] != "running":
            return -1 if c["exit_code"] is None else int(c["exit_code"])
        time.sleep(0.05)


def _exits_dir(state: State) -> str:
    return os.path.join(state.root, "run", "exits")


def leave_exit_code(state: State, cid: str, code: int) -> None:
    """Keep the exit code of a container about to be removed as it exits (run -d --rm),
    for a `wait` under way; the oldest of these small files go as new ones come."""
    d = _exits_dir(state)
    os.makedirs(d, 0o700, exist_ok=True)
    tmp = os.path.join(d, f".{cid}.tmp")
    with open(tmp, "w") as f:
        f.write(str(code))
    os.rename(tmp, os.path.join(d, cid))
    names = sorted(os.listdir(d), key=lambda n: os.stat(os.path.join(d, n)).st_mtime)
    for n in names[:-100]:
        try:
            os.unlink(os.path.join(d, n))
        except FileNotFoundError:
            pass


def _left_exit_code(state: State, cid: str) -> int | None:
    try:
        with open(os.path.join(_exits_dir(state), cid)) as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


def logs_path(state: State, ref: str) -> str:
    return os.path.join(state.dir(state.get(ref)["id"]), "json.log")


def refresh(state: State, c: dict) -> dict:
    """Make a record agree with the kernel: a running container whose init is gone exited."""
    if c["status"] != "running":
        return c
    from berth.runtime.errors import ContainerNotFound as RtNotFound
    from berth.runtime.state import state as rt_state
    try:
        alive = rt_state(runtime_store(), c["id"])["status"] in ("running", "created")
    except RtNotFound:
        alive = False
    if not alive:
        from berth.engine.rundir import alive as supervisor_alive
        if c["supervised"] and supervisor_alive(state.root):
            return c  # the supervisor is reaping it and will record the exit code
        state.update(c["id"], status="exited", pid=0, finished=time.time())
        c = state.get(c["id"])
    return c


def list_containers(state: State, all_: bool = False) -> list[dict]:
    out = [refresh(state, c) for c in state.all()]
    return out if all_ else [c for c in out if c["status"] == "running"]


def remove(state: State, ref: str, force: bool = False, volumes: bool = False,
           owned: bool = False) -> str:
    """Delete a container and everything it left (snapshot, bundle, runtime state);
    with `volumes`, its anonymous volumes too. `owned`: the caller ran it in the
    foreground (run --rm), so no supervisor can be starting it."""
    c = state.get(ref)
    if not owned:
        from berth.engine.rundir import alive
        if alive(state.root):
            # the supervisor serves one request at a time: once it answers, a start it
            # was given (by a CLI killed since, say) is finished, and the record says so
            from berth.engine.client import request
            request(state.root, {"op": "ping"})
    c = refresh(state, state.get(c["id"]))
    if c["status"] == "running":
        if not force:
            raise ContainerRunning(f"cannot remove container {c['name']}: it is running "
                                   "(stop it first, or use --force)")
        stop(state, c["id"], timeout=0, sig=9)  # through the supervisor when it owns it
    _take_apart(state, c["id"], ContainerSpec.from_dict(json.loads(c["spec"])), volumes)
    return c["name"]


def _take_apart(state: State, cid: str, spec: ContainerSpec, volumes: bool) -> None:
    """Delete a stopped container: its runtime record and cgroups, snapshot, directory
    and record; with `volumes`, its anonymous volumes. (Two threads, one for the runtime's
    part, were slower: the GIL passes between them at every system call.)"""
    from berth.runtime.delete import delete as rt_delete
    from berth.runtime.errors import ContainerNotFound as RtNotFound
    try:
        rt_delete(runtime_store(), cid, force=True)
    except RtNotFound:
        pass
    unmount(state, cid)
    release_network(state, cid, spec)
    _rmtree(state.dir(cid))
    state.remove(cid)
    anonymous = [m for m in spec.mounts if m.get("anonymous")] if volumes else []
    if anonymous:
        from berth.engine import volumes as vol
        for m in anonymous:
            if vol.exists(state.root, m["source"]):
                vol.remove(state.root, m["source"], volumes_in_use(state))


def volumes_in_use(state: State) -> set[str]:
    return {m["source"] for c in state.all() for m in json.loads(c["spec"]).get("mounts") or []
            if m["type"] == "volume"}


def kill(state: State, ref: str, sig: int = 9) -> None:
    c = refresh(state, state.get(ref))
    if c["status"] != "running":
        raise EngineError(f"cannot kill container {c['name']}: it is not running")
    from berth.runtime.kill import kill as rt_kill
    rt_kill(runtime_store(), c["id"], sig)


def get(state: State, ref: str) -> dict:
    return refresh(state, state.get(ref))


def exec_in(state: State, ref: str, cmd: list[str], env: list[str] | None = None,
            user: str | None = None, workdir: str | None = None, detach: bool = False,
            privileged: bool = False, tty: bool = False, interactive: bool = False) -> int:
    """Run another process in a running container; return its exit code (0 when detached)."""
    from berth.engine.spec import merge_env, resolve_user
    from berth.runtime.exec import exec_process
    from berth.runtime.state import state as rt_state

    c = refresh(state, state.get(ref))
    if c["status"] != "running":
        raise EngineError(f"container {c['name']} is not running")
    if c.get("paused"):
        raise EngineError(f"container {c['name']} is paused, unpause the container before exec")
    rts = runtime_store()
    base = (rts.load(c["id"]).get("config") or {}).get("process") or {}
    rt_state(rts, c["id"])
    rootfs = os.path.join(state.dir(c["id"]), "rootfs")
    proc = dict(base)
    proc["args"] = cmd
    proc["env"] = merge_env(base.get("env") or [], env or [])
    proc["terminal"] = tty
    if workdir:
        proc["cwd"] = workdir
    if user:
        uid, gid, groups = resolve_user(user, rootfs)
        proc["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
    if privileged:
        from berth.runtime.capabilities import NAMES
        proc["capabilities"] = {k: sorted(NAMES) for k in ("bounding", "effective", "permitted")}
    if not tty:
        return exec_process(rts, c["id"], proc, detach=detach)
    from berth.engine.tty import proxy
    from berth.runtime import linux
    from berth.runtime.run import wait_for
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # the exec'd process is re-parented to us
    console = console_socket()
    pid_file = os.path.join(os.path.dirname(console.path), "pid")
    try:
        exec_process(rts, c["id"], proc, detach=True, pid_file=pid_file,
                     console_socket=console.path)
        master = console.master()
        with open(pid_file) as f:
            pid = int(f.read())
    finally:
        console.close()
        _rmtree(os.path.dirname(console.path))
    if detach:
        os.close(master)
        return 0
    proxy(master, interactive)
    return wait_for(pid)


def pause(state: State, ref: str, frozen: bool = True) -> str:
    """Freeze (or thaw) every process of a running container (the freezer cgroup)."""
    from berth.runtime.delete import cgroup_of
    c = refresh(state, state.get(ref))
    if c["status"] != "running":
        raise EngineError(f"container {c['name']} is not running")
    if bool(c.get("paused")) == frozen:
        raise EngineError(f"container {c['name']} is {'already' if frozen else 'not'} paused")
    cg = cgroup_of(runtime_store().load(c["id"]))
    cg.freeze() if frozen else cg.thaw()
    state.update(c["id"], paused=1 if frozen else 0)
    return c["name"]


def check_name(name: str) -> None:
    import re
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
        from berth.engine.errors import InvalidOption
        raise InvalidOption(f"Invalid container name ({name}), only "
                            "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


def rename(state: State, ref: str, new: str) -> None:
    check_name(new)
    c = state.get(ref)
    if new in state.names() and new != c["name"]:
        from berth.engine.errors import NameInUse
        raise NameInUse(new, state.get(new)["id"])
    state.update(c["id"], name=new)


def top(state: State, ref: str, ps_args: list[str]) -> str:
    from berth.runtime.ps import table as rt_table
    c = refresh(state, state.get(ref))
    if c["status"] != "running":
        raise EngineError(f"container {c['name']} is not running")
    return rt_table(runtime_store(), c["id"], ps_args)


def prune(state: State) -> list[str]:
    """Remove every stopped container."""
    removed = []
    for c in list_containers(state, all_=True):
        if c["status"] != "running":
            remove(state, c["id"])
            removed.append(c["id"])
    return removed


def inspect(state: State, store: Store, ref: str) -> dict:
    """docker container inspect's shape (the parts berth knows)."""
    c = refresh(state, state.get(ref))
    spec = json.loads(c["spec"])
    args = json.loads(c["command"])

    def iso(t: float | None) -> str:
        if not t:
            return "0001-01-01T00:00:00Z"
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + \
            f".{int((t % 1) * 1e9):09d}Z"

    running = c["status"] == "running"
    image_cfg = store.config(c["image_id"]).get("config") or {} if c["image_id"] else {}
    from berth.engine import endpoints
    from berth.engine.spec import merge_env
    return {
        "Id": c["id"],
        "Created": iso(c["created"]),
        "Path": args[0],
        "Args": args[1:],
        "State": {
            "Status": "paused" if c.get("paused") and running else c["status"],
            "Running": running, "Paused": bool(c.get("paused")) and running,
            "Restarting": False, "OOMKilled": False, "Dead": False,
            "Pid": c["pid"] if running else 0,
            "ExitCode": c["exit_code"] or 0, "Error": "",
            "StartedAt": iso(c["started"]), "FinishedAt": iso(c["finished"]),
        },
        "Image": c["image_id"],
        "Name": "/" + c["name"],
        "RestartCount": c["restart_count"],
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Memory": spec.get("memory") or 0,
            "NanoCpus": int((spec.get("cpus") or 0) * 1e9),
            "PidsLimit": spec.get("pids_limit"),
            "ReadonlyRootfs": spec.get("read_only", False),
            "Privileged": spec.get("privileged", False),
            "NetworkMode": spec.get("network", "none"),
            "RestartPolicy": {"Name": spec.get("restart", "no").partition(":")[0],
                              "MaximumRetryCount": int(spec.get("restart", "no").partition(":")[2]
                                                       or 0)},
            "AutoRemove": spec.get("remove", False),
            "CapAdd": spec.get("cap_add") or None, "CapDrop": spec.get("cap_drop") or None,
        },
        "GraphDriver": {"Name": "overlay", "Data": {
            "UpperDir": os.path.join(state.dir(c["id"]), "upper"),
            "WorkDir": os.path.join(state.dir(c["id"]), "work"),
            "MergedDir": os.path.join(state.dir(c["id"]), "rootfs")}},
        "Config": {
            "Hostname": spec.get("hostname") or c["id"][:12],
            "User": spec.get("user") or image_cfg.get("User") or "",
            "Tty": spec.get("tty", False), "OpenStdin": spec.get("interactive", False),
            "StdinOnce": spec.get("stdin_once", False),
            "Env": merge_env(image_cfg.get("Env") or [], spec.get("env") or []),
            "Cmd": spec.get("cmd") or image_cfg.get("Cmd"),
            "Entrypoint": spec.get("entrypoint") if spec.get("entrypoint") is not None
            else image_cfg.get("Entrypoint"),
            "Image": c["image"],
            "WorkingDir": spec.get("workdir") or image_cfg.get("WorkingDir") or "",
            "Labels": spec.get("labels") or {},
        },
        "NetworkSettings": endpoints.settings(state, c),
        "LogPath": os.path.join(state.dir(c["id"]), "json.log"),
    }


def stats(state: State, ref: str) -> dict:
    """CPU time, memory and pids of a running container, read from its cgroups."""
    from berth.runtime.delete import cgroup_of
    c = refresh(state, state.get(ref))
    if c["status"] != "running":
        return {"id": c["id"], "name": c["name"], "running": False}
    cg = cgroup_of(runtime_store().load(c["id"]))
    dirs = cg.dirs

    def read(ctrl: str, name: str) -> str:
        d = dirs.get(ctrl) or dirs.get("")
        try:
            with open(os.path.join(d, name)) as f:
                return f.read().strip()
        except (OSError, TypeError):
            return ""

    if "" in dirs:  # cgroup v2
        cpu_line = read("", "cpu.stat").split("\n")[0]
        cpu_ns = int(cpu_line.split()[1]) * 1000 if cpu_line.startswith("usage_usec") else 0
        mem, limit = read("", "memory.current"), read("", "memory.max")
        pids = read("", "pids.current")
    else:
        cpu_ns = int(read("cpuacct", "cpuacct.usage") or 0)
        mem, limit = read("memory", "memory.usage_in_bytes"), read("memory",
                                                                    "memory.limit_in_bytes")
        pids = read("pids", "pids.current")
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    lim = int(limit) if limit.isdigit() else total_mem
    return {"id": c["id"], "name": c["name"], "running": True, "cpu_ns": cpu_ns,
            "memory": int(mem or 0), "memory_limit": min(lim, total_mem),
            "pids": int(pids or 0), "time": time.monotonic()}


def check(state: State, repair: bool = False) -> list[str]:
    """What does not agree between berth's records and the host; fixed with `repair`."""
    from berth.engine import networks
    from berth.runtime.delete import delete as rt_delete
    found: list[str] = []
    records = {c["id"]: refresh(state, c) for c in state.all()}
    for cid, c in records.items():
        if c["status"] != "running":
            if os.path.ismount(os.path.join(state.dir(cid), "rootfs")):
                found.append(f"container {c['name']}: stopped but its filesystem is mounted")
                if repair:
                    unmount(state, cid)
            if networks._db(state).execute("SELECT 1 FROM endpoints WHERE container=?",
                                           (cid,)).fetchone():
                found.append(f"container {c['name']}: stopped but still holds a network address")
                if repair:
                    release_network(state, cid)
    rts = runtime_store()
    for rid in rts.ids():
        if rid not in records:
            found.append(f"runtime state {rid[:12]}: no container record")
            if repair:
                rt_delete(rts, rid, force=True)
    try:
        dirs = os.listdir(state.containers_dir)
    except FileNotFoundError:
        dirs = []
    for d in dirs:
        if d not in records:
            found.append(f"directory containers/{d[:12]}: no container record")
            if repair:
                unmount(state, d)
                _rmtree(state.dir(d))
    return found
