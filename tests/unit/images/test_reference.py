"""Image references normalise as docker's do."""

from __future__ import annotations

import pytest

from berth.images.errors import ReferenceError_
from berth.images.reference import parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, full, short", [
    ("busybox", "docker.io/library/busybox:latest", "busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox"),
    ("user/app", "docker.io/user/app:latest", "user/app"),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x"),
    ("localhost/x:y", "localhost/x:y", "localhost/x"),
    ("quay.io/a/b/c:t", "quay.io/a/b/c:t", "quay.io/a/b/c"),
    (f"quay.io/a/b@{DIGEST}", f"quay.io/a/b@{DIGEST}", "quay.io/a/b"),
    (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", "busybox"),
    ("127.0.0.1:5000/ns/img:tag", "127.0.0.1:5000/ns/img:tag", "127.0.0.1:5000/ns/img"),
])
def test_normalisation(text: str, full: str, short: str) -> None:
    r = parse(text)
    assert str(r) == full
    assert r.short == short


@pytest.mark.parametrize("bad", ["", "UPPER/case", "a:", "a@sha256:abc", "a b", "x/", "-x",
                                 "a:" + "t" * 129, "a//b"])
def test_invalid(bad: str) -> None:
    with pytest.raises(ReferenceError_):
        parse(bad)
