"""The rarer run flags, checked from inside the container; ps --filter."""

from __future__ import annotations

import time

import pytest

from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def test_hosts_dns_ulimit_shm_cpu(berth) -> None:  # noqa: F811
    p = berth("run", "--rm", "--add-host", "db.local:10.1.2.3", "--dns", "10.0.0.53",
              "--ulimit", "nofile=512:1000", "--shm-size", "16m", "-c", "512",
              "--cpuset-cpus", "0", "busybox", "sh", "-c",
              "grep db.local /etc/hosts; cat /etc/resolv.conf; ulimit -n; ulimit -Hn; "
              "df -k /dev/shm | tail -1 | awk '{print $2}'; "
              "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus")
    assert p.stdout.split("\n") == ["10.1.2.3\tdb.local", "nameserver 10.0.0.53", "512",
                                    "1000", "16384", "512", "0", ""]


def test_device_and_no_new_privileges(berth) -> None:  # noqa: F811
    p = berth("run", "--rm", "--device", "/dev/fuse:/dev/myfuse", "--security-opt",
              "no-new-privileges", "busybox", "sh", "-c",
              "ls -l /dev/myfuse | cut -c1; grep NoNewPrivs /proc/self/status")
    assert p.stdout.split() == ["c", "NoNewPrivs:", "1"]


def test_seccomp_profile_from_a_file(berth, tmp_path) -> None:  # noqa: F811
    import json
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    p = berth("run", "--rm", "--security-opt", f"seccomp={prof}", "busybox", "sh", "-c",
              "mkdir /tmp/x 2>&1 || true")
    assert "Operation not permitted" in p.stdout


@pytest.mark.parametrize(("opts", "expected"), [
    ((), "seccomp=2 unshare=1 mount=1"),  # docker's default profile: refused
    (("--cap-add", "SYS_ADMIN"), "seccomp=2 unshare=0 mount=0"),  # entitled: let through
    (("--security-opt", "seccomp=unconfined"), "seccomp=0 unshare=0 mount=1"),
])
def test_the_default_seccomp_profile(berth, opts: tuple[str, ...],  # noqa: F811
                                     expected: str) -> None:
    """From inside: a user namespace (no capability needed, but the profile refuses it, as
    docker's) and a mount (CAP_SYS_ADMIN, which also lifts the profile's refusal)."""
    script = ("s=$(grep Seccomp: /proc/self/status | tr -dc 0-9); unshare -U true 2>/dev/null; "
              "u=$?; mount -t tmpfs x /mnt 2>/dev/null; echo seccomp=$s unshare=$u mount=$?")
    p = berth("run", "--rm", "--network", "none", *opts, "busybox", "sh", "-c", script)
    assert p.stdout.strip() == expected


def test_stop_signal_and_timeout_from_run(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "sig", "--stop-signal", "USR1", "--stop-timeout", "1",
          "busybox", "sh", "-c", "trap 'echo got-usr1; exit 9' USR1; while :; do sleep 0.1; done")
    time.sleep(0.4)
    berth("stop", "sig")
    assert berth("wait", "sig").stdout == "9\n"
    assert berth("logs", "sig").stdout == "got-usr1\n"


def test_ps_filters(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "alpha", "-l", "tier=web", "busybox", "sleep", "30")
    berth("run", "--name", "beta", "-l", "tier=db", "busybox", "true")
    assert berth("ps", "--filter", "label=tier=web", "--format", "{{.Names}}"
                 ).stdout == "alpha\n"
    assert berth("ps", "--filter", "status=exited", "--format", "{{.Names}}").stdout == "beta\n"
    assert berth("ps", "-a", "--filter", "name=^al", "--format", "{{.Names}}"
                 ).stdout == "alpha\n"
    assert sorted(berth("ps", "-a", "--filter", "ancestor=busybox", "--format",
                        "{{.Names}}").stdout.split()) == ["alpha", "beta"]
    assert berth("ps", "-a", "--filter", "label=tier", "--filter", "status=running",
                 "--format", "{{.Names}}").stdout == "alpha\n"
    p = berth("ps", "--filter", "bogus=1", check=False)
    assert p.returncode == 125 and "invalid filter" in p.stderr


def test_stats_reads_the_cgroups(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c",
          "while :; do :; done")
    time.sleep(1)
    out = berth("stats", "--no-stream", "--format",
                "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}").stdout.split()
    assert out[0] == "busy"
    assert float(out[1].rstrip("%")) > 20  # a spinning shell
    assert out[4] == "67.1MB"  # the -m limit (64 MiB in docker's decimal units)
    assert out[5] == "1"


def test_init_forwards_signals_and_reaps(berth) -> None:  # noqa: F811
    p = berth("run", "--rm", "--init", "busybox", "sh", "-c",
              "cat /proc/1/comm; cat /proc/$$/comm; (sleep 0.1 &); sleep 0.3; "
              "grep -c Z /proc/[0-9]*/stat 2>/dev/null | grep -v ':0' | wc -l")
    lines = p.stdout.split()
    assert lines[:2] == ["docker-init", "sh"]  # tini is pid 1, the command its child
    assert lines[2] == "0"  # the orphaned sleep was reaped: no zombies
    berth("run", "-d", "--init", "--name", "initd", "busybox", "sleep", "100")
    time.sleep(0.3)
    start = time.monotonic()
    berth("stop", "-t", "5", "initd")
    assert time.monotonic() - start < 4  # TERM reached sleep through tini: no 5 s wait
    assert berth("wait", "initd").stdout == "143\n"
