"""version, info, system df and system prune."""

from __future__ import annotations

import json

import pytest

from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def test_info_counts_and_version(berth) -> None:  # noqa: F811
    berth("run", "--name", "stopped", "busybox", "true")
    berth("run", "-d", "--name", "up", "busybox", "sleep", "30")
    doc = json.loads(berth("info", "-f", "{{json .}}").stdout)
    assert (doc["Containers"], doc["ContainersRunning"], doc["ContainersStopped"]) == (2, 1, 1)
    assert doc["Images"] == 1 and doc["Driver"] == "overlay" and doc["CgroupVersion"] in "12"
    v = json.loads(berth("version", "-f", "{{json .}}").stdout)
    assert v["Client"]["Arch"] == "amd64" and "berth-runtime" in v["Server"]["Runtime"]


def test_df_and_prune(berth) -> None:  # noqa: F811
    berth("run", "--name", "gone", "-v", "/anon", "busybox", "sh", "-c", "echo x > /f")
    berth("run", "-d", "--name", "kept", "busybox", "sleep", "30")
    df = berth("system", "df").stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[2].split()[:3] == ["Containers", "2", "1"]
    out = berth("system", "prune", "-f", "--volumes").stdout
    assert "Deleted Containers:" in out and "Deleted Volumes:" in out
    assert berth("ps", "-a", "--format", "{{.Names}}").stdout == "kept\n"
    assert berth("images", "-q").stdout.strip()  # in use by "kept": not pruned


def test_reset_removes_everything_berth_made(berth, tmp_path) -> None:  # noqa: F811
    import os
    import subprocess
    berth("network", "create", "resetnet")
    berth("volume", "create", "resetvol")
    berth("run", "-d", "--name", "up", "--network", "resetnet", "-v", "resetvol:/data",
          "busybox", "sleep", "60")
    berth("run", "--name", "down", "busybox", "true")
    assert berth("system", "reset", check=False, input="n\n").returncode != 0  # not confirmed
    assert berth("ps", "-aq").stdout.count("\n") == 2

    berth("system", "reset", "-f")
    assert berth("ps", "-aq").stdout == ""
    assert berth("images", "-q").stdout == ""
    assert berth("volume", "ls", "-q").stdout == ""
    assert berth("network", "ls", "--format", "{{.Name}}").stdout.split() == [
        "bridge", "host", "none"]
    assert os.listdir(tmp_path / "root" / "containers") == []
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()
    from berth.engine.networks import bridge_name
    from berth.engine.state import State
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    for net in ("bridge", "resetnet"):
        assert bridge_name(State(str(tmp_path / "root")), net) not in links


def test_system_check_finds_and_repairs(berth, tmp_path) -> None:  # noqa: F811
    import subprocess

    from tests.conftest import RUNTIME
    assert berth("system", "check").stdout == "no inconsistencies found\n"
    cid = berth("run", "-d", "--name", "victim", "busybox", "sleep", "30").stdout.strip()
    # the engine's record vanishes (a crash between the runtime and the database, say)
    import sqlite3
    db = sqlite3.connect(tmp_path / "root" / "engine.db")
    db.execute("DELETE FROM containers WHERE id=?", (cid,))
    db.commit()
    db.close()
    p = berth("system", "check", check=False)
    assert p.returncode == 1
    assert f"runtime state {cid[:12]}: no container record" in p.stdout
    assert f"directory containers/{cid[:12]}: no container record" in p.stdout
    berth("system", "check", "--repair")
    assert berth("system", "check").stdout == "no inconsistencies found\n"
    out = subprocess.run([RUNTIME, "--root", str(tmp_path / "runtime"), "list", "-q"],
                         capture_output=True, text=True).stdout
    assert out == ""
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()
