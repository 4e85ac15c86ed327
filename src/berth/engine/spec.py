"""ContainerSpec: what `berth run` was asked for, and the OCI config.json it becomes.

Defaults follow docker's: its 14 default capabilities, masked and read-only
/proc paths, /dev as tmpfs with devpts, shm, mqueue, read-only sysfs and
cgroup, a new network namespace with only loopback for `--network none`, and
Docker's default PATH when the image sets none.
"""

from __future__ import annotations

from berth.engine.errors import InvalidOption

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


class ContainerSpec:
    """The user's request, independent of any front (CLI, Docker API)."""

    def __init__(self, image: str, cmd: list[str] | None = None, *,
                 entrypoint: list[str] | None = None, env: list[str] | None = None,
                 workdir: str | None = None, user: str | None = None,
                 hostname: str | None = None, name: str | None = None,
                 read_only: bool = False, memory: int | None = None,
                 cpus: float | None = None, pids_limit: int | None = None,
                 network: str = "bridge", tty: bool = False, interactive: bool = False,
                 remove: bool = False, labels: dict[str, str] | None = None,
                 cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
                 privileged: bool = False, restart: str = "no",
                 mounts: list[dict] | None = None, ports: list[dict] | None = None,
                 publish_all: bool = False) -> None:
        self.image = image
        self.cmd = cmd
        self.entrypoint = entrypoint
        self.env = env or []
        self.workdir = workdir
        self.user = user
        self.hostname = hostname
        self.name = name
        self.read_only = read_only
        self.memory = memory
        self.cpus = cpus
        self.pids_limit = pids_limit
        self.network = network
        self.tty = tty
        self.interactive = interactive
        self.remove = remove
        self.labels = labels or {}
        self.cap_add = cap_add or []
        self.cap_drop = cap_drop or []
        self.privileged = privileged
        self.restart = parse_restart(restart)
        self.mounts = mounts or []  # volumes.parse_volume/parse_mount/parse_tmpfs results
        self.ports = ports or []  # ports.parse results
        self.publish_all = publish_all
        if (self.ports or publish_all) and network in ("none", "host"):
            raise InvalidOption(f"-p/-P need a bridge network, not --network {network}")

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> ContainerSpec:
        s = cls.__new__(cls)
        s.__dict__.update(d)
        return s


def parse_restart(text: str) -> str:
    """--restart no | always | unless-stopped | on-failure[:N]"""
    name, _, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure") or (
            count and (name != "on-failure" or not count.isdigit())):
        raise InvalidOption(f"invalid restart policy {text!r}: use no, always, unless-stopped "
                            "or on-failure[:max-retries]")
    return text


