"""Bridged networking: a tap on berth's own bridge; the host reaches the guest over TCP.

This guest boots the compressed bzImage (vmlinuz) through the firmware, the path most
kernels take; test_lifecycle boots the uncompressed one through PVH.

Needs root (it makes a bridge and a tap). The bridge gets a subnet no one else uses and
is removed at the end; the host's routes, DNS and firewall are not touched.
"""

from __future__ import annotations

import os
import urllib.request

import pytest

from berth.vm import network
from berth.vm.create import create
from berth.vm.definition import parse
from berth.vm.guest import MARKER, Guest, parse_facts
from berth.vm.qemu import tap_name
from berth.vm.start import start, wait_serial
from berth.vm.stop import stop
from berth.vm.store import Store

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.slow]


def _ifaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_host_reaches_guest_on_berths_bridge(guest: Guest, vm_store: Store) -> None:
    n = os.getpid() % 200 + 20
    bridge, host_ip, guest_ip = f"bvt{n}", f"10.213.{n}.1", f"10.213.{n}.2"
    tap = tap_name("br", 0)
    spec = parse({"name": "br", "memory": "192M", "kernel": guest.kernel,
                  "initrd": guest.initrd,
                  "cmdline": f"{guest.cmdline} berth.net={guest_ip}/24",
                  "network": [{"bridge": {"name": bridge, "address": f"{host_ip}/24"}}]})
    create(spec, vm_store)
    try:
        s = start("br", vm_store, accel="tcg")
        facts = parse_facts(wait_serial(vm_store, "br", MARKER, s.log_offset, timeout=120))
        assert facts["net"]["eth0"]["addr"] == f"{guest_ip}/24"
        with urllib.request.urlopen(f"http://{guest_ip}/", timeout=20) as r:
            assert r.read().decode().startswith("BERTH-GUEST-HTTP")
        assert stop("br", vm_store, timeout=60) == "powered off"
        # the tap went with the vm; the bridge stays until removed (other programs' links
        # may come and go meanwhile: only berth's own are looked at)
        assert bridge in _ifaces() and tap not in _ifaces()
    finally:
        if vm_store.get("br").status in ("running", "paused"):
            from berth.vm.stop import kill

            kill("br", vm_store)
        network.remove_bridge(bridge)
    assert bridge not in _ifaces() and tap not in _ifaces()
