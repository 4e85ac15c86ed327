"""Reading a container's json.log (docker's json-file format): tail, since, follow."""

from __future__ import annotations

import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def parse_since(text: str) -> float:
    """--since: an RFC 3339 time, a Unix timestamp, or a duration ago (10s, 42m, 2h)."""
    import datetime

    from berth.engine.errors import InvalidOption
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidOption(f"invalid value {text!r} for --since: use 2026-01-02T15:04:05Z, "
                            "a Unix time, or a duration such as 10m") from None


def _ts(rec: dict) -> float:
    import datetime
    t = rec["time"]
    base, _, frac = t.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(base + "+00:00").timestamp()
    return whole + float("0." + (frac or "0"))


def read(path: str, tail: int | None = None, since: float | None = None,
         follow: bool = False, still_running: Callable[[], bool] | None = None
         ) -> Iterator[dict]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; follow keeps it open
    except FileNotFoundError:
        return
    with f:
        lines = f.readlines()
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            rec = json.loads(line)
            if since is None or _ts(rec) >= since:
                yield rec
        if not follow:
            return
        buf = b""
        while True:
            chunk = f.read()
            if chunk:
                buf += chunk
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    yield json.loads(line)
                continue
            if still_running is not None and not still_running():
                rest = f.read()
                for line in (buf + rest).splitlines():
                    yield json.loads(line)
                return
            time.sleep(0.1)
