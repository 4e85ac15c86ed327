"""Attaching to a supervised container: its output here, this terminal's input there.

The supervisor holds the container's stdio (engine/stdio.py); `attach()` asks
it for the stream and copies: the container's output to our stdout/stderr,
our stdin to the container when it was started with -i. With a tty the user's
terminal goes raw, window sizes follow, and the detach keys (docker's ctrl-p
ctrl-q, `--detach-keys`) leave the container running; they are never sent.

When our input ends, a non-tty container created with `create -i` (docker's
StdinOnce) gets the end of its input too; any other keeps its stdin open for
the next attach. Either way we stay, as docker does, until the container
exits or the user detaches.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct

from berth.engine.errors import EngineError, InvalidOption
from berth.engine.foreground import write_all
from berth.engine.stdio import EOF, ERR, EXIT, INPUT, WINSIZE, frame, frames

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(text: str) -> bytes:
    """docker's --detach-keys: comma-separated `ctrl-<a-z@[\\]^_>` or single characters."""
    out = bytearray()
    for key in text.split(","):
        k = key.strip().lower()
        if len(k) == 1 and k.isprintable():
            out.append(ord(key.strip()))
        elif k.startswith("ctrl-") and len(k) == 6 and ("a" <= k[5] <= "z" or k[5] in "@[\\]^_"):
            out.append(ord(k[5].upper()) & 0x1F)
        else:
            raise InvalidOption(f"invalid detach keys {text!r}: unknown key {key.strip()!r} "
                                "(use ctrl-<a-z, @, [, \\, ], ^, _> or single characters, "
                                "comma-separated, e.g. ctrl-p,ctrl-q)")
    if not out:
        raise InvalidOption("invalid detach keys '': give at least one key")
    return bytes(out)


class _Escape:
    """Finds the detach sequence in the input; holds a partial match until it is decided."""

    def __init__(self, keys: bytes) -> None:
        self.keys, self.held = keys, b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(what to send on, whether the whole sequence was typed)."""
        out = bytearray()
        for b in data:
            if b == self.keys[len(self.held)]:
                self.held += bytes([b])
                if self.held == self.keys:
                    return bytes(out), True
            else:
                out += self.held
                self.held = b""
                if b == self.keys[0]:
                    self.held = bytes([b])
                    if self.held == self.keys:
                        return bytes(out), True
                else:
                    out.append(b)
        return bytes(out), False


def connect(root: str, cid: str, stdin: bool, start: bool) -> tuple[socket.socket, dict]:
    """A connection carrying container `cid`'s stdio, and the supervisor's reply."""
    import json

    from berth.engine.client import request
    from berth.engine.rundir import socket_path
    request(root, {"op": "ping"})  # a supervisor is up (started if none was)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(60)
        sock.connect(socket_path(root))
        sock.sendall((json.dumps({"op": "attach", "id": cid, "stdin": stdin,
                                  "start": start}) + "\n").encode())
        line = b""
        while not line.endswith(b"\n"):  # the reply, byte by byte: the stream follows it
            ch = sock.recv(1)
            if not ch:
                break
            line += ch
        if not line:
            raise EngineError("the supervisor closed the connection without answering")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise EngineError(reply.get("error") or "the supervisor refused to attach")
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock, reply


def _winsize(fd: int) -> bytes | None:
    import fcntl
    import termios
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return struct.pack(">HH", rows, cols)


def attach(root: str, cid: str, *, stdin: bool = True, start: bool = False,
           detach_keys: str = DEFAULT_DETACH_KEYS, in_fd: int = 0, out_fd: int = 1,
           err_fd: int = 2) -> int | None:
    """Copy container `cid`'s stdio until it exits (its exit code) or we leave (None)."""
    import contextlib

    from berth.engine.tty import raw_terminal
    keys = _Escape(parse_detach_keys(detach_keys))
    sock, reply = connect(root, cid, stdin, start)
    tty, sending = bool(reply["tty"]), stdin and bool(reply["stdin"])
    resized = [True]
    old_winch = None
    if tty and os.isatty(out_fd):
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: resized.__setitem__(0, True))
    buf = bytearray()
    raw = raw_terminal(in_fd) if tty and sending else contextlib.nullcontext()
    try:
        with raw:
            while True:
                if tty and resized[0] and os.isatty(out_fd):
                    resized[0] = False
                    size = _winsize(out_fd)
                    if size:
                        sock.sendall(frame(WINSIZE, size))
                watch: list[int] = [sock.fileno(), in_fd] if sending else [sock.fileno()]
                try:  # a timeout, to notice window size changes
                    ready, _, _ = select.select(watch, [], [], 0.2)
                except InterruptedError:
                    continue
                if sock.fileno() in ready:
                    data = sock.recv(65536)
                    if not data:  # no exit code came: the supervisor went away
                        raise EngineError("lost the connection to the supervisor (see "
                                          f"{root}/run/supervisor.log): the container "
                                          "may still be running")
                    buf += data
                    for kind, payload in frames(buf):
                        if kind == EXIT:
                            return int(struct.unpack(">i", payload)[0])
                        write_all(err_fd if kind == ERR else out_fd, payload)
                if sending and in_fd in ready:
                    data = os.read(in_fd, 65536)
                    if not data:
                        sending = False
                        sock.sendall(frame(EOF))
                        continue
                    data, detached = keys.feed(data)
                    if data:
                        sock.sendall(frame(INPUT, data))
                    if detached:
                        return None
    finally:
        sock.close()
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
