"""Layers: unpack a (gzip, zstd or plain) layer tar once, safely, verifying both digests.

The compressed stream is read in large chunks, hashed and written to a temp
file (the blob, kept for push and save), decompressed, and the tar is hashed
too (its digest is the layer's diff_id) while tarstream parses it and this
module extracts it into a fresh directory under the store's tmp/. The
directory and the blob are moved into place only when every digest and the
size match. OCI whiteouts become overlayfs whiteouts (a 0/0 character device)
and opaque markers the trusted.overlay.opaque xattr.

Nothing may land outside the layer directory: entries with `..`, symlinked
parents, hardlinks to outside names are refused (UnsafeLayer) and the
half-unpacked directory is removed; absolute names land inside it.

`unpack_into` is the part without the store (no SQLite, no renames): pull
runs it in a process of its own per layer (unpack_worker), `unpack` in-line.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zlib

from berth.images.errors import DigestMismatch, ImageFailure, SizeMismatch, UnsafeLayer
from berth.images.tarstream import NotTar, TarError, TarReader
from berth.oci import image as oci

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

    from berth.images.store import Store
    from berth.images.tarstream import Entry

WHITEOUT = b".wh."
OPAQUE = b".wh..wh..opq"
READ = 1 << 20  # compressed bytes per read
OUT = 4 << 20  # decompressed bytes per step at most: a decompression bomb stays bounded


class Unpacked:
    """What unpacking a layer found: the blob's digest and size, the diff_id, bytes written."""

    __slots__ = ("blob", "blob_size", "diff_id", "size")

    def __init__(self, blob: str, blob_size: int, diff_id: str, size: int) -> None:
        self.blob, self.blob_size, self.diff_id, self.size = blob, blob_size, diff_id, size

    def check(self, what: str, digest: str | None, size: int | None,
              diff_id: str | None) -> None:
        """DigestMismatch or SizeMismatch unless the layer is the one its descriptor names."""
        if digest is not None and self.blob != digest:
            raise DigestMismatch(what, digest, self.blob)
        if size is not None and self.blob_size != size:
            raise SizeMismatch(what, size, self.blob_size)
        if diff_id is not None and self.diff_id != diff_id:
            raise DigestMismatch(f"{what} (uncompressed)", diff_id, self.diff_id)


def sniff_compression(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def compression_of(media_type: str) -> str:
    compression = oci.LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise ImageFailure(f"unknown layer media type {media_type!r}")
    return compression


def unpack(store: Store, src: BinaryIO, media_type: str, digest: str | None,
           diff_id: str | None, parent: str | None, size: int | None = None,
           keep_blob: bool = True) -> tuple[str, str, int]:
    """Unpack one layer from `src`; return (blob digest, diff_id, unpacked size).

    `digest` is the compressed blob's expected digest (None: compute it);
    `diff_id` the tar's (None: compute it, e.g. for `import`). The layer is
    indexed under its chain id (its parent's chain id and its diff_id).
    """
    compression = compression_of(media_type)
    what = f"layer {digest or ''}".strip()
    work = store.temp_path("layer")
    root = os.path.join(work, "diff")
    os.makedirs(root, 0o755)
    blob_path = store.temp_path("blob") if keep_blob else None
    try:
        fd = -1
        if blob_path is not None:
            fd = os.open(blob_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            got = unpack_into(src.read, compression, root, fd, what, digest,
                              verified=digest is not None or diff_id is not None)
            if fd >= 0:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        got.check(what, digest, size, diff_id)
        if blob_path is not None:
            store.commit_blob(blob_path, got.blob)
            store.note_layer_blob(got.diff_id, got.blob, media_type)
    except BaseException:
        import shutil
        if blob_path is not None:
            remove_quietly(blob_path)
        shutil.rmtree(work, ignore_errors=True)
        raise
    chain = got.diff_id if parent is None else oci.sha256(f"{parent} {got.diff_id}".encode())
    store.add_layer(chain, got.diff_id, parent, work, got.size)
    return got.blob, got.diff_id, got.size


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- the stream: hashed, kept, decompressed -----------------------------------------------


class _Source:
    """The compressed stream read once: hashed, written to the blob's fd, decompressed."""

    def __init__(self, read: Callable[[int], bytes], compression: str, blob_fd: int,
                 verified: bool) -> None:
        self.read = read
        self.blob_fd = blob_fd
        self.blob_hash = hashlib.sha256()
        self.blob_size = 0
        self.plain = compression == "none"
        self.tar_hash = self.blob_hash if self.plain else hashlib.sha256()
        if compression == "gzip":
            self.chunks = _gunzip_unchecked(self.raw) if verified else _gunzip(self.raw)
        elif compression == "zstd":
            self.chunks = _unzstd(self.raw)
        elif compression == "none":
            self.chunks = iter(self.raw, b"")
        else:
            raise ImageFailure(f"unsupported layer compression {compression!r}")

    def raw(self) -> bytes:
        data = self.read(READ)
        if data:
            self.blob_hash.update(data)
            self.blob_size += len(data)
            if self.blob_fd >= 0:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.blob_fd, view):]
        return data

    def next(self) -> bytes:
        """The next piece of the tar; b"" at its end."""
        out = next(self.chunks, b"")
        if out and not self.plain:
            self.tar_hash.update(out)
        return out

    def finish(self) -> None:
        while self.next():
            pass
        self.rest()

    def rest(self) -> None:
        """Read (and hash) what is left: what a decompressor left unread counts too."""
        while self.raw():
            pass


