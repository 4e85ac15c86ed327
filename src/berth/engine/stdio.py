"""A supervised container's stdio, as the supervisor holds it.

Output is two pipes (stdout, stderr) or, with -t, the master of the
container's pty: one stream, logged as stdout, as docker logs tty
containers. Every byte goes to the container's json.log (docker's json-file
format) and to the clients attached at that moment (`berth attach`,
`berth start -a`). Input exists with -i: a pipe (or the pty) whose writing end
stays here, so that whoever attaches later can type into it.

The wire protocol with attached clients is docker's stream framing, both ways:
an 8-byte header (kind, 3 zero bytes, big-endian length) then the payload.
Supervisor to client: 1 stdout, 2 stderr (a tty's output is 1), 3 the exit
code (4 bytes, signed) just before the supervisor closes the connection.
Client to supervisor: 0 input bytes, 1 end of input, 2 window size (rows,
columns: 2 x uint16). A client that detaches (docker's ctrl-p ctrl-q) just
closes its socket: that is not the end of the container's input.

Nothing here may block the supervisor, which serves every container: all
descriptors are non-blocking, input a container does not read yet waits in a
buffer (and the clients are not read meanwhile), and a client that does not
keep up with the output is dropped.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct

from berth.engine.jsonlog import LogStream

HEADER = struct.Struct(">BxxxI")
OUT, ERR, EXIT = 1, 2, 3  # supervisor -> client
INPUT, EOF, WINSIZE = 0, 1, 2  # client -> supervisor
MAX_BACKLOG = 1 << 20  # output bytes a client may fall behind before it is dropped
MAX_PENDING = 1 << 18  # input bytes waiting for the container before clients are paused


def frame(kind: int, data: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(data)) + data


def frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """The complete frames at the start of `buf` (removed from it)."""
    out = []
    while len(buf) >= HEADER.size:
        kind, size = HEADER.unpack_from(buf)
        if len(buf) < HEADER.size + size:
            break
        out.append((kind, bytes(buf[HEADER.size:HEADER.size + size])))
        del buf[:HEADER.size + size]
    return out


class _Client:
    def __init__(self, conn: socket.socket, stdin: bool) -> None:
        self.conn = conn
        self.stdin = stdin  # does its input go to the container?
        self.inbuf = bytearray()
        self.out = bytearray()
        self.eof = False  # it closed its side (end of input, or detached)


class ContainerIO:
    """The stdio of one running container: its log, its input, its attached clients."""

    def __init__(self, sel: selectors.BaseSelector, log: int, outputs: dict[int, str],
                 stdin: int | None, tty: bool, stdin_once: bool) -> None:
        self.sel = sel
        self.tty, self.stdin_once = tty, stdin_once
        self.streams = {fd: LogStream(name, log) for fd, name in outputs.items()}
        self.stdin = stdin
        self.pending = bytearray()
        self.close_stdin_after = False
        self.clients: list[_Client] = []
        self._events: dict[int, int] = {}
        for fd in [*outputs, *([stdin] if stdin is not None else [])]:
            os.set_blocking(fd, False)
        for fd in outputs:
            self._want(fd)

    # --- selector bookkeeping -------------------------------------------------

    def _want(self, fd: int) -> None:
        """(Re)register fd for what it needs now: output to read, input or replies to write."""
        mask = 0
        client = next((c for c in self.clients if c.conn.fileno() == fd), None)
        if client is not None:
            if not client.eof and len(self.pending) < MAX_PENDING:
                mask |= selectors.EVENT_READ
            if client.out:
                mask |= selectors.EVENT_WRITE
        else:
            if fd in self.streams:
                mask |= selectors.EVENT_READ
            if fd == self.stdin and self.pending:
                mask |= selectors.EVENT_WRITE
        have = self._events.get(fd, 0)
        if mask == have:
            return
        data = ("io", lambda m, fd=fd: self._ready(fd, m))
        if not mask:
            self.sel.unregister(fd)
            del self._events[fd]
        elif have:
            self.sel.modify(fd, mask, data)
            self._events[fd] = mask
        else:
            self.sel.register(fd, mask, data)
            self._events[fd] = mask

    def _forget(self, fd: int) -> None:
        if self._events.pop(fd, 0):
            self.sel.unregister(fd)

    def _ready(self, fd: int, mask: int) -> None:
        client = next((c for c in self.clients if c.conn.fileno() == fd), None)
        if client is not None:
            if mask & selectors.EVENT_WRITE:
                self._send(client)
            if mask & selectors.EVENT_READ and client in self.clients:
                self._receive(client)
            return
        if mask & selectors.EVENT_WRITE and fd == self.stdin:
            self._flush_input()
        if mask & selectors.EVENT_READ and fd in self.streams:
            self._read_output(fd)

    # --- output -----------------------------------------------------------------

    def _read_output(self, fd: int) -> bool:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:  # EIO: the last process holding the pty's other end is gone
            data = b""
        if not data:
            self._close_output(fd)
            return False
        s = self.streams[fd]
        s.feed(data)
        self._broadcast(frame(ERR if s.name == "stderr" else OUT, data))
        return True

    def _close_output(self, fd: int) -> None:
        s = self.streams.pop(fd)
        s.flush()
        self._forget(fd)
        if fd == self.stdin:  # the pty: input and output are one descriptor
            self.stdin = None
            self.pending.clear()
        os.close(fd)

    def drain(self) -> None:
        """Take what the container wrote before it exited (its pipes hold it still)."""
        for fd in list(self.streams):
            while fd in self.streams and self._read_output(fd):
                pass

    def _broadcast(self, data: bytes) -> None:
        for c in list(self.clients):
            c.out += data
            if len(c.out) > MAX_BACKLOG:
                self._drop(c)
            else:
                self._send(c)

    def _send(self, c: _Client) -> None:
        try:
            n = c.conn.send(c.out)
            del c.out[:n]
        except BlockingIOError:
            pass
        except OSError:  # it went away (detached, killed)
            self._drop(c)
            return
        self._want(c.conn.fileno())

    # --- input ------------------------------------------------------------------

    def _receive(self, c: _Client) -> None:
        try:
            data = c.conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            c.eof = True  # a detach or a client gone: not the end of the container's input
            self._want(c.conn.fileno())
            return
        c.inbuf += data
        for kind, payload in frames(c.inbuf):
            if kind == INPUT and c.stdin and self.stdin is not None:
                self.pending += payload
            elif kind == EOF and c.stdin and self.stdin_once and not self.tty:
                self.close_stdin_after = True  # docker's StdinOnce: the end of the input
            elif kind == WINSIZE and self.tty and self.stdin is not None and len(payload) == 4:
                self.resize(*struct.unpack(">HH", payload))
        self._flush_input()

    def _flush_input(self) -> None:
        if self.stdin is None:
            return
        while self.pending:
            try:
                n = os.write(self.stdin, self.pending)
            except BlockingIOError:
                break
            except OSError as e:  # EPIPE: the container closed its stdin; EIO: pty gone
                if e.errno not in (errno.EPIPE, errno.EIO):
                    raise
                self.pending.clear()
                break
            del self.pending[:n]
        if not self.pending and self.close_stdin_after and self.stdin not in self.streams:
            self._forget(self.stdin)
            os.close(self.stdin)
            self.stdin = None
        else:
            self._want(self.stdin)
        for c in self.clients:
            self._want(c.conn.fileno())

    def resize(self, rows: int, cols: int) -> None:
        import fcntl
        import termios
        if self.tty and self.stdin is not None:
            fcntl.ioctl(self.stdin, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    # --- clients ----------------------------------------------------------------

    def add_client(self, conn: socket.socket, stdin: bool) -> None:
        conn.setblocking(False)
        c = _Client(conn, stdin and self.stdin is not None)
        self.clients.append(c)
        self._want(conn.fileno())

    def _drop(self, c: _Client) -> None:
        self.clients.remove(c)
        self._forget(c.conn.fileno())
        c.conn.close()

    def close(self, exit_code: int | None) -> None:
        """The container is gone: flush the log, tell the clients its exit code, close all."""
        for fd in list(self.streams):
            self._close_output(fd)
        if self.stdin is not None:
            self._forget(self.stdin)
            os.close(self.stdin)
            self.stdin = None
        for c in list(self.clients):
            self._forget(c.conn.fileno())
            if exit_code is not None:
                c.out += frame(EXIT, struct.pack(">i", exit_code))
            try:
                c.conn.settimeout(1)  # the last words, even to a slow reader
                c.conn.sendall(c.out)
            except OSError:
                pass
            c.conn.close()
        self.clients.clear()
