"""Bad input gives one clear error, starts nothing and leaves nothing behind."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from berth.vm.guest import Guest
from berth.vm.resources import host
from berth.vm.store import Store

from .conftest import berth, qemu_pids


def nothing_left(store: Store) -> None:
    assert store.all() == []
    assert os.listdir(os.path.join(store.root, "vms")) == []
    assert not qemu_pids(store.root)


def one_error(p: object, *words: str) -> str:
    assert p.returncode == 1, (p.stdout, p.stderr)  # type: ignore[attr-defined]
    lines = p.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path / "state"))
    s.db  # noqa: B018 - make the database and vms/ so that nothing_left can look
    yield s
    s.close()


def test_unknown_yaml_field(store: Store, guest: Guest, tmp_path: Path) -> None:
    f = tmp_path / "vm.yaml"
    f.write_text(f"name: bad\nkernel: {guest.kernel}\ndisks:\n  - size: 1G\n    sise: 2G\n")
    one_error(berth(store, "define", "-f", str(f)), "disks[0].sise: unknown field")
    nothing_left(store)


def test_more_ram_than_the_host(store: Store, guest: Guest) -> None:
    too_much = host()["memory_mib"] + 1024
    one_error(berth(store, "create", "big", "--memory", f"{too_much}M", "--kernel",
                    guest.kernel, "--disk", "size=1G"), "MiB of RAM but the host has",
              "--overcommit")
    nothing_left(store)


def test_more_vcpus_than_the_host(store: Store, guest: Guest) -> None:
    one_error(berth(store, "create", "wide", "--cpus", str(host()["cpus"] + 1), "--kernel",
                    guest.kernel), "vCPUs but the host has")
    nothing_left(store)


def test_missing_kernel(store: Store) -> None:
    one_error(berth(store, "create", "nok", "--kernel", "/no/such/vmlinuz"),
              "kernel: /no/such/vmlinuz: no such file")
    nothing_left(store)


def test_missing_boot_image(store: Store) -> None:
    one_error(berth(store, "create", "noi", "--image", "/no/such/cloud.qcow2"),
              "image: /no/such/cloud.qcow2: no such file")
    nothing_left(store)


def test_missing_base_image(store: Store, guest: Guest) -> None:
    one_error(berth(store, "create", "nob", "--kernel", guest.kernel, "--disk",
                    "from=/no/such/base.qcow2"), "disks[0].from", "no such file")
    nothing_left(store)


@pytest.mark.vm
def test_qemu_refusing_to_start_leaves_nothing_running(store: Store, guest: Guest) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = berth(store, "create", "fwd", "--kernel", guest.kernel, "--initrd", guest.initrd,
                  "--memory", "128M", "--network", f"user,hostfwd=tcp::{port}-:80")
        assert p.returncode == 0, p.stderr
        one_error(berth(store, "start", "fwd", "--accel", "tcg"), "qemu could not start",
                  "host forwarding")
    assert not qemu_pids(store.root)
    assert store.get("fwd").status == "created"
    paths = store.paths("fwd")
    assert not os.path.exists(paths.qmp) and not os.path.exists(paths.pidfile)
    assert berth(store, "rm", "fwd").returncode == 0
    nothing_left(store)


def test_start_after_the_kernel_vanished(store: Store, guest: Guest, tmp_path: Path) -> None:
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"not really a kernel")
    assert berth(store, "create", "gone", "--kernel", str(k)).returncode == 0
    k.unlink()
    one_error(berth(store, "start", "gone", "--accel", "tcg"), "no such file")
    assert not qemu_pids(store.root)
    assert berth(store, "rm", "gone").returncode == 0
    nothing_left(store)


def test_unknown_vm(store: Store) -> None:
    one_error(berth(store, "start", "ghost"), "vm 'ghost' does not exist")
