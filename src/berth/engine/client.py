"""Talking to the supervisor: one JSON request per connection, starting it when none answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from berth.engine.errors import EngineError
from berth.engine.rundir import socket_path
from berth.engine.supervisor import read_line


def _send(path: str, req: dict, timeout: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        data = read_line(s)
    if not data:
        raise EngineError("the supervisor closed the connection without answering")
    return json.loads(data)


def spawn(root: str) -> None:
    """Start a supervisor for `root`, detached from this process (its own session)."""
    log = os.open(os.path.join(root, "run", "supervisor.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        # the same interpreter and import path as this process (whose launcher may have
        # set sys.path by hand rather than through site)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        subprocess.Popen([sys.executable, "-m", "berth.engine.supervisor", root],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                         start_new_session=True, close_fds=True, cwd="/")
    finally:
        os.close(log)


def request(root: str, req: dict, timeout: float = 60) -> dict:
    """Send `req`; start a supervisor if none is listening. Errors become EngineError."""
    path = socket_path(root)
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    deadline = time.monotonic() + 10
    spawned = 0.0
    while True:
        try:
            reply = _send(path, req, timeout)
            break
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError,
                BrokenPipeError, EngineError):
            # none listening, or one that was exiting: (re)start one; requests are idempotent
            if time.monotonic() - spawned > 0.5:
                spawn(root)
                spawned = time.monotonic()
            if time.monotonic() > deadline:
                raise EngineError(f"the supervisor did not start (see {root}/run/"
                                  "supervisor.log)") from None
            time.sleep(0.02)
    if not reply.get("ok"):
        raise EngineError(reply.get("error") or "the supervisor refused the request")
    return reply
