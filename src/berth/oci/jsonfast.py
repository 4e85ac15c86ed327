"""JSON without the `json` package's start-up cost.

`import json` pulls in `re` and costs ~7 ms, a fifth of a container start.
These two functions drive the same C scanner and string encoder that `json`
uses (the `_json` accelerator), so they parse and quote exactly as it does.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: only the checker sees it
    from typing import Any


class _Context:
    """The attributes `_json.make_scanner` reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        raise ValueError(f"invalid JSON constant {name}")


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
_quote = _json.encode_basestring


def _unserialisable(obj: object) -> object:
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


# the C encoder json.dumps uses for compact output: (markers, default, encoder, indent,
# key separator, item separator, sort_keys, skipkeys, allow_nan)
_encode = _json.make_encoder(None, _unserialisable, _quote, None, ":", ",", False, False, True)


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in " \t\n\r":
        i += 1
    return i


def loads(data: str | bytes) -> Any:
    """Parse one JSON document; ValueError with the offset when it is malformed."""
    s = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    if s.startswith("\ufeff"):
        s = s[1:]
    start = _skip_ws(s, 0)
    try:
        value, end = _scan(s, start)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at offset {e.value}") from None
    except ValueError as e:  # _json raises JSONDecodeError-like ValueErrors
        raise ValueError(f"invalid JSON: {e}") from None
    end = _skip_ws(s, end)
    if end != len(s):
        raise ValueError(f"invalid JSON: extra data at offset {end}")
    _Context.memo.clear()
    return value


def dumps(obj: Any, indent: int | None = None) -> str:
    """Serialise dicts, lists, strings, numbers, booleans and None."""
    if indent is None:
        return "".join(_encode(obj, 0))
    out: list[str] = []
    _emit(obj, out, indent, 0)
    return "".join(out)


def _emit(obj: Any, out: list[str], indent: int | None, level: int) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_quote(obj))
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        out.append(float.__repr__(obj))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        nl = "" if indent is None else "\n" + " " * (indent * (level + 1))
        out.append("{")
        first = True
        for k, v in obj.items():
            if not first:
                out.append(",")
            first = False
            out.append(nl)
            out.append(_quote(str(k)))
            out.append(": " if indent is not None else ":")
            _emit(v, out, indent, level + 1)
        out.append("" if indent is None else "\n" + " " * (indent * level))
        out.append("}")
    elif isinstance(obj, list | tuple):
        if not obj:
            out.append("[]")
            return
        nl = "" if indent is None else "\n" + " " * (indent * (level + 1))
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            out.append(nl)
            _emit(v, out, indent, level + 1)
        out.append("" if indent is None else "\n" + " " * (indent * level))
        out.append("]")
    else:
        raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
