"""Host side of a VM's NICs. User-mode NICs need nothing here (qemu's slirp does it all);
a bridged NIC is a tap device on a bridge that berth itself created (pyroute2, netlink).

berth only ever touches interfaces it made: its bridges carry the alias `berth-vm`, and
a bridge of that name without the alias is refused. It never adds routes beyond the
bridge's own subnet, NAT or firewall rules, so the host's default route, DNS and other
programs' firewall chains stay as they were. The bridge stays when the VM stops (like
docker0); remove_bridge() takes it away when no tap is left on it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from berth.vm.errors import VMError

ALIAS = "berth-vm"


def _ipr() -> Any:
    try:
        from pyroute2 import IPRoute
    except ImportError:
        raise VMError("bridge networking needs pyroute2: pip install pyroute2") from None
    return IPRoute()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _alias(ipr: Any, idx: int) -> str | None:
    link = ipr.get_links(idx)[0]
    return link.get_attr("IFLA_IFALIAS")


def ensure_bridge(ipr: Any, name: str, address: str) -> int:
    idx = _index(ipr, name)
    if idx is not None:
        if _alias(ipr, idx) != ALIAS:
            raise VMError(f"bridge {name} exists but berth did not create it: berth only "
                          "attaches vms to its own bridges; pick another name")
        return idx
    iface = ipaddress.ip_interface(address)
    for msg in ipr.get_addr(family=2):
        other = ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        if other.network.overlaps(iface.network):
            raise VMError(f"cannot make bridge {name} with {address}: the host already uses"
                          f" {other} on that subnet; give the bridge another address")
    ipr.link("add", ifname=name, kind="bridge")
    idx = _index(ipr, name)
    assert idx is not None
    ipr.link("set", index=idx, ifalias=ALIAS)
    ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    ipr.link("set", index=idx, state="up")
    return idx


def setup(spec: dict) -> None:
    """Create what the VM's NICs need on the host, before qemu starts."""
    from berth.vm.qemu import tap_name

    bridged = [(i, n) for i, n in enumerate(spec.get("nics", [])) if n["mode"] == "bridge"]
    if not bridged:
        return
    ipr = _ipr()
    made: list[str] = []
    try:
        for i, nic in bridged:
            br = ensure_bridge(ipr, nic["bridge"], nic.get("address") or "10.123.0.1/24")
            tap = tap_name(spec["name"], i)
            old = _index(ipr, tap)
            if old is not None:
                ipr.link("del", index=old)
            ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
            made.append(tap)
            idx = _index(ipr, tap)
            ipr.link("set", index=idx, ifalias=ALIAS, master=br, state="up")
    except VMError:
        _delete(ipr, made)
        raise
    except Exception as e:
        _delete(ipr, made)
        raise VMError(f"cannot set up bridged networking: {e}") from None
    finally:
        ipr.close()


def _delete(ipr: Any, names: list[str]) -> None:
    for n in names:
        idx = _index(ipr, n)
        if idx is not None and _alias(ipr, idx) == ALIAS:
            ipr.link("del", index=idx)


def teardown(spec: dict) -> None:
    """Remove the taps setup() made (safe to call when nothing was made)."""
    from berth.vm.qemu import tap_name

    taps = [tap_name(spec["name"], i) for i, n in enumerate(spec.get("nics", []))
            if n["mode"] == "bridge"]
    if not taps:
        return
    ipr = _ipr()
    try:
        _delete(ipr, taps)
    finally:
        ipr.close()


def remove_bridge(name: str) -> None:
    """Remove one of berth's bridges; refused while taps are on it or if it is not berth's."""
    ipr = _ipr()
    try:
        idx = _index(ipr, name)
        if idx is None:
            return
        if _alias(ipr, idx) != ALIAS:
            raise VMError(f"bridge {name} is not berth's: left alone")
        if any(link.get_attr("IFLA_MASTER") == idx for link in ipr.get_links()):
            raise VMError(f"bridge {name} still has vms on it")
        ipr.link("del", index=idx)
    finally:
        ipr.close()
