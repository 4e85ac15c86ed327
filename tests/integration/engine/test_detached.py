"""Detached containers: the supervisor keeps their logs and exit codes and restarts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def supervisors(root: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"berth.engine.supervisor {root}"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def until(pred, timeout: float = 10):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_detached_logs_wait_and_idle_exit(berth, tmp_path: Path) -> None:  # noqa: F811
    cid = berth("run", "-d", "--name", "d1", "busybox", "sh", "-c",
                "for i in 1 2 3; do echo out$i; echo err$i >&2; done; sleep 0.3; exit 5"
                ).stdout.strip()
    assert len(cid) == 64
    assert berth("ps", "--format", "{{.Names}} {{.State}}").stdout == "d1 running\n"
    assert berth("wait", "d1").stdout == "5\n"
    p = berth("logs", "d1")
    assert p.stdout == "out1\nout2\nout3\n" and p.stderr == "err1\nerr2\nerr3\n"
    assert berth("logs", "--tail", "1", "d1").stderr == "err3\n"
    ts = berth("logs", "-t", "--tail", "1", "d1").stderr
    assert ts.split(" ", 1)[0].endswith("Z") and ts.split(" ", 1)[1] == "err3\n"
    log = tmp_path / "root" / "containers" / cid / "json.log"
    first = json.loads(log.read_text().splitlines()[0])
    assert set(first) == {"log", "stream", "time"}  # docker's json-file format
    assert berth("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (5)")
    until(lambda: not supervisors(tmp_path / "root"))  # it leaves with its last container


def test_logs_follow_until_exit(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "f1", "busybox", "sh", "-c",
          "for i in 1 2 3 4; do echo line$i; sleep 0.2; done")
    assert berth("logs", "-f", "f1").stdout == "line1\nline2\nline3\nline4\n"


def test_stop_sends_the_signal_then_kills(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "trap", "busybox", "sh", "-c",
          "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done")
    until(lambda: "running" in berth("ps", "--format", "{{.State}}").stdout)
    time.sleep(0.3)  # the trap is set
    berth("stop", "trap")
    assert berth("wait", "trap").stdout == "7\n"
    assert berth("logs", "trap").stdout == "got-term\n"
    berth("run", "-d", "--name", "stubborn", "busybox", "sleep", "100")  # pid 1 ignores TERM
    start = time.monotonic()
    berth("stop", "-t", "1", "stubborn")
    assert 0.9 < time.monotonic() - start < 8
    assert berth("wait", "stubborn").stdout == "137\n"


def test_restart_policy_on_failure(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c",
          "echo attempt; exit 3")
    until(lambda: berth("logs", "flaky").stdout.count("attempt") == 3)
    assert berth("wait", "flaky").stdout == "3\n"
    time.sleep(0.5)
    assert berth("logs", "flaky").stdout.count("attempt") == 3  # and no more
    db = subprocess.run(["python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
                         ".execute('select restart_count from containers').fetchone()[0])",
                         str(tmp_path / "root" / "engine.db")], capture_output=True, text=True)
    assert db.stdout.strip() == "2"


def test_many_concurrent_runs_give_a_consistent_ps(berth, tmp_path: Path) -> None:  # noqa: F811
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"))
    from tests.integration.engine.test_run import BERTH
    procs = [subprocess.Popen([BERTH, "run", "-d", "busybox", "sleep", "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for _ in range(20)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    assert [rc for _, rc in results] == [0] * 20, [err for (_, err), _ in results]
    ids = [out.decode().strip() for (out, _), _ in results]
    assert sorted(berth("ps", "-q", "--no-trunc").stdout.split()) == sorted(ids)
    assert len(supervisors(tmp_path / "root")) == 1 or until(
        lambda: len(supervisors(tmp_path / "root")) == 1)
    berth("rm", "-f", *ids)
    assert berth("ps", "-aq").stdout == ""
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()
    for cid in ids:
        assert not Path(f"/sys/fs/cgroup/memory/berth/{cid}").exists()


def test_ps_stays_truthful_when_the_supervisor_is_killed(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "-d", "--name", "orphan", "busybox", "sleep", "1")
    [sup] = until(lambda: supervisors(tmp_path / "root"))
    os.kill(sup, signal.SIGKILL)
    assert berth("ps", "--format", "{{.Names}}").stdout == "orphan\n"  # still running
    until(lambda: "Exited" in berth("ps", "-a", "--format", "{{.Status}}").stdout, 15)
    berth("rm", "orphan")


def test_detached_rm_removes_the_container_when_it_exits(berth, tmp_path: Path) -> None:  # noqa: F811
    cid = berth("run", "-d", "--rm", "--name", "brief", "busybox", "sh", "-c",
                "sleep 1; exit 3").stdout.strip()
    assert berth("wait", "brief").stdout == "3\n"  # even though it is gone by now
    until(lambda: berth("ps", "-aq").stdout == "")
    assert not (tmp_path / "root" / "containers" / cid).exists()
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()
    berth("run", "-d", "--rm", "--name", "long", "busybox", "sleep", "60")
    assert berth("rm", "-f", "long").stdout == "long\n"  # rm races the auto-removal: fine
    assert berth("ps", "-aq").stdout == ""
    p = berth("run", "-d", "--rm", "--restart", "always", "busybox", "true", check=False)
    assert p.returncode == 125 and "conflicting options" in p.stderr
