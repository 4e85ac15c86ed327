"""OCI `linux.seccomp`: strict validation, and the filter loaded just before execve.

The filter itself is libseccomp's (runtime/libseccomp.py builds it with runc's
semantics). Must not: set no_new_privs (the runtime decides that from
process.noNewPrivileges); import or open anything in a filter's load(), which runs after
pivot_root and possibly after setuid; import more than linux and os on the hot path (a
compiled program from the cache needs nothing else). Seccomp user notification
(SCMP_ACT_NOTIFY, listenerPath) is not supported yet.

Building a filter (loading libseccomp, a rule per syscall, compiling) costs milliseconds, and
an engine gives every container the same default profile. So `prepare(spec, cache_dir)`
keeps each compiled program (libseccomp's own BPF, seccomp_export_bpf) in `cache_dir`, named
by a hash of the profile, with the identity of the libseccomp that compiled it; the next
container with that profile loads the same program with one seccomp(2) call (BpfFilter),
without libseccomp. A cache that cannot be read or written is simply not used.
"""

from __future__ import annotations

import os

from berth.runtime import linux
from berth.runtime.errors import ConfigError, SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.runtime.libseccomp import Filter

# OCI action name -> libseccomp action value (seccomp.h SCMP_ACT_*, errno data not yet or'ed in)
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # the actions that carry errnoRet
_EPERM = 1

# OCI operator name -> enum scmp_compare
OPS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI architecture name -> the name seccomp_arch_resolve_name() takes
ARCHES: dict[str, str] = {
    name: name[len("SCMP_ARCH_"):].lower()
    for name in (
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
    )
}

# OCI filter flag -> the seccomp(2) flag (libseccomp sets the same from its attributes)
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

_MAX_ARGS = 6
_U64 = 1 << 64
_ERRNO_MAX = 0xFFFF  # SECCOMP_RET_DATA is 16 bits

# --- validation -------------------------------------------------------------------------------


