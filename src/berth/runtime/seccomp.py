"""OCI `linux.seccomp`: strict validation, and a libseccomp filter loaded just before execve.

Owns the translation of the OCI seccomp object into a libseccomp context (linux.Library,
berth's lean ctypes, over libseccomp.so.2) with runc's semantics: syscall names libseccomp
does not know are skipped, rules whose action equals the default action are skipped, several
conditions on one argument index become one rule each (OR), otherwise a rule's conditions are
ANDed.

Must not: set no_new_privs (the runtime decides that from process.noNewPrivileges, so the
context is built with SCMP_FLTATR_CTL_NNP=0); import or open anything in Filter.load(), which
runs after pivot_root and possibly after setuid; import more than linux and os (hot path).
Seccomp user notification (SCMP_ACT_NOTIFY, listenerPath) is not supported yet.

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
from berth.runtime.linux import (
    POINTER,
    CCharP,
    CInt,
    CUInt,
    CUInt64,
    CVoidP,
    Library,
    Structure,
    array_of,
)

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

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

# OCI filter flag -> the libseccomp attribute that sets it
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}

_NR_SCMP_ERROR = -1
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


# --- libseccomp -------------------------------------------------------------------------------


class _ArgCmp(Structure):
    """struct scmp_arg_cmp"""

    _fields_ = [("arg", CUInt), ("op", CInt), ("datum_a", CUInt64), ("datum_b", CUInt64)]


_lib_cache: Library | None = None


def _lib() -> Library:
    global _lib_cache
    if _lib_cache is None:
        try:
            lib = Library("libseccomp.so.2")
        except OSError as e:
            raise SetupError(f"seccomp: cannot load libseccomp.so.2 ({e}); "
                             "install libseccomp2 or remove linux.seccomp") from e
        lib.seccomp_init.argtypes = [CUInt]
        lib.seccomp_init.restype = CVoidP
        lib.seccomp_release.argtypes = [CVoidP]
        lib.seccomp_release.restype = None
        lib.seccomp_arch_resolve_name.argtypes = [CCharP]
        lib.seccomp_arch_resolve_name.restype = CUInt
        lib.seccomp_arch_add.argtypes = [CVoidP, CUInt]
        lib.seccomp_arch_add.restype = CInt
        lib.seccomp_attr_set.argtypes = [CVoidP, CInt, CUInt]
        lib.seccomp_attr_set.restype = CInt
        lib.seccomp_syscall_resolve_name.argtypes = [CCharP]
        lib.seccomp_syscall_resolve_name.restype = CInt
        lib.seccomp_rule_add_array.argtypes = [CVoidP, CUInt, CInt,
                                               CUInt, POINTER(_ArgCmp)]
        lib.seccomp_rule_add_array.restype = CInt
        lib.seccomp_load.argtypes = [CVoidP]
        lib.seccomp_load.restype = CInt
        _lib_cache = lib
    return _lib_cache


def _action_value(action: str, errno_ret: int | None) -> int:
    value = ACTIONS[action]
    if action in _ERRNO_ACTIONS:
        value |= (_EPERM if errno_ret is None else errno_ret) & _ERRNO_MAX
    return value


class Filter:
    """A built libseccomp context: load() it just before execve, or release() it."""

    def __init__(self, ctx: int, lib: Library) -> None:
        self._ctx: int | None = ctx
        # bound now so that load() and release() look nothing up
        self._seccomp_load = lib.seccomp_load
        self._seccomp_release = lib.seccomp_release
        self.skipped: list[str] = []  # syscall names libseccomp does not know

    def load(self) -> None:
        """Install the filter in the calling thread (all threads with TSYNC)."""
        if self._ctx is None:
            raise SetupError("seccomp: the filter was released before it was loaded")
        rc = self._seccomp_load(self._ctx)
        if rc < 0:
            msg = f"seccomp: loading the filter failed: {os.strerror(-rc)}"
            if -rc == 13:  # EACCES: neither no_new_privs nor CAP_SYS_ADMIN
                msg += ("; set process.noNewPrivileges or load the filter while the process "
                        "still has CAP_SYS_ADMIN")
            raise SetupError(msg)

    def release(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            self._seccomp_release(ctx)

    def __del__(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self.release()


def _set_attr(lib: Library, ctx: int, attr: int, value: int, what: str) -> None:
    rc = lib.seccomp_attr_set(ctx, attr, value)
    if rc < 0:
        raise SetupError(f"seccomp: cannot set {what}: {os.strerror(-rc)}")


def _add_rule(lib: Library, ctx: int, nr: int, action: int, conds: list[_ArgCmp],
              name: str, field: str) -> None:
    if conds:
        arr = array_of(_ArgCmp, len(conds))(*conds)
        rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds), arr)
    else:
        rc = lib.seccomp_rule_add_array(ctx, action, nr, 0, None)
    if rc < 0:
        raise SetupError(f"seccomp: cannot add the rule for syscall {name!r} ({field}): "
                         f"{os.strerror(-rc)}")


def _add_syscall_rules(lib: Library, filt: Filter, ctx: int, rule: dict, default: int,
                       field: str) -> None:
    action = _action_value(rule["action"], rule.get("errnoRet"))
    if action == default:
        return  # libseccomp rejects a rule that repeats the default action
    conds = []
    per_index = [0] * _MAX_ARGS
    for arg in rule.get("args") or ():
        per_index[arg["index"]] += 1
        conds.append(_ArgCmp(arg["index"], OPS[arg["op"]], arg["value"],
                             arg.get("valueTwo") or 0))
    # runc: several conditions on one argument index are alternatives (one rule each);
    # otherwise all conditions must hold together (one rule)
    groups = [[c] for c in conds] if max(per_index) > 1 else [conds]
    for name in rule["names"]:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == _NR_SCMP_ERROR:
            filt.skipped.append(name)  # newer than this libseccomp: runc ignores it too
            continue
        for group in groups:
            _add_rule(lib, ctx, nr, action, group, name, field)


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
# seccomp(2) flags for the OCI flags (libseccomp sets the same for its attributes)
_KERNEL_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}


def prepare(spec: dict, field: str = "linux.seccomp",
            cache_dir: str | None = None) -> Filter | BpfFilter:
    """Validate `spec` and build its filter (or take its program from `cache_dir`); call
    before pivot_root, load() before execve."""
    validate(spec, field)
    if cache_dir is None:
        return _build(spec, field)
    from _sha256 import sha256  # built in (hashlib loads OpenSSL first)

    from berth.oci import jsonfast
    key = sha256(f"{_CACHE_FORMAT}\0{jsonfast.dumps(spec)}".encode()).hexdigest()
    path = os.path.join(cache_dir, key[:32] + ".bpf")
    cached = _read_cached(path)
    if cached is not None:
        return cached
    filt = _build(spec, field)
    try:
        program = _export(filt)
    except OSError:
        return filt  # load it the usual way
    flags = sum(_KERNEL_FLAGS[f] for f in spec.get("flags") or ())
    _write_cached(path, program, flags, filt.skipped)
    filt.release()
    return BpfFilter(program, flags, filt.skipped)


def _library_identity() -> str:
    """`path mtime_ns size` of the libseccomp this process has loaded (from its maps)."""
    with open("/proc/self/maps") as f:
        for line in f:
            if "libseccomp.so" in line:
                path = line.split(None, 5)[5].strip()
                st = os.stat(path)
                return f"{path} {st.st_mtime_ns} {st.st_size}"
    raise OSError(2, "libseccomp is not mapped")


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
        head = jsonfast.dumps({"lib": _library_identity(), "flags": flags, "skipped": skipped})
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


def _export(filt: Filter) -> bytes:
    """The filter's BPF program, as seccomp_load() would install it."""
    lib = _lib()
    lib.seccomp_export_bpf.argtypes = [CVoidP, CInt]
    fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(filt._ctx, fd)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _build(spec: dict, field: str) -> Filter:
    lib = _lib()
    default = _action_value(spec["defaultAction"], spec.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SetupError(f"seccomp: seccomp_init failed for default action "
                         f"{spec['defaultAction']} (is it supported by this kernel?)")
    filt = Filter(ctx, lib)
    try:
        _set_attr(lib, ctx, _ATTR_CTL_NNP, 0, "no_new_privs off")
        # report the kernel's errno from seccomp_load (libseccomp >= 2.5); optional
        lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)
        for arch in spec.get("architectures") or ():
            token = lib.seccomp_arch_resolve_name(ARCHES[arch].encode())
            if token == 0:
                raise SetupError(f"seccomp: architecture {arch} is not supported by this "
                                 "libseccomp; upgrade libseccomp or remove it from "
                                 f"{field}.architectures")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -17:  # EEXIST: the native architecture is always there
                raise SetupError(f"seccomp: cannot add architecture {arch}: {os.strerror(-rc)}")
        for flag in spec.get("flags") or ():
            _set_attr(lib, ctx, FLAGS[flag], 1, flag)
        syscalls = spec.get("syscalls") or ()
        if len(syscalls) > 8:  # as runc: a binary tree is faster for long profiles; optional
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
        for i, rule in enumerate(syscalls):
            _add_syscall_rules(lib, filt, ctx, rule, default, f"{field}.syscalls[{i}]")
    except BaseException:
        filt.release()
        raise
    return filt
