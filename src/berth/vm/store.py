"""Where berth keeps its VMs: one SQLite database (WAL) and one directory per VM.

<state>/vm.db                the table `vms`: name, definition (JSON), status, pid, accel
<state>/vms/<name>/          the VM's files: disks, seed.iso, serial.log, qemu.pid
<sockets>/qmp.sock, serial.sock   in the VM directory, or under /tmp/berth-vm-<uid>/ when the
                             directory's path is too long for a unix socket (108 bytes)

<state> is $BERTH_STATE_DIR, else /var/lib/berth/vm as root, else
$XDG_DATA_HOME/berth/vm. The store records what berth did; whether qemu still runs is
checked against the process itself (berth.vm.status), never trusted from the table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from berth.vm.errors import DefinitionError, VMExists, VMNotFound

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS vms (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    accel TEXT,
    created REAL NOT NULL,
    started REAL
);
"""


def state_dir() -> str:
    env = os.environ.get("BERTH_STATE_DIR")
    if env:
        return os.path.abspath(env)
    if os.geteuid() == 0:
        return "/var/lib/berth/vm"
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                           ".local", "share")
    return os.path.join(data, "berth", "vm")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DefinitionError("name", f"{name!r} is not a valid vm name: use up to 63 letters,"
                              " digits, '_', '.', '-', starting with a letter or digit")
    return name


@dataclass
class Paths:
    """The files of one VM."""

    dir: str
    sock_dir: str

    @property
    def qmp(self) -> str:
        return os.path.join(self.sock_dir, "qmp.sock")

    @property
    def serial(self) -> str:
        return os.path.join(self.sock_dir, "serial.sock")

    @property
    def serial_log(self) -> str:
        return os.path.join(self.dir, "serial.log")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.dir, "qemu.pid")

    @property
    def seed(self) -> str:
        return os.path.join(self.dir, "seed.iso")

    def disk(self, index: int) -> str:
        return os.path.join(self.dir, f"disk{index}.qcow2")


@dataclass
class Record:
    """One row of `vms`, with its definition decoded."""

    name: str
    spec: dict
    status: str  # created | running | stopped
    pid: int | None
    accel: str | None
    created: float
    started: float | None


class Store:
    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or state_dir())
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            os.makedirs(os.path.join(self.root, "vms"), mode=0o700, exist_ok=True)
            from berth import database
            self._db = database.connect(os.path.join(self.root, "vm.db"), SCHEMA)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def paths(self, name: str) -> Paths:
        d = os.path.join(self.root, "vms", check_name(name))
        sock_dir = d
        if len(os.path.join(d, "serial.sock")) >= 100:
            import hashlib

            digest = hashlib.sha256(d.encode()).hexdigest()[:16]
            sock_dir = os.path.join(f"/tmp/berth-vm-{os.geteuid()}", digest)
        return Paths(d, sock_dir)

    def insert(self, name: str, spec: dict) -> Paths:
        """Record a new VM and make its directory; VMExists if the name is taken."""
        check_name(name)
        p = self.paths(name)
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO vms (name, spec, status, created) VALUES (?, ?, ?, ?)",
                           (name, json.dumps(spec), "created", time.time()))
                os.makedirs(p.dir, mode=0o700)
        except sqlite3.IntegrityError:
            raise VMExists(name) from None
        except FileExistsError:
            raise VMExists(name) from None
        return p

    def get(self, name: str) -> Record:
        row = self.db.execute("SELECT name, spec, status, pid, accel, created, started FROM vms"
                              " WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise VMNotFound(name)
        return Record(row[0], json.loads(row[1]), *row[2:])

    def all(self) -> list[Record]:
        rows = self.db.execute("SELECT name, spec, status, pid, accel, created, started FROM vms"
                               " ORDER BY name").fetchall()
        return [Record(r[0], json.loads(r[1]), *r[2:]) for r in rows]

    def update(self, name: str, **fields: object) -> None:
        if "spec" in fields:
            fields["spec"] = json.dumps(fields["spec"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        cur = self.db.execute(f"UPDATE vms SET {cols} WHERE name = ?", (*fields.values(), name))
        if cur.rowcount == 0:
            raise VMNotFound(name)

    def delete(self, name: str) -> None:
        """Forget the VM and remove its directory (disks berth created included)."""
        p = self.paths(name)
        self.db.execute("DELETE FROM vms WHERE name = ?", (name,))
        shutil.rmtree(p.dir, ignore_errors=True)
        if p.sock_dir != p.dir:
            shutil.rmtree(p.sock_dir, ignore_errors=True)
