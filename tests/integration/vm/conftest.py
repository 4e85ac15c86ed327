"""Fixtures for tests that boot VMs: the test guest, a private state directory, helpers.

Every fixture cleans up what it made, whatever the outcome: qemu processes it started
(found by the state directory on their command line), sockets, disks, the database.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from berth.vm.guest import Guest, build
from berth.vm.store import Store

BERTH = str(Path(sys.executable).parent / "berth")


@pytest.fixture(scope="session")
def guest() -> Guest:
    return build()


def qemu_pids(marker: str) -> list[int]:
    """Pids of live qemu processes whose command line mentions `marker`."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if b"qemu-system" in cmd and marker.encode() in cmd and stat[
                stat.rindex(b")") + 2:][:1] not in (b"Z", b"X"):
            pids.append(int(d))
    return pids


def cleanup_store(store: Store) -> None:
    for pid in qemu_pids(store.root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while qemu_pids(store.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    for rec in store.all():
        store.delete(rec.name)
    store.close()


@pytest.fixture(scope="session")
def kvm_verdict(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The KVM probe, run once per session (it test-boots a guest: up to 10 s here)."""
    from berth.vm import kvm

    state = tmp_path_factory.mktemp("kvmprobe")
    kvm.probe(str(state))
    return state / "kvm.json"


@pytest.fixture(scope="module")
def vm_store(tmp_path_factory: pytest.TempPathFactory, kvm_verdict: Path) -> Store:
    """A private state directory, holding the session's KVM verdict so no test probes again."""
    store = Store(str(tmp_path_factory.mktemp("vmstate")))
    shutil.copy(kvm_verdict, os.path.join(store.root, "kvm.json"))
    yield store
    cleanup_store(store)


def berth(store: Store, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `berth vm ...` command against the store's state directory."""
    env = dict(os.environ, BERTH_STATE_DIR=store.root)
    return subprocess.run([BERTH, "vm", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
