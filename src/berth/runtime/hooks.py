"""OCI lifecycle hooks: run a hook list with the container's state on stdin.

Hook kinds that may fail the container (prestart, createRuntime,
createContainer, startContainer) raise HookFailed; poststart and poststop
failures are warnings, as the runtime spec says.
"""

from __future__ import annotations

import os
import sys

from berth.oci import jsonfast
from berth.runtime.errors import SetupError


class HookFailed(SetupError):
    pass


def run(kind: str, hooks: list[dict] | None, state: dict) -> None:
    """Run every hook of one kind in order; stop at the first failure."""
    if not hooks:
        return
    import subprocess

    payload = jsonfast.dumps(state).encode()
    for i, h in enumerate(hooks):
        args = h.get("args") or [h["path"]]
        env = dict(e.split("=", 1) for e in h.get("env") or [])
        where = f"hooks.{kind}[{i}] ({h['path']})"
        try:
            proc = subprocess.run(args, executable=h["path"], input=payload, env=env,
                                  capture_output=True, timeout=h.get("timeout"), check=False)
        except subprocess.TimeoutExpired:
            raise HookFailed(f"{where}: timed out after {h.get('timeout')}s") from None
        except OSError as e:
            raise HookFailed(f"{where}: {e.strerror}") from None
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise HookFailed(f"{where}: exited with status {proc.returncode}"
                             + (f": {err}" if err else ""))


def run_warn(kind: str, hooks: list[dict] | None, state: dict) -> None:
    """Run hooks whose failure must only be logged (poststart, poststop)."""
    for i, h in enumerate(hooks or ()):
        try:
            run(kind, [h], state)
        except HookFailed as e:
            msg = str(e).replace(f"hooks.{kind}[0]", f"hooks.{kind}[{i}]")
            os.write(sys.stderr.fileno(), f"warning: {msg}\n".encode())
