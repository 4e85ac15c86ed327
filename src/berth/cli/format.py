"""Docker-style output: tables, sizes, ages, and the Go-template `--format` forms people use.

Supported templates: `{{.Field}}`, `{{json .}}`, `{{json .Field}}`, `{{.Field | json}}`,
literal text and `\\t`, and a leading `table` that adds a header row and
aligns columns, as docker does. Anything else is an error naming the part.
"""

from __future__ import annotations

import json
import re
import time

_PART = re.compile(r"\{\{\s*(.*?)\s*\}\}")


class FormatError(ValueError):
    pass


def human_size(n: float) -> str:
    """Docker's sizes: decimal units, three significant digits (4.26MB, 1.2GB, 512B)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}TB"


def human_age(seconds: float | None, now: float | None = None) -> str:
    if seconds is None:
        return "N/A"
    d = (now or time.time()) - seconds
    if d < 1:
        return "Less than a second ago"
    for limit, div, unit in ((60, 1, "second"), (3600, 60, "minute"), (86400 * 2, 3600, "hour"),
                             (86400 * 14, 86400, "day"), (86400 * 60, 86400 * 7, "week"),
                             (86400 * 365 * 2, 86400 * 30, "month")):
        if d < limit:
            n = int(d // div)
            return f"About a {unit} ago" if n == 1 and unit in ("minute", "hour") else \
                f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{int(d // (86400 * 365))} years ago"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [headers, *rows]]
    return "\n".join(lines) + "\n"


def _value(expr: str, row: dict) -> str:
    expr = expr.strip()
    as_json = False
    if expr.startswith("json "):
        as_json, expr = True, expr[5:].strip()
    elif expr.endswith("| json"):
        as_json, expr = True, expr[:-6].strip()
    if expr == ".":
        v: object = row
    elif expr.startswith(".") and all(p.replace("_", "").isalnum() for p in expr[1:].split(".")):
        v = row
        for part in expr[1:].split("."):  # {{.State.Running}}: fields of fields
            if not isinstance(v, dict) or part not in v:
                have = ", ".join(sorted(v)) if isinstance(v, dict) else "none"
                raise FormatError(f"template: can't evaluate field {part} (fields: {have})")
            v = v[part]
    else:
        raise FormatError(f"template: unsupported expression {{{{{expr}}}}}")
    if as_json:
        return json.dumps(v, separators=(",", ":"))
    return _go(v)


def _go(v: object) -> str:
    """A value as Go's text/template prints it."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


def render(template: str, rows: list[dict], headers: dict[str, str] | None = None) -> str:
    """Render rows with a docker --format template."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    is_table = template.startswith("table")
    if is_table:
        template = template[5:].strip() or "\t".join(f"{{{{.{k}}}}}" for k in rows[0]) \
            if rows else template[5:].strip()
    out = [_PART.sub(lambda m, row=row: _value(m.group(1), row), template)  # type: ignore[misc]
           for row in rows]
    if not is_table:
        return "".join(line + "\n" for line in out)
    head = _PART.sub(lambda m: (headers or {}).get(m.group(1).strip().lstrip("."),
                                                  m.group(1).strip().lstrip(".").upper()),
                     template)
    cells = [line.split("\t") for line in [head, *out]]
    n = max(len(c) for c in cells)
    widths = [max(len(c[i]) if i < len(c) else 0 for c in cells) for i in range(n)]
    return "".join("   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n"
                   for r in cells)
