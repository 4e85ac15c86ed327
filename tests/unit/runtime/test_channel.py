"""runtime/init.Channel: the runtime's answer to an init that has died already is no error
of its own, so that init's reason (its ERR line, already in the pipe) is what is said."""

from __future__ import annotations

import os

import pytest

from berth.runtime.init import Channel


def test_an_answer_to_a_dead_init_is_silent_and_its_last_words_remain() -> None:
    to_init_r, to_init_w = os.pipe()
    from_init_r, from_init_w = os.pipe()
    os.write(from_init_w, b"PID\nERR mounts[7] (/data): bind source does not exist\n")
    os.close(from_init_w)
    os.close(to_init_r)  # init has exited
    ch = Channel(from_init_r, to_init_w)
    try:
        assert ch.recv() == "PID"
        with pytest.raises(BrokenPipeError):
            ch.send("OK")  # what used to be raised, as "Broken pipe", hiding the reason
        ch.answer("OK")
        assert ch.recv() == "ERR mounts[7] (/data): bind source does not exist"
        assert ch.recv() is None
    finally:
        os.close(from_init_r)
        os.close(to_init_w)
