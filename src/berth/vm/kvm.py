"""Is KVM usable here? A probe that test-boots a tiny guest, and the accelerator choice.

Opening /dev/kvm is not enough: on hosts where nested virtualization is broken the device
exists and opens, but guests hang. So the probe boots berth's test guest (the kernel and
busybox initramfs of berth.vm.guest, with `berth.probe=1`: /init prints the marker and
powers off) under `-accel kvm` and waits for its marker on the serial port, with a
timeout (BERTH_KVM_PROBE_TIMEOUT, default 10 s; a working KVM boots it in about a second).

The verdict is cached in <state>/kvm.json and reused while the host's boot id and the
qemu binary are the same; `berth vm host --reprobe` runs the probe again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass

from berth.vm.errors import AccelError

QEMU = "qemu-system-x86_64"
PROBE_MARKER = b"BERTH-GUEST-READY"
TCG_NOTE = "using TCG (software emulation)"


@dataclass
class Verdict:
    usable: bool
    reason: str          # why not, or how long the test boot took
    seconds: float
    boot_id: str
    qemu: str
    checked_at: float


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _qemu_id(qemu: str) -> str:
    path = shutil.which(qemu) or qemu
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def verdict_path(state: str | None = None) -> str:
    from berth.vm.store import state_dir

    return os.path.join(state or state_dir(), "kvm.json")


def cached(state: str | None = None) -> Verdict | None:
    """The cached verdict if it still holds for this boot of the host and this qemu."""
    try:
        with open(verdict_path(state)) as f:
            v = Verdict(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None
    if v.boot_id != _boot_id() or v.qemu != _qemu_id(QEMU):
        return None
    return v


def probe(state: str | None = None, timeout: float | None = None, reprobe: bool = False
          ) -> Verdict:
    """The KVM verdict: cached, or found by a test boot (then cached)."""
    if not reprobe:
        v = cached(state)
        if v is not None:
            return v
    if timeout is None:
        timeout = float(os.environ.get("BERTH_KVM_PROBE_TIMEOUT", "10"))
    usable, reason, secs = _probe(timeout)
    v = Verdict(usable, reason, round(secs, 3), _boot_id(), _qemu_id(QEMU), time.time())
    path = verdict_path(state)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(asdict(v), f)
    os.replace(path + ".tmp", path)
    return v


def _probe(timeout: float) -> tuple[bool, str, float]:
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist", 0.0
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return False, f"cannot open /dev/kvm: {e.strerror}", 0.0
    if shutil.which(QEMU) is None:
        return False, f"{QEMU} is not installed", 0.0
    from berth.vm.errors import GuestBuildError
    from berth.vm.guest import build

    try:
        g = build()
    except GuestBuildError as e:
        return False, f"no guest to test-boot ({e})", 0.0
    cmd = [QEMU, "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-nodefaults",
           "-no-user-config", "-display", "none", "-m", "128", "-no-reboot",
           "-kernel", g.kernel, "-initrd", g.initrd,
           "-append", "console=ttyS0 quiet panic=-1 berth.probe=1 berth.httpd=0",
           "-serial", "stdio"]
    return test_boot(cmd, timeout)


def test_boot(cmd: list[str], timeout: float, marker: bytes = PROBE_MARKER
              ) -> tuple[bool, str, float]:
    """Run cmd, wait up to `timeout` seconds for `marker` on its stdout, then stop it."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            while True:
                time.sleep(0.05)
                out.seek(0)
                if marker in out.read():
                    return True, "", time.monotonic() - start
                if p.poll() is not None:
                    err.seek(0)
                    msg = err.read().decode(errors="replace").strip().splitlines()
                    return (False, f"test guest exited with status {p.returncode}"
                            + (f" ({msg[-1]})" if msg else ""), time.monotonic() - start)
                if time.monotonic() - start > timeout:
                    return (False, f"a test guest did not boot within {timeout:g}s "
                            "(/dev/kvm opens but guests hang)", time.monotonic() - start)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def choose(requested: str, state: str | None = None) -> tuple[str, str | None]:
    """(accel, note): the accelerator to use for `requested` (auto|kvm|tcg) and, when auto
    falls back, the note to show the user. --accel kvm on a host where KVM is unusable is
    an AccelError."""
    if requested == "tcg":
        return "tcg", None
    v = probe(state)
    if v.usable:
        return "kvm", None
    if requested == "kvm":
        raise AccelError(f"kvm unusable: {v.reason}; use --accel tcg or --accel auto")
    return "tcg", f"kvm unusable: {v.reason}; {TCG_NOTE}"
