"""The embedded DNS's packets: answers, NXDOMAIN, other types, malformed input."""

from __future__ import annotations

import struct

from berth.engine import dns

NAMES = {"web": "10.89.0.2"}


def test_a_record() -> None:
    reply = dns.answer(dns.query("web", 0xBEEF), NAMES.get)
    assert reply is not None
    qid, flags, qd, an = struct.unpack_from("!HHHH", reply)
    assert (qid, flags & 0xF, qd, an) == (0xBEEF, 0, 1, 1)
    assert reply[-4:] == bytes([10, 89, 0, 2])


def test_unknown_name_is_nxdomain_and_never_forwarded() -> None:
    reply = dns.answer(dns.query("example.com"), NAMES.get)
    assert reply is not None and struct.unpack_from("!H", reply, 2)[0] & 0xF == 3


def test_aaaa_of_a_known_name_is_an_empty_answer() -> None:
    q = bytearray(dns.query("WEB"))
    q[-4:-2] = struct.pack("!H", dns.TYPE_AAAA)
    reply = dns.answer(bytes(q), NAMES.get)
    assert reply is not None
    _, flags, _, an = struct.unpack_from("!HHHH", reply)
    assert flags & 0xF == 0 and an == 0


def test_malformed_packets_get_no_reply() -> None:
    for bad in (b"", b"\x00" * 11, dns.query("web")[:14], b"\x12\x34\x01\x00\x00\x02" + b"\0" * 6):
        assert dns.answer(bad, NAMES.get) is None
