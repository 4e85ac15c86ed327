"""`vm create` flags to a VMSpec: the flags become the same document a YAML file would be,
checked by the same parser (berth.vm.definition.parse), so both fronts fail alike.
"""

from __future__ import annotations

from typing import Any

from berth.vm.definition import VMSpec, parse
from berth.vm.errors import DefinitionError


def from_flags(name: str, *, cpus: int = 1, memory: str = "512M", accel: str = "auto",
               machine: str = "q35", kernel: str | None = None, initrd: str | None = None,
               cmdline: str | None = None, image: str | None = None,
               disks: tuple[str, ...] = (), networks: tuple[str, ...] = (),
               usb: tuple[str, ...] = (), cloud_init: str | None = None,
               overcommit: bool = False) -> VMSpec:
    """A VMSpec from `vm create` flags, checked by the same parser as YAML."""
    doc: dict[str, Any] = {"name": name, "cpus": cpus, "memory": memory, "accel": accel,
                           "machine": machine, "overcommit": overcommit}
    for k, v in (("kernel", kernel), ("initrd", initrd), ("cmdline", cmdline),
                 ("image", image)):
        if v is not None:
            doc[k] = v
    doc["disks"] = [_kv(d, f"--disk {d}") for d in disks]
    doc["network"] = [_net_flag(n) for n in networks]
    doc["usb"] = [("tablet" if u == "tablet" else _kv(u, f"--usb {u}")) for u in usb]
    if cloud_init is not None:
        doc["cloud_init"] = {"user_data": cloud_init}
    return parse(doc, source="flags")


def _kv(text: str, where: str) -> dict:
    out: dict[str, Any] = {}
    for part in text.split(","):
        k, eq, v = part.partition("=")
        if not eq or not k:
            raise DefinitionError(where, f"{part!r} is not KEY=VALUE", "flags")
        out[k.strip()] = {"true": True, "false": False}.get(v, v) if k == "readonly" else v
    return out


def _net_flag(text: str) -> object:
    mode, _, rest = text.partition(",")
    if mode == "none":
        return "none"
    opts: dict[str, Any] = {}
    if mode.startswith("bridge="):
        mode, opts["name"] = "bridge", mode.partition("=")[2]
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        if k == "hostfwd":
            opts.setdefault("hostfwd", []).append(v)
        else:
            opts[k] = v
    return {mode: opts}
