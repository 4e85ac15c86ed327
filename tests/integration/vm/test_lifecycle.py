"""One test guest booted under TCG, checked from its serial console and from the host.

The guest boots once for the whole module (about 6 s under TCG with the uncompressed
kernel through PVH); the tests run in file order and the last one stops it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.vm import console, disk, snapshot, usb
from berth.vm.create import create
from berth.vm.definition import from_flags
from berth.vm.guest import MARKER, Guest, parse_facts
from berth.vm.start import start, wait_serial
from berth.vm.stats import stats
from berth.vm.store import Store

from .conftest import BERTH, berth, free_port, qemu_pids

pytestmark = [pytest.mark.vm, pytest.mark.slow]
CPUS, MEMORY_MIB, DISK_MIB = 2, 256, 64


@dataclass
class Booted:
    store: Store
    name: str
    facts: dict
    port: int
    pid: int


@pytest.fixture(scope="module")
def booted(guest: Guest, vm_store: Store) -> Booted:
    port = free_port()
    spec = from_flags("life", cpus=CPUS, memory=f"{MEMORY_MIB}M", accel="tcg",
                      kernel=guest.vmlinux or guest.kernel, initrd=guest.initrd,
                      cmdline=guest.cmdline, disks=(f"size={DISK_MIB}M",),
                      networks=(f"user,hostfwd=tcp::{port}-:80",), usb=("tablet",))
    create(spec, vm_store)
    s = start("life", vm_store)
    out = wait_serial(vm_store, "life", MARKER, s.log_offset, timeout=120)
    assert s.record.pid is not None
    return Booted(vm_store, "life", parse_facts(out), port, s.record.pid)


def test_vcpus_as_asked(booted: Booted) -> None:
    assert booted.facts["nproc"] == CPUS


def test_memtotal_matches_ram(booted: Booted) -> None:
    # MemTotal is the RAM less what the kernel keeps for itself
    assert 0.75 * MEMORY_MIB * 1024 < booted.facts["memtotal_kb"] <= MEMORY_MIB * 1024


def test_virtio_disk_has_its_size(booted: Booted) -> None:
    assert booted.facts["block"]["vda"]["bytes"] == DISK_MIB << 20


def test_nic_gets_address_and_host_reaches_guest(booted: Booted) -> None:
    assert booted.facts["net"]["eth0"]["addr"] == "10.0.2.15/24"
    with urllib.request.urlopen(f"http://127.0.0.1:{booted.port}/", timeout=20) as r:
        assert r.read().decode().startswith("BERTH-GUEST-HTTP")


def test_usb_tablet_in_sys_bus_usb(booted: Booted) -> None:
    products = {d["product"] for d in booted.facts["usb"].values()}
    assert "QEMU_USB_Tablet" in products
    out = console.run(booted.name, booted.store, "cat /sys/bus/usb/devices/*/product")
    assert "QEMU USB Tablet" in out


def test_console_runs_commands(booted: Booted) -> None:
    assert console.run(booted.name, booted.store, "hostname").strip() == "berth-guest"
    assert console.run(booted.name, booted.store, "nproc").strip() == str(CPUS)


def test_ls_and_inspect(booted: Booted) -> None:
    p = berth(booted.store, "ls", "--format", "json")
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(p.stdout)
    assert (row["name"], row["status"], row["pid"], row["accel"]) == (
        "life", "running", booted.pid, "tcg")
    p = berth(booted.store, "inspect", "life")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["runstate"] == "running"
    assert info["disk_files"][0]["virtual_size"] == DISK_MIB << 20
    assert "BERTH-GUEST-READY" in berth(booted.store, "logs", "life").stdout


def test_stats(booted: Booted) -> None:
    st = stats(booted.name, booted.store)
    assert st["runstate"] == "running" and len(st["vcpus"]) == CPUS
    assert st["balloon_bytes"] == MEMORY_MIB << 20
    assert st["block"]["disk0"]["rd_bytes"] > 0
    assert st["host"]["pid"] == booted.pid and st["host"]["rss_bytes"] > 0


def run(booted: Booted, command: str) -> str:
    return console.run(booted.name, booted.store, command).strip()


READ_DISK = "dd if=/dev/vda bs=512 count=1 iflag=direct 2>/dev/null | head -c 8"
WRITE_DISK = "echo {} | dd of=/dev/vda bs=512 count=1 conv=sync oflag=direct 2>/dev/null"


def test_snapshot_change_restore(booted: Booted) -> None:
    run(booted, "echo one > /root/state; " + WRITE_DISK.format("one-disk"))
    assert snapshot.create(booted.name, booted.store, "before") == "live"
    run(booted, "echo two > /root/state; " + WRITE_DISK.format("two-disk"))
    assert run(booted, "cat /root/state") == "two" and run(booted, READ_DISK) == "two-disk"
    snapshot.restore(booted.name, booted.store, "before")
    assert run(booted, "cat /root/state") == "one"  # RAM came back ...
    assert run(booted, READ_DISK) == "one-disk"     # ... and the disk, read past the cache
    (snap,) = snapshot.ls(booted.name, booted.store)
    assert snap["name"] == "before" and snap["live"]
    snapshot.rm(booted.name, booted.store, "before")
    assert snapshot.ls(booted.name, booted.store) == []


def wait_guest(booted: Booted, command: str, done: Callable[[str], bool],
               timeout: float = 30) -> str:
    """The command's output once done(output) holds, or when the timeout is over."""
    deadline = time.monotonic() + timeout
    while True:
        out = run(booted, command)
        if done(out) or time.monotonic() > deadline:
            return out
        time.sleep(0.3)


