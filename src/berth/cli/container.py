"""Container commands with docker's names and flags: run, ps, rm, kill.

Thin: parse flags into a ContainerSpec, call berth.engine, print. Errors of the
engine exit with 125 (as docker's daemon-side errors do); `run` otherwise
exits with the container's own status.
"""

from __future__ import annotations

import functools
import json
import sys
import time

import click

from berth.cli.errors import engine_failures, exits
from berth.cli.format import human_age, render, table


def _engine():
    from berth.cli.run import engine
    return engine()


handled = exits(125, engine_failures)



def each(items: tuple[str, ...], fn) -> None:
    """fn(item) for every item, as docker does: the item is printed when it worked, an
    error line when not, and the rest still run; exit status 1 if any failed."""
    from berth.engine.errors import EngineError
    from berth.images.errors import ImageFailure
    from berth.runtime.errors import RuntimeFailure
    failed = False
    for item in items:
        try:
            fn(item)
            click.echo(item)
        except (EngineError, ImageFailure, RuntimeFailure) as e:
            click.echo(f"Error: {e}", err=True)
            failed = True
    if failed:
        sys.exit(1)


def _spec_options(fn, with_detach: bool = False):
    """The flags `run` and `create` share, from cli/run.py's table."""
    from berth.cli.run import FLAGS, RUN_ONLY

    kinds: dict[str, dict] = {"flag": {"is_flag": True}, "value": {},
                              "multi": {"multiple": True}, "int": {"type": int},
                              "float": {"type": float}}
    opts = []
    for names, dest, kind, default, help_ in FLAGS:
        if dest in RUN_ONLY and not with_detach:
            continue
        extra = dict(kinds.get(kind, {}))
        if kind.startswith("choice:"):
            extra["type"] = click.Choice(kind[7:].split(","))
        if default not in (None, False, ()):
            extra.update(default=default, show_default=True)
        opts.append(click.option(*names, dest, help=help_, **extra))
    opts += [click.argument("image"),
             click.argument("command", nargs=-1, type=click.UNPROCESSED)]
    for o in reversed(opts):
        fn = o(fn)
    return fn


@click.command("run", context_settings={"allow_interspersed_args": False})
@functools.partial(_spec_options, with_detach=True)
@handled
def run(**kw: object) -> None:
    """Create and run a new container from an image."""
    from berth.cli.run import run as run_
    sys.exit(run_(kw))


@click.command("create", context_settings={"allow_interspersed_args": False})
@_spec_options
@handled
def create(**kw: object) -> None:
    """Create a new container (start it with `berth start`)."""
    from berth.cli.run import make_spec, pull_if_missing
    from berth.engine import containers
    state, store = _engine()
    spec = make_spec(kw)
    pull_if_missing(store, spec.image, str(kw["pull_policy"]))
    click.echo(containers.create(state, store, spec))


def _filters(items: tuple[str, ...]) -> dict[str, list[str]]:
    from berth.engine.errors import InvalidOption
    out: dict[str, list[str]] = {}
    for f in items:
        key, eq, value = f.partition("=")
        if not eq or key not in ("status", "name", "label", "ancestor", "id"):
            raise InvalidOption(f"invalid filter {f!r} (status, name, label, ancestor, id)")
        out.setdefault(key, []).append(value)
    return out


def _matches(c: dict, wanted: dict[str, list[str]]) -> bool:
    """docker's rule: values of one key are OR-ed, different keys AND-ed."""
    import re
    spec = json.loads(c["spec"])
    status = "paused" if c.get("paused") and c["status"] == "running" else c["status"]
    labels = spec.get("labels") or {}
    tests = {
        "status": lambda v: v == status,
        "name": lambda v: re.search(v, c["name"]) is not None,
        "id": lambda v: c["id"].startswith(v),
        "ancestor": lambda v: v in (c["image"], c["image_id"], c["image_id"][7:19]) or
        c["image"].split(":")[0] == v,
        "label": lambda v: (v.partition("=")[0] in labels and
                            (not v.partition("=")[1] or labels[v.partition("=")[0]] ==
                             v.partition("=")[2])),
    }
    return all(any(tests[k](v) for v in vals) for k, vals in wanted.items())


