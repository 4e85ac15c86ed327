"""Plugging devices into a running qemu through QMP: blockdev-add + device_add, and
device_del (waiting until the guest lets go) + blockdev-del. Used by `vm disk` and
`vm usb`; the verbs themselves keep the definition in step.
"""

from __future__ import annotations

import time

from berth.vm.errors import QMPError, VMError
from berth.vm.qmp import QMP


def free_root_port(q: QMP) -> str | None:
    """A spare PCIe root port (hp0, hp1, ...) with nothing plugged in; None on a pc machine."""
    ports: dict[str, bool] = {}
    for bus in q.execute("query-pci"):
        for dev in bus["devices"]:
            bridge = dev.get("pci_bridge")
            qid = dev.get("qdev_id", "")
            if bridge is not None and qid.startswith("hp"):
                ports[qid] = bool(bridge.get("devices"))
    if not ports:
        return None
    free = sorted(p for p, used in ports.items() if not used)
    if not free:
        raise VMError("no free hotplug slot: remove a hot-added disk first, or stop the vm and "
                      "add the disk while it is stopped")
    return free[0]


def attach_block(q: QMP, node: str, path: str, fmt: str, device: dict) -> None:
    q.execute("blockdev-add", {"driver": fmt, "node-name": node,
                               "file": {"driver": "file", "filename": path}})
    try:
        q.execute("device_add", device)
    except QMPError:
        try:
            q.execute("blockdev-del", {"node-name": node})
        except QMPError:
            pass
        raise


def _peripherals(q: QMP) -> set[str]:
    return {p["name"] for p in q.execute("qom-list", {"path": "/machine/peripheral"})}


def detach(q: QMP, device: str, node: str | None, timeout: float = 30.0) -> None:
    """Unplug `device` and wait until qemu reports it gone; then drop its block node."""
    q.execute("device_del", {"id": device})
    deadline = time.monotonic() + timeout
    while device in _peripherals(q):
        if time.monotonic() > deadline:
            raise VMError(f"the guest did not release {device} within {timeout:g}s")
        time.sleep(0.1)
    if node:
        try:
            q.execute("blockdev-del", {"node-name": node})
        except QMPError:
            pass  # a -drive backend goes with its device