def test_disk_hotplug(booted: Booted) -> None:
    dev = disk.add(booted.name, booted.store, size=32 << 20)
    assert dev == "disk1"
    assert wait_guest(booted, "cat /sys/block/vdb/size 2>&1", lambda o: o == "65536") == "65536"
    path = booted.store.get(booted.name).spec["disks"][1]["file"]
    assert os.path.exists(path)
    disk.rm(booted.name, booted.store, dev)
    assert wait_guest(booted, "ls /sys/block", lambda o: "vdb" not in o).split() == ["vda"]
    assert not os.path.exists(path)
    assert len(booted.store.get(booted.name).spec["disks"]) == 1


def test_usb_storage_hotplug(booted: Booted, tmp_path: Path) -> None:
    img = tmp_path / "stick.img"
    img.write_bytes(b"\0" * (8 << 20))
    dev = usb.add(booted.name, booted.store, "storage", str(img))
    products = "cat /sys/bus/usb/devices/*/product"
    assert "QEMU USB HARDDRIVE" in wait_guest(booted, products, lambda o: "HARDDRIVE" in o)
    usb.rm(booted.name, booted.store, dev)
    assert "HARDDRIVE" not in wait_guest(booted, products, lambda o: "HARDDRIVE" not in o)
    assert [u["kind"] for u in booted.store.get(booted.name).spec["usb"]] == ["tablet"]
    dev = usb.add(booted.name, booted.store, "tablet")
    count = "cat /sys/bus/usb/devices/*/product | grep -c Tablet"
    assert wait_guest(booted, count, lambda o: o == "2") == "2"
    usb.rm(booted.name, booted.store, dev)
    assert wait_guest(booted, count, lambda o: o == "1") == "1"


def test_pause_resume(booted: Booted) -> None:
    assert berth(booted.store, "pause", "life").returncode == 0
    assert json.loads(berth(booted.store, "inspect", "life").stdout)["runstate"] == "paused"
    assert berth(booted.store, "resume", "life").returncode == 0
    assert json.loads(berth(booted.store, "inspect", "life").stdout)["runstate"] == "running"
    assert run(booted, "echo alive") == "alive"


def test_console_attach_and_detach(booted: Booted) -> None:
    env = dict(os.environ, BERTH_STATE_DIR=booted.store.root)
    p = subprocess.Popen([BERTH, "vm", "console", "life"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdin is not None and p.stdout is not None
    os.set_blocking(p.stdout.fileno(), False)
    out = b""
    deadline = time.monotonic() + 30
    while b"CONSOLE-42" not in out and time.monotonic() < deadline:
        p.stdin.write(b"echo CONSOLE-$((40+2))\n")  # again, until the guest answers
        p.stdin.flush()
        time.sleep(1)
        out += p.stdout.read() or b""
    p.stdin.write(b"\x1d")  # Ctrl-]: detach, the guest keeps running
    p.stdin.flush()
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert b"CONSOLE-42" in out and b"detach with Ctrl-]" in err
    assert booted.store.get("life").status == "running"


def test_host_report(booted: Booted) -> None:
    p = berth(booted.store, "host")
    assert p.returncode == 0, p.stderr
    h = json.loads(p.stdout)
    assert h["mode"].startswith(("kvm", "tcg"))
    assert h["allocated"] == {"vms": 1, "cpus": CPUS, "memory_mib": MEMORY_MIB}
    assert h["host"]["cpus"] >= 1 and h["host"]["memory_mib"] > MEMORY_MIB


def test_stop_ends_qemu_cleanly(booted: Booted) -> None:
    env = dict(os.environ, BERTH_STATE_DIR=booted.store.root)
    follow = subprocess.Popen([BERTH, "vm", "logs", "-f", "-n", "0", "life"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    time.sleep(0.5)
    p = berth(booted.store, "stop", "life", "--timeout", "60")
    assert p.returncode == 0, p.stderr
    assert "powered off" in p.stdout
    out, _ = follow.communicate(timeout=10)  # `logs -f` ends when the vm stops
    assert follow.returncode == 0 and b"BERTH-GUEST-POWEROFF" in out
    assert not qemu_pids(booted.store.root)
    assert booted.store.get("life").status == "stopped"
    paths = booted.store.paths("life")
    for f in (paths.qmp, paths.serial, paths.pidfile):
        assert not os.path.exists(f)
    assert "BERTH-GUEST-POWEROFF" in berth(booted.store, "logs", "life").stdout
