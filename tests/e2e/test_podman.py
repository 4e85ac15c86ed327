"""podman drives berth-runtime exactly as it drives runc (through conmon)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import RUNTIME

pytestmark = [pytest.mark.e2e, pytest.mark.root,
              pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")]

SCRIPT = ("id; hostname | wc -c; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' "
          "/proc/self/status; cat /proc/1/comm; ls /sys/class/net; ulimit -n")


def podman(runtime: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "--runtime", runtime, *args], capture_output=True,
                          text=True, timeout=120)


def test_podman_runs_echo_ok(busybox_rootfs) -> None:
    p = podman(RUNTIME, "run", "--rm", "--network", "none", "--rootfs", str(busybox_rootfs),
               "echo", "ok")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "ok\n"


def test_podman_sees_the_same_container_under_runc_and_berth(busybox_rootfs) -> None:
    args = ("run", "--rm", "--network", "none", "--rootfs", str(busybox_rootfs),
            "sh", "-c", SCRIPT)
    theirs = podman("runc", *args)
    ours = podman(RUNTIME, *args)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout


def test_podman_exit_code_and_exec(busybox_rootfs) -> None:
    p = podman(RUNTIME, "run", "--rm", "--network", "none", "--rootfs", str(busybox_rootfs),
               "sh", "-c", "exit 42")
    assert p.returncode == 42
    name = "berth-e2e-exec"
    podman(RUNTIME, "rm", "-f", name)
    p = podman(RUNTIME, "run", "-d", "--name", name, "--network", "none", "--rootfs",
               str(busybox_rootfs), "sleep", "60")
    assert p.returncode == 0, p.stderr
    try:
        p = podman(RUNTIME, "exec", name, "sh", "-c", "echo in-$(cat /proc/1/comm)")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "in-sleep\n"
        p = podman(RUNTIME, "stop", "-t", "1", name)
        assert p.returncode == 0, p.stderr
    finally:
        podman(RUNTIME, "rm", "-f", name)
