"""After a host reboot (simulated: a new boot id, the old processes and mounts gone),
records show the containers exited and restart policies bring back what should run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RUNTIME
from tests.integration.engine.test_detached import supervisors, until

pytestmark = pytest.mark.root

BERTH = str(Path(sys.executable).parent / "berth")


def test_restart_policies_after_a_reboot(tmp_path: Path, busybox_image: Path) -> None:
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"), BERTH_BOOT_ID="boot-1")

    def berth(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([BERTH, *args], capture_output=True, text=True, env=env,
                           timeout=60)
        if check and p.returncode:
            raise AssertionError(f"berth {' '.join(args)}: {p.stderr}")
        return p

    berth("load", "-i", str(busybox_image / "oci"))
    berth("tag", "localhost/image:latest", "busybox")
    try:
        for name, policy in (("always1", "always"), ("unless1", "unless-stopped"),
                             ("stopped1", "always"), ("plain1", "no")):
            berth("run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "300")
        berth("run", "-d", "--rm", "--name", "gone1", "busybox", "sleep", "300")
        gone = berth("inspect", "-f", "{{.Id}}", "gone1").stdout.strip()
        berth("stop", "-t", "1", "stopped1")  # a user stopped it: it stays stopped
        # the reboot: the supervisor and every container process vanish, and their mounts
        for pid in supervisors(tmp_path / "root"):
            os.kill(pid, signal.SIGKILL)
        rt = [RUNTIME, "--root", str(tmp_path / "runtime")]
        for cid in subprocess.run([*rt, "list", "-q"], capture_output=True,
                                  text=True).stdout.split():
            subprocess.run([*rt, "delete", "--force", cid], capture_output=True)
        for d in (tmp_path / "root" / "containers").iterdir():
            subprocess.run(["umount", "-l", str(d / "rootfs")], capture_output=True)
        env["BERTH_BOOT_ID"] = "boot-2"
        status = dict(line.split(" ", 1) for line in berth(
            "ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines())
        # gone1 (--rm) is removed, as dockerd removes it when it restores
        assert status == {"always1": "running", "unless1": "running", "stopped1": "exited",
                          "plain1": "exited"}
        assert not (tmp_path / "root" / "containers" / gone).exists()
        assert berth("exec", "always1", "cat", "/proc/1/comm").stdout == "sleep\n"
        # the next command is not a reboot: nothing is restarted twice
        before = berth("inspect", "-f", "{{.State.Pid}}", "always1").stdout
        assert berth("inspect", "-f", "{{.State.Pid}}", "always1").stdout == before
    finally:
        ids = berth("ps", "-aq", check=False).stdout.split()
        if ids:
            berth("rm", "-f", *ids, check=False)
        until(lambda: not supervisors(tmp_path / "root"))
