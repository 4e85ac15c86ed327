"""--change instructions, as docker import applies them."""

from __future__ import annotations

import pytest

from berth.images.changes import apply_changes
from berth.images.errors import ImageFailure


def test_every_instruction() -> None:
    cfg = apply_changes({"Env": ["A=0"]}, [
        'CMD ["sh", "-c", "echo hi"]', "ENTRYPOINT /bin/run --flag", "ENV A=1 B=two",
        "ENV C with spaces", "WORKDIR /srv", "USER 1000:1000", "EXPOSE 80 53/udp",
        "LABEL a=b c=d", "VOLUME /data", "STOPSIGNAL SIGINT"])
    assert cfg == {
        "Cmd": ["sh", "-c", "echo hi"], "Entrypoint": ["/bin/sh", "-c", "/bin/run --flag"],
        "Env": ["A=1", "B=two", "C=with spaces"], "WorkingDir": "/srv", "User": "1000:1000",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Labels": {"a": "b", "c": "d"},
        "Volumes": {"/data": {}}, "StopSignal": "SIGINT"}


@pytest.mark.parametrize("bad, words", [("RUN ls", "not supported"), ("EXPOSE http", "port"),
                                        ("CMD", "needs an argument")])
def test_bad_changes(bad: str, words: str) -> None:
    with pytest.raises(ImageFailure, match=words):
        apply_changes({}, [bad])
