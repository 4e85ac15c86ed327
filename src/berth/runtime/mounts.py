"""The container's filesystem: mounts, devices, pivot_root, masked and read-only paths.

Runs inside the container's new mount namespace (stage 2 of create), before
and after pivot_root. Every destination is resolved inside the rootfs with
symlinks followed *within* it (secure_join), so a hostile image cannot aim a
mount at the host.
"""

from __future__ import annotations

import os
import stat

from berth.runtime import linux
from berth.runtime.errors import ConfigError, SetupError

_FLAGS = {  # option -> (clear?, flag)
    "defaults": (False, 0),
    "ro": (False, linux.MS_RDONLY), "rw": (True, linux.MS_RDONLY),
    "nosuid": (False, linux.MS_NOSUID), "suid": (True, linux.MS_NOSUID),
    "nodev": (False, linux.MS_NODEV), "dev": (True, linux.MS_NODEV),
    "noexec": (False, linux.MS_NOEXEC), "exec": (True, linux.MS_NOEXEC),
    "sync": (False, linux.MS_SYNCHRONOUS), "async": (True, linux.MS_SYNCHRONOUS),
    "dirsync": (False, linux.MS_DIRSYNC),
    "remount": (False, linux.MS_REMOUNT),
    "mand": (False, linux.MS_MANDLOCK), "nomand": (True, linux.MS_MANDLOCK),
    "atime": (True, linux.MS_NOATIME), "noatime": (False, linux.MS_NOATIME),
    "diratime": (True, linux.MS_NODIRATIME), "nodiratime": (False, linux.MS_NODIRATIME),
    "bind": (False, linux.MS_BIND), "rbind": (False, linux.MS_BIND | linux.MS_REC),
    "relatime": (False, linux.MS_RELATIME), "norelatime": (True, linux.MS_RELATIME),
    "strictatime": (False, linux.MS_STRICTATIME), "nostrictatime": (True, linux.MS_STRICTATIME),
    "lazytime": (False, linux.MS_LAZYTIME), "nolazytime": (True, linux.MS_LAZYTIME),
    "nosymfollow": (False, linux.MS_NOSYMFOLLOW), "symfollow": (True, linux.MS_NOSYMFOLLOW),
}

PROPAGATION = {
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED, "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}

_IGNORED = {"tmpcopyup", "idmap", "ridmap", "z", "Z"}

DEFAULT_DEVICES = (  # path, major, minor
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)

DEFAULT_DEVICE_RULES = [
    {"allow": True, "type": "c", "major": m, "minor": n, "access": "rwm"}
    for _, m, n in DEFAULT_DEVICES
] + [
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # /dev/ptmx
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},  # /dev/console
]

# statvfs f_flag bits that the kernel locks on a mount (same values as MS_*)
_LOCKED = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | \
    linux.MS_NOATIME | linux.MS_NODIRATIME | linux.MS_RELATIME


def parse_options(options: list[str] | None) -> tuple[int, list[int], str]:
    """(mount flags, propagation flags, data string) of an OCI mount's options."""
    flags, prop, data = 0, [], []
    for opt in options or ():
        if opt in _FLAGS:
            clear, f = _FLAGS[opt]
            flags = flags & ~f if clear else flags | f
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        elif opt in _IGNORED:
            continue
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """root + unsafe, with every symlink resolved as if root were '/'."""
    resolved: list[str] = []
    queue = [p for p in unsafe.split("/") if p not in ("", ".")]
    links = 0
    while queue:
        part = queue.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        cand = root + "/" + "/".join(resolved + [part])
        try:
            st = os.lstat(cand)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise SetupError(f"mount: too many symlinks resolving {unsafe!r} in the rootfs")
            target = os.readlink(cand)
            if target.startswith("/"):
                resolved = []
            queue = [p for p in target.split("/") if p not in ("", ".")] + queue
        else:
            resolved.append(part)
    return root.rstrip("/") + "/" + "/".join(resolved)


def _mkdir_in(root: str, path: str) -> None:
    """mkdir -p of a path already resolved inside root."""
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except FileExistsError:
        raise SetupError(f"mount: {path[len(root):] or '/'} exists and is not a directory") \
            from None


def _touch(path: str) -> None:
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def remount(target: str, flags: int) -> None:
    """Change flags of a bind mount, keeping the flags the kernel locked on it."""
    base = linux.MS_REMOUNT | linux.MS_BIND | flags
    try:
        linux.mount(None, target, None, base)
    except PermissionError:
        locked = os.statvfs(target).f_flag & _LOCKED
        linux.mount(None, target, None, base | locked)