def parse_memory(text: str, flag: str = "--memory") -> int:
    """docker's sizes: 512, 64k, 100m, 1g (binary units)."""
    t = text.strip().lower().removesuffix("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}.get(t[-1:] or "", 1)
    num = t[:-1] if mult > 1 else t
    try:
        value = int(float(num) * mult)
    except ValueError:
        raise InvalidOption(f"invalid value {text!r} for {flag}: use a size such as 512m or "
                            "1g") from None
    if value <= 0:
        raise InvalidOption(f"invalid value {text!r} for {flag}: must be positive")
    return value


def process_args(spec: ContainerSpec, image_cfg: dict) -> list[str]:
    entry = spec.entrypoint if spec.entrypoint is not None else image_cfg.get("Entrypoint") or []
    if spec.cmd:
        cmd = spec.cmd
    elif spec.entrypoint is not None:
        cmd = []  # docker: --entrypoint resets the image's CMD
    else:
        cmd = image_cfg.get("Cmd") or []
    args = list(entry) + list(cmd)
    if not args:
        raise InvalidOption("no command specified: the image has no CMD or ENTRYPOINT, "
                            "so give one after the image name")
    return args


def merge_env(image_env: list[str], extra: list[str]) -> list[str]:
    env: dict[str, str] = {}
    for e in [*image_env, *extra]:
        k, _, v = e.partition("=")
        env[k] = v
    if "PATH" not in env:
        env = {"PATH": DEFAULT_PATH[5:], **env}
    return [f"{k}={v}" for k, v in env.items()]


def resolve_user(user: str | None, rootfs: str) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary gids for `-u name|uid[:group|gid]`, from the image's /etc."""
    name, _, group = (user or "0").partition(":")
    passwd = _table(rootfs, "etc/passwd")
    groups = _table(rootfs, "etc/group")
    if name.isdigit():
        uid = int(name)
        gid = next((int(r[3]) for r in passwd if r[2] == name and len(r) > 3), 0)
    else:
        row = next((r for r in passwd if r[0] == name), None)
        if row is None:
            raise InvalidOption(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(row[2]), int(row[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grow = next((r for r in groups if r[0] == group), None)
            if grow is None:
                raise InvalidOption(f"unable to find group {group}: no matching entries in "
                                    "group file")
            gid = int(grow[2])
    uname = next((r[0] for r in passwd if len(r) > 2 and r[2] == str(uid)), name)
    extra = sorted({int(r[2]) for r in groups if len(r) > 3 and uname in r[3].split(",")}
                   - {gid})
    return uid, gid, [gid, *extra]  # docker lists the primary group among the groups too


def _table(rootfs: str, path: str) -> list[list[str]]:
    import os
    try:
        with open(os.path.join(rootfs, path)) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip()
                    and not line.startswith("#")]
    except OSError:
        return []


def _user_mounts(root: str, mounts: list[dict]) -> list[dict]:
    from berth.engine.volumes import oci_mounts
    return oci_mounts(root, mounts)


def oci_config(spec: ContainerSpec, image_cfg: dict, rootfs: str, cgroup: str,
               hostname: str, root: str = "") -> dict:
    """The runtime config.json for a container from `spec` and its image's config."""
    from berth.runtime.capabilities import NAMES

    uid, gid, groups = resolve_user(spec.user or image_cfg.get("User"), rootfs)
    caps = set(NAMES) if spec.privileged else set(DEFAULT_CAPS)
    for c in spec.cap_add:
        c = c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
        if c == "CAP_ALL":
            caps = set(NAMES)
        elif c not in NAMES:
            raise InvalidOption(f"unknown capability {c!r} in --cap-add")
        else:
            caps.add(c)
    for c in spec.cap_drop:
        c = c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
        if c == "CAP_ALL":
            caps = set()
        elif c not in NAMES:
            raise InvalidOption(f"unknown capability {c!r} in --cap-drop")
        else:
            caps.discard(c)
    capl = sorted(caps)
    resources: dict = {"devices": [{"allow": spec.privileged, "access": "rwm"}]}
    if spec.memory:
        resources["memory"] = {"limit": spec.memory}
    if spec.cpus:
        resources["cpu"] = {"quota": int(spec.cpus * 100000), "period": 100000}
    if spec.pids_limit:
        resources["pids"] = {"limit": spec.pids_limit}
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if spec.network != "host":
        namespaces.append({"type": "network"})
    return {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": spec.tty,
            "user": {"uid": uid, "gid": gid, "additionalGids": groups},
            "args": process_args(spec, image_cfg),
            "env": merge_env(image_cfg.get("Env") or [], spec.env
                             + ([f"HOSTNAME={hostname}"] if spec.network != "host" else [])),
            "cwd": spec.workdir or image_cfg.get("WorkingDir") or "/",
            "capabilities": {k: capl for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": spec.read_only},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
            *_user_mounts(root, getattr(spec, "mounts", None) or []),
        ],
        "linux": {
            "cgroupsPath": cgroup,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": [] if spec.privileged else MASKED,
            "readonlyPaths": [] if spec.privileged else READONLY,
        },
        "annotations": {f"org.berth.label.{k}": v for k, v in spec.labels.items()},
    }
