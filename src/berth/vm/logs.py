"""`vm logs`: the VM's serial console as qemu logged it (every boot, appended)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

from berth.vm.status import refresh
from berth.vm.store import Store


def read(name: str, store: Store, tail: int | None = None) -> str:
    store.get(name)
    path = store.paths(name).serial_log
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    if tail is not None:
        text = "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""
    return text


def follow(name: str, store: Store, poll: float = 0.2) -> Iterator[bytes]:
    """New output as it arrives, until the VM stops."""
    path = store.paths(name).serial_log
    pos = os.path.getsize(path) if os.path.exists(path) else 0
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            pos += len(chunk)
            yield chunk
        elif refresh(store, store.get(name)).status not in ("running", "paused"):
            return
        else:
            time.sleep(poll)
            sys.stdout.flush()
