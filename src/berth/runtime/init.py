"""The container side of create: the two forked stages that become the container's init.

Most containers need no stage 1 (see one_stage): the runtime forks init into a
new pid namespace itself, and init_alone does stage 1's work but the fork.
stage 1 (forked by create): makes itself undumpable, moves itself into the
container's cgroup (so everything it forks is born there), joins namespaces
given by path, creates the user namespace (the parent writes its id maps) and
then the others, and forks stage 2, which is pid 1 of a new pid namespace.
stage 2: creates the cgroup namespace, builds the rootfs, waits until the
parent has recorded its pid, lets the parent run prestart/createRuntime hooks,
runs createContainer hooks, pivots, reports READY, then blocks on the exec fifo
until `start`, runs startContainer hooks and execs the user's process.

Messages to the parent are lines on a pipe: "USERNS", "PID <n>", "HOOKS",
"READY", "ERR <text>"; the parent answers "OK" (or closes the pipe to abort).
"""

from __future__ import annotations

import os

from berth.oci.runtime_config import NAMESPACES
from berth.runtime import linux
from berth.runtime.errors import RuntimeFailure, SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.runtime.libseccomp import Filter
    from berth.runtime.seccomp import BpfFilter

# setns order: the user namespace first (it grants the rights to join the rest), mount last
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class Channel:
    """Line messages over a pair of pipes (cheaper to import than socket)."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.buf = b""

    def send(self, msg: str) -> None:
        os.write(self.wfd, msg.encode() + b"\n")

    def answer(self, msg: str) -> None:
        """The runtime's reply to init; if init has died already, nothing: why it died is
        the next thing recv() reads (its ERR line), or the end of the channel."""
        try:
            self.send(msg)
        except BrokenPipeError:
            pass

    def recv(self) -> str | None:
        while b"\n" not in self.buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def expect_ok(self) -> None:
        if self.recv() != "OK":
            os._exit(1)  # the parent gave up on us


class InitArgs:
    def __init__(self, config: dict, bundle: str, rootfs: str, state_dir: str,
                 cgroup_dirs: dict[str, str], console_socket: str | None,
                 preserve_fds: int, no_pivot: bool) -> None:
        self.config = config
        self.bundle = bundle
        self.rootfs = rootfs
        self.state_dir = state_dir
        self.cgroup_dirs = cgroup_dirs
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.stdio: tuple[int, int, int] | None = None
        self.seccomp: Filter | BpfFilter | None = None  # linux.seccomp's, prepared by create
        self.cgroup_join: list[str] = []  # files stage 1 writes "0" to (cgroups.join_self)
        # opened by the parent: the container's root may not be able to walk to it
        self.state_fd = os.open(state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        linux_cfg = config.get("linux") or {}
        self.namespaces = {ns["type"]: ns.get("path") or "" for ns in
                           linux_cfg.get("namespaces") or ()}


def join_namespaces(paths: dict[str, str]) -> None:
    for t in _JOIN_ORDER:
        path = paths.get(t)
        if not path:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SetupError(f"namespace {t}: cannot open {path}: {e.strerror}") from None
        try:
            linux.setns(fd, NAMESPACES[t])
        except OSError as e:
            raise SetupError(f"namespace {t}: cannot join {path}: {e.strerror}") from None
        finally:
            os.close(fd)


def one_stage(namespaces: dict[str, str]) -> bool:
    """May the runtime fork init itself, with no stage 1 in between?

    A new pid namespace holds only the children of whoever makes it, so the runtime
    makes it (unshare), forks init into it and takes its own pid_for_children back
    (setns); init makes the other namespaces itself. Not so with a user namespace,
    new or joined, which must come first and own the others (a process in it must
    make them), nor for a time namespace or a pid namespace joined by path (both,
    too, are for children only): stage 1 does those, then forks init.
    """
    ns = namespaces
    return "user" not in ns and "time" not in ns and not ns.get("pid")


def _enter(a: InitArgs) -> None:
    """The first steps of the runtime's child, in either mode."""
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    if a.cgroup_join:  # first: still host root, in the host's namespaces, one thread
        from berth.runtime.cgroups import join_self
        join_self(a.cgroup_join)
    if a.stdio is not None:
        for i, fd in enumerate(a.stdio):
            os.dup2(fd, i)  # dup2's copy is inheritable: the process keeps it at exec
    join_namespaces({t: p for t, p in a.namespaces.items() if p})


def _unshare_rest(ns: dict[str, str], done: tuple[str, ...]) -> None:
    """Make the new namespaces not made yet (the cgroup one is stage 2's)."""
    flags = 0
    for t, path in ns.items():
        if not path and t not in done and t != "cgroup":
            flags |= NAMESPACES[t]
    if flags:
        linux.unshare(flags)


def init_alone(a: InitArgs, ch: Channel) -> None:
    """Runs in the runtime's one child when one_stage(): init from the start (pid 1 of
    its new pid namespace already); never returns."""
    try:
        _enter(a)
        _unshare_rest(a.namespaces, ("user", "pid"))
        ch.send("PID")  # the runtime forked us: it knows the pid
        stage2(a, ch)
    except BaseException as e:  # noqa: BLE001 - report everything to the parent
        _fail(ch, e)
    os._exit(1)


