"""berth.database: many processes opening one fresh database at once all succeed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from berth import database

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"


def _race(path: str, opener, n: int = 16) -> int:  # type: ignore[no-untyped-def]
    """Fork `n` processes released together to open `path` and insert one row; return how
    many failed."""
    r, w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(w)
                os.read(r, 1)
                db = opener(path)
                db.execute("INSERT INTO t (x) VALUES (1)")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(r)
    os.write(w, b"x" * n)
    os.close(w)
    return sum(os.waitpid(p, 0)[1] != 0 for p in pids)


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    # sqlite3 alone (connect; PRAGMA journal_mode=WAL) fails a few of these: the switch
    # to WAL answers "database is locked" without waiting
    failed = 0
    for i in range(60):
        path = str(tmp_path / f"{i}.db")
        failed += _race(path, lambda p: database.connect(p, SCHEMA))
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 16
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    assert failed == 0


def test_columns_added_once_to_an_older_database(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x INTEGER)")
    db.commit()
    db.close()
    columns = (("t", "y", "TEXT NOT NULL DEFAULT 'a'"), ("t", "z", "INTEGER"))

    def opener(p: str) -> sqlite3.Connection:
        return database.connect(p, SCHEMA, columns)

    assert _race(path, opener) == 0
    db = database.connect(path, SCHEMA, columns)
    assert [r[1] for r in db.execute("PRAGMA table_info(t)")] == ["x", "y", "z"]
    assert db.execute("SELECT DISTINCT y FROM t").fetchall() == [("a",)]


def test_sqlite_loads_without_functools_and_its_statement_cache_works(tmp_path: Path) -> None:
    src = str(Path(__file__).resolve().parents[2] / "src")
    code = f"""
import sys
sys.path.insert(0, {src!r})
from berth import database
assert "functools" not in sys.modules and "collections" not in sys.modules
db = database.connect({str(tmp_path / "c.db")!r}, "CREATE TABLE IF NOT EXISTS t (x INTEGER);")
for i in range(300):  # more distinct statements than the cache holds, each run twice
    for _ in range(2):
        db.execute(f"INSERT INTO t VALUES ({{i}})")
        db.execute("INSERT INTO t VALUES (?)", (-i,))
cur = db.execute("SELECT count(*), sum(x) FROM t")
assert cur.fetchone() == (1200, 0), "statements"
import functools  # the real one, now that it is asked for
assert hasattr(functools, "reduce")
print("ok")
"""
    p = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.strip() == "ok", p.stderr


def test_a_changed_schema_reaches_an_existing_database(tmp_path: Path) -> None:
    path = str(tmp_path / "v.db")
    database.connect(path, SCHEMA).close()
    database.connect(path, SCHEMA).close()  # the same schema: nothing to do
    more = SCHEMA + "CREATE TABLE IF NOT EXISTS u (y TEXT);"
    db = database.connect(path, more, (("t", "z", "INTEGER"),))
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master")} == {"t", "u"}
    assert [r[1] for r in db.execute("PRAGMA table_info(t)")] == ["x", "z"]


def test_the_wal_stays_short(tmp_path: Path) -> None:
    """Each command's first open reads the whole WAL: commits checkpoint it every
    WAL_FRAMES pages, not SQLite's default 1000."""
    path = str(tmp_path / "t.db")
    db = database.connect(path, SCHEMA)
    for _ in range(300):  # each commit adds a frame (the table's one page)
        db.execute("INSERT INTO t (x) VALUES (1)")
    busy, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and 0 < frames <= 100  # 300 with the default
    db.close()
