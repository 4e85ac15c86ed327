"""`--change` instructions (as `docker import --change` takes them) applied to an image config."""

from __future__ import annotations

import shlex

from berth.images.errors import ImageFailure
from berth.oci import jsonfast

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "VOLUME", "WORKDIR",
             "STOPSIGNAL")


def _command(arg: str) -> list[str]:
    """JSON form ["a", "b"] as is; shell form wrapped in /bin/sh -c, as docker does."""
    if arg.startswith("["):
        try:
            v = jsonfast.loads(arg)
        except ValueError:
            v = None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    return ["/bin/sh", "-c", arg]


def _pairs(arg: str, what: str) -> list[tuple[str, str]]:
    words = shlex.split(arg)
    if len(words) >= 2 and "=" not in words[0]:  # legacy `ENV KEY value with spaces`
        return [(words[0], arg.split(None, 1)[1])]
    out = []
    for w in words:
        if "=" not in w:
            raise ImageFailure(f"--change {what} {arg!r}: expected KEY=value pairs")
        k, _, v = w.partition("=")
        out.append((k, v))
    return out


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Return `config` (the image config's "config" object) with each change applied."""
    for change in changes:
        instr, _, arg = change.strip().partition(" ")
        instr, arg = instr.upper(), arg.strip()
        if instr not in SUPPORTED:
            raise ImageFailure(f"--change {change!r}: {instr or 'empty'} is not supported "
                               f"(use one of {', '.join(SUPPORTED)})")
        if not arg:
            raise ImageFailure(f"--change {change!r}: {instr} needs an argument")
        if instr == "CMD":
            config["Cmd"] = _command(arg)
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = _command(arg)
        elif instr == "ENV":
            env = [e for e in config.get("Env") or []]
            for k, v in _pairs(arg, "ENV"):
                env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
            config["Env"] = env
        elif instr == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(arg, "LABEL"))
            config["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for p in arg.split():
                port, _, proto = p.partition("/")
                if not port.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                    raise ImageFailure(f"--change {change!r}: {p!r} is not a port[/proto]")
                ports[f"{port}/{proto or 'tcp'}"] = {}
            config["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            for v in (_command(arg) if arg.startswith("[") else arg.split()):
                vols[v] = {}
            config["Volumes"] = vols
        elif instr == "USER":
            config["User"] = arg
        elif instr == "WORKDIR":
            config["WorkingDir"] = arg
        elif instr == "STOPSIGNAL":
            config["StopSignal"] = arg
    return config
