"""`berth run` and `berth create`: their flags, once, and the run itself, without click.

`run` is the command people time. Its flags are a plain table (FLAGS) from which
cli/container.py builds the click options (help, `berth create`), and which
`fast_main` parses by hand with the runtime's own parser, so that `berth run`
pays for neither click nor its imports. Errors print `Error: ...` and exit 125
(docker's code for its own failures); a command that is not found exits 127,
one that cannot be run 126; otherwise the container's status is the exit code.
"""

from __future__ import annotations

import os
import sys

# (option names, destination, kind, default, help); kind: flag | value | multi | int |
# float | choice:a,b,c
FLAGS: list[tuple[tuple[str, ...], str, str, object, str]] = [
    (("-d", "--detach"), "detach", "flag", False, "Run in the background; print the ID."),
    (("-i", "--interactive"), "interactive", "flag", False, "Keep STDIN open."),
    (("-t", "--tty"), "tty", "flag", False, "Allocate a pseudo-TTY."),
    (("--rm",), "remove", "flag", False, "Remove the container when it exits."),
    (("--name",), "name", "value", None, "Assign a name to the container."),
    (("-e", "--env"), "env", "multi", (), "Set environment variables."),
    (("--env-file",), "env_file", "multi", (), "Read in a file of environment variables."),
    (("-w", "--workdir"), "workdir", "value", None, "Working directory inside the container."),
    (("-u", "--user"), "user", "value", None,
     "Username or UID (format: <name|uid>[:<group|gid>])."),
    (("--entrypoint",), "entrypoint", "value", None,
     "Overwrite the default ENTRYPOINT of the image."),
    (("--network", "--net"), "network", "value", "bridge",
     "bridge, a network's name, none or host."),
    (("--network-alias",), "network_alias", "multi", (),
     "Add a network-scoped alias for the container (user-defined networks)."),
    (("-h", "--hostname"), "hostname", "value", None, "Container host name."),
    (("--read-only",), "read_only", "flag", False, "Mount the root filesystem read-only."),
    (("-m", "--memory"), "memory", "value", None, "Memory limit (e.g. 64m)."),
    (("--cpus",), "cpus", "float", None, "Number of CPUs."),
    (("--pids-limit",), "pids_limit", "int", None, "Tune the container's pids limit."),
    (("--cap-add",), "cap_add", "multi", (), "Add Linux capabilities."),
    (("--cap-drop",), "cap_drop", "multi", (), "Drop Linux capabilities."),
    (("--privileged",), "privileged", "flag", False, "Give extended privileges."),
    (("-l", "--label"), "label", "multi", (), "Set metadata on a container."),
    (("--restart",), "restart", "value", "no",
     "no, always, unless-stopped or on-failure[:max-retries]."),
    (("-v", "--volume"), "volume", "multi", (),
     "Bind mount a host path or a named volume: SRC:DST[:ro]."),
    (("--mount",), "mounts", "multi", (),
     "type=bind|volume|tmpfs,source=...,target=...[,readonly]."),
    (("--tmpfs",), "tmpfs", "multi", (), "Mount a tmpfs: DST[:OPTIONS]."),
    (("-p", "--publish"), "publish", "multi", (),
     "Publish a port: [ip:][hostPort:]containerPort[/proto]."),
    (("-P", "--publish-all"), "publish_all", "flag", False,
     "Publish every EXPOSEd port to a random host port."),
    (("--add-host",), "add_host", "multi", (), "Add a host entry: NAME:IP."),
    (("--dns",), "dns", "multi", (), "Set a DNS server."),
    (("--stop-signal",), "stop_signal", "value", None,
     "Signal to stop the container (default TERM)."),
    (("--stop-timeout",), "stop_timeout", "int", None, "Seconds before stop kills (10)."),
    (("--ulimit",), "ulimit", "multi", (), "Ulimit: NAME=SOFT[:HARD]."),
    (("--device",), "device", "multi", (), "Add a host device: HOST[:CTR[:rwm]]."),
    (("--shm-size",), "shm_size", "value", None, "Size of /dev/shm (e.g. 128m)."),
    (("-c", "--cpu-shares"), "cpu_shares", "int", None, "CPU shares (relative weight)."),
    (("--cpuset-cpus",), "cpuset_cpus", "value", None,
     "CPUs in which to allow execution (0-3, 0,1)."),
    (("--memory-swap",), "memory_swap", "value", None,
     "Memory plus swap limit; -1 for unlimited."),
    (("--sig-proxy",), "sig_proxy", "flag", True,
     "Forward received signals to the container (foreground runs always do)."),
    (("--init",), "init", "flag", False,
     "Run an init (tini) as pid 1 that forwards signals and reaps orphans."),
    (("--security-opt",), "security_opt", "multi", (),
     "no-new-privileges, seccomp=unconfined|PROFILE.json."),
    (("--pull",), "pull_policy", "choice:always,missing,never", "missing",
     "Pull the image before running."),
    (("--detach-keys",), "detach_keys", "value", None,
     "Override the key sequence for detaching from -it (default ctrl-p,ctrl-q)."),
]
RUN_ONLY = ("detach", "detach_keys")  # run's flags that create has not


