"""The stdio of a container that `berth run` runs in the foreground, without -t.

As with docker, the container never gets the user's terminal itself: a process holding
a terminal can push keystrokes into it (TIOCSTI) and would see a tty where docker's does
not. Without -i its input is /dev/null. Where stdin, stdout or stderr is a terminal, or
where the output must also go to the container's json.log (a container that stays, so
that `berth logs` shows its run, as docker's does), the container gets a pipe and this
process copies; otherwise (pipes and files, as in scripts; `run --rm`) it gets ours,
which costs nothing.
"""

from __future__ import annotations

import os

from berth.engine.jsonlog import LogStream, open_log


class ForegroundStdio:
    def __init__(self, interactive: bool, log_path: str | None) -> None:
        self._mine: list[int] = []  # our ends of the pipes
        self._theirs: list[int] = []  # the container's, closed here once it has them
        self._copies: dict[int, tuple[int, LogStream | None]] = {}  # read end -> (to, log)
        self._input: tuple[int, int] | None = None  # (our stdin, the container's pipe)
        self._log = open_log(log_path) if log_path else None
        if not interactive:
            stdin = self._keep(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        elif os.isatty(0):
            r, w = self._pipe()
            stdin, self._input = r, (0, w)
        else:
            stdin = 0
        outs = []
        for fd, name in ((1, "stdout"), (2, "stderr")):
            # (while input is relayed, the outputs' end is what says the container is gone)
            if self._log is None and self._input is None and not os.isatty(fd):
                outs.append(fd)
                continue
            r, w = self._pipe()
            self._mine.remove(w)
            self._theirs.append(w)
            self._copies[r] = (fd, LogStream(name, self._log) if self._log is not None
                               else None)
            outs.append(w)
        self.child = (stdin, outs[0], outs[1])  # what the container's init gets

    def _keep(self, fd: int) -> int:
        self._theirs.append(fd)
        return fd

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe2(os.O_CLOEXEC)
        self._mine += [r, w]
        return r, w

    @property
    def relays(self) -> bool:
        """Does the container's output pass through this process (copy() then waits)?"""
        return bool(self._copies)

    def started(self) -> None:
        """The container has its ends: close ours of them (its output ends with it)."""
        for fd in self._theirs:
            os.close(fd)
        self._theirs = []
        if self._input is not None:
            self._mine.remove(self.child[0])
            os.close(self.child[0])

    def copy(self) -> None:
        """Copy until the container's outputs end (it exited, with all it started)."""
        import select

        if not self._copies:
            return
        sources = dict(self._copies)
        while sources:
            watch = list(sources)
            if self._input is not None:
                watch.append(self._input[0])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if self._input is not None and self._input[0] in ready:
                self._forward_input()
            for fd in ready:
                if fd not in sources:
                    continue
                data = os.read(fd, 65536)
                dest, log = sources[fd]
                if not data:
                    if log is not None:
                        log.flush()
                    del sources[fd]
                    continue
                try:
                    write_all(dest, data)
                except OSError:  # our own output went away: the log goes on
                    pass
                if log is not None:
                    log.feed(data)

    def _forward_input(self) -> None:
        assert self._input is not None
        ours, pipe = self._input
        try:
            data = os.read(ours, 65536)
            if data:
                write_all(pipe, data)
                return
        except OSError:  # the container closed its input: nothing more goes there
            pass
        self._mine.remove(pipe)
        os.close(pipe)  # end of our input: the end of the container's
        self._input = None

    def close(self) -> None:
        for fd in self._mine + self._theirs:
            try:
                os.close(fd)
            except OSError:
                pass
        self._mine, self._theirs = [], []
        if self._log is not None:
            os.close(self._log)
            self._log = None


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (attach.py's copies use it too)."""
    while data:
        data = data[os.write(fd, data):]
