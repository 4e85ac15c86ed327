"""Container networks end to end: the default bridge, user networks, names, isolation, cleanup."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.engine.test_detached import until
from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture
from tests.integration.network.test_ports import get

pytestmark = pytest.mark.root


def links() -> str:
    return subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


def nft_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def ip_of(berth, name: str) -> str:  # type: ignore[no-untyped-def]  # noqa: F811
    out = berth("exec", name, "sh", "-c", "ip -4 -o addr show eth0 2>/dev/null || "
                "ifconfig eth0").stdout
    import re
    return re.search(r"(10\.89\.\d+\.\d+)", out).group(1)  # type: ignore[union-attr]


def test_default_bridge_host_reaches_container_and_names_resolve(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "web", "busybox", "sh", "-c",
          "echo served > /tmp/index.html; httpd -f -p 80 -h /tmp")
    addr = ip_of(berth, "web")
    body = until(lambda: get(f"http://{addr}/index.html"))
    assert body == "served\n"  # from the host, over the bridge
    p = berth("run", "--rm", "busybox", "sh", "-c",
              "ls /sys/class/net | sort | tr '\\n' ' '; wget -qO- http://web/index.html")
    assert p.stdout == "eth0 lo served\n"  # a second container, by name
    doc = json.loads(berth("network", "inspect", "bridge").stdout)[0]
    assert doc["IPAM"]["Config"][0]["Subnet"].startswith("10.89.")
    bridge = doc["Options"]["com.docker.network.bridge.name"]
    assert bridge in links() and bridge in nft_ruleset()
    web_id = json.loads(berth("network", "inspect", "bridge").stdout)[0]["Containers"]
    berth("rm", "-f", "web")
    # its veth goes with its network namespace (the kernel frees it in the background)
    until(lambda: not any(f"vb{cid[:12]}" in links() for cid in web_id))
    assert bridge in links() and bridge in nft_ruleset()  # the bridge stays, as docker0 does
    assert "Deleted Bridges:\nbridge\n" in berth("system", "prune", "-f").stdout
    assert bridge not in links()  # prune takes an unused bridge
    assert bridge not in nft_ruleset()  # and its rules (the table goes with the last bridge)


def test_user_networks_are_isolated_from_each_other(berth) -> None:  # noqa: F811
    berth("network", "create", "front")
    berth("network", "create", "back")
    berth("run", "-d", "--name", "db", "--network", "back", "busybox", "sleep", "60")
    db_ip = ip_of(berth, "db")
    same = berth("run", "--rm", "--network", "back", "busybox", "sh", "-c",
                 "ping -c1 -W2 db >/dev/null && echo reach").stdout
    assert same == "reach\n"
    other = berth("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                  f"ping -c1 -W1 {db_ip} >/dev/null 2>&1 && echo LEAK || echo isolated").stdout
    assert other == "isolated\n"
    assert berth("network", "rm", "back", check=False).returncode == 1  # in use
    berth("rm", "-f", "db")
    assert berth("network", "rm", "front", "back").stdout == "front\nback\n"
    names = berth("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert names == ["bridge", "host", "none"]


def test_none_and_host_modes(berth) -> None:  # noqa: F811
    assert berth("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"
                 ).stdout.split() == ["lo"]
    host_ifaces = sorted(p.name for p in Path("/sys/class/net").iterdir())
    assert sorted(berth("run", "--rm", "--network", "host", "busybox", "ls",
                        "/sys/class/net").stdout.split()) == host_ifaces


def test_embedded_dns_finds_containers_started_later(berth, tmp_path) -> None:  # noqa: F811
    berth("network", "create", "dnsnet")
    berth("run", "-d", "--name", "early", "--network", "dnsnet", "busybox", "sleep", "60")
    berth("run", "-d", "--name", "late", "--network", "dnsnet", "busybox", "sleep", "60")
    out = berth("exec", "early", "sh", "-c", "cat /etc/resolv.conf; nslookup late; "
                "ping -c1 -W2 late >/dev/null && echo reached; "
                "nslookup nosuch.example 2>&1; true").stdout
    assert "nameserver 10.89." in out
    assert "reached" in out and "NXDOMAIN" in out
    # a foreground container on the network gets the same answers (the supervisor serves it)
    p = berth("run", "--rm", "--network", "dnsnet", "busybox", "sh", "-c",
              "ping -c1 -W2 early >/dev/null && echo found-early")
    assert p.stdout == "found-early\n"
    berth("rm", "-f", "early", "late")
    from tests.integration.engine.test_detached import supervisors
    until(lambda: not supervisors(tmp_path / "root"))
    berth("network", "rm", "dnsnet")


def test_network_container_mode_shares_the_namespace(berth) -> None:  # noqa: F811
    berth("run", "-d", "--name", "host1", "busybox", "sh", "-c",
          "echo inside-host1 > /tmp/i; httpd -f -p 8088 -h /tmp")
    addr = ip_of(berth, "host1")
    p = berth("run", "--rm", "--network", "container:host1", "busybox", "sh", "-c",
              "ls /sys/class/net | sort | tr '\\n' ' '; wget -qO- http://127.0.0.1:8088/i; "
              "ip -4 -o addr show eth0 2>/dev/null | grep -o '10\\.89[0-9.]*' || "
              "ifconfig eth0 | grep -o 'addr:10\\.89[0-9.]*' | cut -d: -f2")
    lines = p.stdout.splitlines()
    assert lines[0] == "eth0 lo inside-host1"  # the other container's loopback and address
    assert lines[1] == addr
    p = berth("run", "--rm", "--network", "container:nosuch", "busybox", "true", check=False)
    assert p.returncode == 125 and "No such container: nosuch" in p.stderr


def test_concurrent_first_runs_share_the_bridge_they_race_to_make(berth, tmp_path) -> None:  # noqa: F811
    import os
    import sys
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"))
    berth_bin = str(Path(sys.executable).parent / "berth")
    procs = [subprocess.Popen([berth_bin, "run", "--rm", "busybox", "sh", "-c",
                               "ip -4 -o addr show eth0 | grep -c 10.89."],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(6)]
    results = [(p.communicate(timeout=60), p.returncode) for p in procs]
    assert [rc for _, rc in results] == [0] * 6, [err for (_, err), _ in results]
    assert [out for (out, _), _ in results] == ["1\n"] * 6


def test_a_default_network_whose_subnet_another_root_took_moves(
        berth, tmp_path, busybox_image) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    import os
    import sys
    berth_bin = str(Path(sys.executable).parent / "berth")

    def other(*args: str) -> str:  # a second berth root on the same host
        env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root2"),
                   BERTH_RUNTIME_ROOT=str(tmp_path / "runtime2"))
        return subprocess.run([berth_bin, *args], env=env, capture_output=True, text=True,
                              check=True).stdout

    def subnet(inspect_out: str) -> str:
        return json.loads(inspect_out)[0]["IPAM"]["Config"][0]["Subnet"]

    mine = subnet(berth("network", "inspect", "bridge").stdout)  # recorded, no bridge yet
    assert subnet(other("network", "inspect", "bridge")) == mine  # the same free /24
    other("load", "-i", str(busybox_image / "oci"))
    other("run", "--rm", "localhost/image", "true")  # root2's bridge now routes it
    out = berth("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    moved = subnet(berth("network", "inspect", "bridge").stdout)
    assert moved != mine
    prefix = moved.rsplit(".", 1)[0] + "."
    assert f"inet {prefix}" in out  # the container's address is in the new subnet
    other("system", "reset", "-f")
