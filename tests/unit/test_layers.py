"""Architecture rules: layers import downward only, and the runtime's hot path stays lean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_layers_only_import_downward() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    p = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_runtime_cli_imports_only_what_it_needs() -> None:
    """berth-runtime's start-up must not pay for json/re/typing/subprocess/argparse/click,
    nor ctypes (its Python half costs 3.5 ms: linux.py uses _ctypes)."""
    src = str(REPO / "src")
    code = (f"import sys; sys.path.insert(0, {src!r}); import berth.runtime.cli,"
            " berth.runtime.create, berth.runtime.start, berth.runtime.run, berth.runtime.state,"
            " berth.runtime.init, berth.runtime.mounts, berth.runtime.process,"
            " berth.runtime.seccomp, berth.runtime.cgroups.v1, berth.runtime.cgroups.v2;"
            " print(' '.join(sorted(sys.modules)))")
    mods = set(subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code], capture_output=True,
                              text=True, check=True).stdout.split())
    heavy = {"json", "re", "typing", "subprocess", "argparse", "click", "dataclasses",
             "enum", "socket", "yaml", "asyncio", "ctypes"}
    assert mods & heavy == set()