def parse_fast(argv: list[str], with_detach: bool = True) -> dict:
    """docker run's command line, by the table: flags, then IMAGE [COMMAND...]."""
    from berth.engine.errors import InvalidOption
    from berth.runtime.argv import parse
    from berth.runtime.errors import UsageError

    table = {}
    shorts = set()
    for names, dest, kind, _, _ in FLAGS:
        if dest in RUN_ONLY and not with_detach:
            continue
        for n in names:
            table[n] = (dest, kind != "flag", kind == "multi")
            if kind == "flag" and len(n) == 2:
                shorts.add(n[1])
    expanded = []
    for i, a in enumerate(argv):  # -it, -dit: several short flags in one word, as docker
        if a.startswith("-") and not a.startswith("--") and len(a) > 2 and set(a[1:]) <= shorts:
            expanded += [f"-{ch}" for ch in a[1:]]
        elif not a.startswith("-"):
            expanded += argv[i:]
            break
        else:
            expanded.append(a)
    try:
        opts, args = parse(expanded, table, stop_at_arg=True)
    except UsageError as e:
        raise InvalidOption(str(e)) from None
    if not args:
        raise InvalidOption('"run" requires at least 1 argument: berth run [OPTIONS] IMAGE '
                            "[COMMAND] [ARG...]")
    kw: dict = {}
    for names, dest, kind, default, _ in FLAGS:
        v = opts.get(dest, default)
        if v is not default and kind in ("int", "float"):
            try:
                v = int(v) if kind == "int" else float(v)
            except ValueError:
                raise InvalidOption(f"invalid value {v!r} for {names[-1]}") from None
        if v is not default and kind.startswith("choice:") and v not in kind[7:].split(","):
            raise InvalidOption(f"invalid value {v!r} for {names[-1]}: one of {kind[7:]}")
        kw[dest] = tuple(v) if kind == "multi" else v
    kw["image"], kw["command"] = args[0], tuple(args[1:])
    return kw


def env_file(path: str) -> list[str]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            out.append(line if "=" in line else f"{line}={os.environ.get(line, '')}")
    return out


def make_spec(kw: dict):
    from berth.engine.spec import ContainerSpec, parse_extra, parse_memory
    if kw["remove"] and kw["restart"] not in ("no", "", None):
        from berth.engine.errors import InvalidOption
        raise InvalidOption("conflicting options: --restart and --rm (a container that is "
                            "removed when it exits cannot be restarted)")
    if kw["volume"] or kw["mounts"] or kw["tmpfs"]:
        from berth.engine import volumes
    if kw["publish"]:
        from berth.engine import ports

    envs = [e for f in kw["env_file"] for e in env_file(f)]
    envs += [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in kw["env"]]
    ep = kw["entrypoint"]
    return ContainerSpec(
        kw["image"], list(kw["command"]) or None,
        entrypoint=[ep] if ep else ([] if ep == "" else None),
        env=envs, workdir=kw["workdir"], user=kw["user"], hostname=kw["hostname"],
        name=kw["name"], read_only=kw["read_only"],
        memory=parse_memory(kw["memory"]) if kw["memory"] else None, cpus=kw["cpus"],
        pids_limit=kw["pids_limit"], network=kw["network"], tty=kw["tty"],
        interactive=kw["interactive"], stdin_once=not kw.get("detach"), remove=kw["remove"],
        labels=dict(x.partition("=")[::2] for x in kw["label"]),
        cap_add=list(kw["cap_add"]), cap_drop=list(kw["cap_drop"]),
        privileged=kw["privileged"], restart=kw["restart"],
        mounts=[*(volumes.parse_volume(v) for v in kw["volume"]),
                *(volumes.parse_mount(m) for m in kw["mounts"]),
                *(volumes.parse_tmpfs(t) for t in kw["tmpfs"])],
        ports=[ports.parse(p) for p in kw["publish"]], publish_all=bool(kw["publish_all"]),
        aliases=list(kw["network_alias"]),
        extra=parse_extra(kw["add_host"], kw["dns"], kw["stop_signal"], kw["stop_timeout"],
                          kw["ulimit"], kw["device"], kw["shm_size"], kw["cpu_shares"],
                          kw["cpuset_cpus"], kw["memory_swap"], kw["security_opt"],
                          kw["init"]))


