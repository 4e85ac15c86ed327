"""A container's json.log, docker's json-file format: one JSON object per line of output,
`{"log": "...", "stream": "stdout"|"stderr", "time": "RFC 3339, nanoseconds"}`.

Written by the supervisor for detached containers (engine/stdio.py) and by `berth run`
itself for a foreground container that stays (engine/foreground.py); read by
engine/logs.py.
"""

from __future__ import annotations

import os
import time

from berth.oci import jsonfast

MAX_LINE = 16384  # a longer line is split into records of this many bytes, as docker does


def now() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + \
        f".{t % 10**9:09d}Z"


class LogStream:
    """One output stream, copied line by line into the container's json.log."""

    def __init__(self, name: str, log: int) -> None:
        self.name, self.log = name, log
        self.buf = b""

    def feed(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf or len(self.buf) >= MAX_LINE:
            if b"\n" in self.buf[:MAX_LINE]:
                line, _, self.buf = self.buf.partition(b"\n")
                line += b"\n"
            else:
                line, self.buf = self.buf[:MAX_LINE], self.buf[MAX_LINE:]
            self._write(line)

    def flush(self) -> None:
        if self.buf:
            self._write(self.buf)
            self.buf = b""

    def _write(self, line: bytes) -> None:
        rec = {"log": line.decode("utf-8", "replace"), "stream": self.name, "time": now()}
        os.write(self.log, (jsonfast.dumps(rec) + "\n").encode())


def open_log(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