class RootfsSetup:
    """Build the container's filesystem under `rootfs` from config.json's mounts."""

    def __init__(self, config: dict, rootfs: str, bundle: str, cgroup_dirs: dict[str, str],
                 cgroupns: bool, userns: bool) -> None:
        self.config = config
        self.linux = config.get("linux") or {}
        self.rootfs = rootfs
        self.bundle = bundle
        self.cgroup_dirs = cgroup_dirs
        self.cgroupns = cgroupns
        self.userns = userns

    # --- before pivot_root ------------------------------------------------

    def prepare_root(self) -> None:
        prop = self.linux.get("rootfsPropagation")
        flags = PROPAGATION.get(prop or "", linux.MS_SLAVE | linux.MS_REC)
        linux.mount(None, "/", None, flags | linux.MS_REC)
        if flags & (linux.MS_SHARED | linux.MS_UNBINDABLE):  # else none is shared any more
            self._make_parent_private()  # (and an unbindable parent refuses the bind below)
        linux.mount(self.rootfs, self.rootfs, "bind", linux.MS_BIND | linux.MS_REC)

    def _make_parent_private(self) -> None:
        """pivot_root refuses a new root whose parent mount is shared, and a bind of the
        rootfs fails under an unbindable one: only rootfsPropagation "shared" and
        "unbindable" leave them so (reading mountinfo costs more the more mounts the host
        has)."""
        best = "/"
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mnt = line.split()[4]
                if (self.rootfs + "/").startswith(mnt.rstrip("/") + "/") and len(mnt) > len(best):
                    best = mnt
        linux.mount(None, best, None, linux.MS_PRIVATE)

    def mount_all(self) -> None:
        for i, m in enumerate(self.config.get("mounts") or ()):
            try:
                self.mount_one(m)
            except OSError as e:
                raise SetupError(f"mounts[{i}] ({m.get('destination')}): {e.strerror}") from None
            except SetupError as e:
                raise SetupError(f"mounts[{i}] ({m.get('destination')}): {e}") from None

    def mount_one(self, m: dict) -> None:
        dest = secure_join(self.rootfs, m["destination"])
        kind = m.get("type") or ""
        flags, props, data = parse_options(m.get("options"))
        source = m.get("source") or kind
        if kind == "bind" or flags & linux.MS_BIND:
            self._bind(source, dest, flags | linux.MS_BIND)
        elif kind == "cgroup":
            self._cgroup(dest, flags)
        else:
            _mkdir_in(self.rootfs, dest)
            try:
                linux.mount(source, dest, kind, flags, data or None)
            except PermissionError:
                if kind != "sysfs":
                    raise
                # a user namespace may not mount sysfs for a network namespace it does not own
                self._bind("/sys", dest, linux.MS_BIND | linux.MS_REC | flags)
        for p in props:
            linux.mount(None, dest, None, p)

    def _bind(self, source: str, dest: str, flags: int) -> None:
        if not source.startswith("/"):
            source = os.path.join(self.bundle, source)
        try:
            st = os.stat(source)
        except FileNotFoundError:
            raise SetupError(f"bind source {source} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            _mkdir_in(self.rootfs, dest)
        else:
            _touch(dest)
        linux.mount(source, dest, "bind", flags & (linux.MS_BIND | linux.MS_REC))
        extra = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
        if extra:
            remount(dest, extra)

    def _cgroup(self, dest: str, flags: int) -> None:
        _mkdir_in(self.rootfs, dest)
        if "" in self.cgroup_dirs:  # cgroup v2
            if self.cgroupns:
                linux.mount("cgroup2", dest, "cgroup2", flags)
            else:
                linux.mount(self.cgroup_dirs[""], dest, "bind", linux.MS_BIND | linux.MS_REC)
                if flags:
                    remount(dest, flags)
            return
        linux.mount("tmpfs", dest, "tmpfs", flags & ~linux.MS_RDONLY | linux.MS_NOSUID
                    | linux.MS_NODEV | linux.MS_NOEXEC, "mode=755")
        for ctrl, host_dir in self.cgroup_dirs.items():
            sub = os.path.join(dest, ctrl.removeprefix("name="))  # name=systemd -> systemd
            os.makedirs(sub, exist_ok=True)
            if self.cgroupns:
                linux.mount("cgroup", sub, "cgroup", flags,
                            "none," + ctrl if ctrl.startswith("name=") else ctrl)
            else:
                linux.mount(host_dir, sub, "bind", linux.MS_BIND)
                remount(sub, flags | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        for a, b in (("cpu", "cpuacct"), ("net_cls", "net_prio")):
            if a in self.cgroup_dirs and b in self.cgroup_dirs:
                link = os.path.join(dest, f"{a},{b}")
                if not os.path.lexists(link):
                    os.symlink(a, link)
        if flags & linux.MS_RDONLY:
            remount(dest, flags | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)

    def _dev_is_bound(self) -> bool:
        for m in self.config.get("mounts") or ():
            if m.get("destination") == "/dev" and (
                    m.get("type") == "bind" or "bind" in (m.get("options") or ())
                    or "rbind" in (m.get("options") or ())):
                return True
        return False

    def create_devices(self, console: str | None = None) -> None:
        old = os.umask(0)
        try:
            if not self._dev_is_bound():
                for path, major, minor in DEFAULT_DEVICES:
                    self._device({"path": path, "type": "c", "major": major, "minor": minor,
                                  "fileMode": 0o666, "uid": 0, "gid": 0})
                for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                                     ("stdout", "/proc/self/fd/1"),
                                     ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
                    link = secure_join(self.rootfs, "/dev/" + name)
                    if not os.path.lexists(link):
                        os.makedirs(os.path.dirname(link), exist_ok=True)
                        os.symlink(target, link)
                if os.path.exists("/proc/kcore"):
                    link = secure_join(self.rootfs, "/dev/core")
                    if not os.path.lexists(link):
                        os.symlink("/proc/kcore", link)
            for i, d in enumerate(self.linux.get("devices") or ()):
                try:
                    self._device(d)
                except OSError as e:
                    raise SetupError(f"linux.devices[{i}] ({d['path']}): {e.strerror}") from None
            if console:
                dest = secure_join(self.rootfs, "/dev/console")
                _touch(dest)
                linux.mount(console, dest, "bind", linux.MS_BIND)
        finally:
            os.umask(old)

    def _device(self, d: dict) -> None:
        dest = secure_join(self.rootfs, d["path"])
        os.makedirs(os.path.dirname(dest), 0o755, exist_ok=True)
        kind = d["type"]
        mode = d.get("fileMode")
        if mode is None:
            mode = 0o666
        if self.userns:  # mknod is not allowed: bind the host's node instead
            self._bind_host_device(d, dest)
            return
        fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
        if os.path.lexists(dest):
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise SetupError(f"device {d['path']} is a directory in the rootfs")
            os.unlink(dest)
        dev = os.makedev(d.get("major", 0), d.get("minor", 0)) if kind != "p" else 0
        try:
            os.mknod(dest, fmt | (mode & 0o7777), dev)
        except PermissionError:
            # the device cgroup denies mknod ("m") for a device the config denied: the node
            # still appears, as the host's, and the cgroup refuses to open it
            self._bind_host_device(d, dest)
            return
        os.chmod(dest, mode & 0o7777)
        os.chown(dest, d.get("uid") or 0, d.get("gid") or 0)

    def _bind_host_device(self, d: dict, dest: str) -> None:
        host = f"/dev/{os.path.basename(d['path'])}" if d["path"].startswith("/dev/") \
            else d["path"]
        _touch(dest)
        linux.mount(host, dest, "bind", linux.MS_BIND)

    # --- pivot_root and after ---------------------------------------------

    def pivot(self) -> None:
        old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        new = os.open(self.rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(new)
            linux.pivot_root(".", ".")
            os.fchdir(old)
            linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
            linux.umount2(".", linux.MNT_DETACH)
            os.chdir("/")
        finally:
            os.close(old)
            os.close(new)

    def chroot(self) -> None:
        os.chdir(self.rootfs)
        os.chroot(".")
        os.chdir("/")

    def finish(self) -> None:
        """After pivot_root: root propagation, sysctls (while /proc/sys is still writable),
        read-only and masked paths, a read-only root."""
        prop = self.linux.get("rootfsPropagation")
        if prop:
            linux.mount(None, "/", None, PROPAGATION[prop])
        if self.linux.get("sysctl"):
            set_sysctls(self.linux["sysctl"])
        for path in self.linux.get("readonlyPaths") or ():
            if os.path.exists(path):
                linux.mount(path, path, "bind", linux.MS_BIND | linux.MS_REC)
                remount(path, linux.MS_RDONLY | linux.MS_REC)
        for path in self.linux.get("maskedPaths") or ():
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISDIR(st.st_mode):
                linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
            else:
                linux.mount("/dev/null", path, "bind", linux.MS_BIND)
        if (self.config.get("root") or {}).get("readonly"):
            remount("/", linux.MS_RDONLY)


def set_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise SetupError(f"linux.sysctl.{key}: cannot set to {value!r}: {e.strerror}") \
                from None


def check_sysctls(sysctl: dict[str, str], namespaces: set[str]) -> None:
    """Refuse sysctls that would change the host: each must belong to a new namespace."""
    for key in sysctl:
        if key.startswith("net.") and "network" in namespaces:
            continue
        if (key in ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                    "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                    "kernel.shm_rmid_forced") or key.startswith("fs.mqueue.")) \
                and "ipc" in namespaces:
            continue
        if key in ("kernel.hostname", "kernel.domainname") and "uts" in namespaces:
            continue
        raise ConfigError(f"linux.sysctl.{key}", "not allowed: it is not namespaced by a "
                          "namespace the container creates, so it would change the host")
