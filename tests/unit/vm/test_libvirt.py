"""Importing libvirt domain XML: the common subset, and what is ignored is said."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.vm.errors import DefinitionError
from berth.vm.libvirt import convert, load

DOMAIN = """<domain type='kvm'>
  <name>web</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <kernel>{dir}/vmlinuz</kernel>
    <initrd>{dir}/initrd</initrd>
    <cmdline>console=ttyS0</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{dir}/web.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='{dir}/x.iso'/>
    </disk>
    <interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/></interface>
    <interface type='bridge'><source bridge='br9'/></interface>
    <input type='tablet' bus='usb'/>
    <sound model='ich9'/>
    <serial type='pty'/>
  </devices>
  <seclabel type='dynamic'/>
</domain>
"""


@pytest.fixture
def domain(tmp_path: Path) -> Path:
    for f in ("vmlinuz", "initrd", "web.qcow2"):
        (tmp_path / f).write_bytes(b"x")
    p = tmp_path / "web.xml"
    p.write_text(DOMAIN.format(dir=tmp_path))
    return p


def test_common_subset(domain: Path, tmp_path: Path) -> None:
    spec, ignored = load(str(domain))
    assert (spec.name, spec.cpus, spec.memory_mib, spec.machine) == ("web", 2, 1024, "q35")
    assert spec.kernel == str(tmp_path / "vmlinuz") and spec.cmdline == "console=ttyS0"
    assert spec.disks[0].path == str(tmp_path / "web.qcow2") and spec.disks[0].format == "qcow2"
    assert [n.mode for n in spec.nics] == ["user", "bridge"]
    assert spec.nics[0].mac == "52:54:00:aa:bb:cc" and spec.nics[1].bridge == "br9"
    assert [u.kind for u in spec.usb] == ["tablet"]
    assert set(ignored) == {"<seclabel>", "<disk device=cdrom>", "<devices><sound>"}


def test_missing_disk_is_the_usual_error(domain: Path, tmp_path: Path) -> None:
    (tmp_path / "web.qcow2").unlink()
    with pytest.raises(DefinitionError, match=r"disks\[0\]\.path: .*no such file"):
        load(str(domain))


def test_not_a_domain() -> None:
    with pytest.raises(DefinitionError, match="expected <domain>"):
        convert("<network/>")
    with pytest.raises(DefinitionError, match="not valid XML"):
        convert("<domain>")