def pull_if_missing(store, ref: str, policy: str = "missing") -> None:
    """As docker run does: an image that is not here is pulled first (--pull)."""
    from berth.images.errors import ImageNotFound
    if policy == "never":
        return
    if policy == "missing":
        try:
            store.resolve(ref)
            return
        except ImageNotFound:
            sys.stderr.write(f"Unable to find image '{ref}' locally\n")
    from berth.images import progress
    from berth.images import pull as pulling
    with progress.for_stream(sys.stderr) as p:
        pulling.pull(store, ref, None, p)


def engine():
    """The engine's records and the image store, after a reboot's recovery if one is due."""
    from berth.engine.state import State
    from berth.images.store import Store
    state = State()
    if not state.booted_here():
        from berth.engine.boot import recover
        recover(state)
    return state, Store()


def run(kw: dict) -> int:
    """The whole of `berth run`; returns the exit code."""
    from berth.engine import containers
    from berth.runtime.errors import RuntimeFailure

    spec = make_spec(kw)
    keys = None  # run -it's detach keys: it attaches (see run_attached)
    if kw["interactive"] and kw["tty"] and not kw["detach"]:
        from berth.engine.attach import DEFAULT_DETACH_KEYS, parse_detach_keys
        keys = kw.get("detach_keys") or DEFAULT_DETACH_KEYS
        parse_detach_keys(keys)  # bad keys fail before anything is made
    state, store = engine()
    pull_if_missing(store, spec.image, str(kw["pull_policy"]))
    cid = containers.create(state, store, spec)
    if kw["detach"]:
        from berth.engine.errors import EngineError
        try:
            containers.start_detached(state, cid)
        except EngineError as e:  # the supervisor could not start it
            containers.remove(state, cid, force=True, volumes=True)
            sys.stderr.write(f"Error: {e}\n")
            return failure_code(str(e))
        except BaseException:
            containers.remove(state, cid, force=True, volumes=True)
            raise
        sys.stdout.write(cid + "\n")
        return 0
    if keys is not None:
        return run_attached(state, cid, keys, kw["remove"])
    removed = False
    try:
        code = containers.run_foreground(state, store, cid, remove=kw["remove"])
        removed = kw["remove"]
        return code
    except RuntimeFailure as e:
        sys.stderr.write(f"Error: {e}\n")
        return failure_code(str(e))
    finally:
        if kw["remove"] and not removed:  # it failed to start, or was interrupted
            containers.remove(state, cid, force=True, volumes=True, owned=True)


def failure_code(msg: str) -> int:
    """As docker: 127 when the command is not found, 126 when it cannot be run, else 125."""
    return 127 if "not found" in msg or "no such executable" in msg else \
        126 if msg.startswith("exec:") else 125


def run_attached(state, cid: str, detach_keys: str, remove: bool) -> int:
    """`run -it`, the way docker's CLI does it: the supervisor runs the container and this
    command attaches to its terminal, so the detach keys leave it running (and `attach`
    comes back to it). The container's exit code, or 0 when the user detached."""
    from berth.engine import attach, containers
    from berth.engine.errors import EngineError
    try:
        code = attach.attach(state.root, cid, stdin=True, start=True, detach_keys=detach_keys)
    except EngineError as e:
        if containers.get(state, cid)["status"] != "created":  # it ran: not ours to judge
            raise
        if remove:  # it never started
            containers.remove(state, cid, force=True, volumes=True)
        sys.stderr.write(f"Error: {e}\n")
        return failure_code(str(e))
    return 0 if code is None else code


def fast_main(argv: list[str]) -> int:
    """`berth run ...` without click; `berth run --help` goes through click instead."""
    from berth.database import sqlite3
    from berth.engine.errors import EngineError
    from berth.images.errors import ImageFailure
    from berth.runtime.errors import RuntimeFailure
    try:
        return run(parse_fast(argv))
    except (EngineError, ImageFailure, RuntimeFailure, OSError, ValueError,
            sqlite3.Error) as e:
        if os.environ.get("BERTH_DEBUG"):
            import traceback
            traceback.print_exc()
        sys.stderr.write(f"Error: {e}\n")
        return 125
    except KeyboardInterrupt:
        return 130
