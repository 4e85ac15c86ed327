"""How a verb ends on a failure berth knows: `Error: ...` on stderr, and docker's exit
status for that kind of verb (125 for the engine's, 1 for the image verbs')."""

from __future__ import annotations

import functools
import sys

import click

from berth.cli.format import FormatError


def engine_failures() -> tuple[type[BaseException], ...]:
    from berth.database import sqlite3  # a locked or damaged database: sqlite3.Error
    from berth.engine.errors import EngineError
    from berth.images.errors import ImageFailure
    from berth.runtime.errors import RuntimeFailure
    return EngineError, ImageFailure, RuntimeFailure, FormatError, OSError, sqlite3.Error


def image_failures() -> tuple[type[BaseException], ...]:
    from berth.images.errors import ImageFailure
    from berth.oci.errors import SpecError
    return ImageFailure, SpecError, FormatError, OSError


def exits(status: int, failures):
    """A decorator: the failures `failures()` names (imported only when one happens)
    become `Error: ...` and exit status `status`."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            try:
                return fn(*a, **kw)
            except failures() as e:  # evaluated only when something is raised
                import os
                if os.environ.get("BERTH_DEBUG"):
                    import traceback
                    traceback.print_exc()
                click.echo(f"Error: {e}", err=True)
                sys.exit(status)
        return wrapper
    return decorate
