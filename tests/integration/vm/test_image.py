"""Booting a disk image through the firmware, from a thin clone berth makes of it.

The image is one 512-byte boot sector (it prints a line on COM1 and halts), not an OS:
enough to show the path --image takes (qcow2 clone with a backing file, virtio-blk with
bootindex=0, SeaBIOS) in well under a second of TCG, with the base left untouched.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from berth.vm import disks
from berth.vm.store import Store

from .conftest import berth, qemu_pids

pytestmark = [pytest.mark.vm]

MESSAGE = b"BERTH-IMAGE-BOOTED\r\n"
# xor ax,ax; mov ds,ax; cld; mov si,msg; mov dx,0x3f8
# next: lodsb; test al,al; jz done; out dx,al; jmp next
# done: cli; hlt; jmp done; msg: ...
CODE = bytes.fromhex("31c08ed8fc be177c baf803 ac 84c0 7403 ee ebf8 fa f4 ebfc")


def boot_sector() -> bytes:
    sector = bytearray(512)
    body = CODE + MESSAGE + b"\0"
    sector[: len(body)] = body
    sector[510:] = b"\x55\xaa"
    return bytes(sector)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("image")
    raw = d / "base.raw"
    raw.write_bytes(boot_sector() + b"\0" * ((1 << 20) - 512))
    out = d / "base.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                    str(out)], check=True)
    return out


def test_image_boots_from_a_thin_clone(base: Path, vm_store: Store) -> None:
    before = hashlib.sha256(base.read_bytes()).hexdigest()
    p = berth(vm_store, "create", "img", "--image", str(base), "--memory", "64M")
    assert p.returncode == 0, p.stderr
    clone = vm_store.get("img").spec["disks"][0]["file"]
    info = disks.info(clone)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(base)
    p = berth(vm_store, "start", "img", "--accel", "tcg", "--wait-for", "BERTH-IMAGE-BOOTED",
              "--timeout", "60")
    assert p.returncode == 0, p.stderr
    # restart: the boot sector ignores the power button, so stop quits qemu after 1 s
    p = berth(vm_store, "restart", "img", "--timeout", "1")
    assert p.returncode == 0, p.stderr
    from berth.vm.start import wait_serial

    log = wait_serial(vm_store, "img", "BERTH-IMAGE-BOOTED\r\nBERTH-IMAGE-BOOTED", 0, 60)
    assert log.count("BERTH-IMAGE-BOOTED") == 2
    assert berth(vm_store, "rm", "--force", "img").returncode == 0
    assert not qemu_pids(vm_store.root)
    assert hashlib.sha256(base.read_bytes()).hexdigest() == before
