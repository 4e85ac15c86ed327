"""`network connect/disconnect` and network aliases, checked from inside the containers:
the interface appears and goes, other containers resolve and reach the aliases, and a
failed connect leaves nothing behind on the host."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import pytest

from tests.integration.engine.test_run import berth  # noqa: F401 - the fixture
from tests.integration.network.test_networks import links, nft_ruleset

pytestmark = pytest.mark.root


@pytest.fixture
def nets(berth):  # type: ignore[no-untyped-def]  # noqa: F811
    """Create networks by name; at the end every container goes first, then the networks,
    and their bridges and nftables rules must be gone."""
    made: list[str] = []
    bridges: list[str] = []

    def create(*names: str) -> None:
        for n in names:
            berth("network", "create", n)
            made.append(n)
            doc = json.loads(berth("network", "inspect", n).stdout)[0]
            bridges.append(doc["Options"]["com.docker.network.bridge.name"])

    yield create
    for cid in berth("ps", "-aq").stdout.split():
        berth("rm", "-f", cid)
    if made:
        berth("network", "rm", *made)
    for br in bridges:
        assert br not in links() and br not in nft_ruleset()


def addr_in(berth, ctr: str, iface: str) -> str | None:  # type: ignore[no-untyped-def]  # noqa: F811
    out = berth("exec", ctr, "ip", "-4", "-o", "addr", "show", iface, check=False).stdout
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    return m.group(1) if m else None


def subnet(berth, net: str) -> ipaddress.IPv4Network:  # type: ignore[no-untyped-def]  # noqa: F811
    doc = json.loads(berth("network", "inspect", net).stdout)[0]
    return ipaddress.IPv4Network(doc["IPAM"]["Config"][0]["Subnet"])


def resolve(berth, ctr: str, name: str) -> str | None:  # type: ignore[no-untyped-def]  # noqa: F811
    out = berth("exec", ctr, "nslookup", name, check=False).stdout
    found = re.findall(r"Address: (\d+\.\d+\.\d+\.\d+)$", out, re.M)
    return found[0] if found else None


def test_connect_a_running_container_then_disconnect(berth, nets) -> None:  # noqa: F811
    nets("app", "other")
    berth("run", "-d", "--name", "asker", "--network", "app", "busybox", "sleep", "120")
    berth("run", "-d", "--name", "srv", "--network", "other", "busybox", "sleep", "120")
    assert resolve(berth, "asker", "srv") is None  # not on a shared network yet
    berth("network", "connect", "--alias", "db", "app", "srv")
    # inside srv: a second interface with an address of app's subnet
    assert berth("exec", "srv", "ls", "/sys/class/net").stdout.split() == ["eth0", "eth1", "lo"]
    ip = addr_in(berth, "srv", "eth1")
    assert ip is not None and ipaddress.IPv4Address(ip) in subnet(berth, "app")
    assert ipaddress.IPv4Address(addr_in(berth, "srv", "eth0")) in subnet(berth, "other")
    # from another container on app: the alias and the name resolve to it, and answer
    assert resolve(berth, "asker", "db") == ip and resolve(berth, "asker", "srv") == ip
    assert berth("exec", "asker", "ping", "-c1", "-W2", "db").returncode == 0
    # and srv, asking its own network's DNS, finds asker on the network it joined
    assert resolve(berth, "srv", "asker") == addr_in(berth, "asker", "eth0")
    doc = json.loads(berth("inspect", "srv").stdout)[0]["NetworkSettings"]["Networks"]
    assert list(doc) == ["other", "app"]
    assert doc["app"]["IPAddress"] == ip and doc["app"]["Aliases"][0] == "db"
    assert doc["app"]["Gateway"] == str(subnet(berth, "app")[1])
    members = json.loads(berth("network", "inspect", "app").stdout)[0]["Containers"]
    assert sorted(m["Name"] for m in members.values()) == ["asker", "srv"]
    p = berth("network", "connect", "app", "srv", check=False)
    assert p.returncode == 125 and "already connected to network app" in p.stderr

    berth("network", "disconnect", "app", "srv")
    assert berth("exec", "srv", "ls", "/sys/class/net").stdout.split() == ["eth0", "lo"]
    assert resolve(berth, "asker", "db") is None  # NXDOMAIN once it is gone
    assert berth("exec", "asker", "ping", "-c1", "-W1", "db", check=False).returncode != 0
    assert "app" not in json.loads(berth("inspect", "srv").stdout)[0]["NetworkSettings"][
        "Networks"]
    srv_id = berth("inspect", "-f", "{{.Id}}", "srv").stdout.strip()
    assert f"vb{srv_id[:10]}x" not in links()  # the host's end of the veth went with it
    p = berth("network", "disconnect", "app", "srv", check=False)
    assert p.returncode == 125 and "not connected to network app" in p.stderr


def test_connect_a_created_container_applies_at_start(berth, nets) -> None:  # noqa: F811
    nets("app", "other")
    berth("run", "-d", "--name", "asker", "--network", "app", "busybox", "sleep", "120")
    berth("create", "--name", "late", "--network", "other", "busybox", "sleep", "120")
    want = str(subnet(berth, "app")[50])
    berth("network", "connect", "--alias", "cache", "--ip", want, "app", "late")
    doc = json.loads(berth("inspect", "late").stdout)[0]["NetworkSettings"]["Networks"]
    assert doc["app"]["IPAMConfig"] == {"IPv4Address": want} and doc["app"]["IPAddress"] == ""
    assert resolve(berth, "asker", "cache") is None  # recorded, not plugged: it is not running
    berth("start", "late")
    assert addr_in(berth, "late", "eth1") == want
    assert resolve(berth, "asker", "cache") == want
    berth("restart", "-t", "1", "late")  # the connection is the container's: it stays
    assert addr_in(berth, "late", "eth1") == want
    assert berth("exec", "asker", "ping", "-c1", "-W2", "cache").returncode == 0
    p = berth("network", "connect", "--ip", want, "app", "asker", check=False)
    assert p.returncode == 125 and "already connected" in p.stderr
    berth("run", "-d", "--name", "third", "--network", "other", "busybox", "sleep", "60")
    p = berth("network", "connect", "--ip", want, "app", "third", check=False)
    assert p.returncode == 125 and f"address {want} is already in use" in p.stderr
    assert berth("exec", "third", "ls", "/sys/class/net").stdout.split() == ["eth0", "lo"]


def test_run_network_alias(berth, nets) -> None:  # noqa: F811
    nets("app")
    berth("run", "-d", "--name", "webc", "--network", "app", "--network-alias", "web",
          "--network-alias", "www", "busybox", "sleep", "120")
    ip = addr_in(berth, "webc", "eth0")
    out = berth("run", "--rm", "--network", "app", "busybox", "sh", "-c",
                "nslookup web; nslookup www; ping -c1 -W2 web >/dev/null && echo reached").stdout
    assert out.count(f"Address: {ip}") == 2 and out.endswith("reached\n")
    doc = json.loads(berth("inspect", "webc").stdout)[0]["NetworkSettings"]["Networks"]["app"]
    assert doc["Aliases"][:2] == ["web", "www"] and "web" in doc["DNSNames"]
    for net in ("bridge", "none"):
        p = berth("run", "--rm", "--network", net, "--network-alias", "x", "busybox", "true",
                  check=False)
        assert p.returncode == 125 and "user-defined networks" in p.stderr


def test_bad_connects_say_why_and_leave_nothing(berth, nets) -> None:  # noqa: F811
    nets("app", "lonely")
    berth("run", "-d", "--name", "c1", "--network", "app", "busybox", "sleep", "120")
    berth("run", "-d", "--name", "nonet", "--network", "none", "busybox", "sleep", "120")
    outside = str(subnet(berth, "app")[1]).rsplit(".", 1)[0] + ".300"
    cases = [
        (["nosuchnet", "c1"], "network nosuchnet not found"),
        (["lonely", "nosuch"], "No such container: nosuch"),
        (["--ip", outside, "lonely", "c1"], "invalid IPv4 address"),
        (["--ip", str(subnet(berth, "app")[5]), "lonely", "c1"], "not a host address of "
         "network lonely"),
        (["--ip", str(subnet(berth, "lonely")[1]), "lonely", "c1"], "is the gateway"),
        (["--alias", "bad alias", "lonely", "c1"], "invalid network alias 'bad alias'"),
        (["--alias", "x", "bridge", "c1"], "user-defined networks"),
        (["lonely", "nonet"], "runs with --network none"),
    ]
    for args, why in cases:
        p = berth("network", "connect", *args, check=False)
        assert p.returncode == 125 and why in p.stderr, (args, p.stderr)
    # a connect that fails half-way (the container took the name eth1 itself) undoes it all
    berth("run", "-d", "--name", "adm", "--cap-add", "NET_ADMIN", "--network", "app",
          "busybox", "sh", "-c", "ip link add eth1 type veth peer name peer1 && sleep 120")
    from tests.integration.engine.test_detached import until
    until(lambda: "eth1" in berth("exec", "adm", "ls", "/sys/class/net").stdout)
    lonely = json.loads(berth("network", "inspect", "lonely").stdout)[0]
    p = berth("network", "connect", "lonely", "adm", check=False)
    assert p.returncode == 125
    assert "cannot connect container adm to network lonely as eth1: File exists" in p.stderr
    adm_id = berth("inspect", "-f", "{{.Id}}", "adm").stdout.strip()
    assert f"vb{adm_id[:10]}x" not in links()
    bridge = lonely["Options"]["com.docker.network.bridge.name"]
    assert bridge not in links() and bridge not in nft_ruleset()  # no one else used it
    assert json.loads(berth("network", "inspect", "lonely").stdout)[0]["Containers"] == {}
    assert list(json.loads(berth("inspect", "adm").stdout)[0]["NetworkSettings"][
        "Networks"]) == ["app"]
    # the network that carries published ports is kept unless forced
    berth("run", "-d", "--name", "pub", "--network", "app", "-p", "127.0.0.1::80",
          "busybox", "sleep", "120")
    p = berth("network", "disconnect", "app", "pub", check=False)
    assert p.returncode == 125 and "publishes its ports" in p.stderr
    pub_id = berth("inspect", "-f", "{{.Id}}", "pub").stdout.strip()
    assert pub_id[:12] in nft_ruleset()
    berth("network", "disconnect", "-f", "app", "pub")
    assert berth("exec", "pub", "ls", "/sys/class/net").stdout.split() == ["lo"]
    assert pub_id[:12] not in nft_ruleset() and berth("port", "pub").stdout == ""


def test_nothing_stays_on_the_host_after_rm(berth, nets) -> None:  # noqa: F811
    nets("app", "other")
    berth("run", "-d", "--name", "multi", "--network", "other", "busybox", "sleep", "120")
    berth("network", "connect", "app", "multi")
    berth("network", "connect", "bridge", "multi")
    cid = berth("inspect", "-f", "{{.Id}}", "multi").stdout.strip()
    assert berth("exec", "multi", "ls", "/sys/class/net").stdout.split() == \
        ["eth0", "eth1", "eth2", "lo"]
    default_br = json.loads(berth("network", "inspect", "bridge").stdout)[0]["Options"][
        "com.docker.network.bridge.name"]
    assert default_br in links()
    berth("rm", "-f", "multi")
    from tests.integration.engine.test_detached import until
    until(lambda: f"vb{cid[:10]}" not in links())  # gone with the namespace, in the background
    assert default_br in links()  # the default bridge stays, as docker0 does, until a prune
    berth("system", "prune", "-f")
    assert default_br not in links() and default_br not in nft_ruleset()
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert cid[:12] not in ns
