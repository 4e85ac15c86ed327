"""ContainerSpec: what `berth run` was asked for, and the OCI config.json it becomes.

Defaults follow docker's: its 14 default capabilities, a seccomp profile
(engine/seccomp_profile.py), masked and read-only /proc paths, /dev as tmpfs
with devpts, shm, mqueue, read-only sysfs and cgroup, a new network namespace
with only loopback for `--network none`, and Docker's default PATH when the image
sets none.
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
                 stdin_once: bool = False,
                 remove: bool = False, labels: dict[str, str] | None = None,
                 cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
                 privileged: bool = False, restart: str = "no",
                 mounts: list[dict] | None = None, ports: list[dict] | None = None,
                 publish_all: bool = False, extra: dict | None = None,
                 aliases: list[str] | None = None) -> None:
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
        # docker's StdinOnce: the end of an attached client's input is the end of the
        # container's (create -i, run -i); run -d -i keeps stdin open for the next attach
        self.stdin_once = interactive and stdin_once
        self.remove = remove
        self.labels = labels or {}
        self.cap_add = cap_add or []
        self.cap_drop = cap_drop or []
        self.privileged = privileged
        self.restart = parse_restart(restart)
        self.mounts = mounts or []  # volumes.parse_volume/parse_mount/parse_tmpfs results
        self.ports = ports or []  # ports.parse results
        self.publish_all = publish_all
        # the rarer flags, as parsed by parse_extra(): add_hosts, dns, stop_signal,
        # stop_timeout, ulimits, devices, shm_size, cpu_shares, cpuset_cpus, memory_swap,
        # no_new_privileges, seccomp
        self.extra = extra or {}
        # the bridge networks it is on, in order (the first is eth0 and has the default
        # route), each with its aliases and the address asked for (network connect --ip)
        self.networks = {network: {"aliases": check_aliases(aliases or []), "ip": None}} \
            if bridged(network) else {}
        if aliases and (not bridged(network) or network == "bridge"):
            raise InvalidOption("--network-alias: network-scoped aliases are supported only "
                                "for containers in user-defined networks (--network NAME)")
        if (self.ports or publish_all) and not bridged(network):
            raise InvalidOption(f"-p/-P need a bridge network, not --network {network}")
        if network.startswith("container:") and (hostname or self.ports):
            raise InvalidOption("--network container:ID shares that container's network: "
                                "it takes no --hostname or -p of its own")

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> ContainerSpec:
        s = cls.__new__(cls)
        s.__dict__.update(d)
        return s


def endpoints_of(spec: dict) -> dict[str, dict]:
    """The bridge networks a container (its spec as stored) is on: name -> aliases, ip."""
    if "networks" in spec:
        return dict(spec["networks"])
    network = spec.get("network", "none")  # a record from before `network connect`
    return {network: {"aliases": [], "ip": None}} if bridged(network) else {}


def check_aliases(aliases: list[str]) -> list[str]:
    """Network aliases are DNS names: letters, digits, '-', '_' and dots between labels."""
    if not aliases:
        return []  # (and no `import re`: ~5 ms of every run on a bridge)
    import re
    for a in aliases:
        if not re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9_])?", a) or ".." in a:
            raise InvalidOption(f"invalid network alias {a!r}: use a DNS name (letters, "
                                "digits, '-', '_', '.')")
    return list(dict.fromkeys(aliases))


def bridged(network: str) -> bool:
    """Does this --network value give the container its own address on a bridge?"""
    return network not in ("none", "host") and not network.startswith("container:")


def parse_extra(add_host: tuple[str, ...] = (), dns: tuple[str, ...] = (),
                stop_signal: str | None = None, stop_timeout: int | None = None,
                ulimit: tuple[str, ...] = (), device: tuple[str, ...] = (),
                shm_size: str | None = None, cpu_shares: int | None = None,
                cpuset_cpus: str | None = None, memory_swap: str | None = None,
                security_opt: tuple[str, ...] = (), init: bool = False) -> dict:
    """The rarer `run` flags, checked here so a bad value fails before anything is made."""
    import os
    if add_host or dns:
        import _socket  # not socket: its import (enum, selectors) costs berth run ~3 ms
    out: dict = {}
    if init:
        out["init"] = init_binary()
    for h in add_host:
        name, _, ip = h.partition(":")
        try:
            _socket.inet_aton(ip)
        except OSError:
            raise InvalidOption(f"invalid --add-host {h!r}: use NAME:IPv4") from None
        out.setdefault("add_hosts", []).append([name, ip])
    for d in dns:
        try:
            _socket.inet_aton(d)
        except OSError:
            raise InvalidOption(f"invalid --dns {d!r}: an IPv4 address is needed") from None
        out.setdefault("dns", []).append(d)
    if stop_signal:
        from berth.runtime.errors import UsageError
        from berth.runtime.kill import parse_signal
        try:
            parse_signal(stop_signal)
        except UsageError as e:
            raise InvalidOption(f"--stop-signal: {e}") from None
        out["stop_signal"] = stop_signal
    if stop_timeout is not None:
        out["stop_timeout"] = stop_timeout
    for u in ulimit:
        from berth.oci.runtime_config import RLIMITS
        name, _, vals = u.partition("=")
        soft, _, hard = vals.partition(":")
        key = "RLIMIT_" + name.upper()
        if key not in RLIMITS or not soft.lstrip("-").isdigit() or (hard and not
                                                                    hard.lstrip("-").isdigit()):
            raise InvalidOption(f"invalid --ulimit {u!r}: use NAME=SOFT[:HARD], e.g. nofile=1024")
        s_, h_ = int(soft), int(hard or soft)
        inf = (1 << 64) - 1
        out.setdefault("ulimits", []).append({"type": key, "soft": inf if s_ < 0 else s_,
                                              "hard": inf if h_ < 0 else h_})
    for dv in device:
        host, _, rest = dv.partition(":")
        inner, _, perms = rest.partition(":")
        if not host.startswith("/") or not os.path.exists(host):
            raise InvalidOption(f"--device {dv}: {host} does not exist on the host")
        st = os.stat(host)
        import stat as st_mod
        if not (st_mod.S_ISCHR(st.st_mode) or st_mod.S_ISBLK(st.st_mode)):
            raise InvalidOption(f"--device {dv}: {host} is not a device")
        out.setdefault("devices", []).append({
            "path": inner or host, "type": "c" if st_mod.S_ISCHR(st.st_mode) else "b",
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0, "access": perms or "rwm"})
    if shm_size:
        out["shm_size"] = parse_memory(shm_size, "--shm-size")
    if cpu_shares is not None:
        out["cpu_shares"] = cpu_shares
    if cpuset_cpus:
        out["cpuset_cpus"] = cpuset_cpus
    if memory_swap:
        out["memory_swap"] = -1 if memory_swap == "-1" else parse_memory(memory_swap,
                                                                         "--memory-swap")
    for opt in security_opt:
        key, _, val = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "no-new-privileges":
            out["no_new_privileges"] = val in ("", "true")
        elif key == "seccomp":
            if val == "unconfined":
                out["seccomp"] = "unconfined"
            else:
                try:
                    from berth.oci import jsonfast  # json's import costs a run ~5 ms
                    with open(val, "rb") as f:
                        out["seccomp"] = jsonfast.loads(f.read())
                except (OSError, ValueError) as e:
                    raise InvalidOption(f"--security-opt seccomp={val}: {e}") from None
        elif key in ("label", "apparmor"):
            continue  # neither is on these hosts; as docker without them, ignored
        else:
            raise InvalidOption(f"invalid --security-opt {opt!r}")
    return out


INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/libexec/docker/docker-init",
                   "/usr/bin/docker-init")


def init_binary() -> str:
    """The static init --init bind-mounts into the container (tini, as docker's docker-init)."""
    import os
    for path in INIT_CANDIDATES:
        if os.path.isfile(path):
            return path
    raise InvalidOption("--init needs a static tini (Debian package tini: "
                        "/usr/bin/tini-static)")


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
    if not mounts:
        return []
    from berth.engine.volumes import oci_mounts
    return oci_mounts(root, mounts)


def _seccomp(spec: ContainerSpec, extra: dict, caps: set[str]) -> dict:
    """linux.seccomp: --security-opt seccomp=FILE's, none when unconfined or privileged
    (as docker), else the default profile for the container's capabilities."""
    given = extra.get("seccomp")
    if isinstance(given, dict):
        return {"seccomp": given}
    if given == "unconfined" or spec.privileged:
        return {}
    from berth.engine.seccomp_profile import default_profile
    return {"seccomp": default_profile(caps)}


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
    extra = getattr(spec, "extra", None) or {}
    devices = extra.get("devices") or []
    resources: dict = {"devices": [{"allow": spec.privileged, "access": "rwm"}] + [
        {"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
         "access": d["access"]} for d in devices]}
    if spec.memory:
        resources["memory"] = {"limit": spec.memory}
        if extra.get("memory_swap"):
            resources["memory"]["swap"] = extra["memory_swap"]
    cpu: dict = {}
    if spec.cpus:
        cpu.update(quota=int(spec.cpus * 100000), period=100000)
    if extra.get("cpu_shares"):
        cpu["shares"] = extra["cpu_shares"]
    if extra.get("cpuset_cpus"):
        cpu["cpus"] = extra["cpuset_cpus"]
    if cpu:
        resources["cpu"] = cpu
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
            "args": (["/sbin/docker-init", "--"] if extra.get("init") else [])
            + process_args(spec, image_cfg),
            "env": merge_env(image_cfg.get("Env") or [], spec.env
                             + ([f"HOSTNAME={hostname}"] if spec.network != "host" else [])),
            "cwd": spec.workdir or image_cfg.get("WorkingDir") or "/",
            "capabilities": {k: capl for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": bool(extra.get("no_new_privileges")),
            **({"rlimits": extra["ulimits"]} if extra.get("ulimits") else {}),
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
             "options": ["nosuid", "noexec", "nodev", "mode=1777",
                         f"size={extra.get('shm_size') or 67108864}"]},
            *_user_mounts(root, getattr(spec, "mounts", None) or []),
            *([{"destination": "/sbin/docker-init", "type": "bind", "source": extra["init"],
                "options": ["rbind", "ro"]}] if extra.get("init") else []),
        ],
        "linux": {
            "cgroupsPath": cgroup,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": [] if spec.privileged else MASKED,
            "readonlyPaths": [] if spec.privileged else READONLY,
            "devices": [{k: d[k] for k in ("path", "type", "major", "minor", "fileMode", "uid",
                                           "gid")} for d in devices],
            **_seccomp(spec, extra, caps),
        },
        "annotations": {f"org.berth.label.{k}": v for k, v in spec.labels.items()},
    }
