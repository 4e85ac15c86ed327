"""Where the runtime keeps container state: one directory per container under --root.

<root>/<id>/state.json   the runtime's record (OCI state plus what delete needs)
<root>/<id>/exec.fifo    exists from create until start: `start` opens it to release init
Writes are atomic (temp file + rename), so a crash never leaves half a record.
"""

from __future__ import annotations

import os

from berth.oci import jsonfast
from berth.runtime.errors import ContainerExists, ContainerNotFound, UsageError

DEFAULT_ROOT = "/run/berth-runtime"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-+")


def default_root() -> str:
    if os.geteuid() == 0:
        return DEFAULT_ROOT
    xdg = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/berth-runtime-{os.geteuid()}"
    return os.path.join(xdg, "berth-runtime")


SECCOMP_CACHE = ".seccomp"  # compiled seccomp programs (seccomp.prepare), not a container


def check_id(cid: str) -> str:
    if not cid or cid in (".", "..") or not set(cid) <= _ID_CHARS:
        raise UsageError(f"invalid container id {cid!r}: use letters, digits, '_', '.', '-', '+'")
    if cid == SECCOMP_CACHE:
        raise UsageError(f"invalid container id {cid!r}: the runtime keeps its seccomp cache "
                         "under that name")
    return cid


class Store:
    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, check_id(cid))

    def reserve(self, cid: str) -> str:
        """Create the container's directory; fail if the id is taken."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        d = self.dir(cid)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            raise ContainerExists(cid) from None
        return d

    def load(self, cid: str) -> dict:
        try:
            with open(os.path.join(self.dir(cid), "state.json"), "rb") as f:
                return jsonfast.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(cid) from None
        except ValueError:
            raise ContainerNotFound(cid) from None  # a create that died before its first write

    def save(self, cid: str, state: dict) -> None:
        d = self.dir(cid)
        tmp = os.path.join(d, ".state.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, jsonfast.dumps(state).encode())
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(d, "state.json"))

    def remove(self, cid: str) -> None:
        d = self.dir(cid)
        for name in ("state.json", ".state.json.tmp", "exec.fifo"):
            try:
                os.unlink(os.path.join(d, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass

    def ids(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.root)
                          if n != SECCOMP_CACHE and os.path.isdir(os.path.join(self.root, n)))
        except FileNotFoundError:
            return []
