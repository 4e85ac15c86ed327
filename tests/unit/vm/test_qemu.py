"""The qemu command line, compared with golden files in tests/golden/vm/.

Regenerate them with BERTH_REGENERATE_GOLDEN=1 after a deliberate change, and review
the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.vm.definition import parse
from berth.vm.qemu import command, hostfwd, mac_address, tap_name
from berth.vm.store import Paths

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "vm"
PATHS = Paths("/var/lib/berth/vm/vms/web", "/var/lib/berth/vm/vms/web")


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for f in ("vmlinuz", "initrd", "base.qcow2", "data.qcow2", "stick.img"):
        (tmp_path / f).write_bytes(b"x")
    return tmp_path


def render(cmd: list[str], root: Path) -> str:
    """One argument per line (options with their value), tmp paths made stable."""
    lines: list[str] = []
    for a in cmd:
        a = a.replace(str(root), "/GUEST")
        if a.startswith("-") and not (lines and lines[-1].endswith(" -")):
            lines.append(a)
        elif lines and lines[-1].startswith("-") and " " not in lines[-1]:
            lines[-1] += " " + a
        else:
            lines.append(a)
    return "\n".join(lines) + "\n"


CASES = {
    "direct-kernel-tcg": ({"cpus": 2, "memory": "384M", "initrd": "initrd",
                           "cmdline": "console=ttyS0 quiet", "disks": [{"size": "1G"}],
                           "network": [{"user": {"hostfwd": ["tcp::8080-:80"]}}]}, "tcg", False),
    "image-kvm-cloud-init": ({"kernel": None, "image": "base.qcow2", "memory": "2G",
                              "disks": [{"path": "data.qcow2", "readonly": True}],
                              "network": [{"bridge": {"name": "berth0"}}],
                              "cloud_init": {"hostname": "web"}}, "kvm", True),
    "usb": ({"usb": ["tablet", {"storage": "stick.img"}], "machine": "pc"}, "tcg", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, files: Path) -> None:
    extra, accel, seed = CASES[case]
    data = {"name": "web", "kernel": "vmlinuz"} | extra
    data = {k: v for k, v in data.items() if v is not None}
    spec = parse(data, base_dir=str(files))
    text = render(command(spec, PATHS, accel, seed=seed), files)
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("BERTH_REGENERATE_GOLDEN") or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_hostfwd_binds_loopback_unless_told() -> None:
    assert hostfwd("tcp::2222-:22") == "tcp:127.0.0.1:2222-:22"
    assert hostfwd("udp:127.0.0.2:53-10.0.2.15:53") == "udp:127.0.0.2:53-10.0.2.15:53"


def test_names_are_stable_and_short() -> None:
    assert mac_address("web", 0) == mac_address("web", 0) != mac_address("web", 1)
    assert mac_address("web", 0).startswith("52:54:00:")
    assert len(tap_name("a-very-long-vm-name-indeed", 3)) <= 15


def test_commas_in_paths_are_escaped(files: Path) -> None:
    spec = parse({"name": "web", "kernel": "vmlinuz", "disks": [{"size": "1G"}]},
                 base_dir=str(files))
    cmd = command(spec, Paths("/x,y", "/x,y"), "tcg")
    assert any("file=/x,,y/disk0.qcow2," in a for a in cmd)
    assert "-daemonize" in cmd and "-daemonize" not in command(spec, PATHS, "tcg",
                                                               daemonize=False)
