"""The VM definition: one spec type, parsed strictly from YAML or from `vm create` flags.

Unknown fields are an error naming their path (`disks[1].sise: unknown field`); every
value is checked for its type and range here, at the edge, so the rest of berth/vm can
trust a VMSpec. File paths are made absolute and must exist (kernel, initrd, image,
disk paths and bases); a missing file is the same one clear error.

YAML (every field but name optional; memory as 512M/1G or MiB; disk sizes as 1G or bytes):

    name: web
    cpus: 2
    memory: 512M
    accel: auto            # auto | kvm | tcg
    machine: q35
    kernel: /boot/vmlinuz  # direct kernel boot ...
    initrd: /boot/initrd.img
    cmdline: console=ttyS0
    image: cloud.qcow2     # ... or boot from a disk image (thin-cloned, never written)
    disks:
      - size: 1G           # a new empty qcow2
      - path: data.qcow2   # an existing image, used in place
      - from: base.qcow2   # a thin clone (qcow2 with a backing file), optionally grown
        size: 10G
    network:
      - user: {hostfwd: ["tcp::2222-:22"]}   # user-mode: no root, port forwards
      - bridge: {name: berth-vm0, address: 10.123.0.1/24}   # a tap on berth's own bridge
    usb:
      - tablet
      - storage: stick.img
    cloud_init:
      hostname: web
      users: [...]
      ssh_authorized_keys: [...]
      runcmd: [...]
      user_data: user-data.yaml   # or a whole #cloud-config file instead of the keys above
    overcommit: false
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from berth.vm.errors import DefinitionError
from berth.vm.fields import Reader, existing, parse_size
from berth.vm.store import check_name

__all__ = ["CloudInit", "Disk", "Nic", "Usb", "VMSpec", "from_flags", "load_yaml", "parse",
           "parse_size"]

_HOSTFWD_RE = re.compile(r"^(tcp|udp):([0-9.]*):(\d+)-([0-9.]*):(\d+)$")
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", re.IGNORECASE)
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_BRIDGE = "berth-vm0"
DEFAULT_BRIDGE_ADDRESS = "10.123.0.1/24"
ACCELS = ("auto", "kvm", "tcg")
MACHINES = ("q35", "pc")
MAX_CPUS = 255


@dataclass
class Disk:
    size: int | None = None      # bytes: a new disk, or the size to grow a clone to
    path: str | None = None      # an existing image, used in place
    base: str | None = None      # `from:` a thin clone of this image
    format: str = "qcow2"
    readonly: bool = False
    id: str | None = None        # the qemu device id (disk0), fixed at create / disk add
    file: str | None = None      # the image berth made for it (removed with the vm)


@dataclass
class Nic:
    mode: str                    # user | bridge
    hostfwd: list[str] = field(default_factory=list)
    bridge: str | None = None
    address: str | None = None   # the bridge's host address (CIDR), when berth creates it
    mac: str | None = None


@dataclass
class Usb:
    kind: str                    # tablet | storage
    path: str | None = None
    id: str | None = None        # the qemu device id (usb0)


@dataclass
class CloudInit:
    hostname: str | None = None
    users: list[Any] = field(default_factory=list)
    ssh_authorized_keys: list[str] = field(default_factory=list)
    runcmd: list[Any] = field(default_factory=list)
    user_data: str | None = None  # path of a complete user-data file


@dataclass
class VMSpec:
    name: str
    cpus: int = 1
    memory_mib: int = 512
    accel: str = "auto"
    machine: str = "q35"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    image: str | None = None
    disks: list[Disk] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    usb: list[Usb] = field(default_factory=list)
    cloud_init: CloudInit | None = None
    overcommit: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VMSpec:
        """The inverse of to_dict (for records berth itself stored; no validation)."""
        d = dict(d)
        d["disks"] = [Disk(**x) for x in d.get("disks", [])]
        d["nics"] = [Nic(**x) for x in d.get("nics", [])]
        d["usb"] = [Usb(**x) for x in d.get("usb", [])]
        if d.get("cloud_init") is not None:
            d["cloud_init"] = CloudInit(**d["cloud_init"])
        return cls(**d)


def parse(data: object, source: str = "definition", base_dir: str | None = None) -> VMSpec:
    """A VMSpec from a decoded YAML document; relative paths are taken from base_dir."""
    base_dir = base_dir or os.getcwd()
    r = Reader(data, "", source)
    name = r.get("name", str)
    if name is None:
        raise r.err("name", "missing: every vm needs a name")
    try:
        check_name(name)
    except DefinitionError as e:
        raise DefinitionError("name", e.problem, source) from None
    spec = VMSpec(name=name)
    cpus = r.get("cpus", int, 1)
    if not 1 <= cpus <= MAX_CPUS:
        raise r.err("cpus", f"must be between 1 and {MAX_CPUS}, got {cpus}")
    spec.cpus = cpus
    mem = r.get("memory", (str, int))
    if mem is not None:
        b = parse_size(mem, r.at("memory"), "M", source)
        if b < 16 << 20:
            raise r.err("memory", "must be at least 16M")
        spec.memory_mib = b >> 20
    spec.accel = r.get("accel", str, "auto")
    if spec.accel not in ACCELS:
        raise r.err("accel", f"{spec.accel!r} is not one of {', '.join(ACCELS)}")
    spec.machine = r.get("machine", str, "q35")
    if spec.machine not in MACHINES:
        raise r.err("machine", f"{spec.machine!r} is not one of {', '.join(MACHINES)}")
    for key in ("kernel", "initrd", "image"):
        v = r.get(key, str)
        if v is not None:
            setattr(spec, key, existing(v, r.at(key), source, base_dir))
    spec.cmdline = r.get("cmdline", str)
    if spec.kernel and spec.image:
        raise r.err("image", "give either kernel (direct boot) or image (disk boot), not both")
    if (spec.initrd or spec.cmdline) and not spec.kernel:
        raise r.err("kernel", "missing: initrd and cmdline need a kernel")
    if not spec.kernel and not spec.image:
        raise r.err("kernel", "missing: give kernel (direct boot) or image (disk boot)")
    for i, d in enumerate(r.get("disks", list, [])):
        spec.disks.append(_disk(d, r.at("disks") + f"[{i}]", source, base_dir))
    for i, n in enumerate(r.get("network", list, [])):
        nic = _nic(n, r.at("network") + f"[{i}]", source)
        if nic is not None:
            spec.nics.append(nic)
    for i, u in enumerate(r.get("usb", list, [])):
        spec.usb.append(_usb(u, r.at("usb") + f"[{i}]", source, base_dir))
    ci = r.get("cloud_init", dict)
    if ci is not None:
        spec.cloud_init = _cloud_init(ci, r.at("cloud_init"), source, base_dir)
    spec.overcommit = r.get("overcommit", bool, False)
    r.done()
    return spec


def _disk(data: object, path: str, source: str, base_dir: str) -> Disk:
    r = Reader(data, path, source)
    d = Disk()
    size = r.get("size", (str, int))
    if size is not None:
        d.size = parse_size(size, r.at("size"), "", source)
    p, base = r.get("path", str), r.get("from", str)
    d.format = r.get("format", str, "qcow2")
    if d.format not in ("qcow2", "raw"):
        raise r.err("format", f"{d.format!r} is not one of qcow2, raw")
    d.readonly = r.get("readonly", bool, False)
    r.done()
    if sum(x is not None for x in (p, base)) > 1:
        raise DefinitionError(path, "give one of path, from", source)
    if p is not None:
        if d.size is not None:
            raise r.err("size", "an existing disk (path) keeps its size; resize it with qemu-img")
        d.path = existing(p, r.at("path"), source, base_dir)
    elif base is not None:
        d.base = existing(base, r.at("from"), source, base_dir)
    elif d.size is None:
        raise DefinitionError(path, "give size (a new disk), path (an image) or from (a clone)",
                              source)
    if d.format == "raw" and (d.base or d.size is not None and d.path is None):
        d.format = "qcow2"  # berth creates qcow2 images; raw is only for existing files
    return d


def _nic(data: object, path: str, source: str) -> Nic | None:
    if data == "none":
        return None
    if isinstance(data, str):
        data = {data: {}}
    if not isinstance(data, dict) or len(data) != 1:
        raise DefinitionError(path, "expected one of user, bridge, none (a mapping with one"
                              " key, e.g. user: {hostfwd: [tcp::8080-:80]})", source)
    mode, opts = next(iter(data.items()))
    r = Reader(opts or {}, f"{path}.{mode}", source)
    if mode == "user":
        fwds = r.get("hostfwd", list, [])
        for i, f in enumerate(fwds):
            if not isinstance(f, str) or not _HOSTFWD_RE.match(f):
                raise r.err("hostfwd", f"[{i}] {f!r} is not PROTO:[HOSTADDR]:PORT-[GUESTADDR]:"
                            "PORT (e.g. tcp::2222-:22)")
        nic = Nic("user", hostfwd=list(fwds))
    elif mode == "bridge":
        nic = Nic("bridge", bridge=r.get("name", str, DEFAULT_BRIDGE),
                  address=r.get("address", str, DEFAULT_BRIDGE_ADDRESS))
        if not 1 <= len(nic.bridge or "") <= 15 or not _IFNAME_RE.match(nic.bridge or ""):
            raise r.err("name", f"{nic.bridge!r} is not an interface name (1-15 letters,"
                        " digits, '-', '_')")
        import ipaddress

        try:
            iface = ipaddress.ip_interface(nic.address or "")
        except ValueError:
            iface = None
        if iface is None or iface.version != 4 or iface.network.prefixlen > 30 or \
                iface.ip == iface.network.network_address:
            raise r.err("address", f"{nic.address!r} is not a host address with its prefix"
                        " (e.g. 10.123.0.1/24)")
    else:
        raise DefinitionError(path, f"unknown network mode {mode!r}: use user, bridge or none",
                              source)
    mac = r.get("mac", str)
    if mac is not None and not _MAC_RE.match(mac):
        raise r.err("mac", f"{mac!r} is not a MAC address")
    nic.mac = mac
    r.done()
    return nic


def _usb(data: object, path: str, source: str, base_dir: str) -> Usb:
    if data == "tablet":
        return Usb("tablet")
    if isinstance(data, dict) and list(data) == ["storage"] and isinstance(data["storage"], str):
        return Usb("storage", existing(data["storage"], f"{path}.storage", source, base_dir))
    raise DefinitionError(path, "expected `tablet` or `storage: IMAGE`", source)


def _cloud_init(data: dict, path: str, source: str, base_dir: str) -> CloudInit:
    r = Reader(data, path, source)
    ci = CloudInit(hostname=r.get("hostname", str), users=r.get("users", list, []),
                   ssh_authorized_keys=r.get("ssh_authorized_keys", list, []),
                   runcmd=r.get("runcmd", list, []))
    ud = r.get("user_data", str)
    if ud is not None:
        if ci.users or ci.ssh_authorized_keys or ci.runcmd:
            raise r.err("user_data", "give either a user_data file or users/"
                        "ssh_authorized_keys/runcmd, not both")
        ci.user_data = existing(ud, r.at("user_data"), source, base_dir)
    for i, k in enumerate(ci.ssh_authorized_keys):
        if not isinstance(k, str):
            raise r.err("ssh_authorized_keys", f"[{i}] expected a string")
    r.done()
    return ci


def load_yaml(path: str) -> VMSpec:
    """Parse a definition file (PyYAML's C loader when present)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader
    except FileNotFoundError:
        raise DefinitionError("(file)", f"{path}: no such file", path) from None
    except yaml.YAMLError as e:
        raise DefinitionError("(file)", f"not valid YAML: {e}", path) from None
    return parse(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def from_flags(name: str, **flags: Any) -> VMSpec:
    """A VMSpec from `vm create` flags (see berth.vm.flags)."""
    from berth.vm.flags import from_flags as convert

    return convert(name, **flags)