def _ports_of(c: dict) -> list[str]:
    from berth.engine.ports import describe
    return [describe(m) for m in json.loads(c.get("ports") or "[]")] \
        if c["status"] == "running" else []


def _status(c: dict) -> str:
    if c["status"] == "running":
        return "Up " + human_age(c["started"]).replace(" ago", "").replace(
            "Less than a second", "Less than a second")
    if c["status"] == "exited":
        code = "?" if c["exit_code"] is None else c["exit_code"]
        return f"Exited ({code}) {human_age(c['finished'])}"
    return c["status"].capitalize()


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers.")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", help="Format output using a Go template.")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Filter: status=, name=, label=KEY[=VALUE], ancestor=, id=.")
@handled
def ps(all_: bool, quiet: bool, no_trunc: bool, fmt: str | None,
       filters: tuple[str, ...]) -> None:
    """List containers."""
    from berth.engine import containers
    state, _ = _engine()
    rows = []
    wanted = _filters(filters)
    if "status" in wanted:
        all_ = True
    for c in containers.list_containers(state, all_):
        if not _matches(c, wanted):
            continue
        cmd = " ".join(json.loads(c["command"]))
        if not no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        rows.append({"ID": c["id"] if no_trunc else c["id"][:12], "Image": c["image"],
                     "Command": f'"{cmd}"', "CreatedAt": time.strftime(
                         "%Y-%m-%d %H:%M:%S %z", time.localtime(c["created"])),
                     "RunningFor": human_age(c["created"]), "Status": _status(c),
                     "Ports": ", ".join(_ports_of(c)), "Names": c["name"],
                     "State": "paused" if c.get("paused") and c["status"] == "running"
                     else c["status"]})
    if quiet:
        click.echo("".join(r["ID"] + "\n" for r in rows), nl=False)
    elif fmt:
        click.echo(render(fmt, rows, {"ID": "CONTAINER ID", "RunningFor": "CREATED"}), nl=False)
    else:
        click.echo(table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                          "NAMES"],
                         [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"],
                           r["Ports"], r["Names"]] for r in rows]), nl=False)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes too.")
