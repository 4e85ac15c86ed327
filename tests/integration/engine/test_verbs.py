"""create/start, exec, pause/unpause, rename, top, inspect, container prune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.engine.test_detached import until
from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def test_create_then_start_and_exec(berth) -> None:  # noqa: F811
    cid = berth("create", "--name", "c1", "-e", "FROM_RUN=1", "busybox", "sleep", "60"
                ).stdout.strip()
    assert berth("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout == "c1 Created\n"
    berth("start", "c1")
    until(lambda: berth("ps", "--format", "{{.Names}}").stdout == "c1\n")
    p = berth("exec", "-e", "X=2", "-u", "nobody", "-w", "/tmp", "c1", "sh", "-c",
              'echo "$FROM_RUN$X $(pwd) $(id -u) $(cat /proc/1/comm)"; exit 4', check=False)
    assert p.returncode == 4
    assert p.stdout == "12 /tmp 65534 sleep\n"
    p = berth("exec", "c1", "nosuchcmd", check=False)
    assert p.returncode != 0 and "not found" in p.stderr
    assert berth("inspect", "-f", "{{.Id}}", cid[:8]).stdout == cid + "\n"


def test_pause_freezes_the_processes(berth) -> None:  # noqa: F811
    cid = berth("run", "-d", "--name", "p1", "busybox", "sh", "-c",
                "while true; do date +%s%N > /tmp/tick; sleep 0.05; done").stdout.strip()
    until(lambda: berth("exec", "p1", "cat", "/tmp/tick", check=False).returncode == 0)
    berth("pause", "p1")
    state = json.loads(berth("inspect", "p1").stdout)[0]["State"]
    assert state["Status"] == "paused" and state["Paused"] is True
    freezer = Path(f"/sys/fs/cgroup/freezer/berth/{cid}/freezer.state")
    assert freezer.read_text().strip() == "FROZEN"
    assert "paused" in berth("exec", "p1", "true", check=False).stderr
    berth("unpause", "p1")
    assert freezer.read_text().strip() == "THAWED"
    a = berth("exec", "p1", "cat", "/tmp/tick").stdout
    until(lambda: berth("exec", "p1", "cat", "/tmp/tick").stdout != a)  # it ticks again


def test_rename_top_and_inspect_shape(berth) -> None:  # noqa: F811
    cid = berth("run", "-d", "--name", "old", "-m", "32m", "--restart", "on-failure:3",
                "busybox", "sleep", "60").stdout.strip()
    berth("rename", "old", "new")
    assert berth("ps", "--format", "{{.Names}}").stdout == "new\n"
    top = berth("top", "new").stdout.splitlines()
    assert "PID" in top[0] and any("sleep 60" in line for line in top[1:])
    doc = json.loads(berth("inspect", "new").stdout)[0]
    assert doc["Id"] == cid and doc["Name"] == "/new" and doc["Path"] == "sleep"
    assert doc["Args"] == ["60"] and doc["State"]["Running"] is True
    assert doc["HostConfig"]["Memory"] == 32 << 20
    assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert Path(doc["GraphDriver"]["Data"]["UpperDir"]).is_dir()
    img = json.loads(berth("inspect", "--type", "image", "busybox").stdout)[0]
    assert img["RepoTags"] == ["busybox:latest", "localhost/image:latest"]


def test_container_prune_removes_only_stopped(berth) -> None:  # noqa: F811
    berth("run", "--name", "done", "busybox", "true")
    berth("run", "-d", "--name", "live", "busybox", "sleep", "60")
    out = berth("container", "prune", "-f").stdout
    assert out.startswith("Deleted Containers:")
    assert berth("ps", "-a", "--format", "{{.Names}}").stdout == "live\n"


def test_attach_follows_new_output_and_proxies_signals(berth, tmp_path) -> None:  # noqa: F811
    import os
    import signal
    import subprocess
    import sys
    import time
    berth("run", "-d", "--name", "talker", "busybox", "sh", "-c",
          "echo before; trap 'echo got-term; exit 7' TERM; sleep 1; "
          "while true; do echo tick; sleep 0.2; done")
    time.sleep(0.6)  # "before" is in the log already: attach must not replay it
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"))
    p = subprocess.Popen([str(Path(sys.executable).parent / "berth"), "attach", "talker"],
                         stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout is not None
    assert p.stdout.readline() == "tick\n"
    p.send_signal(signal.SIGTERM)  # proxied to the container, whose trap exits 7
    out, _ = p.communicate(timeout=20)
    assert "got-term\n" in out and "before" not in out
    assert p.returncode == 7
    p = berth("attach", "talker", check=False)
    assert p.returncode == 125 and "stopped container" in p.stderr
