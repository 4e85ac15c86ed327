"""The test guest's pieces that need no VM: module order, the cpio writer, facts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from berth.vm.errors import GuestBuildError
from berth.vm.guest import parse_facts
from berth.vm.initramfs import Cpio, module_order


@pytest.fixture
def moddir(tmp_path: Path) -> Path:
    (tmp_path / "modules.dep").write_text(
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko "
        "kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n")
    (tmp_path / "modules.builtin").write_text("kernel/drivers/acpi/button.ko\n")
    return tmp_path


def test_dependencies_come_first(moddir: Path) -> None:
    order = [n for n, _ in module_order(str(moddir), ("virtio_blk", "virtio-net", "button"))]
    assert order == ["virtio_ring", "virtio", "virtio_blk", "failover", "net_failover",
                     "virtio_net"]
    for i, name in enumerate(order):
        assert name not in order[i + 1:]


def test_missing_module_names_who_needs_it(moddir: Path) -> None:
    with pytest.raises(GuestBuildError, match="virtio_gpu"):
        module_order(str(moddir), ("virtio_gpu",))


def test_real_modules_dep_has_what_the_guest_needs() -> None:
    from berth.vm.initramfs import MODULES, find_kernel

    try:
        _, mods = find_kernel()
    except GuestBuildError:
        pytest.skip("no kernel under /boot")
    names = [n for n, _ in module_order(mods, MODULES)]
    assert names.index("virtio") < names.index("virtio_pci") < names.index("virtio_blk")


@pytest.mark.skipif(not os.path.exists("/usr/bin/cpio") and not os.path.exists("/bin/cpio"),
                    reason="needs cpio to read the archive back")
def test_cpio_reads_back_with_cpio(tmp_path: Path) -> None:
    c = Cpio()
    c.dir("etc")
    c.file("etc/hello", b"hello world\n")
    c.symlink("etc/link", "hello")
    c.chardev("console", 5, 1)
    (tmp_path / "a.cpio").write_bytes(c.bytes())
    out = tmp_path / "out"
    out.mkdir()
    with open(tmp_path / "a.cpio", "rb") as f:
        subprocess.run(["cpio", "-id", "--quiet"], stdin=f, cwd=out, check=True)
    assert (out / "etc/hello").read_text() == "hello world\n"
    assert os.readlink(out / "etc/link") == "hello"


def test_cpio_layout() -> None:
    c = Cpio()
    c.file("a", b"xyz")
    data = c.bytes()
    assert data.startswith(b"070701") and data.rstrip(b"\0").endswith(b"TRAILER!!!")
    assert len(data) % 4 == 0


def test_parse_facts() -> None:
    facts = parse_facts("noise\r\nBERTH-FACT nproc=2\nBERTH-FACT memtotal_kb=339132\n"
                        "BERTH-FACT block vda bytes=1073741824\n"
                        "BERTH-FACT net eth0 mac=52:54:00:12:34:56 addr=10.0.2.15/24\n"
                        "BERTH-FACT usb 1-1 product=QEMU_USB_Tablet\nBERTH-GUEST-READY\n")
    assert facts["nproc"] == 2 and facts["memtotal_kb"] == 339132
    assert facts["block"]["vda"]["bytes"] == 1 << 30
    assert facts["net"]["eth0"]["addr"] == "10.0.2.15/24"
    assert facts["usb"]["1-1"]["product"] == "QEMU_USB_Tablet"
