"""The engine's record of containers: SQLite in WAL mode under the berth root.

One row per container; the status columns are what berth last saw, and
`refresh()` checks them against the kernel (the runtime's state), so `ps`
stays truthful after a crash or a reboot.
"""

from __future__ import annotations

import os
import time

from berth import database
from berth.database import sqlite3
from berth.engine.errors import ContainerNotFound, NameInUse
from berth.oci import jsonfast as json

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,            -- as the user wrote it
    image_id TEXT NOT NULL,
    command TEXT NOT NULL,          -- JSON list: the process args
    created REAL NOT NULL,
    status TEXT NOT NULL,           -- created | running | exited
    pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    started REAL,
    finished REAL,
    restart_count INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0,   -- a user stopped it: no restart
    supervised INTEGER NOT NULL DEFAULT 0,       -- the supervisor owns it (detached)
    paused INTEGER NOT NULL DEFAULT 0,
    ports TEXT NOT NULL DEFAULT '[]',            -- JSON: published ports while running
    spec TEXT NOT NULL              -- JSON ContainerSpec
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- boot_id
"""
COLUMNS = tuple(("containers", col, decl) for col, decl in (  # added since the first release
    ("restart_count", "INTEGER NOT NULL DEFAULT 0"),
    ("stop_requested", "INTEGER NOT NULL DEFAULT 0"),
    ("supervised", "INTEGER NOT NULL DEFAULT 0"),
    ("paused", "INTEGER NOT NULL DEFAULT 0"),
    ("ports", "TEXT NOT NULL DEFAULT '[]'")))


def boot_id() -> str:
    """The kernel's id of this boot (what tells the first command after a reboot)."""
    override = os.environ.get("BERTH_BOOT_ID")  # tests simulate a reboot with it
    if override:
        return override
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def berth_root() -> str:
    base = os.environ.get("BERTH_ROOT")
    if base:
        return base
    if os.geteuid() == 0:
        return "/var/lib/berth"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "berth")


class State:
    def __init__(self, root: str | None = None) -> None:
        self.root = root or berth_root()
        self.containers_dir = os.path.join(self.root, "containers")
        os.makedirs(self.containers_dir, 0o711, exist_ok=True)
        self.db_path = os.path.join(self.root, "engine.db")
        self.db = database.connect(self.db_path, SCHEMA, COLUMNS)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def booted_here(self, current: str | None = None) -> bool:
        """Do the records belong to this boot? (If not, boot.recover is due.)"""
        row = self.db.execute("SELECT value FROM meta WHERE key='boot_id'").fetchone()
        return row is not None and row[0] == (current or boot_id())

    def dir(self, cid: str) -> str:
        return os.path.join(self.containers_dir, cid)

    def add(self, cid: str, name: str, image: str, image_id: str, command: list[str],
            spec: dict) -> None:
        try:
            self.db.execute("INSERT INTO containers (id, name, image, image_id, command, created,"
                            " status, spec) VALUES (?,?,?,?,?,?,?,?)",
                            (cid, name, image, image_id, json.dumps(command), time.time(),
                             "created", json.dumps(spec)))
        except sqlite3.IntegrityError:
            other = self.db.execute("SELECT id FROM containers WHERE name=?", (name,)).fetchone()
            raise NameInUse(name, other["id"] if other else "?") from None

    def update(self, cid: str, **fields: object) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE containers SET {cols} WHERE id=?", (*fields.values(), cid))

    def get(self, ref: str) -> dict:
        """A container by full id, unique id prefix, or name."""
        row = self.db.execute("SELECT * FROM containers WHERE id=? OR name=?",
                              (ref, ref.lstrip("/"))).fetchone()
        if row is None and len(ref) >= 1:
            rows = self.db.execute("SELECT * FROM containers WHERE id LIKE ?",
                                   (ref + "%",)).fetchall()
            if len(rows) == 1:
                row = rows[0]
        if row is None:
            raise ContainerNotFound(ref)
        return dict(row)

    def all(self) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM containers ORDER BY created DESC").fetchall()]

    def remove(self, cid: str) -> None:
        self.db.execute("DELETE FROM containers WHERE id=?", (cid,))

    def names(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM containers")}
