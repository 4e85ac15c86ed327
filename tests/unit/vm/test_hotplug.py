"""Hotplug helpers and stats naming, against recorded QMP answers."""

from __future__ import annotations

import pytest

from berth.vm.errors import VMError
from berth.vm.hotplug import free_root_port
from berth.vm.stats import _device


class FakeQMP:
    def __init__(self, answers: dict) -> None:
        self.answers = answers

    def execute(self, command: str, arguments: dict | None = None) -> object:
        return self.answers[command]


def pci(*ports: tuple[str, list]) -> dict:
    return {"query-pci": [{"bus": 0, "devices": [
        {"qdev_id": "", "class_info": {"class": 1536}},
        *({"qdev_id": name, "pci_bridge": {"devices": devs}} for name, devs in ports)]}]}


def test_first_free_port() -> None:
    q = FakeQMP(pci(("hp0", [{"qdev_id": "disk1"}]), ("hp1", [])))
    assert free_root_port(q) == "hp1"  # type: ignore[arg-type]


def test_no_ports_on_pc() -> None:
    assert free_root_port(FakeQMP(pci())) is None  # type: ignore[arg-type]


def test_all_ports_taken() -> None:
    q = FakeQMP(pci(("hp0", [{}]), ("hp1", [{}])))
    with pytest.raises(VMError, match="no free hotplug slot"):
        free_root_port(q)  # type: ignore[arg-type]


def test_block_device_names() -> None:
    assert _device({"qdev": "/machine/peripheral/disk0/virtio-backend"}) == "disk0"
    assert _device({"device": "drive-seed", "qdev": ""}) == "drive-seed"
    assert _device({"node-name": "drive-disk3"}) == "drive-disk3"
