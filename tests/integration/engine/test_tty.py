"""-it: an interactive shell on a pseudo-terminal, driven through a real pty."""

from __future__ import annotations

import os
import pty
import select
import time
from pathlib import Path

import pytest

from tests.integration.engine.test_run import BERTH, berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def drive(args: list[str], env: dict, script: bytes, timeout: float = 30) -> tuple[int, str]:
    """Run `berth ARGS` on a pty, type `script`, return (exit status, what the screen got)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(BERTH, [BERTH, *args], env)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        if not sent and (b"# " in out or time.monotonic() > deadline - timeout + 3):
            os.write(fd, script)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def env_for(tmp_path: Path) -> dict:
    return dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
                BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"), TERM="xterm")


def test_run_it_gives_an_interactive_shell_on_a_tty(berth, tmp_path: Path) -> None:  # noqa: F811
    code, screen = drive(["run", "-it", "--rm", "busybox", "sh"], env_for(tmp_path),
                         b"tty; echo $((6*7)); exit 3\n")
    assert code == 3
    assert "/dev/pts/0" in screen and "42" in screen


def test_run_it_detach_keys_of_ones_own(berth, tmp_path: Path) -> None:  # noqa: F811
    """run -it is attached through the supervisor: --detach-keys leave the container
    running (bad keys are refused before anything is made); create has no such flag."""
    from tests.integration.engine.test_attach import Terminal, status
    p = berth("run", "-it", "--detach-keys", "ctrl-", "busybox", "sh", check=False)
    assert p.returncode == 125 and "invalid detach keys" in p.stderr
    assert berth("ps", "-aq").stdout == ""
    p = berth("create", "--detach-keys", "ctrl-x", "busybox", "sh", check=False)
    assert p.returncode != 0 and "--detach-keys" in p.stderr
    t = Terminal(["run", "-it", "--detach-keys", "ctrl-x,y", "--name", "own", "busybox", "sh"],
                 env_for(tmp_path))
    t.ready()
    t.type(b"echo $((2+3))-up\n")
    t.expect(b"5-up")
    t.type(b"\x18y")
    assert t.wait() == 0
    assert status(berth, "own") == "running 0"
    assert berth("exec", "own", "cat", "/proc/1/comm").stdout == "sh\n"
    berth("rm", "-f", "own")


def test_a_foreground_container_never_gets_the_users_terminal(berth, tmp_path: Path) -> None:  # noqa: F811
    """Without -t the container sees pipes (a process holding the user's terminal could push
    keystrokes into it, TIOCSTI), as with docker: its output still reaches the terminal,
    and -i copies what is typed, to the end of input (ctrl-D)."""
    from tests.integration.engine.test_attach import Terminal
    script = "[ -t 0 ] || echo in-pipe; [ -t 1 ] || echo out-pipe; [ -t 2 ] || echo err-pipe"
    t = Terminal(["run", "--rm", "--network", "none", "busybox", "sh", "-c", script],
                 env_for(tmp_path))
    assert t.wait() == 0
    assert b"in-pipe" in t.screen and b"out-pipe" in t.screen and b"err-pipe" in t.screen
    t = Terminal(["run", "-i", "--name", "typed", "--network", "none", "busybox", "sh", "-c",
                  "cat; echo got-eof"], env_for(tmp_path))
    time.sleep(1)
    t.type(b"typed-line\n")
    t.expect(b"typed-line\r\n" * 2)  # the terminal's echo, then cat's
    t.type(b"\x04")  # end of input
    assert t.wait() == 0 and b"got-eof" in t.screen
    assert berth("logs", "typed").stdout == "typed-line\ngot-eof\n"
    # typed input while both outputs go to a file (--rm: nothing to log): still relayed,
    # and the run still ends with the container
    out = tmp_path / "out"
    t = Terminal(["-c", f"exec {BERTH} run -i --rm --network none busybox cat >{out} 2>&1"],
                 env_for(tmp_path), program="/bin/sh")
    time.sleep(1)
    t.type(b"to-a-file\n")
    time.sleep(0.3)
    t.type(b"\x04")
    assert t.wait() == 0 and out.read_text() == "to-a-file\n"


def test_exec_it_joins_a_running_container(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "-d", "--name", "t1", "busybox", "sleep", "60")
    code, screen = drive(["exec", "-it", "t1", "sh"], env_for(tmp_path),
                         b"cat /proc/1/comm; tty; exit 4\n")
    assert code == 4
    assert "sleep" in screen and "/dev/pts/" in screen
