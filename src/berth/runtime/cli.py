"""berth-runtime: the runc-compatible command line over the runtime library.

Parsing is by hand (argparse and click cost more to import than a container
takes to start); each verb imports only its own module. Errors become a
message on stderr (and in --log, text or JSON) and exit status 1 here, and
nowhere else.
"""

from __future__ import annotations

import os
import sys

from berth.runtime.argv import parse

USAGE = """usage: berth-runtime [global options] COMMAND [options] [args]

berth's OCI runtime, a drop-in for runc.

commands:
  create   --bundle B [--pid-file P] [--console-socket S] [--preserve-fds N] ID
  start    ID
  state    ID
  kill     [--all] ID [SIGNAL]
  delete   [--force] ID
  run      [--bundle B] [--detach] [--keep] [--pid-file P] [--console-socket S] ID
  exec     [--process F | args...] [--detach] [--pid-file P] [--tty] [--console-socket S]
           [--env K=V] [--cwd D] [--user UID[:GID]] [--cap CAP] [--no-new-privs] ID [ARGS...]
  list     [--format table|json] [--quiet]
  ps       [--format table|json] ID [ps options]
  features
  spec     [--bundle B]   write a default config.json

global options:
  --root DIR            state directory (default /run/berth-runtime as root)
  --log FILE            append errors to FILE
  --log-format text|json
  --version, --help
"""

# option name -> (destination, takes a value, may repeat)
_GLOBAL = {
    "--root": ("root", True, False), "--log": ("log", True, False),
    "--log-format": ("log_format", True, False), "--debug": ("debug", False, False),
    "--systemd-cgroup": ("systemd_cgroup", False, False), "--rootless": ("rootless", True, False),
    "--criu": ("criu", True, False),
}
_VERBS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "create": {"--bundle": ("bundle", True, False), "-b": ("bundle", True, False),
               "--pid-file": ("pid_file", True, False),
               "--console-socket": ("console_socket", True, False),
               "--preserve-fds": ("preserve_fds", True, False),
               "--no-pivot": ("no_pivot", False, False),
               "--no-new-keyring": ("no_new_keyring", False, False)},
    "start": {}, "state": {}, "features": {},
    "kill": {"--all": ("all", False, False), "-a": ("all", False, False)},
    "delete": {"--force": ("force", False, False), "-f": ("force", False, False)},
    "list": {"--format": ("format", True, False), "-f": ("format", True, False),
             "--quiet": ("quiet", False, False), "-q": ("quiet", False, False)},
    "ps": {"--format": ("format", True, False), "-f": ("format", True, False)},
    "spec": {"--bundle": ("bundle", True, False), "-b": ("bundle", True, False),
             "--rootless": ("rootless", False, False)},
    "exec": {"--process": ("process", True, False), "-p": ("process", True, False),
             "--detach": ("detach", False, False), "-d": ("detach", False, False),
             "--pid-file": ("pid_file", True, False), "--tty": ("tty", False, False),
             "-t": ("tty", False, False), "--console-socket": ("console_socket", True, False),
             "--env": ("env", True, True), "-e": ("env", True, True),
             "--cwd": ("cwd", True, False), "--user": ("user", True, False),
             "-u": ("user", True, False), "--additional-gids": ("gids", True, True),
             "-g": ("gids", True, True), "--cap": ("cap", True, True), "-c": ("cap", True, True),
             "--no-new-privs": ("no_new_privs", False, False),
             "--preserve-fds": ("preserve_fds", True, False),
             "--process-label": ("label", True, False), "--apparmor": ("apparmor", True, False),
             "--ignore-paused": ("ignore_paused", False, False),
             "--cgroup": ("cgroup", True, True)},
}
_VERBS["run"] = dict(_VERBS["create"], **{
    "--detach": ("detach", False, False), "-d": ("detach", False, False),
    "--keep": ("keep", False, False)})
_STOP_AT_FIRST_ARG = {"exec", "ps"}  # the rest belongs to the process / to ps


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    g: dict = {}
    try:
        from berth.runtime.errors import RuntimeFailure, UsageError
    except ImportError:  # pragma: no cover
        raise
    try:
        g, rest = parse(argv, {**_GLOBAL, "--version": ("version", False, False),
                               "-v": ("version", False, False), "--help": ("help", False, False),
                               "-h": ("help", False, False)}, stop_at_arg=True)
        if g.get("version"):
            from berth import __version__
            from berth.runtime.state import OCI_VERSION
            sys.stdout.write(f"berth-runtime version {__version__}\nspec: {OCI_VERSION}\n")
            return 0
        if g.get("help") or not rest or rest[0] in ("help", "--help", "-h"):
            sys.stdout.write(USAGE)
            return 0 if g.get("help") or rest else 2
        verb, vargs = rest[0], rest[1:]
        if verb not in _VERBS:
            raise UsageError(f"unknown command {verb!r} (see berth-runtime --help)")
        if verb in ("create", "run") and os.geteuid() == 0:
            from berth.runtime.cgroups import start_warm_up
            start_warm_up()
        opts, args = parse(vargs, _VERBS[verb], stop_at_arg=verb in _STOP_AT_FIRST_ARG)
        from berth.runtime.store import Store
        store = Store(g.get("root"))
        return _dispatch(verb, store, opts, args)
    except (RuntimeFailure, ValueError, OSError) as e:
        from berth.oci.errors import SpecError
        if isinstance(e, OSError) and not isinstance(e, RuntimeFailure):
            msg = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        elif isinstance(e, ValueError) and not isinstance(e, RuntimeFailure | SpecError):
            msg = str(e)
        else:
            msg = str(e)
        _report(msg, g)
        return 1
    except KeyboardInterrupt:
        return 130


