"""The SQLite store: names, records, paths and removal."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.vm.errors import DefinitionError, VMExists, VMNotFound
from berth.vm.store import Store


def test_insert_get_update_delete(tmp_path: Path) -> None:
    s = Store(str(tmp_path))
    p = s.insert("a", {"cpus": 1})
    assert Path(p.dir).is_dir()
    with pytest.raises(VMExists):
        s.insert("a", {})
    s.update("a", status="running", pid=42)
    r = s.get("a")
    assert (r.status, r.pid, r.spec) == ("running", 42, {"cpus": 1})
    assert [x.name for x in s.all()] == ["a"]
    s.delete("a")
    assert not Path(p.dir).exists()
    with pytest.raises(VMNotFound):
        s.get("a")
    assert (tmp_path / "vm.db").exists()
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_names(tmp_path: Path) -> None:
    s = Store(str(tmp_path))
    for bad in ("", "../x", "a/b", "-a", "x" * 64):
        with pytest.raises(DefinitionError):
            s.insert(bad, {})


def test_long_paths_move_sockets(tmp_path: Path) -> None:
    s = Store(str(tmp_path / ("d" * 90)))
    p = s.paths("vm")
    assert len(p.serial) < 108 and p.sock_dir != p.dir
    assert Store(str(tmp_path)).paths("vm").sock_dir == str(tmp_path / "vms" / "vm")
