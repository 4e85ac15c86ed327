"""Pull and push progress as docker shows it: a bar per layer on a terminal, plain lines otherwise.

pull.py and push.py report events through one callable,
`progress(id, status, current=None, total=None)`, where `id` is a blob digest
("" for the whole image) and `status` one of docker's words ("Pulling fs
layer", "Downloading", "Pull complete", "Already exists", "Pushing",
"Pushed", "Layer already exists", "Mounted from x", ...). The same events are
what the Docker API's JSON progress stream carries, so the API server can
forward them unchanged.

On a terminal, rich draws the lines (imported only then, never on the `run`
hot path); elsewhere one plain line per change of status, no byte counts.
"""

from __future__ import annotations

import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol, TextIO

    from rich.text import Text

    class Progress(Protocol):
        def __call__(self, id: str, status: str, current: int | None = None,
                     total: int | None = None) -> None: ...

BAR_WIDTH = 50
BYTE_STATUSES = ("Downloading", "Pushing", "Extracting")


def short_id(digest: str) -> str:
    """docker's 12 hex digits of a digest."""
    return digest.partition(":")[2][:12] if ":" in digest else digest[:12]


def human_size(n: float) -> str:
    """Sizes as docker prints them: decimal units, 3 significant digits (12.3MB, 1.05kB)."""
    units = ("B", "kB", "MB", "GB", "TB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.3g}{units[i]}"


def bar(current: int, total: int | None) -> str:
    """`[=====>         ] 12.3MB/50MB`, or just the count when the total is unknown."""
    if not total:
        return human_size(current)
    filled = max(0, min(BAR_WIDTH, BAR_WIDTH * current // total))
    box = "=" * filled + ">" + " " * (BAR_WIDTH - filled)
    return f"[{box}] {human_size(current)}/{human_size(total)}"


def discard(id: str, status: str, current: int | None = None, total: int | None = None) -> None:
    """A progress sink that shows nothing."""


class PlainProgress:
    """One line per change of a layer's status (`a3ed95caeb02: Pull complete`), no bars."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, id: str, status: str, current: int | None = None,
                 total: int | None = None) -> None:
        if status in BYTE_STATUSES:  # as docker without a terminal: no byte counts
            return
        with self.lock:
            if self.last.get(id) == status:
                return
            self.last[id] = status
            self.out.write(f"{short_id(id)}: {status}\n" if id else status + "\n")
            self.out.flush()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class TerminalProgress:
    """docker's redrawn per-layer lines, drawn by rich.live at 10 frames a second."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out, highlight=False)
        self.order: list[str] = []
        self.state: dict[str, tuple[str, int | None, int | None]] = {}
        self.lock = threading.Lock()
        self.live = Live(console=self.console, refresh_per_second=10, transient=False,
                         get_renderable=self._render)

    def __call__(self, id: str, status: str, current: int | None = None,
                 total: int | None = None) -> None:
        with self.lock:
            if not id:  # an image-level message: printed above the live lines
                self.console.print(status, markup=False, highlight=False)
                return
            if id not in self.state:
                self.order.append(id)
            self.state[id] = (status, current, total)

    def _render(self) -> Text:
        from rich.text import Text

        wide = self.console.width >= 110
        with self.lock:
            lines = []
            for id in self.order:
                status, current, total = self.state[id]
                line = f"{short_id(id)}: {status}"
                if status in BYTE_STATUSES and current is not None:
                    # as docker: the bar only on terminals of 110 columns or more
                    line += " " + (bar(current, total) if wide or not total
                                   else f"{human_size(current)}/{human_size(total)}")
                lines.append(line)
        return Text("\n".join(lines), no_wrap=True, overflow="ellipsis")

    def __enter__(self) -> TerminalProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)


def for_stream(out: TextIO | None = None,
               tty: bool | None = None) -> PlainProgress | TerminalProgress:
    """The progress sink for `out` (stderr by default): bars on a terminal, lines otherwise.

    Use it as a context manager around the pull or push so the bars are closed.
    """
    out = out or sys.stderr
    if tty is None:
        tty = out.isatty()
    return TerminalProgress(out) if tty else PlainProgress(out)


class Throttle:
    """Byte counts at most every `interval` seconds per id; changes of status always."""

    def __init__(self, sink: Progress, interval: float = 0.1) -> None:
        self.sink = sink
        self.interval = interval
        self.last: dict[str, float] = {}

    def __call__(self, id: str, status: str, current: int | None = None,
                 total: int | None = None) -> None:
        if status in BYTE_STATUSES and current is not None and current != total:
            now = time.monotonic()
            if now - self.last.get(id, 0.0) < self.interval:
                return
            self.last[id] = now
        self.sink(id, status, current, total)
