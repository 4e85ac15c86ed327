"""The cloud-init NoCloud seed ISO, read back with pycdlib."""

from __future__ import annotations

from pathlib import Path

import yaml

from berth.vm.definition import CloudInit, VMSpec
from berth.vm.seed import read_iso, volume_label, write_seed


def test_seed_from_keys(tmp_path: Path) -> None:
    spec = VMSpec(name="web", kernel="/k", cloud_init=CloudInit(
        hostname="web1", users=[{"name": "ops", "sudo": "ALL=(ALL) NOPASSWD:ALL"}],
        ssh_authorized_keys=["ssh-ed25519 AAAA ops@example"], runcmd=["touch /ran"]))
    iso = tmp_path / "seed.iso"
    write_seed(str(iso), spec)
    assert volume_label(str(iso)) == "cidata"
    files = read_iso(str(iso))
    assert set(files) == {"user-data", "meta-data"}
    assert files["user-data"].startswith(b"#cloud-config\n")
    ud = yaml.safe_load(files["user-data"])
    assert ud == {"hostname": "web1", "users": [{"name": "ops",
                                                  "sudo": "ALL=(ALL) NOPASSWD:ALL"}],
                  "ssh_authorized_keys": ["ssh-ed25519 AAAA ops@example"],
                  "runcmd": ["touch /ran"]}
    md = yaml.safe_load(files["meta-data"])
    assert md["local-hostname"] == "web1" and md["instance-id"].startswith("berth-web-")


def test_seed_from_a_user_data_file(tmp_path: Path) -> None:
    ud = tmp_path / "user-data.yaml"
    ud.write_bytes(b"#cloud-config\npackages: [nginx]\n")
    iso = tmp_path / "seed.iso"
    write_seed(str(iso), VMSpec(name="n", kernel="/k", cloud_init=CloudInit(user_data=str(ud))))
    files = read_iso(str(iso))
    assert files["user-data"] == ud.read_bytes()
    assert b"local-hostname: n\n" in files["meta-data"]
