"""A VM run by an unprivileged user: user-mode networking needs no root.

Runs `berth vm` as `nobody` (needs root to become nobody) with its own state directory;
the KVM probe then finds /dev/kvm closed to it and says so, and TCG boots the guest.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator

import pytest

from berth.vm.guest import MARKER, Guest

from .conftest import BERTH, free_port, qemu_pids

pytestmark = [pytest.mark.vm, pytest.mark.root]


@pytest.fixture
def home() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="berth-vm-rootless-")
    nobody = pwd.getpwnam("nobody")
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    os.chmod(d, 0o755)
    yield d
    for pid in qemu_pids(d):
        os.kill(pid, 9)
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(home: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "BERTH_STATE_DIR": f"{home}/state"}
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           BERTH, "vm", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_unprivileged_user_runs_a_vm(home: str, guest: Guest) -> None:
    port = free_port()
    p = as_nobody(home, "create", "nb", "--memory", "128M", "--kernel",
                  guest.vmlinux or guest.kernel, "--initrd", guest.initrd, "--cmdline",
                  guest.cmdline, "--network", f"user,hostfwd=tcp::{port}-:80")
    assert p.returncode == 0, p.stderr
    p = as_nobody(home, "start", "nb", "--wait-for", MARKER, "--timeout", "90")
    assert p.returncode == 0, p.stderr
    assert "using TCG (software emulation)" in p.stderr or "kvm)" in p.stdout
    (pid,) = qemu_pids(home)
    assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("nobody").pw_uid
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as r:
        assert r.read().decode().startswith("BERTH-GUEST-HTTP")
    p = as_nobody(home, "stop", "nb")
    assert p.returncode == 0 and "powered off" in p.stdout, p.stderr
    assert as_nobody(home, "rm", "nb").returncode == 0
    assert not qemu_pids(home)
