"""Volumes and mounts: -v (bind, named, anonymous, :ro), --mount, --tmpfs, volume verbs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def test_bind_mounts_read_only_and_read_write(berth, tmp_path: Path) -> None:  # noqa: F811
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from host\n")
    p = berth("run", "--rm", "-v", f"{host}:/ro:ro", "--mount",
              f"type=bind,source={host},target=/rw", "busybox", "sh", "-c",
              "cat /ro/in; touch /ro/x 2>/dev/null || echo refused; echo back > /rw/out")
    assert p.stdout == "from host\nrefused\n"
    assert (host / "out").read_text() == "back\n"


def test_named_volume_is_seeded_from_the_image_and_persists(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "--rm", "-v", "cfg:/etc", "busybox", "sh", "-c", "echo x > /etc/added")
    out = berth("run", "--rm", "-v", "cfg:/mnt", "busybox", "ls", "/mnt").stdout.split()
    assert "passwd" in out and "added" in out  # seeded once, then kept
    doc = json.loads(berth("volume", "inspect", "cfg").stdout)[0]
    assert doc["Name"] == "cfg" and doc["Driver"] == "local"
    assert Path(doc["Mountpoint"], "added").read_text() == "x\n"
    p = berth("run", "-d", "--name", "user", "-v", "cfg:/data", "busybox", "sleep", "30")
    assert p.returncode == 0
    p = berth("volume", "rm", "cfg", check=False)
    assert p.returncode == 1 and "in use" in p.stderr
    berth("rm", "-f", "user")
    assert berth("volume", "rm", "cfg").stdout == "cfg\n"
    assert berth("volume", "ls", "-q").stdout == ""


def test_anonymous_volumes_go_with_rm_v_and_tmpfs(berth) -> None:  # noqa: F811
    p = berth("run", "--rm", "-v", "/scratch", "--tmpfs", "/fast:size=1m", "busybox", "sh",
              "-c", "touch /scratch/a; grep -E ' /fast ' /proc/mounts | cut -d' ' -f3,4")
    assert p.stdout.startswith("tmpfs rw,nosuid,nodev") and "size=1024k" in p.stdout
    assert berth("volume", "ls", "-q").stdout == ""  # --rm removed the anonymous volume


@pytest.mark.parametrize("flag, words", [
    (["-v", "relative/dst"], "not an absolute path"),
    (["-v", "/nonexistent-berth-src:/x"], "bind source path does not exist"),
    (["--mount", "type=nfs,target=/x"], "type must be bind, volume or tmpfs"),
    (["--mount", "type=volume,target=/x,bogus=1"], "unknown field 'bogus'"),
    (["-v", "a:/b:rx"], "unknown option 'rx'"),
])
def test_bad_mount_flags(berth, flag: list[str], words: str) -> None:  # noqa: F811
    p = berth("run", "--rm", *flag, "busybox", "true", check=False)
    assert p.returncode == 125 and words in p.stderr
    assert berth("ps", "-aq").stdout == ""
