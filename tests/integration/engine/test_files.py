"""cp, diff, commit and export of a container's filesystem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.engine.test_run import BERTH, berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def test_diff_commit_and_run_the_new_image(berth) -> None:  # noqa: F811
    berth("run", "--name", "w1", "busybox", "sh", "-c",
          "echo hi > /root/hello; rm /bin/vi; mkdir /newdir")
    assert berth("diff", "w1").stdout.splitlines() == [
        "C /bin", "D /bin/vi", "A /newdir", "C /root", "A /root/hello"]
    image_id = berth("commit", "-m", "snap", "-c", "ENV Z=9", "w1", "snap:1").stdout.strip()
    assert image_id.startswith("sha256:")
    p = berth("run", "--rm", "snap:1", "sh", "-c",
              "cat /root/hello; echo $Z; test -e /bin/vi || echo no-vi; test -d /newdir && echo d")
    assert p.stdout == "hi\n9\nno-vi\nd\n"
    hist = berth("history", "--format", "{{.Comment}}", "snap:1").stdout.splitlines()
    assert hist[0] == "snap"


def test_cp_both_ways_and_no_escape(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "--name", "c1", "busybox", "sh", "-c",
          "echo inside > /root/f; ln -s /etc/shadow-of-host /root/link; mkdir -p /root/d")
    berth("cp", "c1:/root/f", str(tmp_path))
    assert (tmp_path / "f").read_text() == "inside\n"
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x").write_text("x")
    berth("cp", str(src), "c1:/root/d")
    p = berth("run", "--rm", "-v", f"{tmp_path}:/out", "busybox", "true")
    assert p.returncode == 0
    berth("cp", "c1:/root/d/tree/sub/x", str(tmp_path / "x2"))
    assert (tmp_path / "x2").read_text() == "x"
    # a symlink inside the container resolves inside it, never to the host's /etc
    p = berth("cp", str(src / "sub" / "x"), "c1:/root/link", check=False)
    assert not Path("/etc/shadow-of-host").exists()


def test_export_is_the_whole_filesystem(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "--name", "e1", "busybox", "sh", "-c", "echo mark > /marker")
    out = tmp_path / "e.tar"
    berth("export", "-o", str(out), "e1")
    names = subprocess.run(["tar", "tf", str(out)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert "marker" in names and "bin/busybox" in names
    assert not any(n.startswith("/") or n.startswith("..") for n in names)
