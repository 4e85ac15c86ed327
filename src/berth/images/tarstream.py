"""A lean reader of tar streams for unpacking layers: headers parsed by hand, data not copied.

tarfile turns every header into a TarInfo through several layers of Python
and reads member data in small pieces; unpacking a layer of many small files
spent most of its Python time there. This reader takes the decompressed
stream as the chunks it comes in, parses ustar, GNU (long names and links)
and pax (extended and global) headers as tarfile does, and writes a regular
file's data to its fd straight from the chunk (memoryview slices).

Names stay bytes, the kernel's own form: nothing is decoded, and a name that
is not UTF-8 is unpacked as it is.

What it must not do: touch the filesystem (layers.py extracts), or go on past
a header whose checksum is wrong. Sparse files are refused (docker, buildah
and containerd never write them into layers).
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

BLOCK = 512
ZEROS = bytes(BLOCK)
MAX_META = 64 << 20  # a pax header or a GNU long name bigger than this is refused
REGULAR = (b"0", b"\0", b"7")
HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")  # their size field says nothing of data
_SIGNED = struct.Struct("148b8x356b")


class TarError(Exception):
    """The stream is damaged (a bad header, a truncated member)."""


class NotTar(TarError):
    """The stream does not start with a tar header."""


class Entry:
    """One member: what its headers (ustar, GNU long names, pax) say, names as bytes."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime_ns", "linkname",
                 "devmajor", "devminor", "xattrs")

    name: bytes
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: bytes
    devmajor: int
    devminor: int
    xattrs: dict[bytes, bytes] | None

    def isreg(self) -> bool:
        return self.type in REGULAR

    def isdir(self) -> bool:
        return self.type == b"5"


