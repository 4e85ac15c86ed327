"""`vm import-libvirt`: a VM definition from the common subset of libvirt's domain XML.

Understood: name, memory/currentMemory (with unit), vcpu, os/type machine, os/kernel,
os/initrd, os/cmdline, devices/disk (file or block source, device disk, driver type
qcow2|raw, readonly), devices/interface (user, bridge, network -> berth's bridge; mac),
devices/input type=tablet bus=usb, devices/controller type=usb. What is not understood
is listed back to the user (`ignored`), never dropped silently; the result is checked by
the same parser as YAML, so a missing kernel or disk is the same clear error.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

from berth.vm.definition import VMSpec, parse
from berth.vm.errors import DefinitionError

_UNITS = {"b": 1, "bytes": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20,
          "mib": 1 << 20, "mb": 10**6, "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
          "t": 1 << 40, "tib": 1 << 40}
_KNOWN_TOP = {"name", "memory", "currentMemory", "vcpu", "os", "devices", "uuid", "title",
              "description", "on_poweroff", "on_reboot", "on_crash", "features", "clock",
              "cpu", "metadata"}
_QUIET_DEVICES = {"emulator", "serial", "console", "channel", "graphics", "video",
                  "memballoon", "rng", "controller", "input"}


def _mem(el: ET.Element, source: str) -> int:
    unit = el.get("unit", "KiB").lower()
    if unit not in _UNITS or not (el.text or "").strip().isdigit():
        raise DefinitionError(el.tag, f"cannot read {el.text!r} {unit}", source)
    return int(el.text.strip()) * _UNITS[unit]  # type: ignore[union-attr]


def convert(xml_text: str, source: str = "domain.xml") -> tuple[dict, list[str]]:
    """(a berth definition document, what was ignored)."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise DefinitionError("(file)", f"not valid XML: {e}", source) from None
    if root.tag != "domain":
        raise DefinitionError("(top)", f"expected <domain>, got <{root.tag}>", source)
    ignored = [f"<{c.tag}>" for c in root if c.tag not in _KNOWN_TOP]
    doc: dict[str, Any] = {"name": (root.findtext("name") or "").strip()}
    mem = root.find("memory")
    if mem is not None:
        doc["memory"] = f"{_mem(mem, source) >> 20}M"
    vcpu = root.findtext("vcpu")
    if vcpu:
        doc["cpus"] = int(vcpu.strip())
    os_el = root.find("os")
    if os_el is not None:
        t = os_el.find("type")
        if t is not None and t.get("machine"):
            m = t.get("machine", "")
            doc["machine"] = "q35" if "q35" in m else "pc" if m.startswith("pc") else m
        for key in ("kernel", "initrd", "cmdline"):
            v = os_el.findtext(key)
            if v:
                doc[key] = v.strip()
    if root.get("type") == "kvm":
        doc["accel"] = "auto"
    disks: list[dict] = []
    nets: list[Any] = []
    usb: list[Any] = []
    devices = root.find("devices")
    for dev in devices if devices is not None else []:
        if dev.tag == "disk":
            src = dev.find("source")
            path = src.get("file") or src.get("dev") if src is not None else None
            if dev.get("device", "disk") != "disk" or not path:
                ignored.append(f"<disk device={dev.get('device')}>")
                continue
            d: dict[str, Any] = {"path": path}
            drv = dev.find("driver")
            if drv is not None and drv.get("type") in ("qcow2", "raw"):
                d["format"] = drv.get("type")
            if dev.find("readonly") is not None:
                d["readonly"] = True
            disks.append(d)
        elif dev.tag == "interface":
            kind = dev.get("type")
            mac = dev.find("mac")
            opts: dict[str, Any] = {}
            if mac is not None and mac.get("address"):
                opts["mac"] = mac.get("address")
            if kind == "user":
                nets.append({"user": opts})
            elif kind in ("bridge", "network"):
                src = dev.find("source")
                name = src.get("bridge") if src is not None and kind == "bridge" else None
                opts["name"] = name or "berth0"
                nets.append({"bridge": opts})
            else:
                ignored.append(f"<interface type={kind}>")
        elif dev.tag == "input" and dev.get("type") == "tablet" and dev.get("bus") == "usb":
            usb.append("tablet")
        elif dev.tag not in _QUIET_DEVICES:
            ignored.append(f"<devices><{dev.tag}>")
    if disks:
        doc["disks"] = disks
    if nets:
        doc["network"] = nets
    if usb:
        doc["usb"] = usb
    return doc, ignored


def load(path: str) -> tuple[VMSpec, list[str]]:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise DefinitionError("(file)", f"{path}: no such file", path) from None
    doc, ignored = convert(text, path)
    return parse(doc, source=path, base_dir=os.path.dirname(os.path.abspath(path))), ignored