@click.argument("refs", nargs=-1, required=True)
@handled
def rm(force: bool, volumes: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    from berth.engine import containers
    state, _ = _engine()
    each(refs, lambda ref: containers.remove(state, ref, force, volumes))


@click.command("kill")
@click.option("-s", "--signal", "sig", default="KILL", show_default=True)
@click.argument("refs", nargs=-1, required=True)
@handled
def kill(sig: str, refs: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    from berth.engine import containers
    from berth.runtime.kill import parse_signal
    state, _ = _engine()
    each(refs, lambda ref: containers.kill(state, ref, parse_signal(sig)))


@click.command("start")
@click.option("-a", "--attach", "attach_", is_flag=True,
              help="Attach STDOUT/STDERR and forward signals.")
@click.option("-i", "--interactive", is_flag=True, help="Attach the container's STDIN.")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", show_default=True,
              help="The key sequence that detaches, leaving the container running.")
@click.argument("refs", nargs=-1, required=True)
@handled
def start(attach_: bool, interactive: bool, detach_keys: str, refs: tuple[str, ...]) -> None:
    """Start one or more stopped containers (in the background, or attached with -a/-i)."""
    from berth.engine import containers
    state, _ = _engine()
    if attach_ or interactive:
        from berth.engine.errors import InvalidOption
        if len(refs) > 1:
            raise InvalidOption("you cannot start and attach multiple containers at once")
        c = containers.get(state, refs[0])
        if c["status"] == "running" and not c["supervised"]:
            raise InvalidOption(f"container {c['name']} runs in the foreground of the berth "
                                "command that started it: it cannot be attached")
        sys.exit(_attached(state, c, interactive, True, detach_keys, True))

    def start_one(ref: str) -> None:
        c = containers.get(state, ref)
        if c["status"] != "running":
            state.update(c["id"], stop_requested=0)
            containers.start_detached(state, c["id"])

    each(refs, start_one)


@click.command("stop")
@click.option("-t", "--time", "timeout", type=float,
              help="Seconds to wait before killing the container (its --stop-timeout, or 10).")
@click.option("-s", "--signal", "sig", help="Signal to send (its --stop-signal, or TERM).")
@click.argument("refs", nargs=-1, required=True)
@handled
def stop(timeout: float | None, sig: str | None, refs: tuple[str, ...]) -> None:
    """Stop one or more running containers."""
    from berth.engine import containers
    from berth.runtime.kill import parse_signal
    state, _ = _engine()
    each(refs, lambda ref: containers.stop(state, ref, timeout,
                                           parse_signal(sig) if sig else None))


@click.command("restart")
@click.option("-t", "--time", "timeout", type=float, default=10, show_default=True)
@click.argument("refs", nargs=-1, required=True)
@handled
def restart(timeout: float, refs: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    from berth.engine import containers
    state, _ = _engine()

    def restart_one(ref: str) -> None:
        c = containers.get(state, ref)
        containers.stop(state, c["id"], timeout)
        containers.wait(state, c["id"])
        state.update(c["id"], stop_requested=0)
        containers.start_detached(state, c["id"])

    each(refs, restart_one)


@click.command("wait")
@click.argument("refs", nargs=-1, required=True)
@handled
def wait(refs: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    from berth.engine import containers
    state, _ = _engine()
    for ref in refs:
        click.echo(containers.wait(state, ref))


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Lines to show from the end of the logs.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--since", help="Show logs since a timestamp (RFC 3339) or relative (42m).")
@click.argument("ref")
@handled
def logs(follow: bool, tail: str, timestamps: bool, since: str | None, ref: str) -> None:
    """Fetch the logs of a container."""
    from berth.engine import containers
    from berth.engine import logs as logmod
    state, _ = _engine()
    c = containers.get(state, ref)
    path = containers.logs_path(state, c["id"])
    for rec in logmod.read(path, tail=None if tail == "all" else int(tail),
                           since=logmod.parse_since(since) if since else None,
                           follow=follow, still_running=lambda: containers.get(
                               state, c["id"])["status"] == "running"):
        out = sys.stdout if rec["stream"] == "stdout" else sys.stderr
        out.write((rec["time"] + " " if timestamps else "") + rec["log"])
        out.flush()


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>]).")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command.")
@click.argument("ref")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@handled
def exec_(detach: bool, interactive: bool, tty: bool, env: tuple[str, ...], user: str | None,
          workdir: str | None, privileged: bool, ref: str, command: tuple[str, ...]) -> None:
    """Execute a command in a running container."""
    from berth.engine import containers
    state, _ = _engine()
    sys.exit(containers.exec_in(state, ref, list(command), list(env), user, workdir, detach,
                                privileged, tty, interactive))


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format output using a Go template.")
@click.option("--type", "kind", type=click.Choice(["container", "image"]))
@click.argument("refs", nargs=-1, required=True)
@handled
def inspect(fmt: str | None, kind: str | None, refs: tuple[str, ...]) -> None:
    """Display detailed information on containers or images."""
    from berth.cli.image import inspect_image
    from berth.engine import containers
    from berth.engine.errors import ContainerNotFound
    from berth.images.errors import ImageNotFound
    state, store = _engine()
    docs, missing = [], []
    for ref in refs:
        doc = None
        if kind in (None, "container"):
            try:
                doc = containers.inspect(state, store, ref)
            except ContainerNotFound:
                if kind == "container":
                    missing.append(ref)
                    continue
        if doc is None:
            try:
                doc = inspect_image(store, store.resolve(ref))
            except ImageNotFound:
                missing.append(ref)
                continue
        docs.append(doc)
    if fmt:
        click.echo(render(fmt, docs), nl=False)
    else:
        click.echo(json.dumps(docs, indent=4))
    for ref in missing:  # as docker: what was found, then an error for each of the rest
        click.echo(f"Error: No such object: {ref}", err=True)
    if missing:
        sys.exit(1)


