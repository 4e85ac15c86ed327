"""libseccomp, through berth's lean ctypes (linux.Library): an OCI seccomp object built
into a filter, and the BPF program it compiles to.

Only a profile the runtime has not compiled before comes here (seccomp.prepare keeps
compiled programs): the filter is built with runc's semantics (syscall names libseccomp
does not know are skipped, rules whose action equals the default action are skipped,
several conditions on one argument index become one rule each, OR; otherwise a rule's
conditions are ANDed) and the context with SCMP_FLTATR_CTL_NNP=0 (no_new_privs is the
runtime's decision, from process.noNewPrivileges). Filter.load() runs after pivot_root
and possibly after setuid: it imports and opens nothing.
"""

from __future__ import annotations

import os

from berth.runtime.errors import SetupError
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
from berth.runtime.seccomp import (
    _EPERM,
    _ERRNO_ACTIONS,
    _ERRNO_MAX,
    _MAX_ARGS,
    ACTIONS,
    ARCHES,
    OPS,
)

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

# OCI filter flag -> the libseccomp attribute that sets it
_FLAG_ATTRS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}

_NR_SCMP_ERROR = -1


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


def library_identity() -> str:
    """`path mtime_ns size` of the libseccomp this process has loaded (from its maps)."""
    with open("/proc/self/maps") as f:
        for line in f:
            if "libseccomp.so" in line:
                path = line.split(None, 5)[5].strip()
                st = os.stat(path)
                return f"{path} {st.st_mtime_ns} {st.st_size}"
    raise OSError(2, "libseccomp is not mapped")


def export(filt: Filter) -> bytes:
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


def build(spec: dict, field: str) -> Filter:
    """The filter of a validated `spec`; load() it before execve, or release() it."""
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
            _set_attr(lib, ctx, _FLAG_ATTRS[flag], 1, flag)
        syscalls = spec.get("syscalls") or ()
        if len(syscalls) > 8:  # as runc: a binary tree is faster for long profiles; optional
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
        for i, rule in enumerate(syscalls):
            _add_syscall_rules(lib, filt, ctx, rule, default, f"{field}.syscalls[{i}]")
    except BaseException:
        filt.release()
        raise
    return filt