def number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 (first byte 0x80 or 0xff)."""
    if field[0] & 0x80:
        if field[0] not in (0x80, 0xFF):
            raise TarError(f"invalid number field {field!r}")
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0xFF else n
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarError(f"invalid number field {field!r}") from None


def _checksum_ok(h: bytes) -> bool:
    try:
        stored = number(h[148:156])
    except TarError:
        return False
    unsigned = sum(h) - sum(h[148:156]) + 8 * 32
    return stored == unsigned or stored == sum(_SIGNED.unpack(h)) + 8 * 32


def pax_records(data: bytes) -> dict[bytes, bytes]:
    """`<length> <key>=<value>\\n` records (trailing NULs are tolerated, as tarfile does)."""
    out: dict[bytes, bytes] = {}
    pos, n = 0, len(data)
    while pos < n and data[pos] != 0:
        sp = data.find(b" ", pos, pos + 21)
        try:
            length = int(data[pos:sp]) if sp > pos else -1
        except ValueError:
            length = -1
        end = pos + length
        if length <= sp - pos or end > n or data[end - 1] != 0x0A:
            raise TarError("invalid pax header")
        key, eq, value = data[sp + 1:end - 1].partition(b"=")
        if not eq or not key:
            raise TarError("invalid pax header")
        out[key] = value
        pos = end
    return out


def _pax_ns(value: bytes) -> int:
    """A pax time ("1700000000.123456789", maybe negative) in nanoseconds."""
    neg = value.startswith(b"-")
    sec, _, frac = value.lstrip(b"-").partition(b".")
    try:
        ns = int(sec or b"0") * 1_000_000_000 + int((frac + b"000000000")[:9])
    except ValueError:
        raise TarError(f"invalid pax time {value!r}") from None
    return -ns if neg else ns


def _pax_int(key: bytes, value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise TarError(f"invalid pax {key.decode()} {value!r}") from None


class TarReader:
    """Entries of a tar stream, from `read()` (the next chunk of it, b"" at its end).

    next() returns the next entry (None after the end-of-archive block or the
    end of the stream); a regular file's data is then write_data()'s, and is
    skipped if nobody asks for it.
    """

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._chunk = memoryview(b"")
        self._pos = 0
        self._left = 0  # data of the current entry not yet consumed
        self._pad = 0
        self._first = True
        self._done = False
        self._globals: dict[bytes, bytes] = {}

    # --- the stream -----------------------------------------------------------------

    def _fill(self) -> bool:
        data = self._read()
        if not data:
            return False
        self._chunk, self._pos = memoryview(data), 0
        return True

    def _take(self, n: int) -> bytes:
        """n bytes (fewer only at the end of the stream)."""
        pos = self._pos
        if len(self._chunk) - pos >= n:
            self._pos = pos + n
            return self._chunk[pos:pos + n].tobytes()
        parts = []
        while n:
            avail = len(self._chunk) - self._pos
            if not avail:
                if not self._fill():
                    break
                continue
            k = min(avail, n)
            parts.append(self._chunk[self._pos:self._pos + k])
            self._pos += k
            n -= k
        return b"".join(parts)

    def _views(self, n: int) -> Iterator[memoryview]:
        """The next n bytes of the stream, chunk by chunk, as views; TarError if the
        stream ends first."""
        while n:
            avail = len(self._chunk) - self._pos
            if not avail:
                if not self._fill():
                    raise TarError("unexpected end of data")
                continue
            k = min(avail, n)
            view = self._chunk[self._pos:self._pos + k]
            self._pos += k
            n -= k
            yield view

    def _skip(self, n: int) -> None:
        for _ in self._views(n):
            pass

    def drain(self) -> None:
        """Read the stream to its end (what follows the end-of-archive blocks is padding)."""
        self._chunk, self._pos = memoryview(b""), 0
        while self._read():
            pass

    # --- entries --------------------------------------------------------------------

    def write_data(self, fd: int) -> int:
        """Write the current entry's data to `fd`; return how many bytes."""
        total = self._left
        write = os.write
        for view in self._views(total):
            while view:
                view = view[write(fd, view):]
        self._left = 0
        return total

    def next(self) -> Entry | None:
        if self._left or self._pad:
            self._skip(self._left + self._pad)
            self._left = self._pad = 0
        if self._done:
            return None
        long_name = long_link = None
        pax: dict[bytes, bytes] = {}
        while True:
            h = self._take(BLOCK)
            if len(h) < BLOCK:
                if h or self._first:
                    raise (NotTar if self._first else TarError)(
                        "empty stream" if not h else "truncated header")
                self._done = True  # no end-of-archive blocks: tarfile accepts that too
                return None
            if h == ZEROS:
                self._done = True
                return None
            if not _checksum_ok(h):
                raise (NotTar if self._first else TarError)("bad header checksum")
            self._first = False
            kind = h[156:157]
            size = number(h[124:136])
            if kind in (b"x", b"g", b"L", b"K"):
                if not 0 <= size <= MAX_META:
                    raise TarError(f"a {kind.decode()} header of {size} bytes")
                data = self._take(size)
                if len(data) < size:
                    raise TarError("unexpected end of data")
                self._skip(-size % BLOCK)
                if kind == b"L":
                    long_name = data.split(b"\0", 1)[0]
                elif kind == b"K":
                    long_link = data.split(b"\0", 1)[0]
                elif kind == b"x":
                    pax.update(pax_records(data))
                else:
                    self._globals.update(pax_records(data))
                continue
            return self._entry(h, kind, size, long_name, long_link, pax)

    def _entry(self, h: bytes, kind: bytes, size: int, long_name: bytes | None,
               long_link: bytes | None, pax: dict[bytes, bytes]) -> Entry:
        e = Entry()
        name = h[0:100].split(b"\0", 1)[0]
        if h[257:263] == b"ustar\0":  # POSIX ustar: a prefix (GNU keeps other things there)
            prefix = h[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        if kind == b"\0" and name.endswith(b"/"):
            kind = b"5"  # old V7: a directory is a regular file with a trailing slash
        e.type = kind
        e.mode = number(h[100:108])
        e.uid = number(h[108:116])
        e.gid = number(h[116:124])
        e.mtime_ns = number(h[136:148]) * 1_000_000_000
        e.linkname = long_link if long_link is not None else h[157:257].split(b"\0", 1)[0]
        e.name = long_name if long_name is not None else name
        e.devmajor = number(h[329:337]) if kind in (b"3", b"4") else 0
        e.devminor = number(h[337:345]) if kind in (b"3", b"4") else 0
        e.xattrs = None
        if self._globals:
            pax = {**self._globals, **pax}
        if pax:
            size = self._apply_pax(e, pax, size)
        if kind == b"5":
            e.name = e.name.rstrip(b"/")  # as tarfile: "etc/" is "etc"
        if kind == b"S":
            raise TarError(f"entry {os.fsdecode(e.name)!r} is a sparse file: not supported")
        if size < 0:
            raise TarError(f"entry {os.fsdecode(e.name)!r} has a negative size")
        e.size = 0 if kind in HEADER_ONLY else size
        self._left, self._pad = e.size, -e.size % BLOCK
        return e

    @staticmethod
    def _apply_pax(e: Entry, pax: dict[bytes, bytes], size: int) -> int:
        for key, value in pax.items():
            if key == b"path":
                e.name = value
            elif key == b"linkpath":
                e.linkname = value
            elif key == b"size":
                size = _pax_int(key, value)
            elif key == b"uid":
                e.uid = _pax_int(key, value)
            elif key == b"gid":
                e.gid = _pax_int(key, value)
            elif key == b"mtime":
                e.mtime_ns = _pax_ns(value)
            elif key.startswith(b"SCHILY.xattr."):
                if e.xattrs is None:
                    e.xattrs = {}
                e.xattrs[key[13:]] = value
            elif key.startswith(b"GNU.sparse."):
                raise TarError(f"entry {os.fsdecode(e.name)!r} is a sparse file: not "
                               "supported")
        return size