class _Ahead:
    """_Source.next() run ahead in a thread: read, hash, keep and decompress on one core
    while the tar is parsed and written out on another (zlib, hashlib and the syscalls
    release the GIL). Chunks, the end (b"") or the thread's exception come through a
    short queue."""

    DEPTH = 4

    def __init__(self, src: _Source) -> None:
        import queue
        import threading

        self.src = src
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue(self.DEPTH)
        self.full = queue.Full
        self.stopping = False
        self.ended = False
        self.thread = threading.Thread(target=self._run, name="berth-unpack-ahead",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping:
                out = self.src.next()
                self._put(out)
                if not out:
                    return
        except BaseException as e:
            self._put(e)

    def _put(self, item: bytes | BaseException) -> None:
        while not self.stopping:
            try:
                self.queue.put(item, timeout=0.2)
                return
            except self.full:
                continue

    def next(self) -> bytes:
        if self.ended:
            return b""
        item = self.queue.get()
        if isinstance(item, BaseException):
            self.ended = True
            raise item
        self.ended = not item
        return item

    def stop(self) -> None:
        """Stop the thread (it may be waiting for room in the queue) and wait for it."""
        self.stopping = True
        self.thread.join()


def _gunzip(raw: Callable[[], bytes]) -> Iterator[bytes]:
    """gzip (concatenated members too), with zlib checking each member's CRC-32."""
    d = zlib.decompressobj(wbits=47)
    while data := raw():
        if d.eof:  # the member before ended with its chunk: another one follows
            d = zlib.decompressobj(wbits=47)
        while data:
            out = d.decompress(data, OUT)
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                if data:  # concatenated gzip members
                    d = zlib.decompressobj(wbits=47)
            else:
                data = d.unconsumed_tail
    if not d.eof:
        raise zlib.error("unexpected end of data (truncated)")


def _gunzip_unchecked(raw: Callable[[], bytes]) -> Iterator[bytes]:
    """gzip as raw deflate, headers and trailers parsed here: no CRC-32 of the output.

    For callers that verify the blob's or the tar's sha256 anyway, which the
    CRC adds nothing to; computing it cost about a tenth of a pull's CPU.
    """
    pending = raw()
    while True:
        while (start := _gzip_header(pending)) is None:
            more = raw()
            if not more:
                raise zlib.error("unexpected end of data (truncated gzip header)")
            pending += more
        d = zlib.decompressobj(wbits=-15)
        data, size = pending[start:], 0
        while not d.eof:
            if not data and not (data := raw()):
                raise zlib.error("unexpected end of data (truncated)")
            out = d.decompress(data, OUT)
            if out:
                size += len(out)
                yield out
            data = d.unconsumed_tail
        rest = d.unused_data
        while len(rest) < 8:  # CRC-32 and ISIZE
            if not (more := raw()):
                raise zlib.error("unexpected end of data (truncated gzip trailer)")
            rest += more
        if int.from_bytes(rest[4:8], "little") != size & 0xFFFFFFFF:
            raise zlib.error("incorrect length check")
        pending = rest[8:] or raw()
        if not pending:
            return


def _gzip_header(b: bytes) -> int | None:
    """The length of the gzip member header at the start of `b` (None: more bytes needed)."""
    if b[:3] != b"\x1f\x8b\x08"[:len(b)] or (len(b) > 3 and b[3] & 0xE0):
        raise zlib.error("incorrect header check")
    if len(b) > 1 << 20:
        raise zlib.error("gzip header too long")
    if len(b) < 10:
        return None
    flags, pos = b[3], 10
    if flags & 4:  # FEXTRA
        if len(b) < 12:
            return None
        pos = 12 + int.from_bytes(b[10:12], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            end = b.find(b"\0", pos)
            if end < 0:
                return None
            pos = end + 1
    if flags & 2:  # FHCRC
        pos += 2
    return pos if len(b) >= pos else None


def _unzstd(raw: Callable[[], bytes]) -> Iterator[bytes]:
    import zstandard

    class Raw:
        def read(self, n: int = -1) -> bytes:
            return raw()

    reader = zstandard.ZstdDecompressor().stream_reader(Raw(), read_size=READ,  # type: ignore[arg-type]
                                                        read_across_frames=True)
    while out := reader.read(OUT):
        yield out


def unpack_into(read: Callable[[int], bytes], compression: str, root: str, blob_fd: int,
                what: str = "layer", digest: str | None = None,
                verified: bool = False) -> Unpacked:
    """Unpack a layer stream into the directory `root`, the compressed bytes into `blob_fd`
    (-1: not kept); return what was found, for the caller to check.

    `digest`, the blob's expected digest, is only used when the data turns out
    damaged: the rest of the stream is then hashed, so that a blob that is not
    the one named fails as a DigestMismatch (the cause) rather than as the
    damage it shows. `verified`: the caller checks the blob's or the tar's
    digest, so gzip's CRC-32 is not computed.
    """
    src = _Source(read, compression, blob_fd, verified)
    ahead = _Ahead(src)
    try:
        tar = TarReader(ahead.next)
        size = extract(tar, root)
        tar.drain()
    except Exception as e:
        ahead.stop()
        damage = _damage(e, what, compression)
        if damage is None:
            raise
        if digest is not None:
            src.blob_fd = -1
            src.rest()
            got = "sha256:" + src.blob_hash.hexdigest()
            if got != digest:
                raise DigestMismatch(what, digest, got) from None
        raise damage from None
    except BaseException:
        ahead.stop()
        raise
    ahead.stop()
    src.rest()
    return Unpacked("sha256:" + src.blob_hash.hexdigest(), src.blob_size,
                    "sha256:" + src.tar_hash.hexdigest(), size)


def _damage(e: Exception, what: str, compression: str) -> ImageFailure | None:
    """The ImageFailure for damaged data (not a tar, a bad header, corrupt compression)."""
    if isinstance(e, NotTar):
        return ImageFailure(f"{what} is not a tar archive: {e}")
    if isinstance(e, TarError):
        return ImageFailure(f"{what}: the tar is damaged: {e}")
    if isinstance(e, zlib.error) or type(e).__name__ == "ZstdError":
        return ImageFailure(f"{what}: corrupt {compression} data: {e}")
    return None


# --- extraction ---------------------------------------------------------------------------


def _show(name: bytes) -> str:
    return os.fsdecode(name)


def _clean(name: bytes, what: str) -> list[bytes]:
    """An entry name as path components inside the layer; refuses escapes."""
    parts = [p for p in name.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise UnsafeLayer(f"layer entry {what} {_show(name)!r} contains '..': refused")
    return parts


class _Extractor:
    """One layer's entries into `root`; directories known to be real ones are remembered."""

    def __init__(self, root: str) -> None:
        self.root = os.fsencode(root)
        self.is_root = os.geteuid() == 0
        self.known: set[bytes] = set()  # relative directories checked (or made) real
        self.dirs: list[tuple[bytes, Entry]] = []
        self.total = 0

    def parent(self, parts: list[bytes], name: bytes) -> bytes:
        """The real directory for parts[:-1], created as needed; never via a symlink."""
        rel = b"/".join(parts[:-1])
        if not rel or rel in self.known:
            return self.root + b"/" + rel if rel else self.root
        cur = self.root
        for i, comp in enumerate(parts[:-1]):
            cur = cur + b"/" + comp
            sub = b"/".join(parts[:i + 1])
            if sub in self.known:
                continue
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                os.mkdir(cur, 0o755)
                self.known.add(sub)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeLayer(f"layer entry {_show(name)!r} goes through the symlink "
                                  f"{_show(cur[len(self.root):])!r}: refused")
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeLayer(f"layer entry {_show(name)!r}: "
                                  f"{_show(cur[len(self.root):])!r} is not a directory")
            self.known.add(sub)
        return cur

    def remove(self, path: bytes) -> None:
        """Whatever is at `path` (an entry replacing an earlier one, or a whiteout)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        self.known.clear()  # a directory may be gone: check again from now on
        if stat.S_ISDIR(st.st_mode):
            import shutil  # here: its import (re, fnmatch) would slow every worker's start
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def make(self, path: bytes, create: Callable[[], None]) -> None:
        """create() a new name; if something is there already, it is replaced."""
        try:
            create()
        except FileExistsError:
            self.remove(path)
            create()

    def entry(self, tar: TarReader, m: Entry) -> None:
        parts = _clean(m.name, "name")
        if not parts:
            if m.isdir():
                self.dirs.append((self.root, m))
            return
        base = parts[-1]
        parent = self.parent(parts, m.name)
        if base == OPAQUE:
            if self.is_root:
                os.setxattr(parent, "trusted.overlay.opaque", b"y")
            return
        if base.startswith(WHITEOUT):
            hidden = base[len(WHITEOUT):]
            if hidden in (b"", b".", b".."):
                raise UnsafeLayer(f"layer entry {_show(m.name)!r} is a whiteout of "
                                  f"{_show(hidden)!r}: refused")
            target = parent + b"/" + hidden
            self.remove(target)
            if self.is_root:
                os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
            return
        path = parent + b"/" + base
        kind = m.type
        if m.isreg():
            self.regular(tar, m, path)
        elif kind == b"5":
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    self.remove(path)
                    os.mkdir(path, 0o755)
            self.dirs.append((path, m))
            self.owner_xattrs(path, m)
        elif kind == b"2":
            self.make(path, lambda: os.symlink(m.linkname, path))
            self.owner_xattrs(path, m)
            os.utime(path, ns=(m.mtime_ns, m.mtime_ns), follow_symlinks=False)
        elif kind == b"1":
            self.hardlink(m, path)
        elif kind in (b"3", b"4", b"6"):
            if kind == b"6":
                self.make(path, lambda: os.mkfifo(path, 0o600))
            elif not self.is_root:
                return  # device nodes need root
            else:
                dev = (stat.S_IFCHR if kind == b"3" else stat.S_IFBLK) | 0o600
                self.make(path, lambda: os.mknod(path, dev, os.makedev(m.devmajor,
                                                                       m.devminor)))
            self.owner_xattrs(path, m)
            os.chmod(path, m.mode & 0o7777)
            os.utime(path, ns=(m.mtime_ns, m.mtime_ns), follow_symlinks=False)
        else:
            raise UnsafeLayer(f"layer entry {_show(m.name)!r} has an unsupported type "
                              f"{kind!r}")

    def regular(self, tar: TarReader, m: Entry, path: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            self.remove(path)
            fd = os.open(path, flags, 0o600)
        try:
            if m.size:
                self.total += tar.write_data(fd)
            self.owner_xattrs(fd, m)
            os.fchmod(fd, m.mode & 0o7777)  # after fchown, which clears set-id bits
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)

    def hardlink(self, m: Entry, path: bytes) -> None:
        tparts = _clean(m.linkname, "hardlink target")
        if not tparts:
            raise UnsafeLayer(f"layer entry {_show(m.name)!r} is a hardlink to the layer root")
        target = self.parent(tparts, m.linkname) + b"/" + tparts[-1]
        if not os.path.lexists(target):
            raise UnsafeLayer(f"layer entry {_show(m.name)!r} links to "
                              f"{_show(m.linkname)!r}, which is not in the layer")
        self.make(path, lambda: os.link(target, path, follow_symlinks=False))

    def owner_xattrs(self, where: bytes | int, m: Entry) -> None:
        if self.is_root:
            if isinstance(where, int):
                os.fchown(where, m.uid, m.gid)
            else:
                os.chown(where, m.uid, m.gid, follow_symlinks=False)
        if m.xattrs:
            for name, value in m.xattrs.items():
                if name.startswith(b"trusted.overlay."):
                    continue  # a layer may not forge overlayfs metadata
                try:
                    if isinstance(where, int):
                        os.setxattr(where, name, value)
                    else:
                        os.setxattr(where, name, value, follow_symlinks=False)
                except OSError:
                    pass  # e.g. security.* without the privilege: as docker, best effort

    def finish(self) -> None:
        for path, m in reversed(self.dirs):  # after their contents: mode and mtime
            os.chmod(path, m.mode & 0o7777)
            os.utime(path, ns=(m.mtime_ns, m.mtime_ns))


def extract(tar: TarReader, root: str) -> int:
    """Extract a tar stream into `root` with OCI whiteout semantics; return bytes written."""
    x = _Extractor(root)
    while (m := tar.next()) is not None:
        x.entry(tar, m)
    x.finish()
    return x.total
