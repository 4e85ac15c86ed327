"""berth's SQLite databases (the engine's, the image store's, the VMs'): WAL mode, a schema
and its added columns, safe to open from many processes at once.

Every berth command opens them, concurrently when users script it (50 `berth run -d` at
once). A busy timeout covers ordinary contention, but not the switch of a fresh file to
WAL mode: each opener reads the header under a shared lock, then asks for the write lock
to change it, and SQLite answers "database is locked" at once rather than wait (the two
could deadlock). So a database is set up (WAL mode, schema, added columns) under an
flock of its directory, one process at a time, whenever its user_version is not the
checksum of the schema it is opened with; the others find it done.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself is an import `berth run` goes without
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType


def _load_sqlite() -> ModuleType:
    """The C module _sqlite3 (the sqlite3 package adds date/time adapters berth does not
    use, and the datetime import, ~1.5 ms). Its initialisation imports functools for
    lru_cache, the statement cache of each connection: functools, collections, operator,
    types and reprlib cost ~3 ms of every berth command. The cache is all it takes from
    them, so unless functools is loaded already, it gets a small one of ours while it
    loads (and functools stays unloaded until something else asks for it)."""
    if "functools" in sys.modules:
        import _sqlite3
        return _sqlite3
    stub = type(sys)("functools")
    stub.lru_cache = _statement_cache  # type: ignore[attr-defined]
    sys.modules["functools"] = stub
    try:
        import _sqlite3
    finally:
        del sys.modules["functools"]
    return _sqlite3


def _statement_cache(maxsize: int = 128) -> Callable[[Callable], Callable[[str], object]]:
    """What _sqlite3 asks of lru_cache: `lru_cache(maxsize)(connection)` gives a callable
    that maps an SQL string to its prepared statement, made by `connection(sql)` once."""
    def wrap(prepare: Callable[[str], object]) -> Callable[[str], object]:
        statements: dict[str, object] = {}

        def get(sql: str) -> object:
            st = statements.get(sql)
            if st is None:
                if len(statements) >= maxsize:
                    statements.clear()
                st = statements[sql] = prepare(sql)
            return st
        return get
    return wrap


if TYPE_CHECKING:
    import _sqlite3 as sqlite3
else:
    sqlite3 = _load_sqlite()

Columns = tuple[tuple[str, str, str], ...]  # (table, column, declaration) added later
WAL_FRAMES = 64  # pages in the WAL that make a commit checkpoint it into the database


def connect(path: str, schema: str, columns: Columns = ()) -> sqlite3.Connection:
    """Open (creating) the database at `path` in WAL mode with `schema` (statements that
    are no-ops when their objects exist) and `columns` present.

    The database's user_version records a checksum of the schema and columns it was last
    set up with: when it matches, opening is one read of the header (the statements of
    the schema cost ~0.3 ms of every command)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    version = _version(schema, columns)
    if db.execute("PRAGMA user_version").fetchone()[0] != version:
        with _locked(os.path.dirname(path)):
            if not _wal(path):
                db.execute("PRAGMA journal_mode=WAL")
            db.executescript(schema)
            _add(db, columns)
            db.execute(f"PRAGMA user_version={version}")
    # in WAL mode, NORMAL keeps every commit atomic and the file consistent; only the
    # last commits before a power cut may be lost (no fsync per commit)
    db.execute("PRAGMA synchronous=NORMAL")
    # every berth command is a new process, the first to open the file's shared memory
    # index, which SQLite then rebuilds by reading the whole WAL: 1000 frames (the default
    # checkpoint threshold) take ~1.7 ms, 64 ~0.1 ms; a checkpoint every few runs is cheap
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_FRAMES}")
    return db


def _version(schema: str, columns: Columns) -> int:
    from binascii import crc32  # built in
    return crc32(f"{schema}\0{columns!r}".encode()) & 0x7FFFFFFF or 1


def ensure(db: sqlite3.Connection, path: str, schema: str, columns: Columns = ()) -> None:
    """`schema` and `columns` in the open database at `path` (a module's own tables)."""
    db.executescript(schema)
    if _missing(db, columns):
        with _locked(os.path.dirname(path)):
            _add(db, columns)


def _wal(path: str) -> bool:
    """Is the file a database in WAL mode? (header bytes 18 and 19, read/write version)"""
    try:
        with open(path, "rb") as f:
            return f.read(20)[18:20] == b"\x02\x02"
    except FileNotFoundError:
        return False


def _missing(db: sqlite3.Connection, columns: Columns) -> Columns:
    have: dict[str, set[str]] = {}
    for table, _, _ in columns:
        if table not in have:
            have[table] = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    return tuple(c for c in columns if c[1] not in have[c[0]])


def _add(db: sqlite3.Connection, columns: Columns) -> None:
    for table, col, decl in _missing(db, columns):  # a database from before they existed
        db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")


class _locked:
    """An exclusive flock of a directory for the duration of a `with`."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __enter__(self) -> None:
        import fcntl
        self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock
