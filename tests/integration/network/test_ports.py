"""Published ports: reached from the host on 127.0.0.1, conflicts refused, rules removed."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest

from tests.integration.engine.test_detached import until
from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture

pytestmark = pytest.mark.root

HTTPD = "echo served > /tmp/index.html; httpd -p 80 -h /tmp; httpd -f -p 81 -h /tmp"


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def nft() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def test_publish_fixed_and_ephemeral_ports(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "web", "-p", "18181:80", "-p", "127.0.0.1::81", "busybox",
          "sh", "-c", HTTPD)
    assert until(lambda: get("http://127.0.0.1:18181/index.html")) == "served\n"
    lines = berth("port", "web").stdout.splitlines()
    assert lines[0] == "80/tcp -> 0.0.0.0:18181"
    assert lines[1].startswith("81/tcp -> 127.0.0.1:")
    eph = int(berth("port", "web", "81").stdout.strip().split(":")[1])
    assert 32768 <= eph <= 60999
    assert until(lambda: get(f"http://127.0.0.1:{eph}/index.html")) == "served\n"
    ps = berth("ps", "--format", "{{.Ports}}").stdout
    assert ps.startswith("0.0.0.0:18181->80/tcp, 127.0.0.1:")
    p = berth("run", "--rm", "-p", "18181:80", "busybox", "true", check=False)
    assert p.returncode == 125 and "port is already allocated" in p.stderr
    berth("rm", "-f", "web")
    assert "18181" not in nft() and get("http://127.0.0.1:18181/index.html") is None


def test_publish_all_uses_the_images_expose(berth, tmp_path, busybox_rootfs) -> None:  # noqa: F811
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    berth("import", "-c", "EXPOSE 80", str(tar), "exposed:1")
    berth("run", "-d", "--name", "pa", "-P", "exposed:1", "sh", "-c", HTTPD)
    mapping = berth("port", "pa", "80").stdout.strip()
    assert mapping.startswith("0.0.0.0:")
    port = int(mapping.split(":")[1])
    assert until(lambda: get(f"http://127.0.0.1:{port}/index.html")) == "served\n"


@pytest.mark.parametrize("flag, words", [
    (["-p", "80/sctp"], "protocol must be tcp or udp"),
    (["-p", "99999:80"], "within 1-65535"),
    (["-p", "1-3:80-81"], "differ in length"),
    (["--network", "none", "-p", "80"], "need a bridge network"),
])
def test_bad_publish_flags(berth, flag: list[str], words: str) -> None:  # noqa: F811
    p = berth("run", "--rm", *flag, "busybox", "true", check=False)
    assert p.returncode == 125 and words in p.stderr
