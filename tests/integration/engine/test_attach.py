"""stdin for detached containers: `run -d -i`, `run -dit`, `create -i` + `start -a -i`, attach.

Each test feeds input through berth (a pipe or a real pty) and checks what the
container did with it: its output, its log, what `tty` and `stty` say inside.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.integration.engine.test_detached import until
from tests.integration.engine.test_run import BERTH, berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def env_for(tmp_path: Path) -> dict:
    return dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
                BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"), TERM="xterm")


class Terminal:
    """`berth ARGS` (or `program ARGS`) on a pty of a given size: type, wait for text,
    collect its exit status."""

    def __init__(self, args: list[str], env: dict, rows: int = 24, cols: int = 80,
                 program: str = BERTH) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execvpe(program, [program, *args], env)
        self.screen = b""

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            return False
        self.screen += data
        return bool(data)

    def expect(self, text: bytes, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            if time.monotonic() > deadline or not self._read(0.1):
                raise AssertionError(f"{text!r} not seen; the screen: {self.screen!r}")

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def ready(self, timeout: float = 15) -> None:
        """Wait until berth has the terminal raw and the shell inside gives a fresh prompt."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.fd)[3] & termios.ECHO:
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminal never went raw: {self.screen!r}")
            self._read(0.05)
        time.sleep(0.3)  # the shell redraws its prompt for the window size we sent
        self.type(b"\n")
        self.expect(b"# ")
        self.screen = b""

    def wait(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, status = os.waitpid(self.pid, os.WNOHANG)
            if got:
                while self._read(0):
                    pass
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self._read(0.1)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"berth did not exit; the screen: {self.screen!r}")


