"""Defining VMs through the real `berth vm` command: YAML, libvirt XML, cloud-init seed.

Nothing boots here; each test leaves the state directory empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from berth.vm.guest import Guest
from berth.vm.seed import read_iso, volume_label
from berth.vm.store import Store

from .conftest import berth


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


def test_define_yaml_inspect_rm(store: Store, guest: Guest, tmp_path: Path) -> None:
    f = tmp_path / "vm.yaml"
    f.write_text(f"name: y1\ncpus: 1\nmemory: 128M\nkernel: {guest.kernel}\n"
                 f"initrd: {guest.initrd}\ndisks:\n  - size: 1G\n  - from: base.qcow2\n")
    base = tmp_path / "base.qcow2"
    assert os.system(f"qemu-img create -q -f qcow2 {base} 2G") == 0
    p = berth(store, "define", "-f", str(f))
    assert p.returncode == 0, p.stderr
    info = json.loads(berth(store, "inspect", "y1").stdout)
    assert info["status"] == "created"
    d0, d1 = info["disk_files"]
    assert d0["virtual_size"] == 1 << 30 and d0["owned_by_berth"]
    assert d1["backing"] == str(base) and d1["virtual_size"] == 2 << 30
    assert berth(store, "ls", "-q").stdout.split() == ["y1"]
    assert berth(store, "define", "-f", str(f)).stderr.count("already exists") == 1
    assert berth(store, "rm", "y1").returncode == 0
    assert not os.path.exists(d0["path"]) and not os.path.exists(d1["path"])
    assert base.exists()  # the base image is the user's


def test_cloud_init_seed(store: Store, guest: Guest, tmp_path: Path) -> None:
    ud = tmp_path / "user-data.yaml"
    ud.write_text("#cloud-config\nhostname: seeded\n")
    p = berth(store, "create", "ci", "--kernel", guest.kernel, "--cloud-init", str(ud))
    assert p.returncode == 0, p.stderr
    seed = json.loads(berth(store, "inspect", "ci").stdout)["paths"]["seed"]
    assert volume_label(seed) == "cidata"
    assert read_iso(seed)["user-data"] == ud.read_bytes()
    assert berth(store, "rm", "ci").returncode == 0


def test_import_libvirt(store: Store, guest: Guest, tmp_path: Path) -> None:
    xml = tmp_path / "dom.xml"
    xml.write_text(f"""<domain type='kvm'><name>lv</name><memory unit='MiB'>256</memory>
      <vcpu>1</vcpu><os><type machine='pc-q35-7.2'>hvm</type><kernel>{guest.kernel}</kernel>
      </os><devices><interface type='user'/><watchdog model='i6300esb'/></devices></domain>""")
    p = berth(store, "import-libvirt", str(xml))
    assert p.returncode == 0, p.stderr
    assert "ignored <devices><watchdog>" in p.stderr
    spec = store.get("lv").spec
    assert (spec["memory_mib"], spec["nics"][0]["mode"]) == (256, "user")
    assert berth(store, "rm", "lv").returncode == 0


def test_snapshot_of_a_stopped_vm(store: Store, guest: Guest) -> None:
    assert berth(store, "create", "s", "--kernel", guest.kernel, "--disk", "size=16M",
                 "--disk", "size=16M").returncode == 0
    p = berth(store, "snapshot", "create", "s", "clean")
    assert p.returncode == 0 and "(disk)" in p.stdout, p.stderr
    assert berth(store, "snapshot", "ls", "s").stdout.split() == ["clean", "disk"]
    assert berth(store, "snapshot", "restore", "s", "clean").returncode == 0
    assert berth(store, "snapshot", "rm", "s", "clean").returncode == 0
    assert berth(store, "snapshot", "ls", "s").stdout == ""
    assert "no snapshot 'nope'" in berth(store, "snapshot", "restore", "s", "nope").stderr
    assert berth(store, "rm", "s").returncode == 0


def test_disk_add_rm_while_stopped(store: Store, guest: Guest) -> None:
    assert berth(store, "create", "d", "--kernel", guest.kernel).returncode == 0
    p = berth(store, "disk", "add", "d", "--size", "8M")
    assert p.returncode == 0 and p.stdout.strip() == "disk0", p.stderr
    path = store.get("d").spec["disks"][0]["file"]
    assert os.path.exists(path)
    assert berth(store, "disk", "rm", "d", "disk0").returncode == 0
    assert not os.path.exists(path)
    assert berth(store, "rm", "d").returncode == 0