def stage1(a: InitArgs, ch: Channel) -> None:
    """Runs in the first child; never returns."""
    try:
        _enter(a)
        ns = a.namespaces
        if "user" in ns and not ns["user"]:
            linux.unshare(linux.CLONE_NEWUSER)
            ch.send("USERNS")
            ch.expect_ok()
            try:
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            except OSError:
                pass  # root is not mapped: stay the overflow id, as runc does
        _unshare_rest(ns, ("user",))
        offsets = (a.config.get("linux") or {}).get("timeOffsets")
        if offsets and "time" in ns and not ns["time"]:
            with open("/proc/self/timens_offsets", "w") as f:
                for clock, off in offsets.items():
                    f.write(f"{clock} {off.get('secs', 0)} {off.get('nanosecs', 0)}\n")
        pid = os.fork()
        if pid:
            ch.send(f"PID {pid}")
            os._exit(0)
        stage2(a, ch)
    except BaseException as e:  # noqa: BLE001 - report everything to the parent
        _fail(ch, e)
    os._exit(1)


def _fail(ch: Channel, e: BaseException) -> None:
    msg = str(e) if isinstance(e, RuntimeFailure | OSError) else f"{type(e).__name__}: {e}"
    if os.environ.get("BERTH_DEBUG"):
        import traceback
        msg += " | " + " | ".join(traceback.format_exception(e)[-4:])
    try:
        ch.send("ERR " + msg.replace("\n", " "))
    except OSError:
        pass
    os._exit(1)


def stage2(a: InitArgs, ch: Channel) -> None:
    """pid 1 of the container until execve."""
    from berth.runtime.mounts import RootfsSetup
    from berth.runtime.process import ProcessPlan

    os.setsid()
    ns = a.namespaces
    cfg = a.config
    lcfg = cfg.get("linux") or {}
    if "cgroup" in ns and not ns["cgroup"]:
        linux.unshare(linux.CLONE_NEWCGROUP)  # born in the container's cgroup (stage 1)
    if "network" in ns and not ns["network"]:
        try:
            linux.link_up("lo")
        except OSError:
            pass
    new_mnt = "mount" in ns and not ns["mount"]
    fs = RootfsSetup(cfg, a.rootfs, a.bundle, a.cgroup_dirs,
                     cgroupns="cgroup" in ns, userns="user" in ns)
    if new_mnt:
        fs.prepare_root()
    fs.mount_all()
    terminal = bool((cfg.get("process") or {}).get("terminal"))
    # the runtime has recorded our pid (and set oomScoreAdj) and written the cgroup's
    # limits, device rules among them: mknod below is checked against those rules
    ch.expect_ok()
    fs.create_devices()
    cwd = (cfg.get("process") or {}).get("cwd") or "/"
    from berth.runtime.mounts import secure_join
    os.makedirs(secure_join(a.rootfs, cwd), 0o755, exist_ok=True)
    if cfg.get("hostname") is not None and cfg.get("hostname") != "":
        linux.sethostname(cfg["hostname"])
    if cfg.get("domainname"):
        linux.setdomainname(cfg["domainname"])
    plan = ProcessPlan(cfg["process"], lcfg, userns="user" in ns, seccomp_filter=a.seccomp)
    console = None
    if terminal:
        console = _connect_console(a.console_socket)
    ch.send("HOOKS")
    ch.expect_ok()
    hook_cfg = cfg.get("hooks") or {}
    if hook_cfg.get("createContainer") or hook_cfg.get("startContainer"):
        # (startContainer hooks run after pivot_root: nothing can be imported then)
        import subprocess  # noqa: F401

        from berth.runtime import hooks
    if hook_cfg.get("createContainer"):
        hooks.run("createContainer", hook_cfg["createContainer"], _hook_state(a))
    if new_mnt and not a.no_pivot:
        fs.pivot()
    else:
        fs.chroot()
    fs.finish()
    if console is not None:
        _setup_tty(console, cfg["process"])
    plan.lookup()
    ch.send("READY")
    os.close(ch.wfd)
    os.close(ch.rfd)
    # wait for `start`: opening the fifo for writing blocks until start opens it to read
    fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=a.state_fd)
    os.close(a.state_fd)
    os.write(fifo, b"0")
    try:
        if hook_cfg.get("startContainer"):
            hooks.run("startContainer", hook_cfg["startContainer"], _hook_state(a))
        plan.execute(a.preserve_fds)
    except BaseException as e:  # noqa: BLE001 - start reads this from the fifo
        msg = str(e) if isinstance(e, RuntimeFailure | OSError) else repr(e)
        try:
            os.write(fifo, b"E" + msg.encode())
            os.write(2, f"berth-runtime: {msg}\n".encode())
        except OSError:
            pass
        os._exit(127)


def _hook_state(a: InitArgs) -> dict:
    from berth.runtime.state import OCI_VERSION
    return {"ociVersion": OCI_VERSION, "id": os.path.basename(a.state_dir), "status": "creating",
            "pid": os.getpid(), "bundle": a.bundle,
            "annotations": a.config.get("annotations") or {}}


def _connect_console(path: str | None):
    # everything _setup_tty needs is imported now, while the host's files are visible
    import fcntl  # noqa: F401
    import socket
    import struct  # noqa: F401
    import termios  # noqa: F401

    if not path:
        raise SetupError("process.terminal is true but no --console-socket was given")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        raise SetupError(f"console socket {path}: {e.strerror}") from None
    return s


def _setup_tty(sock, proc: dict) -> None:
    import fcntl
    import socket
    import struct
    import termios

    master, slave = os.openpty()
    name = os.ttyname(slave)
    size = proc.get("consoleSize")
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    socket.send_fds(sock, [name.encode()], [master])
    sock.close()
    os.close(master)
    if os.path.exists("/dev/console"):
        try:
            linux.mount(name, "/dev/console", "bind", linux.MS_BIND)
        except OSError:
            pass
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