def status(berth, name: str) -> str:  # type: ignore[no-untyped-def]  # noqa: F811
    return berth("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.strip()


def test_run_d_i_keeps_stdin_for_attach(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "-d", "-i", "--name", "reader", "busybox", "sh", "-c",
          'while read l; do echo got:$l; [ "$l" = quit ] && exit 4; done; echo eof; exit 9')
    # attach, type a line, end our input: the container answers through attach, and its
    # stdin stays open (run -d -i, docker's StdinOnce=false), so attach stays too
    p = subprocess.Popen([BERTH, "attach", "--no-sig-proxy", "reader"], env=env_for(tmp_path),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("one\n")
    p.stdin.close()
    assert p.stdout.readline() == "got:one\n"
    time.sleep(0.5)
    assert p.poll() is None and status(berth, "reader") == "running 0"
    p.send_signal(signal.SIGINT)  # without the signal proxy: we leave, it stays
    p.wait(timeout=10)
    p.stdout.close()
    assert status(berth, "reader") == "running 0"
    # the next attach types into the same stdin; attach ends with the container, with its code
    r = berth("attach", "reader", input="quit\n", check=False)
    assert r.returncode == 4 and r.stdout == "got:quit\n"
    assert berth("logs", "reader").stdout == "got:one\ngot:quit\n"  # never an "eof"
    # without -i a container has no stdin to attach to: it read /dev/null's end at once
    berth("run", "-d", "--name", "noin", "busybox", "sh", "-c", "cat; echo cat-ended; sleep 60")
    until(lambda: berth("logs", "noin").stdout == "cat-ended\n")


def test_create_i_then_start_a_i_feeds_and_ends_the_input(berth) -> None:  # noqa: F811
    berth("create", "-i", "--name", "once", "busybox", "sh", "-c",
          "while read l; do echo got:$l; echo err:$l >&2; done; exit 3")
    assert json.loads(berth("inspect", "once").stdout)[0]["Config"]["StdinOnce"] is True
    p = berth("start", "-a", "-i", "once", input="one\ntwo\n", check=False)
    # docker's StdinOnce: our end of input ends the container's, which then exits 3
    assert p.returncode == 3
    assert p.stdout == "got:one\ngot:two\n" and p.stderr == "err:one\nerr:two\n"
    assert status(berth, "once") == "exited 3"
    p = berth("start", "-a", "once", "x", check=False)
    assert p.returncode == 125 and "multiple containers" in p.stderr
    p = berth("start", "-a", "-i", "once", input="three\n", check=False)  # again: a new stdin
    assert p.returncode == 3 and p.stdout == "got:three\n"


def test_run_dit_attach_gives_the_terminal_and_detach_keys_leave_it_running(
        berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "-dit", "--name", "shell", "busybox", "sh")
    t = Terminal(["attach", "shell"], env_for(tmp_path), rows=33, cols=101)
    t.ready()
    t.type(b"tty; stty size; echo $((6*7))\n")
    t.expect(b"42")
    assert b"/dev/pts/0" in t.screen and b"33 101" in t.screen  # our window size, inside
    t.type(b"\x10\x11")  # ctrl-p ctrl-q
    assert t.wait() == 1 and b"read escape sequence" in t.screen  # docker's words and code
    assert status(berth, "shell") == "running 0"
    # attach again with other keys; a bad key sequence is refused first
    p = berth("attach", "--detach-keys", "ctrl-", "shell", check=False)
    assert p.returncode == 125 and "invalid detach keys" in p.stderr
    t = Terminal(["attach", "--detach-keys", "ctrl-x,y", "shell"], env_for(tmp_path))
    t.ready()
    t.type(b"echo x-then-$((2+3))\n")
    t.expect(b"x-then-5")
    t.type(b"\x18y")
    assert t.wait() == 1
    assert status(berth, "shell") == "running 0"
    t = Terminal(["attach", "shell"], env_for(tmp_path))
    t.ready()
    t.type(b"exit 5\n")
    assert t.wait() == 5  # the container's exit code
    assert status(berth, "shell") == "exited 5"


def test_run_dt_logs_one_stream_and_exec_it_works(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("run", "-dt", "--name", "tt", "busybox", "sh", "-c",
          "tty; echo to-err >&2; exec sleep 60")
    until(lambda: "to-err" in berth("logs", "tt").stdout)
    p = berth("logs", "tt")
    assert p.stdout == "/dev/pts/0\nto-err\n" and p.stderr == ""  # one stream, as docker
    assert json.loads(berth("inspect", "tt").stdout)[0]["Config"]["Tty"] is True
    t = Terminal(["exec", "-it", "tt", "sh"], env_for(tmp_path))
    t.expect(b"# ")
    t.type(b"tty; cat /proc/1/comm; exit 4\n")
    assert t.wait() == 4
    assert b"/dev/pts/1" in t.screen and b"sleep" in t.screen


def test_create_it_then_start_a_i(berth, tmp_path: Path) -> None:  # noqa: F811
    berth("create", "-it", "--name", "cit", "busybox", "sh")
    t = Terminal(["start", "-a", "-i", "cit"], env_for(tmp_path))
    t.expect(b"# ")
    t.type(b"echo in-$((1+1)); tty; exit 9\n")
    assert t.wait() == 9
    assert b"in-2" in t.screen and b"/dev/pts/0" in t.screen
    assert status(berth, "cit") == "exited 9"
    with open("/proc/self/mountinfo") as f:
        assert str(berth("inspect", "-f", "{{.Id}}", "cit").stdout.strip()) not in f.read()


def test_attach_to_a_foreground_container_is_refused(berth, tmp_path: Path) -> None:  # noqa: F811
    p = subprocess.Popen([BERTH, "run", "--name", "fg", "busybox", "sleep", "30"],
                         env=env_for(tmp_path), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        until(lambda: status(berth, "fg").startswith("running"))
        r = berth("attach", "fg", check=False)
        assert r.returncode == 125 and "foreground" in r.stderr
    finally:
        try:
            berth("rm", "-f", "fg")
        finally:
            try:
                p.wait(timeout=20)
            finally:
                p.kill()
                p.wait()


def test_attach_ends_with_the_container_or_says_the_supervisor_is_gone(
        berth, tmp_path: Path) -> None:  # noqa: F811
    from tests.integration.engine.test_detached import supervisors
    berth("run", "-d", "-i", "--name", "victim", "busybox", "cat")
    p = subprocess.Popen([BERTH, "attach", "victim"], env=env_for(tmp_path),
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    berth("rm", "-f", "victim")  # killed under the attach: its exit code comes back
    assert p.wait(timeout=15) == 137
    assert p.stdin is not None and p.stderr is not None
    p.stdin.close()
    p.stderr.close()
    berth("run", "-d", "-i", "--name", "orphan", "busybox", "cat")
    p = subprocess.Popen([BERTH, "attach", "orphan"], env=env_for(tmp_path),
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    for pid in supervisors(tmp_path / "root"):
        os.kill(pid, signal.SIGKILL)
    assert p.wait(timeout=15) == 125
    assert p.stderr is not None and "lost the connection to the supervisor" in p.stderr.read()
    assert p.stdin is not None
    p.stdin.close()
    p.stderr.close()
