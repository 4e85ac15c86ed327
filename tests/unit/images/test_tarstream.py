"""The lean tar reader against tarfile, and the CRC-less gzip reader against gzip.

Archives are written by tarfile in its three formats (ustar, GNU, pax) and
read back by TarReader in chunks of every size, so that headers and data
straddle chunk boundaries; what it reports must be what tarfile reads.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.images.layers import _gunzip_unchecked
from berth.images.tarstream import NotTar, TarError, TarReader, number


def chunks_of(data: bytes, sizes: list[int]):  # type: ignore[no-untyped-def]
    """read() handing out `data` in pieces of the given sizes (cycled)."""
    pos, i = 0, 0

    def read() -> bytes:
        nonlocal pos, i
        n = sizes[i % len(sizes)]
        i += 1
        out = data[pos:pos + n]
        pos += len(out)
        return out
    return read


def read_all(data: bytes, sizes: list[int] | None = None) -> list[tuple]:
    import tempfile

    out = []
    tar = TarReader(chunks_of(data, sizes or [1 << 20]))
    with tempfile.TemporaryFile() as f:
        while (e := tar.next()) is not None:
            body = b""
            if e.isreg() and e.size:
                f.seek(0)
                f.truncate()
                assert tar.write_data(f.fileno()) == e.size
                f.seek(0)
                body = f.read() if e.size < 60000 else b"(big)"
            out.append((e.name, e.type, e.size, body, e.linkname, e.uid, e.gid, e.mtime_ns,
                        e.mode, e.devmajor, e.devminor, e.xattrs or {}))
    return out


def with_tarfile(data: bytes) -> list[tuple]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        for m in t:
            body = t.extractfile(m).read() if m.isreg() and m.size else b""  # type: ignore[union-attr]
            xattrs = {k[13:].encode(): v.encode("utf-8", "surrogateescape")
                      for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            kind = m.type if m.type != tarfile.AREGTYPE else tarfile.REGTYPE
            out.append((os.fsencode(m.name), kind, m.size if m.isreg() else 0,
                        body if m.size < 60000 else b"(big)", os.fsencode(m.linkname), m.uid,
                        m.gid, round(m.mtime * 1000) * 1_000_000, m.mode, m.devmajor, m.devminor,
                        xattrs))
    return out


def archive(fmt: int, pax_extra: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode = kind, 1_700_000_000, 0o644
            for k, v in kw.items():
                setattr(info, k, v)
            if kind == tarfile.REGTYPE:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("etc", tarfile.DIRTYPE, mode=0o755)
        add("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", uid=0, gid=0, mode=0o600)
        add("etc/empty")
        add("etc/big", data=os.urandom(70_000), mode=0o4755)
        add("usr/" + "d" * 120 + "/" + "f" * 90, data=b"a long name")  # > 100: prefix or long
        add("usr/link", tarfile.SYMTYPE, linkname="../" + "t" * 150 if fmt != tarfile.USTAR_FORMAT
            else "../target")
        add("usr/hard", tarfile.LNKTYPE, linkname="etc/passwd")
        add("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
        add("run/fifo", tarfile.FIFOTYPE)
        add("home/ünïcode", data=b"u")
        if fmt != tarfile.USTAR_FORMAT:
            add("big-ids", data=b"x", uid=3_000_000, gid=9_999_999)
            add("old", data=b"y", mtime=-86400)
        if pax_extra:
            add("pax/frac", data=b"z", mtime=1_700_000_000.25,
                pax_headers={"SCHILY.xattr.user.note": "hello", "comment": "ignored"})
            add("pax/" + "\udcff-not-utf8", data=b"n")
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("sizes", [[1 << 20], [512], [1], [7, 4096, 3, 100_000], [513, 511]])
def test_reads_what_tarfile_reads(fmt: int, sizes: list[int]) -> None:
    data = archive(fmt, pax_extra=fmt == tarfile.PAX_FORMAT)
    assert read_all(data, sizes) == with_tarfile(data)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text(st.characters(blacklist_characters="/\x00",
                                            blacklist_categories=("Cs",)),
                              min_size=1, max_size=130), min_size=1, max_size=6, unique=True),
       sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=5),
       fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
       body=st.binary(max_size=2000))
def test_any_names_and_chunking(names: list[str], sizes: list[int], fmt: int,
                                body: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for n in names:
            if n in (".", ".."):
                continue
            info = tarfile.TarInfo(n)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    data = buf.getvalue()
    assert read_all(data, sizes) == with_tarfile(data)


def test_a_global_pax_header_applies_to_every_later_entry() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"uid": "4242", "SCHILY.xattr.user.g": "1"}) as t:
        for n in ("a", "b"):
            info = tarfile.TarInfo(n)
            t.addfile(info, io.BytesIO(b""))
    got = read_all(buf.getvalue())
    assert [(e[0], e[5], e[11]) for e in got] == [(b"a", 4242, {b"user.g": b"1"}),
                                                  (b"b", 4242, {b"user.g": b"1"})]


def one_file(name: str = "f", data: bytes = b"hello") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_damage_is_reported() -> None:
    with pytest.raises(NotTar, match="empty"):
        read_all(b"")
    with pytest.raises(NotTar, match="checksum"):
        read_all(b"not a tar" * 100)
    data = bytearray(one_file() + one_file("g"))
    data[1024 + 10] ^= 1  # the second header
    with pytest.raises(TarError, match="checksum"):
        read_all(bytes(data))
    with pytest.raises(TarError, match="unexpected end"):
        read_all(one_file(data=b"x" * 5000)[:512 + 100])
    with pytest.raises(TarError, match="truncated header"):
        read_all(one_file()[:1024 + 100])


def test_a_stream_without_end_blocks_is_accepted_as_tarfile_does() -> None:
    data = one_file()[:1024]  # header + one data block, no end-of-archive blocks
    assert [e[0] for e in read_all(data)] == [b"f"]


def test_sparse_files_are_refused() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("s")
        info.type = tarfile.GNUTYPE_SPARSE
        t.addfile(info)
    with pytest.raises(TarError, match="sparse file: not supported"):
        read_all(buf.getvalue())


@pytest.mark.parametrize("field, value", [
    (b"0000644\0", 0o644), (b"  644 \0\0", 0o644), (b"\0" * 8, 0),
    (b"\x80" + (3_000_000).to_bytes(11, "big"), 3_000_000),
    (b"\xff" * 12, -1), (b"\xff" * 11 + b"\xfe", -2)])
def test_numbers(field: bytes, value: int) -> None:
    assert number(field) == value


def test_bad_numbers() -> None:
    for bad in (b"12x\0", b"\x81" + b"\0" * 11):
        with pytest.raises(TarError):
            number(bad)


# --- gzip without the CRC ----------------------------------------------------------------


def gunzip(data: bytes, size: int = 1 << 20) -> bytes:
    return b"".join(_gunzip_unchecked(chunks_of(data, [size])))


def member(payload: bytes, **header: object) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, **header) as f:  # type: ignore[arg-type]
        f.write(payload)
    return buf.getvalue()


def with_flags(payload: bytes) -> bytes:
    """A member with FEXTRA, FNAME, FCOMMENT and FHCRC set (gzip never writes the last two)."""
    body = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = body.compress(payload) + body.flush()
    extra = b"AB\x02\x00hi"
    head = b"\x1f\x8b\x08" + bytes([4 | 8 | 16 | 2]) + b"\0\0\0\0\0\xff"
    head += len(extra).to_bytes(2, "little") + extra + b"name.tar\0" + b"a comment\0"
    head += (zlib.crc32(head) & 0xFFFF).to_bytes(2, "little")
    trailer = zlib.crc32(payload).to_bytes(4, "little") + len(payload).to_bytes(4, "little")
    return head + deflated + trailer


@pytest.mark.parametrize("size", [1, 2, 3, 9, 10, 11, 17, 64, 1 << 20])
def test_gunzip_unchecked_reads_what_gzip_reads(size: int) -> None:
    a, b = os.urandom(3000), b"text " * 2000
    data = member(a) + member(b, filename="x.tar") + with_flags(b"flags!") + member(b"")
    assert gzip.decompress(data) == a + b + b"flags!"
    assert gunzip(data, size) == a + b + b"flags!"


def test_gunzip_unchecked_refuses_damage() -> None:
    data = member(b"payload " * 1000)
    with pytest.raises(zlib.error, match="truncated"):
        gunzip(data[:-4])
    with pytest.raises(zlib.error, match="truncated"):
        gunzip(data[:20])
    with pytest.raises(zlib.error, match="incorrect header check"):
        gunzip(data + b"trailing garbage")
    with pytest.raises(zlib.error, match="incorrect header check"):
        gunzip(b"BZh91AY&SY")
    with pytest.raises(zlib.error, match="incorrect length check"):
        gunzip(data[:-4] + (12345).to_bytes(4, "little"))
    with pytest.raises(zlib.error, match="truncated"):
        gunzip(b"")
