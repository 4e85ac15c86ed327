"""Linux capabilities of the container process: OCI `process.capabilities` to the kernel.

Owns the capability name table, parsing of OCI capability lists (strict, and lenient the way
runc and the runtime-tools suite expect: unknown names are ignored with a warning), dropping
the bounding set and setting the effective/permitted/inheritable/ambient sets.

Must not: decide when these steps run or change uids (the init does: keep_caps_across_setuid,
drop_bounding, setresuid, then apply), or print warnings itself (the caller reports them).
Every kernel call goes through runtime.linux so that unit tests can record them.
"""

from __future__ import annotations

from berth.runtime import linux
from berth.runtime.errors import ConfigError, SetupError

NAMES: dict[str, int] = {
    name: number
    for number, name in enumerate((
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ))
}
_BY_NUMBER = {number: name for name, number in NAMES.items()}

SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

_last_cap: int | None = None


def _probe_last_cap() -> int:
    """The highest capability the bounding set knows, when /proc is not there to ask."""
    last = 0
    while last < 63:
        try:
            linux.prctl(linux.PR_CAPBSET_READ, last + 1)
        except OSError:
            break
        last += 1
    return last


def last_cap() -> int:
    """The highest capability number this kernel supports (cached: read it before pivot_root)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read())
        except (OSError, ValueError):
            _last_cap = _probe_last_cap()
    return _last_cap


def name_of(number: int) -> str:
    return _BY_NUMBER.get(number, f"capability {number}")


def names_of(mask: int) -> list[str]:
    """The capability names set in a mask, lowest number first."""
    return [name_of(n) for n in range(64) if mask >> n & 1]


def _split(caps: object, field: str) -> tuple[int, list[str], list[str]]:
    """(mask, names unknown to berth, names known but above this kernel's last capability)"""
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ConfigError(field, "must be a list of capability names such as 'CAP_CHOWN'")
    last = last_cap()
    mask = 0
    unknown: list[str] = []
    unsupported: list[str] = []
    for cap in caps:
        number = NAMES.get(cap)
        if number is None:
            unknown.append(cap)
        elif number > last:
            unsupported.append(cap)
        else:
            mask |= 1 << number
    return mask, unknown, unsupported


def parse(names: list[str], field: str) -> int:
    """A strict capability list: any name this kernel cannot apply is a ConfigError."""
    mask, unknown, unsupported = _split(names, field)
    if unknown:
        raise ConfigError(field, f"unknown capability {unknown[0]!r}")
    if unsupported:
        raise ConfigError(field, f"capability {unsupported[0]!r} is not supported by this "
                                 f"kernel (its last capability is {last_cap()})")
    return mask


def parse_lenient(names: list[str], field: str) -> tuple[int, list[str]]:
    """A capability list as runc reads it: the mask, and the names to warn about and ignore
    (unknown to berth, or above this kernel's last capability)."""
    mask, unknown, unsupported = _split(names, field)
    return mask, unknown + unsupported


class Capabilities:
    """The five capability sets of the container process, as 64-bit masks."""

    def __init__(self, bounding: int = 0, effective: int = 0, inheritable: int = 0,
                 permitted: int = 0, ambient: int = 0) -> None:
        self.bounding = bounding
        self.effective = effective
        self.inheritable = inheritable
        self.permitted = permitted
        self.ambient = ambient
        self.last = last_cap()  # read now: drop_bounding() runs after pivot_root
        self.warnings: list[str] = []

    @classmethod
    def from_config(cls, caps: dict | None,
                    field: str = "process.capabilities") -> Capabilities:
        """Parse OCI process.capabilities; a missing set is empty. An unknown name is a
        ConfigError; a known one this kernel lacks is ignored and described in .warnings."""
        if caps is None:
            return cls()
        if not isinstance(caps, dict):
            raise ConfigError(field, "must be an object")
        masks: dict[str, int] = {}
        warnings = []
        for set_name in SETS:
            value = caps.get(set_name)
            if value is None:
                masks[set_name] = 0
                continue
            masks[set_name], unknown, unsupported = _split(value, f"{field}.{set_name}")
            if unknown:  # a typo must not silently run the container with other privileges
                raise ConfigError(f"{field}.{set_name}", f"unknown capability {unknown[0]!r}")
            for cap in unsupported:  # a newer capability than this kernel knows: runc ignores it
                warnings.append(f"{field}.{set_name}: ignoring capability {cap!r} "
                                "(not supported by this kernel)")
        result = cls(**masks)
        skipped = result.ambient & ~(result.permitted & result.inheritable)
        for cap in names_of(skipped):
            warnings.append(f"{field}.ambient: {cap} is not raised: it is not in both the "
                            "permitted and inheritable sets")
        result.warnings = warnings
        return result

    def __repr__(self) -> str:
        sets = ", ".join(f"{s}={getattr(self, s):#x}" for s in SETS)
        return f"Capabilities({sets})"

    def drop_bounding(self) -> None:
        """Drop from the bounding set every capability not in `bounding` (needs CAP_SETPCAP,
        so call it before setresuid)."""
        for number in range(self.last + 1):
            if self.bounding >> number & 1:
                continue
            try:
                linux.prctl(linux.PR_CAPBSET_DROP, number)
            except OSError as e:
                raise SetupError(f"cannot drop {name_of(number)} from the bounding set: "
                                 f"{e.strerror}") from e

    def apply(self) -> None:
        """Set effective, permitted and inheritable, then exactly the ambient set (after
        setresuid; with keep_caps_across_setuid() when the uid is not 0)."""
        if self.effective & ~self.permitted:
            raise SetupError(f"effective capability {names_of(self.effective & ~self.permitted)[0]}"
                             " is not in the permitted set; add it to process.capabilities"
                             ".permitted")
        # the kernel only raises an ambient capability that is permitted and inheritable;
        # runc skips the others and so does berth (from_config warned about them)
        ambient = self.ambient & self.permitted & self.inheritable
        try:
            linux.capset(self.effective, self.permitted, self.inheritable)
        except OSError as e:
            raise SetupError(f"cannot set capabilities (effective {names_of(self.effective)}, "
                             f"permitted {names_of(self.permitted)}, inheritable "
                             f"{names_of(self.inheritable)}): {e.strerror}") from e
        try:
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError as e:
            if self.ambient:  # EINVAL before Linux 4.3: fine as long as nothing is asked
                raise SetupError(f"cannot clear the ambient capabilities: {e.strerror}") from e
        for number in range(self.last + 1):
            if ambient >> number & 1:
                try:
                    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, number)
                except OSError as e:
                    raise SetupError(f"cannot raise ambient capability {name_of(number)}: "
                                     f"{e.strerror}") from e


def keep_caps_across_setuid() -> None:
    """Keep the permitted set when setresuid leaves uid 0 (the effective set is still cleared)."""
    try:
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    except OSError as e:
        raise SetupError(f"cannot set PR_SET_KEEPCAPS: {e.strerror}") from e
