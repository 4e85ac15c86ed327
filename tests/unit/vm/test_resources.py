"""The over-allocation check, against a host of known size."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.vm import resources
from berth.vm.definition import VMSpec
from berth.vm.errors import ResourceError
from berth.vm.store import Store


@pytest.fixture
def small_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "host", lambda: {"cpus": 2, "memory_mib": 1024})


def test_within_the_host(small_host: None, tmp_path: Path) -> None:
    resources.check(VMSpec("a", cpus=2, memory_mib=1024), Store(str(tmp_path)), starting=True)


@pytest.mark.parametrize("spec, words", [
    (VMSpec("a", cpus=3), "asks for 3 vCPUs but the host has 2"),
    (VMSpec("a", memory_mib=2048), "asks for 2048 MiB of RAM but the host has 1024 MiB"),
])
def test_over_the_host(small_host: None, tmp_path: Path, spec: VMSpec, words: str) -> None:
    with pytest.raises(ResourceError, match=words):
        resources.check(spec, Store(str(tmp_path)))
    spec.overcommit = True
    resources.check(spec, Store(str(tmp_path)))


def test_running_vms_count_at_start(small_host: None, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "allocated",
                        lambda store, exclude=None: {"vms": 1, "cpus": 1, "memory_mib": 768})
    store = Store(str(tmp_path))
    resources.check(VMSpec("b", memory_mib=512), store)  # create: fine
    with pytest.raises(ResourceError, match="running vms hold 768 MiB"):
        resources.check(VMSpec("b", memory_mib=512), store, starting=True)
