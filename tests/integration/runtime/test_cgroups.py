"""cgroups on the real kernel: v1 (this host's controllers) and the v2 hierarchy."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from berth.runtime.cgroups import mounts

pytestmark = pytest.mark.root


def test_delete_removes_only_the_cgroups_it_created(runtime, bundle) -> None:
    pre = Path("/sys/fs/cgroup/pids") / bundle.cgroup.lstrip("/")
    pre.mkdir(parents=True)
    try:
        runtime("run", "--bundle", bundle.write(), "c1")
        assert pre.is_dir()  # there before the container: left alone
        mem = Path("/sys/fs/cgroup/memory") / bundle.cgroup.lstrip("/")
        assert not mem.exists()  # made for the container: removed
    finally:
        pre.rmdir()


def test_relative_cgroups_path_is_under_the_callers_cgroup(runtime, bundle) -> None:
    rel = f"berth-rel-{uuid.uuid4().hex[:8]}/c"
    bundle.config["linux"]["cgroupsPath"] = rel
    bundle.with_args("cat", "/proc/self/cgroup")
    own = {line.split(":")[1]: line.split(":")[2] for line in
           Path("/proc/self/cgroup").read_text().splitlines()}
    out = runtime("run", "--bundle", bundle.write(), "c1").stdout
    seen = {line.split(":")[1]: line.split(":")[2] for line in out.splitlines()}
    # the container has no cgroup namespace: it sees the host's paths
    assert seen["memory"] == os.path.join(own["memory"], rel)
    assert seen["pids"] == os.path.join(own["pids"], rel)


@pytest.mark.skipif(mounts()[0] is None, reason="no cgroup2 mount")
def test_v2_hierarchy_create_join_freeze_kill_destroy() -> None:
    """The V2 class on this host's cgroup2 mount (controller-less here, so no limits)."""
    import subprocess

    from berth.runtime.cgroups.v2 import V2

    mnt = mounts()[0]
    cg = V2(mnt, f"/berth-test-v2/{uuid.uuid4().hex[:8]}")
    cg.create()
    assert Path(cg.dir).is_dir() and cg.created
    from berth.runtime.cgroups import join_self
    child = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: join_self(cg.join_files()))
    try:
        assert cg.pids() == [child.pid]
        assert f"0::{cg.dir[len(mnt):]}" in Path(f"/proc/{child.pid}/cgroup").read_text()
        cg.freeze()
        assert Path(f"/proc/{child.pid}/status").read_text().count("State:\tS") == 1
        assert "frozen 1" in Path(cg.dir, "cgroup.events").read_text()
        cg.thaw()
        cg.kill_all()
        assert child.wait(timeout=5) == -9
    finally:
        child.kill()
        child.wait()
        cg.destroy()
    assert not Path(cg.dir).exists()
    assert not Path(mnt, "berth-test-v2").exists()


def test_v1_freezer_pauses_the_container(runtime, bundle) -> None:
    import json
    bundle.with_args("sleep", "60")
    runtime("create", "--bundle", bundle.write(), "c1")
    runtime("start", "c1")
    from berth.runtime.delete import cgroup_of
    st = json.loads((runtime.root / "c1" / "state.json").read_text())
    cg = cgroup_of(st)
    cg.freeze()
    assert Path(cg.dirs["freezer"], "freezer.state").read_text().strip() == "FROZEN"
    cg.thaw()
    assert Path(cg.dirs["freezer"], "freezer.state").read_text().strip() == "THAWED"
