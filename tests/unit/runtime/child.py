"""Helpers shared by the runtime's unit tests."""

from __future__ import annotations

import os
from collections.abc import Callable


def in_child(fn: Callable[[], str]) -> str:
    """Run fn in a forked child; return what it returned, or raise with what it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        status = 1
        try:
            os.close(r)
            os.write(w, fn().encode())
            status = 0
        except BaseException as e:
            try:
                os.write(w, f"{type(e).__name__}: {e}".encode())
            except BaseException:
                pass
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child failed: {out}"
    return out
