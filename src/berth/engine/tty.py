"""`-t`: a pseudo-terminal for a foreground container or exec.

The runtime creates the pty inside the container and sends its master end
over a console socket (as it does for conmon). This module holds that socket,
takes the master, puts the user's terminal in raw mode and copies bytes both
ways until the process closes the pty, following window-size changes.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


class ConsoleSocket:
    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)

    def master(self, timeout: float = 30) -> int:
        """The pty master the runtime sent (it connects during create)."""
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise OSError("the runtime sent no terminal on the console socket")
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.path))


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def proxy(master: int, interactive: bool, stdin: int = 0, stdout: int = 1) -> None:
    """Copy stdin -> pty and pty -> stdout until the pty is closed by the process."""
    if os.isatty(stdout):
        _copy_winsize(stdout, master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(stdout, master))
    watch = [master] + ([stdin] if interactive else [])
    with raw_terminal(stdin if interactive else -1) if interactive and os.isatty(stdin) \
            else contextlib.nullcontext():
        while True:
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last process holding the slave is gone
                    data = b""
                if not data:
                    break
                os.write(stdout, data)
            if stdin in ready and interactive:
                data = os.read(stdin, 65536)
                if not data:
                    watch.remove(stdin)  # EOF: send ^D so a shell ends as it would
                    os.write(master, b"\x04")
                else:
                    os.write(master, data)
    os.close(master)
