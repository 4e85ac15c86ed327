"""Mount option parsing and path resolution inside a rootfs."""

from __future__ import annotations

import os
from pathlib import Path

from berth.runtime import linux
from berth.runtime.mounts import parse_options, secure_join


def test_parse_options_splits_flags_propagation_and_data() -> None:
    flags, prop, data = parse_options(["nosuid", "ro", "rprivate", "mode=755", "size=64k",
                                       "rw", "tmpcopyup"])
    assert flags == linux.MS_NOSUID
    assert prop == [linux.MS_PRIVATE | linux.MS_REC]
    assert data == "mode=755,size=64k"


def test_rbind_is_recursive_bind() -> None:
    assert parse_options(["rbind"])[0] == linux.MS_BIND | linux.MS_REC


def test_secure_join_keeps_symlinks_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")            # absolute: means <root>/etc
    os.symlink("../../../../..", root / "up")   # escapes: clamped at the root
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    r = str(root)
    assert secure_join(r, "/abs/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "/up/etc") == f"{r}/etc"
    assert secure_join(r, "/../../x") == f"{r}/x"
    assert secure_join(r, "/new/dir") == f"{r}/new/dir"
    try:
        secure_join(r, "/loop1/x")
    except Exception as e:  # noqa: BLE001
        assert "too many symlinks" in str(e)
    else:
        raise AssertionError("a symlink loop must be an error")
