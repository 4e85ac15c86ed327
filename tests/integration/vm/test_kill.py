"""A qemu that dies shows stopped; `vm kill` ends one; --accel auto uses the KVM verdict.

No guest needs to finish booting here: qemu is killed right after it starts.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from berth.vm import kvm
from berth.vm.create import create
from berth.vm.definition import from_flags
from berth.vm.guest import Guest
from berth.vm.start import start
from berth.vm.store import Store

from .conftest import berth, qemu_pids

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def defined(guest: Guest, vm_store: Store) -> str:
    spec = from_flags("k", memory="128M", kernel=guest.kernel, initrd=guest.initrd,
                      cmdline=guest.cmdline, disks=("size=16M",))
    create(spec, vm_store)
    return "k"


def test_auto_accel_probes_kvm_and_says_why_not(defined: str, vm_store: Store) -> None:
    # the session's probe (conftest.kvm_verdict) test-booted a guest under -accel kvm
    verdict = kvm.cached(vm_store.root)
    assert verdict is not None
    if os.path.exists("/dev/kvm") and not verdict.usable:
        assert "did not boot within" in verdict.reason or "cannot open" in verdict.reason
    s = start(defined, vm_store, accel="auto")
    if verdict.usable:
        assert s.record.accel == "kvm" and s.note is None
    else:
        assert s.record.accel == "tcg"
        assert s.note is not None and s.note.startswith("kvm unusable: ")
        assert s.note.endswith("; using TCG (software emulation)")
    # the verdict is cached: a second choice costs nothing
    t = time.monotonic()
    assert kvm.choose("auto", vm_store.root)[0] == s.record.accel
    assert time.monotonic() - t < 1


def test_a_qemu_that_died_shows_stopped(defined: str, vm_store: Store) -> None:
    pid = vm_store.get(defined).pid
    assert pid and qemu_pids(vm_store.root) == [pid]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while qemu_pids(vm_store.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    (row,) = json.loads(berth(vm_store, "ls", "--format", "json").stdout)
    assert (row["status"], row["pid"]) == ("stopped", None)
    assert not os.path.exists(vm_store.paths(defined).qmp)


def test_stop_quits_a_guest_that_ignores_the_power_button(defined: str,
                                                         vm_store: Store) -> None:
    # right after start the guest is still in its firmware: no one handles the button
    assert berth(vm_store, "start", defined, "--accel", "tcg").returncode == 0
    p = berth(vm_store, "stop", defined, "--timeout", "0.5")
    assert p.returncode == 0, p.stderr
    assert "(quit)" in p.stdout
    assert not qemu_pids(vm_store.root)
    assert vm_store.get(defined).status == "stopped"


def test_vm_kill(defined: str, vm_store: Store) -> None:
    p = berth(vm_store, "start", defined, "--accel", "tcg")
    assert p.returncode == 0, p.stderr
    assert len(qemu_pids(vm_store.root)) == 1
    p = berth(vm_store, "kill", defined)
    assert p.returncode == 0, p.stderr
    assert not qemu_pids(vm_store.root)
    assert vm_store.get(defined).status == "stopped"
    p = berth(vm_store, "rm", defined)
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(vm_store.paths(defined).dir)
