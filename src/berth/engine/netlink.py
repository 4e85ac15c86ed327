"""A small rtnetlink client: bridges, veth pairs, addresses, routes, links up and down.

DESIGN.md names pyroute2 for netlink; on these machines `from pyroute2 import
IPRoute` costs ~180 ms (asyncio, inspect, ast, its own nftables tables), six
times a whole `berth run`. The few requests container networking needs are a
page of struct packing, so they are here, over a plain AF_NETLINK socket:
each call sends one request with NLM_F_ACK and raises NetlinkError (with the
errno and what was asked) when the kernel refuses it.
"""

from __future__ import annotations

# the C halves of socket and struct: `import socket` costs berth run ~3 ms (enum, selectors)
import _socket as socket
import _struct as struct
import errno
import os

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 1

_IFINFO = struct.Struct("=BxHiII")   # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type


class NetlinkError(OSError):
    pass


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def link_exists(name: str) -> bool:
    """Is there a network interface called `name` (in the calling thread's namespace)?"""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


class Netlink:
    """One rtnetlink socket in the caller's network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        self.seq += 1
        hdr = struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                          self.seq, 0)
        self.sock.send(hdr + body)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off < len(data):
                length, mtype, _, seq, _ = struct.unpack_from("=IHHII", data, off)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    if err:
                        raise NetlinkError(-err, f"{os.strerror(-err)} ({what})")
                    return
                off += (length + 3) & ~3

    # --- links ----------------------------------------------------------------

    def index(self, name: str) -> int:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            raise NetlinkError(errno.ENODEV, f"no network interface {name!r}") from None

    def exists(self, name: str) -> bool:
        return link_exists(name)

    def add_bridge(self, name: str, mtu: int = 1500) -> None:
        info = _attr(IFLA_INFO_KIND, b"bridge")
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name)) + \
            _attr(IFLA_MTU, struct.pack("=I", mtu)) + _attr(IFLA_LINKINFO, info)
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create bridge {name}")

    def add_veth(self, name: str, peer: str, peer_netns_fd: int | None = None,
                 mtu: int = 1500) -> None:
        """A veth pair; the peer is created directly in another namespace when given."""
        peer_attrs = _attr(IFLA_IFNAME, _name(peer)) + _attr(IFLA_MTU, struct.pack("=I", mtu))
        if peer_netns_fd is not None:
            peer_attrs += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        peer_msg = _IFINFO.pack(0, 0, 0, 0, 0) + peer_attrs
        info = _attr(IFLA_INFO_KIND, b"veth") + \
            _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_msg))
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name)) + \
            _attr(IFLA_MTU, struct.pack("=I", mtu)) + _attr(IFLA_LINKINFO, info)
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body,
                      f"create veth {name} <-> {peer}")

    def set_master(self, name: str, master: str) -> None:
        body = _IFINFO.pack(0, 0, self.index(name), 0, 0) + \
            _attr(IFLA_MASTER, struct.pack("=I", self.index(master)))
        self._request(RTM_NEWLINK, 0, body, f"attach {name} to {master}")

    def set_up(self, name: str, up: bool = True) -> None:
        body = _IFINFO.pack(0, 0, self.index(name), IFF_UP if up else 0, IFF_UP)
        self._request(RTM_NEWLINK, 0, body, f"set {name} {'up' if up else 'down'}")

    def rename(self, name: str, new: str) -> None:
        body = _IFINFO.pack(0, 0, self.index(name), 0, 0) + _attr(IFLA_IFNAME, _name(new))
        self._request(RTM_NEWLINK, 0, body, f"rename {name} to {new}")

    def set_mac(self, name: str, mac: str) -> None:
        body = _IFINFO.pack(0, 0, self.index(name), 0, 0) + \
            _attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
        self._request(RTM_NEWLINK, 0, body, f"set {name} address {mac}")

    def delete(self, name: str) -> None:
        body = _IFINFO.pack(0, 0, self.index(name), 0, 0)
        self._request(RTM_DELLINK, 0, body, f"delete {name}")

    # --- addresses and routes -------------------------------------------------

    def add_address(self, name: str, cidr: str) -> None:
        """An IPv4 address with its prefix length, e.g. 10.89.0.2/16."""
        addr, _, plen = cidr.partition("/")
        packed = socket.inet_aton(addr)
        prefix = int(plen or 32)
        host = (1 << (32 - prefix)) - 1 if prefix < 32 else 0
        bcast = struct.pack("!I", struct.unpack("!I", packed)[0] | host)
        body = _IFADDR.pack(socket.AF_INET, prefix, 0, 0, self.index(name)) + \
            _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed) + _attr(IFA_BROADCAST, bcast)
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add {cidr} to {name}")

    def add_default_route(self, gateway: str, dev: str) -> None:
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0) + \
            _attr(RTA_GATEWAY, socket.inet_aton(gateway)) + \
            _attr(RTA_OIF, struct.pack("=I", self.index(dev)))
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body,
                      f"default route via {gateway} dev {dev}")


def in_netns(netns_path: str, fn) -> None:
    """Run fn(Netlink) inside another network namespace; its errors are raised here.

    The calling thread enters the namespace (setns) and comes back when fn is done,
    whatever happens: a network namespace, unlike a mount or user one, can be switched
    by one thread of many. Names are looked up (if_nametoindex) in the namespace the
    thread is in, so fn's whole work happens inside. A fork did this before, ~2 ms.
    """
    from berth.runtime import linux

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
        finally:
            os.close(fd)
        try:
            with Netlink() as nl:
                fn(nl)
        finally:
            linux.setns(own, linux.CLONE_NEWNET)
    finally:
        os.close(own)
