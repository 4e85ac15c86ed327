"""berth's rtnetlink client against the real kernel: a bridge, a veth into a netns, TCP across."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

from berth.engine.netlink import Netlink, NetlinkError, in_netns

pytestmark = pytest.mark.root


@pytest.fixture
def netns():  # type: ignore[no-untyped-def]
    name = f"bnl{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    links: list[str] = []
    yield name, links
    with Netlink() as nl:
        for link in links:
            if nl.exists(link):
                nl.delete(link)
    subprocess.run(["ip", "netns", "del", name], check=True)


def test_bridge_veth_addresses_route_and_tcp(netns) -> None:  # type: ignore[no-untyped-def]
    name, links = netns
    br, host_end = f"br{name[3:]}", f"vh{name[3:]}"
    links += [host_end, br]
    with Netlink() as nl:
        nl.add_bridge(br)
        nl.add_address(br, "10.231.7.1/24")
        nl.set_up(br)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            nl.add_veth(host_end, "tmp0", fd)
        finally:
            os.close(fd)
        nl.set_master(host_end, br)
        nl.set_up(host_end)
        with pytest.raises(NetlinkError, match="File exists"):
            nl.add_bridge(br)

    def inside(nl: Netlink) -> None:
        nl.rename("tmp0", "eth0")
        nl.set_mac("eth0", "02:42:0a:e7:07:02")
        nl.add_address("eth0", "10.231.7.2/24")
        nl.set_up("lo")
        nl.set_up("eth0")
        nl.add_default_route("10.231.7.1", "eth0")

    in_netns(f"/run/netns/{name}", inside)
    out = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "addr", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    assert "10.231.7.2/24" in out
    route = subprocess.run(["ip", "netns", "exec", name, "ip", "route", "show", "default"],
                           capture_output=True, text=True, check=True).stdout
    assert route.startswith("default via 10.231.7.1 dev eth0")
    server = subprocess.Popen(
        ["ip", "netns", "exec", name, sys.executable, "-c",
         "import socket; s=socket.socket(); s.bind(('10.231.7.2', 7777)); s.listen(1);"
         "print('ready', flush=True); c,_=s.accept(); c.sendall(c.recv(100)[::-1]); c.close()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        with socket.create_connection(("10.231.7.2", 7777), timeout=5) as c:
            c.sendall(b"berth")
            assert c.recv(100) == b"htreb"
    finally:
        server.kill()
        server.wait()
        if server.stdout:
            server.stdout.close()


def test_errors_name_what_was_asked(netns) -> None:  # type: ignore[no-untyped-def]
    with Netlink() as nl, pytest.raises(NetlinkError, match="no network interface 'nope0'"):
        nl.set_up("nope0")
    with pytest.raises(NetlinkError, match="nope1"):
        in_netns(f"/run/netns/{netns[0]}", lambda nl: nl.set_up("nope1"))
