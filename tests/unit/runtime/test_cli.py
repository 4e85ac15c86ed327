"""The runc-compatible command line: option parsing and signals."""

from __future__ import annotations

import pytest

from berth.runtime.cli import _VERBS, parse
from berth.runtime.errors import UsageError
from berth.runtime.kill import parse_signal


def test_options_before_and_after_the_id() -> None:
    opts, args = parse(["--bundle", "/b", "--pid-file=/p", "id1"], _VERBS["create"])
    assert opts == {"bundle": "/b", "pid_file": "/p"} and args == ["id1"]
    opts, args = parse(["id1", "--force"], _VERBS["delete"])
    assert opts == {"force": True} and args == ["id1"]


def test_exec_stops_at_the_command() -> None:
    opts, args = parse(["-e", "A=1", "-e", "B=2", "c1", "ls", "-l", "--color"], _VERBS["exec"],
                       stop_at_arg=True)
    assert opts == {"env": ["A=1", "B=2"]}
    assert args == ["c1", "ls", "-l", "--color"]


def test_unknown_option_and_missing_value() -> None:
    with pytest.raises(UsageError, match="unknown option --frob"):
        parse(["--frob", "x"], _VERBS["start"])
    with pytest.raises(UsageError, match="--bundle needs a value"):
        parse(["--bundle"], _VERBS["create"])


@pytest.mark.parametrize("text, num", [("KILL", 9), ("SIGTERM", 15), ("9", 9), ("usr1", 10),
                                       ("RTMIN+2", 36)])
def test_signals(text: str, num: int) -> None:
    assert parse_signal(text) == num


def test_bad_signal() -> None:
    with pytest.raises(UsageError):
        parse_signal("SIGNOPE")
    with pytest.raises(UsageError):
        parse_signal("99")


def test_signal_process_never_signals_a_group() -> None:
    """A record's pid 0 (a create killed early) must not become kill(0): the caller's group."""
    import os

    from berth.runtime.linux import signal_process
    assert signal_process(0, 0) is False
    assert signal_process(-1, 0) is False
    assert signal_process(os.getpid(), 0) is True
