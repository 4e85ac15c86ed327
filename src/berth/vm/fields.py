"""Reading one definition document strictly: each value's type checked, each unknown key
an error, every error carrying the field's path (disks[1].size) and the document's name.
"""

from __future__ import annotations

import os
import re
from typing import Any

from berth.vm.errors import DefinitionError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(value: object, where: str, default_unit: str = "", source: str = "definition"
               ) -> int:
    """Bytes from 512M / 1G / 1.5G / 1024 (a bare number is in default_unit)."""
    if isinstance(value, bool):
        raise DefinitionError(where, f"expected a size like 512M or 1G, got {value!r}", source)
    if isinstance(value, int):
        value = f"{value}{default_unit}"
    if not isinstance(value, str):
        raise DefinitionError(where, f"expected a size like 512M or 1G, got {value!r}", source)
    m = _SIZE_RE.match(value)
    if not m:
        raise DefinitionError(where, f"{value!r} is not a size: use a number with K, M, G or T",
                              source)
    unit = m.group(2).upper() or default_unit
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise DefinitionError(where, "must be greater than zero", source)
    return n


class Reader:
    """Walks one mapping, remembering the path, and rejects what it did not consume."""

    def __init__(self, data: object, path: str, source: str) -> None:
        self.path, self.source = path, source
        if not isinstance(data, dict):
            raise DefinitionError(path or "(top)", f"expected a mapping, got {_kind(data)}",
                                  source)
        self.data = data
        self.used: set[str] = set()

    def at(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def err(self, key: str | int, problem: str) -> DefinitionError:
        return DefinitionError(self.at(key), problem, self.source)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            return default
        v = self.data[key]
        if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, (int,))):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(
                k.__name__ for k in kind)
            raise self.err(key, f"expected {_article(names)}, got {_kind(v)}")
        return v

    def done(self) -> None:
        for k in self.data:
            if k not in self.used:
                raise self.err(str(k), "unknown field")


def _kind(v: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(
        type(v), type(v).__name__)


def _article(name: str) -> str:
    return {"str": "a string", "int": "an integer", "bool": "a boolean", "list": "a list",
            "dict": "a mapping"}.get(name, name)


def existing(path: str, where: str, source: str, base_dir: str) -> str:
    p = os.path.abspath(os.path.join(base_dir, os.path.expanduser(path)))
    if not os.path.isfile(p):
        raise DefinitionError(where, f"{p}: no such file", source)
    if not os.access(p, os.R_OK):
        raise DefinitionError(where, f"{p}: not readable", source)
    return p
