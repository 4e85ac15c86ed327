"""The accelerator choice and the probe's timeout logic, without booting a guest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from berth.vm import kvm
from berth.vm.errors import AccelError


def write_verdict(state: Path, usable: bool, reason: str = "") -> None:
    v = kvm.Verdict(usable, reason, 1.0, kvm._boot_id(), kvm._qemu_id(kvm.QEMU), 0.0)
    (state / "kvm.json").write_text(json.dumps(v.__dict__))


def test_tcg_needs_no_probe(tmp_path: Path) -> None:
    assert kvm.choose("tcg", str(tmp_path)) == ("tcg", None)
    assert not (tmp_path / "kvm.json").exists()


def test_auto_falls_back_with_a_note(tmp_path: Path) -> None:
    write_verdict(tmp_path, False, "a test guest did not boot within 10s")
    accel, note = kvm.choose("auto", str(tmp_path))
    assert accel == "tcg"
    assert note == ("kvm unusable: a test guest did not boot within 10s; "
                    "using TCG (software emulation)")


def test_kvm_demanded_but_unusable_is_an_error(tmp_path: Path) -> None:
    write_verdict(tmp_path, False, "/dev/kvm does not exist")
    with pytest.raises(AccelError, match="kvm unusable: /dev/kvm does not exist; use --accel"):
        kvm.choose("kvm", str(tmp_path))


def test_usable_kvm_is_used(tmp_path: Path) -> None:
    write_verdict(tmp_path, True)
    assert kvm.choose("auto", str(tmp_path)) == ("kvm", None)


def test_stale_verdict_is_ignored(tmp_path: Path) -> None:
    write_verdict(tmp_path, True)
    data = json.loads((tmp_path / "kvm.json").read_text())
    data["boot_id"] = "another-boot"
    (tmp_path / "kvm.json").write_text(json.dumps(data))
    assert kvm.cached(str(tmp_path)) is None


def test_test_boot_times_out_and_kills() -> None:
    ok, reason, secs = kvm.test_boot([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert not ok and "did not boot within 0.5s" in reason and secs < 5


def test_test_boot_sees_the_marker() -> None:
    code = "import time; print('BERTH-GUEST-READY', flush=True); time.sleep(30)"
    ok, _, secs = kvm.test_boot([sys.executable, "-c", code], 10)
    assert ok and secs < 5


def test_test_boot_reports_an_early_exit() -> None:
    code = "import sys; sys.stderr.write('no kvm here\\n'); sys.exit(3)"
    ok, reason, _ = kvm.test_boot([sys.executable, "-c", code], 10)
    assert not ok and "status 3" in reason and "no kvm here" in reason