@click.command("pause")
@click.argument("refs", nargs=-1, required=True)
@handled
def pause(refs: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    from berth.engine import containers
    state, _ = _engine()
    each(refs, lambda ref: containers.pause(state, ref, True))


@click.command("unpause")
@click.argument("refs", nargs=-1, required=True)
@handled
def unpause(refs: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    from berth.engine import containers
    state, _ = _engine()
    each(refs, lambda ref: containers.pause(state, ref, False))


@click.command("rename")
@click.argument("ref")
@click.argument("new_name")
@handled
def rename(ref: str, new_name: str) -> None:
    """Rename a container."""
    from berth.engine import containers
    state, _ = _engine()
    containers.rename(state, ref, new_name)


@click.command("top", context_settings={"allow_interspersed_args": False})
@click.argument("ref")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@handled
def top(ref: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    from berth.engine import containers
    state, _ = _engine()
    click.echo(containers.top(state, ref, list(ps_args)), nl=False)


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@handled
def prune(force: bool) -> None:
    """Remove all stopped containers."""
    from berth.engine import containers
    state, _ = _engine()
    removed = containers.prune(state)
    if removed:
        click.echo("Deleted Containers:\n" + "".join(r + "\n" for r in removed), nl=False)
    click.echo("Total reclaimed space: 0B")


@click.group("container")
def container() -> None:
    """Manage containers."""


container.add_command(ps, "ls")
for _cmd in (run, create, start, stop, restart, kill, rm, wait, logs, exec_, inspect, pause,
             unpause, rename, top, prune):
    container.add_command(_cmd)


@click.command("cp")
@click.argument("src")
@click.argument("dest")
@handled
def cp(src: str, dest: str) -> None:
    """Copy files between a container and the host: CONTAINER:SRC DEST or SRC CONTAINER:DEST."""
    from berth.engine import files
    from berth.engine.errors import InvalidOption
    state, store = _engine()
    if ":" in src and not src.startswith("/"):
        ref, _, path = src.partition(":")
        files.copy_out(state, store, ref, path, dest)
    elif ":" in dest and not dest.startswith("/"):
        ref, _, path = dest.partition(":")
        files.copy_in(state, store, ref, src, path)
    else:
        raise InvalidOption("copying between two containers or two host paths is not "
                            "supported: one side must be CONTAINER:PATH")


@click.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False))
@click.argument("ref")
@handled
def export(output: str | None, ref: str) -> None:
    """Export a container's filesystem as a tar archive."""
    import os

    from berth.engine import files
    state, store = _engine()
    if output is None:
        if sys.stdout.isatty():
            raise click.UsageError("refusing to write a tar archive to a terminal: use -o")
        files.export(state, store, ref, sys.stdout.buffer)
        return
    tmp = f"{output}.berth-{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            files.export(state, store, ref, f)
        os.rename(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@click.command("diff")
@click.argument("ref")
@handled
def diff(ref: str) -> None:
    """Inspect changes to files on a container's filesystem."""
    from berth.engine import files
    state, store = _engine()
    for kind, path in files.diff(state, store, ref):
        click.echo(f"{kind} {path}")


@click.command("commit")
@click.option("-m", "--message", default="")
@click.option("-a", "--author", default="")
@click.option("-c", "--change", "changes", multiple=True)
@click.argument("ref")
@click.argument("name", required=False)
@handled
def commit(message: str, author: str, changes: tuple[str, ...], ref: str,
           name: str | None) -> None:
    """Create a new image from a container's changes."""
    from berth.engine import files
    state, store = _engine()
    click.echo(files.commit(state, store, ref, name, message, author, list(changes)))


for _cmd in (cp, export, diff, commit):
    container.add_command(_cmd)


@click.command("port")
@click.argument("ref")
@click.argument("private", required=False)
@handled
def port(ref: str, private: str | None) -> None:
    """List port mappings of a container (or the one of PRIVATE_PORT[/PROTO])."""
    from berth.engine import containers
    from berth.engine.errors import EngineError
    state, _ = _engine()
    c = containers.get(state, ref)
    maps = json.loads(c.get("ports") or "[]") if c["status"] == "running" else []
    if private:
        num, _, proto = private.partition("/")
        maps = [m for m in maps if str(m["container"]) == num and m["proto"] == (proto or "tcp")]
        if not maps:
            raise EngineError(f"No public port '{private}' published for {ref}")
        for m in maps:
            click.echo(f"{m['ip'] or '0.0.0.0'}:{m['host']}")
        return
    for m in maps:
        click.echo(f"{m['container']}/{m['proto']} -> {m['ip'] or '0.0.0.0'}:{m['host']}")


container.add_command(port)


@click.command("stats")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers.")
@click.option("--format", "fmt")
@click.argument("refs", nargs=-1)
@handled
def stats(no_stream: bool, all_: bool, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Display a live stream of containers' resource usage (CPU, memory, pids)."""
    import time as _time

    from berth.cli.format import human_size
    from berth.engine import containers
    state, _ = _engine()
    ids = list(refs) or [c["id"] for c in containers.list_containers(state, all_)]
    prev = {i: containers.stats(state, i) for i in ids}
    while True:
        _time.sleep(0.5)
        rows = []
        for i in ids:
            cur = containers.stats(state, i)
            before = prev.get(i) or cur
            cpu = 0.0
            if cur.get("running") and before.get("running"):
                dt = cur["time"] - before["time"]
                cpu = (cur["cpu_ns"] - before["cpu_ns"]) / 1e9 / dt * 100 if dt > 0 else 0.0
            mem, lim = cur.get("memory", 0), cur.get("memory_limit", 0) or 1
            rows.append({"ID": cur["id"][:12], "Container": cur["id"][:12], "Name": cur["name"],
                         "CPUPerc": f"{cpu:.2f}%",
                         "MemUsage": f"{human_size(mem)} / {human_size(lim)}",
                         "MemPerc": f"{mem / lim * 100:.2f}%", "PIDs": str(cur.get("pids", 0))})
            prev[i] = cur
        if fmt:
            out = render(fmt, rows)
        else:
            out = table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"],
                        [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"],
                          r["PIDs"]] for r in rows])
        if no_stream:
            click.echo(out, nl=False)
            return
        click.echo("\033[2J\033[H" + out, nl=False)


container.add_command(stats)


@click.command("attach")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", show_default=True,
              help="The key sequence that detaches, leaving the container running.")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, show_default=True,
              help="Forward the signals this command receives to the container (non-TTY).")
