"""The embedded DNS of user-defined networks: names of the network's containers, by UDP.

Like docker's, it answers on the network's gateway address, port 53, for the
names of the containers on that network (name, short id, hostname), from the
engine's records at the moment of the question, so a container started later
is found too. It never forwards: a name it does not know is NXDOMAIN (berth
sends no traffic beyond loopback and its own networks). The supervisor holds
the sockets (one per network in use) and asks `answer()` for each packet.
"""

from __future__ import annotations

import struct

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
TTL = 10


def parse_question(packet: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end offset of the question); ValueError if malformed."""
    if len(packet) < 12:
        raise ValueError("short packet")
    qid, flags, qdcount = struct.unpack_from("!HHH", packet)
    if qdcount != 1:
        raise ValueError("one question expected")
    off, labels = 12, []
    while True:
        if off >= len(packet):
            raise ValueError("truncated name")
        n = packet[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed question name")
        labels.append(packet[off:off + n].decode("ascii", "replace"))
        off += n
    if off + 4 > len(packet):
        raise ValueError("truncated question")
    qtype, _ = struct.unpack_from("!HH", packet, off)
    return qid, flags, ".".join(labels), qtype, off + 4


def answer(packet: bytes, lookup) -> bytes | None:
    """The reply to one query; `lookup(name)` gives an IPv4 address or None."""
    try:
        qid, flags, name, qtype, end = parse_question(packet)
    except ValueError:
        return None
    question = packet[12:end]
    rd = flags & 0x0100
    ip = lookup(name.rstrip(".").lower())
    if ip is None:
        return struct.pack("!HHHHHH", qid, 0x8180 | rd | 3, 1, 0, 0, 0) + question  # NXDOMAIN
    if qtype != TYPE_A:  # the name exists, but berth's networks are IPv4 only
        return struct.pack("!HHHHHH", qid, 0x8180 | rd, 1, 0, 0, 0) + question
    rr = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + bytes(
        int(x) for x in ip.split("."))
    return struct.pack("!HHHHHH", qid, 0x8180 | rd, 1, 1, 0, 0) + question + rr


def query(name: str, qid: int = 0x1234) -> bytes:
    """A minimal A query (for tests)."""
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", TYPE_A,
                                                                            CLASS_IN)
