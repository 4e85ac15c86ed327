"""Cgroup bookkeeping that races another delete: the kernel answers ENODEV to a read of a
cgroup's cgroup.procs while the directory is being removed."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import berth.runtime.cgroups as cgroups
from berth.runtime.cgroups import v1, v2


def _enodev(path, *a, **kw):  # type: ignore[no-untyped-def]
    if str(path).endswith("cgroup.procs"):
        raise OSError(errno.ENODEV, "No such device")
    return open(path, *a, **kw)


@pytest.mark.parametrize("module", [v1, v2])
def test_a_cgroup_removed_while_listed_has_no_processes(module, tmp_path: Path,
                                                         monkeypatch) -> None:
    (tmp_path / "cgroup.procs").write_text("1\n")
    if module is v1:
        cg = v1.V1.from_state({"path": "/x", "dirs": {"pids": str(tmp_path)}})
    else:
        cg = v2.V2.from_state({"mountpoint": "/", "path": "/x", "dir": str(tmp_path)})
    assert cg.pids() == [1]
    monkeypatch.setattr(cgroups, "open", _enodev, raising=False)  # both read through it
    assert cg.pids() == []  # as if gone: delete's kill_all then has nothing to signal


def test_other_read_errors_still_surface(tmp_path: Path, monkeypatch) -> None:
    def eio(path, *a, **kw):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error")
    cg = v1.V1.from_state({"path": "/x", "dirs": {"pids": str(tmp_path)}})
    monkeypatch.setattr(cgroups, "open", eio, raising=False)
    with pytest.raises(OSError, match="Input/output"):
        cg.pids()
