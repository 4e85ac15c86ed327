"""The one seam between berth and the kernel calls Python 3.11 lacks.

Everything here is a thin wrapper over libc: it raises OSError with the
failing call's errno and the arguments that matter, and holds no policy. Unit
tests replace this module's functions with recorders; integration tests use
the real kernel.

The calls go through `_ctypes`, the C half of ctypes, directly: `import ctypes`
costs ~3.5 ms here (it builds its whole type zoo at import), a third of what the
runtime itself needs to start a container; the few types below cost ~0.1 ms.
Library, the C types and Structure are also what seccomp.py loads libseccomp with.
"""

from __future__ import annotations

import _ctypes
import os


# C types (ctypes' c_int, c_uint, ...): what arguments are converted to and results from
class CInt(_ctypes._SimpleCData):
    _type_ = "i"


class CUInt(_ctypes._SimpleCData):
    _type_ = "I"


class CULong(_ctypes._SimpleCData):
    _type_ = "L"


class CUInt64(_ctypes._SimpleCData):
    _type_ = "Q"


class CVoidP(_ctypes._SimpleCData):
    _type_ = "P"


class CCharP(_ctypes._SimpleCData):
    _type_ = "z"


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


Structure = _ctypes.Structure
POINTER = _ctypes.POINTER


class Function(_ctypes.CFuncPtr):
    """A C function: C calling convention, int result unless restype says otherwise,
    errno kept for get_errno; argtypes and restype may be set as on ctypes' functions."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = CInt


class Library:
    """A shared library (None: the program itself, libc among it); its functions are
    looked up on first use, as attributes, like ctypes.CDLL's."""

    def __init__(self, name: str | None) -> None:
        self._handle = _ctypes.dlopen(name, 0)  # type: ignore[arg-type]  # None: NULL

    def __getattr__(self, name: str) -> Function:
        if name.startswith("__"):
            raise AttributeError(name)
        f = Function((name, self))  # type: ignore[arg-type]  # it reads only ._handle
        setattr(self, name, f)
        return f


def array_of(ctype: type, length: int) -> type:
    """The C array type `ctype[length]`."""
    return type(f"{ctype.__name__}_Array_{length}", (_ctypes.Array,),
                {"_type_": ctype, "_length_": length})


_libc = Library(None)


_buffer_types: dict[int, type] = {}


def _buffer(size: int, data: bytes = b""):
    """A writable C buffer of `size` bytes (its .raw is the bytes), passed as a pointer."""
    cls = _buffer_types.get(size)
    if cls is None:
        cls = _buffer_types[size] = array_of(_Char, size)
    buf = cls()
    buf.raw = data.ljust(size, b"\0")
    return buf

# clone(2) / unshare(2) / setns(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_PIVOT_ROOT = 155
_SYS_CAPGET = 125
_SYS_CAPSET = 126
_SYS_CLOSE_RANGE = 436
_SYS_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
CLOSE_RANGE_CLOEXEC = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _check(ret: int, what: str, *detail: object) -> int:
    if ret < 0:
        err = _ctypes.get_errno()
        msg = os.strerror(err)
        if detail:
            msg = f"{msg} ({what} {' '.join(str(d) for d in detail)})"
        else:
            msg = f"{msg} ({what})"
        raise OSError(err, msg)
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns", hex(nstype))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), CULong(flags), _b(data))
    _check(ret, "mount", source or "none", "on", target, fstype or "", hex(flags), data or "")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(CULong(_SYS_PIVOT_ROOT), _b(new_root), _b(put_old)), "pivot_root",
           new_root)


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, CULong(len(b))), "sethostname", name)


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc.setdomainname(b, CULong(len(b))), "setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, CULong(arg2), CULong(arg3), CULong(arg4), CULong(arg5)),
                  "prctl", option)


def seccomp_filter(program: bytes, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog) with a classic BPF program (8-byte
    sock_filter instructions), as libseccomp's seccomp_load() installs it."""
    code = _buffer(len(program), program)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = _buffer(16, (len(program) // 8).to_bytes(2, "little") + b"\0" * 6
                    + _ctypes.addressof(code).to_bytes(8, "little"))
    _check(_libc.syscall(CULong(_SYS_SECCOMP), CUInt(_SECCOMP_SET_MODE_FILTER), CUInt(flags),
                         fprog), "seccomp", f"flags={flags}")


def _cap_header(pid: int):
    # struct __user_cap_header_struct { __u32 version; int pid; }
    return _buffer(8, _LINUX_CAPABILITY_VERSION_3.to_bytes(4, "little")
                   + pid.to_bytes(4, "little", signed=True))


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) of a thread as 64-bit masks."""
    data = _buffer(24)  # two struct __user_cap_data_struct { __u32 eff, prm, inh; }
    _check(_libc.syscall(CULong(_SYS_CAPGET), _cap_header(pid), data), "capget")
    w = [int.from_bytes(data.raw[i:i + 4], "little") for i in range(0, 24, 4)]
    return w[0] | w[3] << 32, w[1] | w[4] << 32, w[2] | w[5] << 32


def capset(effective: int, permitted: int, inheritable: int) -> None:
    raw = b"".join(((m >> (32 * i)) & 0xFFFFFFFF).to_bytes(4, "little")
                   for i in (0, 1) for m in (effective, permitted, inheritable))
    _check(_libc.syscall(CULong(_SYS_CAPSET), _cap_header(0), _buffer(24, raw)), "capset",
           f"eff={effective:#x} prm={permitted:#x} inh={inheritable:#x}")


def close_range_cloexec(first: int) -> None:
    """Mark every descriptor from `first` up close-on-exec (the CVE-2024-21626 guard)."""
    ret = _libc.syscall(CULong(_SYS_CLOSE_RANGE), CUInt(first), CUInt(0xFFFFFFFF),
                        CUInt(CLOSE_RANGE_CLOEXEC))
    if ret < 0:  # kernels before 5.11: walk /proc/self/fd
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass


def setgroups(gids: list[int]) -> None:
    os.setgroups(gids)


def link_up(name: str = "lo") -> None:
    """Set an interface up (IFF_UP) with an ioctl, without the socket module's import cost."""
    sock = _check(_libc.socket(2, 2 | 0o2000000, 0), "socket")  # AF_INET, SOCK_DGRAM|CLOEXEC
    try:
        req = _buffer(40, name.encode())  # struct ifreq: char name[16]; short flags; ...
        _check(_libc.ioctl(sock, CULong(0x8913), req), "SIOCGIFFLAGS", name)
        flags = int.from_bytes(req.raw[16:18], "little") | 1  # IFF_UP
        req.raw = req.raw[:16] + flags.to_bytes(2, "little") + req.raw[18:]
        _check(_libc.ioctl(sock, CULong(0x8914), req), "SIOCSIFFLAGS", name)
    finally:
        os.close(sock)


def signal_process(pid: int, sig: int) -> bool:
    """kill(2) for one process; False if it is gone. A pid of 0 or below (a record of a
    process that never started) is refused: kill(0) or kill(-1) would signal the caller's
    whole process group, or every process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