def _report(msg: str, g: dict) -> None:
    sys.stderr.write(f"berth-runtime: {msg}\n")
    log = g.get("log")
    if not log:
        return
    import time
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if g.get("log_format") == "json":
        from berth.oci import jsonfast
        line = jsonfast.dumps({"level": "error", "msg": msg, "time": now})
    else:
        line = f'time="{now}" level=error msg="{msg}"'
    try:
        with open(log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _one_id(args: list[str], verb: str) -> str:
    from berth.runtime.errors import UsageError
    if len(args) != 1:
        raise UsageError(f"{verb} takes exactly one container id"
                         + (f", not {len(args)} arguments" if args else ""))
    return args[0]


def _dispatch(verb: str, store, opts: dict, args: list[str]) -> int:
    from berth.runtime.errors import UsageError

    if verb == "create":
        from berth.runtime.create import create
        create(store, _one_id(args, verb), opts.get("bundle") or os.getcwd(),
               opts.get("pid_file"), opts.get("console_socket"),
               int(opts.get("preserve_fds") or 0), bool(opts.get("no_pivot")))
        return 0
    if verb == "run":
        from berth.runtime.run import run
        return run(store, _one_id(args, verb), opts.get("bundle") or os.getcwd(),
                   opts.get("pid_file"), opts.get("console_socket"), bool(opts.get("detach")),
                   bool(opts.get("keep")), int(opts.get("preserve_fds") or 0),
                   bool(opts.get("no_pivot")))
    if verb == "start":
        from berth.runtime.start import start
        start(store, _one_id(args, verb))
        return 0
    if verb == "state":
        from berth.oci import jsonfast
        from berth.runtime.state import state
        sys.stdout.write(jsonfast.dumps(state(store, _one_id(args, verb)), indent=2) + "\n")
        return 0
    if verb == "kill":
        from berth.runtime.kill import kill, parse_signal
        if not 1 <= len(args) <= 2:
            raise UsageError("kill takes a container id and an optional signal")
        kill(store, args[0], parse_signal(args[1]) if len(args) == 2 else 15,
             bool(opts.get("all")))
        return 0
    if verb == "delete":
        from berth.runtime.delete import delete
        if not args:
            raise UsageError("delete takes at least one container id")
        for cid in args:
            delete(store, cid, bool(opts.get("force")))
        return 0
    if verb == "list":
        from berth.runtime.list import list_containers, render_table
        states = list_containers(store)
        if opts.get("quiet"):
            sys.stdout.write("".join(s["id"] + "\n" for s in states))
        elif opts.get("format") == "json":
            from berth.oci import jsonfast
            sys.stdout.write(jsonfast.dumps(states) + "\n")
        else:
            sys.stdout.write(render_table(states))
        return 0
    if verb == "ps":
        from berth.runtime import ps
        if not args:
            raise UsageError("ps takes a container id")
        if opts.get("format") == "json":
            from berth.oci import jsonfast
            sys.stdout.write(jsonfast.dumps(ps.pids(store, args[0])) + "\n")
        else:
            sys.stdout.write(ps.table(store, args[0], args[1:]))
        return 0
    if verb == "features":
        from berth.oci import jsonfast
        from berth.runtime.features import features
        sys.stdout.write(jsonfast.dumps(features(), indent=2) + "\n")
        return 0
    if verb == "spec":
        from berth.oci import jsonfast
        from berth.runtime.spec import default_spec
        path = os.path.join(opts.get("bundle") or ".", "config.json")
        if os.path.exists(path):
            raise UsageError(f"{path} already exists")
        with open(path, "w") as f:
            f.write(jsonfast.dumps(default_spec(bool(opts.get("rootless"))), indent=2) + "\n")
        return 0
    if verb == "exec":
        return _exec(store, opts, args)
    raise UsageError(f"unknown command {verb!r}")


def _exec(store, opts: dict, args: list[str]) -> int:
    from berth.oci import jsonfast
    from berth.runtime.errors import UsageError
    from berth.runtime.exec import exec_process

    if not args:
        raise UsageError("exec takes a container id")
    cid, cmd = args[0], args[1:]
    if opts.get("process"):
        with open(opts["process"], "rb") as f:
            proc = jsonfast.loads(f.read())
    else:
        if not cmd:
            raise UsageError("exec needs a command (or --process FILE)")
        st = store.load(cid)
        base = (st.get("config") or {}).get("process") or {}
        proc = {"args": cmd, "env": list(base.get("env") or []), "cwd": base.get("cwd", "/"),
                "user": dict(base.get("user") or {"uid": 0, "gid": 0}),
                "capabilities": base.get("capabilities"),
                "noNewPrivileges": base.get("noNewPrivileges", False)}
    if opts.get("env"):
        proc["env"] = list(proc.get("env") or []) + opts["env"]
    if opts.get("cwd"):
        proc["cwd"] = opts["cwd"]
    if opts.get("user"):
        u, _, gr = opts["user"].partition(":")
        proc["user"] = {"uid": int(u), "gid": int(gr or 0)}
    if opts.get("gids"):
        proc.setdefault("user", {})["additionalGids"] = [int(x) for x in opts["gids"]]
    if opts.get("cap"):
        caps = proc.setdefault("capabilities", {}) or {}
        proc["capabilities"] = caps
        for k in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            caps[k] = list(dict.fromkeys(list(caps.get(k) or []) + opts["cap"]))
    if opts.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    if opts.get("tty"):
        proc["terminal"] = True
    return exec_process(store, cid, proc, bool(opts.get("detach")), opts.get("pid_file"),
                        opts.get("console_socket"), int(opts.get("preserve_fds") or 0))
