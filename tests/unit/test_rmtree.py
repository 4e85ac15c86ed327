"""engine.containers._rmtree: rm -rf of a container's directory that never follows a symlink."""

from __future__ import annotations

import os
from pathlib import Path

from berth.engine.containers import _rmtree


def test_removes_everything_and_nothing_a_symlink_points_to(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "f").write_text("x")
    top = tmp_path / "ctr"
    (top / "upper" / "a" / "b").mkdir(parents=True)
    (top / "upper" / "a" / "b" / "f").write_text("y")
    (top / "upper" / "dirlink").symlink_to(outside)
    (top / "upper" / "filelink").symlink_to(outside / "keep" / "f")
    (top / "upper" / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(top / "upper" / "fifo")
    (top / "upper" / "a").chmod(0o000)

    _rmtree(str(top))

    assert not top.exists()
    assert (outside / "keep" / "f").read_text() == "x"


def test_a_missing_directory_is_no_error(tmp_path: Path) -> None:
    _rmtree(str(tmp_path / "never-made"))
