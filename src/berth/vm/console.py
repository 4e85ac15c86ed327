"""`vm console`: the guest's serial port, through qemu's unix socket.

attach() puts the terminal in raw mode and copies bytes both ways until the detach key
(Ctrl-] by default) is typed or the VM stops; the guest keeps running. run() types one
shell command on the console and returns what it printed: the tests use it to drive the
test guest, whose console runs a shell.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
import uuid

from berth.vm.errors import InvalidState, VMError
from berth.vm.status import refresh
from berth.vm.store import Store

DETACH = b"\x1d"  # Ctrl-]


def connect(name: str, store: Store, timeout: float = 5.0) -> socket.socket:
    rec = refresh(store, store.get(name))
    if rec.status not in ("running", "paused"):
        raise InvalidState(f"vm {name!r} is not running")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(store.paths(name).serial)
    except OSError as e:
        s.close()
        raise VMError(f"cannot attach to the console of vm {name!r}: {e}") from None
    return s


def run(name: str, store: Store, command: str, timeout: float = 30.0) -> str:
    """Type `command` on the guest's console shell and return its output."""
    tag = uuid.uuid4().hex[:8]
    # the typed line holds `$((1+1))`; only the shell's output holds the digit, so the
    # echo of the typed line (which the terminal may also wrap) never matches the markers
    line = (f"echo BERTH-BEGIN-{tag}-$((1+1)); {command}; "
            f"echo BERTH-END-{tag}-$((1+1))\n")
    begin = f"BERTH-BEGIN-{tag}-2\n"
    end = f"BERTH-END-{tag}-2".encode()
    s = connect(name, store)
    try:
        s.sendall(line.encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while end not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise VMError(f"vm {name!r}: no answer on the console within {timeout:g}s"
                              f" to {command!r}")
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise VMError(f"vm {name!r}: console closed")
            buf += chunk
    finally:
        s.close()
    text = buf.decode(errors="replace").replace("\r", "")
    text = text[: text.index(end.decode())]
    return text[text.index(begin) + len(begin):] if begin in text else text


def attach(name: str, store: Store, detach: bytes = DETACH) -> None:
    s = connect(name, store)
    s.setblocking(False)
    fd = sys.stdin.fileno()
    old = None
    if os.isatty(fd):
        import termios
        import tty

        old = termios.tcgetattr(fd)
        tty.setraw(fd)
    try:
        while True:
            r, _, _ = select.select([s, fd], [], [], 1.0)
            if s in r:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    data = b"-"
                if not data:
                    break
                if data != b"-":
                    os.write(sys.stdout.fileno(), data)
            if fd in r:
                data = os.read(fd, 1024)
                if not data:
                    break
                if detach in data:
                    data = data[: data.index(detach)]
                    if data:
                        s.sendall(data)
                    break
                s.sendall(data)
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, old)
        s.close()
