"""The OCI runtime configuration (config.json), validated strictly at the edge.

`validate(doc)` checks every field berth acts on and raises SpecError naming
the field's path. The document stays a plain dict: unknown properties are
kept verbatim and ignored, as the runtime spec requires; unknown *values*
(a namespace type, an rlimit, a mount propagation) are errors, because acting
on a guess would run the container with weaker isolation than asked for.
No I/O here, and no imports beyond the standard library's cheapest.
"""

from __future__ import annotations

from berth.oci.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAMESPACES = {
    "pid": 0x20000000,
    "network": 0x40000000,
    "mount": 0x00020000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

PROPAGATIONS = {"private", "shared", "slave", "unbindable", "rprivate", "rshared", "rslave",
                "runbindable", ""}

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")

DEVICE_TYPES = {"c", "b", "u", "p"}


def _type(value: Any, kind: type | tuple[type, ...], field: str, what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(field, f"must be {what}, not {_show(value)}")
    return value


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _opt(doc: dict, key: str, kind: type | tuple[type, ...], field: str, what: str) -> Any:
    if key not in doc or doc[key] is None:
        return None
    return _type(doc[key], kind, f"{field}.{key}" if field else key, what)


def _uint(value: Any, field: str, bits: int = 32) -> int:
    _type(value, int, field, "an unsigned integer")
    if value < 0 or value >= 1 << bits:
        raise SpecError(field, f"{value} is out of range for a {bits}-bit unsigned integer")
    return value


def _abs_path(value: Any, field: str) -> str:
    _type(value, str, field, "a string")
    if not value.startswith("/"):
        raise SpecError(field, f"{value!r} is not an absolute path")
    return value


def _strings(value: Any, field: str) -> list[str]:
    _type(value, list, field, "a list of strings")
    for i, v in enumerate(value):
        _type(v, str, f"{field}[{i}]", "a string")
    return value


def _version(v: str) -> None:
    """A SemVer 2.0 version of the runtime spec, major 1."""
    core = v.split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise SpecError("ociVersion", f"{v!r} is not a version such as \"1.0.2\"")
    if parts[0] != "1":
        raise SpecError("ociVersion", f"version {v} is not supported (berth speaks 1.x)")


def validate(doc: Any, bundle_has_rootfs: bool = True) -> dict:
    """Check a parsed config.json; return it unchanged or raise SpecError."""
    _type(doc, dict, "(document)", "a JSON object")
    _version(_type(doc.get("ociVersion"), str, "ociVersion", "a string such as \"1.0.2\""))
    root = _type(doc.get("root"), dict, "root", "an object with a path")
    _type(root.get("path"), str, "root.path", "a string")
    if not root["path"]:
        raise SpecError("root.path", "must not be empty")
    _opt(root, "readonly", bool, "root", "a boolean")
    if "process" in doc and doc["process"] is not None:
        validate_process(doc["process"], "process")
    _opt(doc, "hostname", str, "", "a string")
    _opt(doc, "domainname", str, "", "a string")
    for i, m in enumerate(_opt(doc, "mounts", list, "", "a list") or ()):
        _mount(m, f"mounts[{i}]")
    hooks = _opt(doc, "hooks", dict, "", "an object")
    if hooks:
        for kind in HOOK_KINDS:
            for i, h in enumerate(_opt(hooks, kind, list, "hooks", "a list") or ()):
                f = f"hooks.{kind}[{i}]"
                _type(h, dict, f, "an object")
                _abs_path(h.get("path"), f + ".path")
                if h.get("args") is not None:
                    _strings(h["args"], f + ".args")
                if h.get("env") is not None:
                    _strings(h["env"], f + ".env")
                t = h.get("timeout")
                if t is not None and (_type(t, int, f + ".timeout", "an integer") <= 0):
                    raise SpecError(f + ".timeout", f"must be greater than zero, not {t}")
    ann = _opt(doc, "annotations", dict, "", "an object")
    for k, v in (ann or {}).items():
        _type(v, str, f"annotations.{k}", "a string")
    linux = _opt(doc, "linux", dict, "", "an object")
    if linux:
        _linux(linux)
    return doc


def validate_process(p: Any, field: str) -> dict:
    _type(p, dict, field, "an object")
    args = p.get("args")
    if args is None or (isinstance(args, list) and not args):
        raise SpecError(f"{field}.args", "must list at least the program to run")
    _strings(args, f"{field}.args")
    if p.get("env") is not None:
        for i, e in enumerate(_strings(p["env"], f"{field}.env")):
            if "=" not in e:
                raise SpecError(f"{field}.env[{i}]", f"{e!r} is not of the form NAME=value")
    cwd = p.get("cwd")
    if cwd is None or cwd == "":
        raise SpecError(f"{field}.cwd", "is required (an absolute path)")
    _abs_path(cwd, f"{field}.cwd")
    _opt(p, "terminal", bool, field, "a boolean")
    _opt(p, "noNewPrivileges", bool, field, "a boolean")
    if p.get("oomScoreAdj") is not None:
        v = _type(p["oomScoreAdj"], int, f"{field}.oomScoreAdj", "an integer")
        if not -1000 <= v <= 1000:
            raise SpecError(f"{field}.oomScoreAdj", f"{v} is outside -1000..1000")
    user = _opt(p, "user", dict, field, "an object") or {}
    _uint(user.get("uid", 0), f"{field}.user.uid")
    _uint(user.get("gid", 0), f"{field}.user.gid")
    if user.get("umask") is not None:
        _uint(user["umask"], f"{field}.user.umask")
    for i, g in enumerate(_opt(user, "additionalGids", list, f"{field}.user", "a list") or ()):
        _uint(g, f"{field}.user.additionalGids[{i}]")
    caps = _opt(p, "capabilities", dict, field, "an object")
    for k in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        if caps and caps.get(k) is not None:
            _strings(caps[k], f"{field}.capabilities.{k}")
    seen = set()
    for i, r in enumerate(_opt(p, "rlimits", list, field, "a list") or ()):
        f = f"{field}.rlimits[{i}]"
        _type(r, dict, f, "an object")
        t = _type(r.get("type"), str, f + ".type", "a string such as RLIMIT_NOFILE")
        if t not in RLIMITS:
            raise SpecError(f + ".type", f"unknown rlimit {t!r}")
        if t in seen:
            raise SpecError(f + ".type", f"{t} is set twice")
        seen.add(t)
        hard = _uint(r.get("hard"), f + ".hard", 64)
        soft = _uint(r.get("soft"), f + ".soft", 64)
        if soft > hard:
            raise SpecError(f + ".soft", f"soft limit {soft} is above the hard limit {hard}")
    cs = _opt(p, "consoleSize", dict, field, "an object")
    if cs:
        _uint(cs.get("height", 0), f"{field}.consoleSize.height")
        _uint(cs.get("width", 0), f"{field}.consoleSize.width")
    return p


def _mount(m: Any, field: str) -> None:
    _type(m, dict, field, "an object")
    _abs_path(m.get("destination"), field + ".destination")
    _opt(m, "type", str, field, "a string")
    _opt(m, "source", str, field, "a string")
    if m.get("options") is not None:
        _strings(m["options"], field + ".options")
    for k in ("uidMappings", "gidMappings"):
        if m.get(k):
            raise SpecError(f"{field}.{k}", "id-mapped mounts are not supported yet")


def _linux(linux: dict) -> None:
    seen: dict[str, int] = {}
    for i, ns in enumerate(_opt(linux, "namespaces", list, "linux", "a list") or ()):
        f = f"linux.namespaces[{i}]"
        _type(ns, dict, f, "an object")
        t = ns.get("type")
        if t not in NAMESPACES:
            known = ", ".join(sorted(NAMESPACES))
            raise SpecError(f + ".type", f"unknown namespace type {t!r} (known: {known})")
        if t in seen:
            raise SpecError(f + ".type", f"namespace {t!r} is listed twice "
                            f"(also linux.namespaces[{seen[t]}])")
        seen[t] = i
        if ns.get("path") is not None and ns["path"] != "":
            _abs_path(ns["path"], f + ".path")
    for key in ("uidMappings", "gidMappings"):
        for i, m in enumerate(_opt(linux, key, list, "linux", "a list") or ()):
            f = f"linux.{key}[{i}]"
            _type(m, dict, f, "an object")
            for k in ("containerID", "hostID", "size"):
                _uint(m.get(k), f"{f}.{k}")
    if (linux.get("uidMappings") or linux.get("gidMappings")) and "user" not in seen:
        raise SpecError("linux.uidMappings", "id mappings need a user namespace "
                        "(add {\"type\": \"user\"} to linux.namespaces)")
    for i, d in enumerate(_opt(linux, "devices", list, "linux", "a list") or ()):
        f = f"linux.devices[{i}]"
        _type(d, dict, f, "an object")
        _abs_path(d.get("path"), f + ".path")
        t = d.get("type")
        if t not in DEVICE_TYPES:
            raise SpecError(f + ".type", f"unknown device type {_show(t)} (c, b, u or p)")
        if t != "p":
            _type(d.get("major"), int, f + ".major", "an integer")
            _type(d.get("minor"), int, f + ".minor", "an integer")
        for k in ("fileMode", "uid", "gid"):
            if d.get(k) is not None:
                _uint(d[k], f"{f}.{k}")
    _opt(linux, "cgroupsPath", str, "linux", "a string")
    rp = _opt(linux, "rootfsPropagation", str, "linux", "a string")
    if rp is not None and rp not in PROPAGATIONS:
        raise SpecError("linux.rootfsPropagation", f"unknown propagation {rp!r} "
                        "(shared, slave, private or unbindable)")
    for k in ("maskedPaths", "readonlyPaths"):
        if linux.get(k) is not None:
            for i, path in enumerate(_strings(linux[k], f"linux.{k}")):
                _abs_path(path, f"linux.{k}[{i}]")
    for k, v in (_opt(linux, "sysctl", dict, "linux", "an object") or {}).items():
        _type(v, str, f"linux.sysctl.{k}", "a string")
    _opt(linux, "resources", dict, "linux", "an object")
    _opt(linux, "seccomp", dict, "linux", "an object")
    if linux.get("intelRdt"):
        raise SpecError("linux.intelRdt", "Intel RDT is not supported by berth")

