"""Credentials in auth.json (podman) and config.json (docker): lookup, store, logout."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from berth.images import auth
from berth.images.auth import Credentials
from berth.images.errors import RegistryError


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    for d in ("xdg", "docker", "home"):
        (tmp_path / d).mkdir()
    monkeypatch.delenv("BERTH_AUTH_FILE", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    return {"podman": tmp_path / "xdg/containers/auth.json",
            "docker": tmp_path / "docker/config.json",
            "berth": tmp_path / "berth-auth.json", "bin": tmp_path / "bin"}


def write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("key, host", [
    ("https://index.docker.io/v1/", "docker.io"),
    ("index.docker.io", "docker.io"),
    ("docker.io", "docker.io"),
    ("http://127.0.0.1:5000", "127.0.0.1:5000"),
    ("127.0.0.1:5000/v2/", "127.0.0.1:5000"),
    ("quay.io/team", "quay.io/team"),
])
def test_keys_of_both_formats_are_understood(key: str, host: str) -> None:
    assert auth.normalize_key(key) == host


def test_docker_config_is_read(homes: dict[str, Path]) -> None:
    write(homes["docker"], {"auths": {"https://index.docker.io/v1/": {"auth": b64("d:pw")},
                                      "localhost:5000": {"auth": b64("l:pw:with:colons")}}})
    assert auth.lookup("docker.io") == Credentials("d", "pw")
    assert auth.lookup("localhost:5000") == Credentials("l", "pw:with:colons")
    assert auth.lookup("localhost:5001") is None


def test_podman_file_wins_over_docker_and_repository_keys_over_hosts(
        homes: dict[str, Path]) -> None:
    write(homes["docker"], {"auths": {"quay.io": {"auth": b64("docker:1")}}})
    write(homes["podman"], {"auths": {"quay.io": {"auth": b64("podman:2")},
                                      "quay.io/team": {"auth": b64("team:3")}}})
    assert auth.lookup("quay.io") == Credentials("podman", "2")
    assert auth.lookup("quay.io", "team/app") == Credentials("team", "3")
    assert auth.lookup("quay.io", "teamx/app") == Credentials("podman", "2")


def test_login_file_keeps_other_keys_and_is_private(homes: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    write(homes["podman"], {"auths": {"other.io": {"auth": b64("o:o")}}, "extra": {"x": 1}})
    path = auth.store_credentials("http://127.0.0.1:5000/", Credentials("u", "p"))
    assert path == str(homes["podman"])
    doc = json.loads(homes["podman"].read_text())
    assert doc["extra"] == {"x": 1}
    assert doc["auths"]["127.0.0.1:5000"] == {"auth": b64("u:p")}
    assert doc["auths"]["other.io"] == {"auth": b64("o:o")}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.lookup("127.0.0.1:5000") == Credentials("u", "p")
    assert auth.logout("127.0.0.1:5000") is True
    assert auth.logout("127.0.0.1:5000") is False
    assert auth.lookup("127.0.0.1:5000") is None
    assert auth.lookup("other.io") == Credentials("o", "o")
    assert auth.logout(all_=True) is True
    assert json.loads(homes["podman"].read_text())["auths"] == {}
    monkeypatch.setenv("BERTH_AUTH_FILE", str(homes["berth"]))
    assert auth.store_credentials("r.io", Credentials("a", "b")) == str(homes["berth"])
    assert auth.lookup("r.io") == Credentials("a", "b")


def test_a_damaged_file_is_a_clear_error(homes: dict[str, Path]) -> None:
    homes["podman"].parent.mkdir(parents=True)
    homes["podman"].write_text("{not json")
    with pytest.raises(RegistryError, match="cannot read credentials"):
        auth.lookup("r.io")
    write(homes["podman"], {"auths": {"r.io": {"auth": b64("nocolon")}}})
    with pytest.raises(RegistryError, match="not base64 of user:password"):
        auth.lookup("r.io")


def test_docker_credential_helpers_are_asked(homes: dict[str, Path]) -> None:
    homes["bin"].mkdir()
    helper = homes["bin"] / "docker-credential-berthtest"
    helper.write_text('#!/bin/sh\nread server\n[ "$1" = get ] || exit 1\n'
                      'printf \'{"ServerURL":"%s","Username":"h","Secret":"s"}\' "$server"\n')
    helper.chmod(0o755)
    write(homes["docker"], {"credHelpers": {"helped.io": "berthtest"}})
    assert auth.lookup("helped.io") == Credentials("h", "s")
    assert auth.lookup("nothelped.io") is None
    write(homes["docker"], {"credsStore": "berthtest"})
    assert auth.lookup("any.io") == Credentials("h", "s")


def test_credentials_never_print_the_password() -> None:
    assert "secret" not in repr(Credentials("u", "secret"))