def _is_uint(v: object, limit: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < limit


def _str_list(v: object, field: str, what: str) -> list[str]:
    if not isinstance(v, list):
        raise ConfigError(field, f"must be a list of {what}")
    for i, item in enumerate(v):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{field}[{i}]", f"must be a non-empty string, not {item!r}")
    return v


def _check_action(action: object, errno_ret: object, field: str, errno_field: str) -> None:
    if action is None:
        raise ConfigError(field, "is required")
    if not isinstance(action, str) or action not in ACTIONS:
        raise ConfigError(field, f"unknown action {action!r}")
    if action == "SCMP_ACT_NOTIFY":
        raise ConfigError(field, "SCMP_ACT_NOTIFY (seccomp user notification) is not supported yet")
    if errno_ret is None:
        return
    if not _is_uint(errno_ret, _ERRNO_MAX + 1):
        raise ConfigError(errno_field, f"must be an errno number from 0 to {_ERRNO_MAX}")
    if action not in _ERRNO_ACTIONS:
        raise ConfigError(errno_field, f"{action} does not return an errno; "
                                       "use SCMP_ACT_ERRNO or SCMP_ACT_TRACE")


def _check_arg(arg: object, field: str) -> None:
    if not isinstance(arg, dict):
        raise ConfigError(field, "must be an object")
    index = arg.get("index")
    if index is None:
        raise ConfigError(f"{field}.index", "is required")
    if not _is_uint(index, _MAX_ARGS):
        raise ConfigError(f"{field}.index", f"must be from 0 to {_MAX_ARGS - 1}, not {index!r}")
    for key, required in (("value", True), ("valueTwo", False)):
        v = arg.get(key)
        if v is None:
            if required:
                raise ConfigError(f"{field}.{key}", "is required")
            continue
        if not _is_uint(v, _U64):
            raise ConfigError(f"{field}.{key}", f"must be an unsigned 64-bit integer, not {v!r}")
    op = arg.get("op")
    if op is None:
        raise ConfigError(f"{field}.op", "is required")
    if not isinstance(op, str) or op not in OPS:
        raise ConfigError(f"{field}.op", f"unknown operator {op!r}")


def _check_syscall(rule: object, field: str) -> None:
    if not isinstance(rule, dict):
        raise ConfigError(field, "must be an object")
    names = rule.get("names")
    if names is None:
        raise ConfigError(f"{field}.names", "is required")
    _str_list(names, f"{field}.names", "syscall names")
    if not names:
        raise ConfigError(f"{field}.names", "must name at least one syscall")
    _check_action(rule.get("action"), rule.get("errnoRet"), f"{field}.action",
                  f"{field}.errnoRet")
    args = rule.get("args")
    if args is None:
        return
    if not isinstance(args, list):
        raise ConfigError(f"{field}.args", "must be a list")
    for j, arg in enumerate(args):
        _check_arg(arg, f"{field}.args[{j}]")


def validate(spec: dict, field: str = "linux.seccomp") -> None:
    """Check an OCI seccomp object; raise ConfigError naming the first bad field.

    Unknown properties are ignored, as the OCI runtime spec requires. Unknown syscall names
    are not an error: prepare() skips them, as runc does.
    """
    if not isinstance(spec, dict):
        raise ConfigError(field, "must be an object")
    _check_action(spec.get("defaultAction"), spec.get("defaultErrnoRet"),
                  f"{field}.defaultAction", f"{field}.defaultErrnoRet")
    arches = spec.get("architectures")
    if arches is not None:
        for i, arch in enumerate(_str_list(arches, f"{field}.architectures", "architectures")):
            if arch not in ARCHES:
                raise ConfigError(f"{field}.architectures[{i}]", f"unknown architecture {arch!r}")
    flags = spec.get("flags")
    if flags is not None:
        for i, flag in enumerate(_str_list(flags, f"{field}.flags", "filter flags")):
            if flag not in FLAGS:
                raise ConfigError(f"{field}.flags[{i}]", f"unknown or unsupported flag {flag!r}")
    if spec.get("listenerPath") is not None:
        raise ConfigError(f"{field}.listenerPath",
                          "seccomp user notification is not supported yet; remove listenerPath")
    syscalls = spec.get("syscalls")
    if syscalls is None:
        return
    if not isinstance(syscalls, list):
        raise ConfigError(f"{field}.syscalls", "must be a list")
    for i, rule in enumerate(syscalls):
        _check_syscall(rule, f"{field}.syscalls[{i}]")


class BpfFilter:
    """A compiled program, from the cache: load() installs it as seccomp_load() would."""

    def __init__(self, program: bytes, flags: int, skipped: list[str]) -> None:
        self.program, self.flags, self.skipped = program, flags, skipped
        self._install = linux.seccomp_filter  # bound now: load() looks nothing up

    def load(self) -> None:
        try:
            self._install(self.program, self.flags)
        except OSError as e:
            msg = f"seccomp: loading the filter failed: {e.strerror}"
            if e.errno == 13:  # EACCES: neither no_new_privs nor CAP_SYS_ADMIN
                msg += ("; set process.noNewPrivileges or load the filter while the process "
                        "still has CAP_SYS_ADMIN")
            raise SetupError(msg) from None

    def release(self) -> None:
        pass


# bumped whenever the way a profile becomes libseccomp rules changes (cached programs go)
_CACHE_FORMAT = 1


def prepare(spec: dict, field: str = "linux.seccomp",
            cache_dir: str | None = None) -> Filter | BpfFilter:
    """Validate `spec` and build its filter (or take its program from `cache_dir`); call
    before pivot_root, load() before execve."""
    validate(spec, field)
    if cache_dir is None:
        from berth.runtime import libseccomp
        return libseccomp.build(spec, field)
    from _sha256 import sha256  # built in (hashlib loads OpenSSL first)

    from berth.oci import jsonfast
    key = sha256(f"{_CACHE_FORMAT}\0{jsonfast.dumps(spec)}".encode()).hexdigest()
    path = os.path.join(cache_dir, key[:32] + ".bpf")
    cached = _read_cached(path)
    if cached is not None:
        return cached
    from berth.runtime import libseccomp
    filt = libseccomp.build(spec, field)
    try:
        program = libseccomp.export(filt)
    except OSError:
        return filt  # load it the usual way
    flags = sum(FLAGS[f] for f in spec.get("flags") or ())
    _write_cached(path, program, flags, filt.skipped)
    filt.release()
    return BpfFilter(program, flags, filt.skipped)


def _read_cached(path: str) -> BpfFilter | None:
    from berth.oci import jsonfast
    try:
        with open(path, "rb") as f:
            head, _, program = f.read().partition(b"\n")
        meta = jsonfast.loads(head)
        lib_path, mtime, size = meta["lib"].rsplit(" ", 2)
        st = os.stat(lib_path)
        if (str(st.st_mtime_ns), str(st.st_size)) != (mtime, size) or len(program) % 8:
            return None  # another libseccomp since, or a torn file
        return BpfFilter(program, int(meta["flags"]), list(meta["skipped"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cached(path: str, program: bytes, flags: int, skipped: list[str]) -> None:
    from berth.oci import jsonfast
    try:
        from berth.runtime.libseccomp import library_identity
        head = jsonfast.dumps({"lib": library_identity(), "flags": flags, "skipped": skipped})
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, head.encode() + b"\n" + program)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        pass  # no cache this time (a read-only root, a user namespace's view of it)