@click.argument("ref")
@handled
def attach(detach_keys: str, no_stdin: bool, sig_proxy: bool, ref: str) -> None:
    """Attach this terminal to a running container's input and output.

    Output from now on; input when the container was started with -i; with -t a
    raw terminal, and the detach keys leave it running. Exits with the
    container's exit code (1 after a detach, as docker).
    """
    from berth.engine import containers
    from berth.engine.errors import EngineError
    state, _ = _engine()
    c = containers.get(state, ref)
    if c["status"] != "running":
        raise EngineError("You cannot attach to a stopped container, start it first")
    if not c["supervised"]:
        raise EngineError(f"container {c['name']} runs in the foreground of the berth "
                          "command that started it: only that command has its terminal")
    sys.exit(_attached(state, c, not no_stdin, False, detach_keys, sig_proxy))


def _attached(state, c: dict, stdin: bool, start: bool, detach_keys: str,
              sig_proxy: bool) -> int:
    """attach and start -a: copy the container's stdio here; its exit code, 1 if we left."""
    import signal as _signal

    from berth.engine import attach as attaching
    from berth.engine import containers
    from berth.engine.errors import EngineError
    attaching.parse_detach_keys(detach_keys)  # a bad value fails before anything is done
    if sig_proxy and not json.loads(c["spec"]).get("tty"):
        def forward(signum: int, _frame: object) -> None:
            try:
                containers.kill(state, c["id"], signum)
            except EngineError:
                pass
        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGUSR1,
                  _signal.SIGUSR2):
            _signal.signal(s, forward)
    code = attaching.attach(state.root, c["id"], stdin=stdin and sys.stdin is not None,
                            start=start, detach_keys=detach_keys)
    if code is None:  # detached: docker says so and exits 1
        click.echo("read escape sequence", err=True)
        return 1
    return code


container.add_command(attach)
