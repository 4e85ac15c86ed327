"""SIGKILL to the CLI at any moment of a run: ps stays truthful, and rm -f plus
system check --repair leave no mounts, cgroups, runtime state or records behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.engine.test_run import BERTH, berth  # noqa: F401 - the fixture

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_cli_killed_at_every_moment(berth, tmp_path: Path) -> None:  # noqa: F811
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"))
    delays = [0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.35]
    for i, delay in enumerate(delays):
        args = ["run", "--name", f"victim{i}", "busybox", "sleep", "30"]
        if i % 2:
            args.insert(1, "-d")
        p = subprocess.Popen([BERTH, *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    time.sleep(0.5)
    # every container ps calls running has a live init in its own pid namespace
    for line in berth("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines():
        name, state = line.split()
        doc = json.loads(berth("inspect", name).stdout)[0]
        if state == "running":
            pid = doc["State"]["Pid"]
            assert Path(f"/proc/{pid}").exists(), name
            assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    ids = berth("ps", "-aq").stdout.split()
    if ids:
        berth("rm", "-f", *ids)
    from tests.integration.engine.test_detached import supervisors, until
    until(lambda: not supervisors(tmp_path / "root"))  # whatever it was doing is over
    berth("system", "check", "--repair", check=False)
    assert berth("system", "check").stdout == "no inconsistencies found\n"
    assert berth("ps", "-aq").stdout == ""
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()
    leftover = [d for d in Path("/sys/fs/cgroup/memory/berth").iterdir()
                if d.is_dir() and any(d.name.startswith(x) for x in ids)] \
        if Path("/sys/fs/cgroup/memory/berth").is_dir() else []
    assert leftover == []
    rt = subprocess.run([str(Path(BERTH).parent / "berth-runtime"), "--root",
                         str(tmp_path / "runtime"), "list", "-q"], capture_output=True, text=True)
    assert rt.stdout == ""
    def no_veths() -> bool:  # they go with the namespaces, freed in the background
        out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        return not any(f"vb{cid[:12]}" in out for cid in ids)
    until(no_veths)
    berth("system", "prune", "-f")  # and prune takes the bridge nobody uses
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    from berth.engine.networks import bridge_name
    from berth.engine.state import State
    assert bridge_name(State(str(tmp_path / "root")), "bridge") not in links
