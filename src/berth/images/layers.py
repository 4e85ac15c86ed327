"""Layers: unpack a (gzip, zstd or plain) layer tar once, safely, verifying both digests.

The compressed stream is hashed (and kept as a blob) while it is read; the
tar stream is hashed too (its digest is the layer's diff_id) and unpacked
into a fresh directory under the store's tmp/, which is moved into place only
when both digests match. OCI whiteouts become overlayfs whiteouts (a 0/0
character device) and opaque markers the trusted.overlay.opaque xattr.

Nothing may land outside the layer directory: entries with `..`, absolute
names, symlinked parents, hardlinks to outside names are refused (UnsafeLayer)
and the half-unpacked directory is removed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import tarfile
import zlib

from berth.images.errors import DigestMismatch, ImageFailure, UnsafeLayer
from berth.oci import image as oci

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from berth.images.store import HashingWriter, Store

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class _Tee:
    """Reads from `src`, hashing (and optionally storing) the bytes as they pass."""

    def __init__(self, src: BinaryIO, sink: HashingWriter | None) -> None:
        self.src = src
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n if n and n > 0 else 1 << 20)
        if data:
            self.hash.update(data)
            self.size += len(data)
            if self.sink is not None:
                self.sink.write(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class _Gunzip:
    """A streaming gzip decoder with the file-like read() tarfile's stream mode wants.

    tarfile reads in 512-byte to 10 KiB pieces: the decoded data is kept with a read
    offset, so a small read never copies the rest of the buffer.
    """

    def __init__(self, src: _Tee) -> None:
        self.src = src
        self.d = zlib.decompressobj(wbits=47)
        self.buf = b""
        self.pos = 0
        self.eof = False

    def _fill(self) -> None:
        chunk = self.src.read(1 << 18)
        if not chunk:
            out = self.d.flush()
            self.eof = True
        else:
            out = self.d.decompress(chunk)
            while self.d.eof and self.d.unused_data:  # concatenated gzip members
                rest = self.d.unused_data
                self.d = zlib.decompressobj(wbits=47)
                out += self.d.decompress(rest)
        self.buf = self.buf[self.pos:] + out
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = n if n and n > 0 else 1 << 20
        while len(self.buf) - self.pos < n and not self.eof:
            self._fill()
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def open_decompressed(src: _Tee, compression: str):
    if compression == "gzip":
        return _Gunzip(src)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)  # type: ignore[arg-type]
    if compression == "none":
        return src
    raise ImageFailure(f"unsupported layer compression {compression!r}")


def sniff_compression(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def unpack(store: Store, src: BinaryIO, media_type: str, digest: str | None,
           diff_id: str | None, parent: str | None, size: int | None = None,
           keep_blob: bool = True) -> tuple[str, str, int]:
    """Unpack one layer from `src`; return (blob digest, diff_id, unpacked size).

    `digest` is the compressed blob's expected digest (None: compute it);
    `diff_id` the tar's (None: compute it, e.g. for `import`). The layer is
    indexed under its chain id (its parent's chain id and its diff_id).
    """
    compression = oci.LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise ImageFailure(f"unknown layer media type {media_type!r}")
    sink = store.writer(f"layer {digest or ''}".strip()) if keep_blob else None
    tee = _Tee(src, sink)
    work = os.path.join(store.tmp, "layer-" + secrets.token_hex(8))
    root = os.path.join(work, "diff")
    os.makedirs(root, 0o755)
    try:
        raw = open_decompressed(tee, compression)
        inner = _Tee(raw, None)  # hashes the tar: the diff_id
        try:
            unpacked = extract(inner, root)
            inner.drain()
            tee.drain()
        except (zlib.error, EOFError) as e:
            raise ImageFailure(f"layer {digest or ''}: corrupt {compression} data: {e}") from None
        except Exception as e:
            if type(e).__name__ == "ZstdError":
                raise ImageFailure(f"layer {digest or ''}: corrupt zstd data: {e}") from None
            raise
        got_diff = "sha256:" + inner.hash.hexdigest()
        got_blob = "sha256:" + tee.hash.hexdigest()
        if digest is not None and got_blob != digest:
            raise DigestMismatch(f"layer {digest}", digest, got_blob)
        if size is not None and tee.size != size:
            from berth.images.errors import SizeMismatch
            raise SizeMismatch(f"layer {digest}", size, tee.size)
        if diff_id is not None and got_diff != diff_id:
            raise DigestMismatch(f"layer {digest} (uncompressed)", diff_id, got_diff)
        if sink is not None:
            sink.commit(got_blob)
            store.note_layer_blob(got_diff, got_blob, media_type)
    except BaseException:
        if sink is not None:
            sink.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    chain = got_diff if parent is None else oci.sha256(f"{parent} {got_diff}".encode())
    store.add_layer(chain, got_diff, parent, work, unpacked)
    return got_blob, got_diff, unpacked


def _clean(name: str, what: str) -> list[str]:
    """An entry name as path components inside the layer; refuses escapes."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"layer entry {what} {name!r} contains '..': refused")
    return parts


def _parent_dir(root: str, parts: list[str], name: str) -> str:
    """The real directory for parts[:-1] under root, created as needed; never via a symlink."""
    cur = root
    for comp in parts[:-1]:
        cur = os.path.join(cur, comp)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeLayer(f"layer entry {name!r} goes through the symlink "
                              f"{cur[len(root):]!r}: refused")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"layer entry {name!r}: {cur[len(root):]!r} is not a directory")
    return cur


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def extract(src, root: str) -> int:
    """Extract a tar stream into `root` with OCI whiteout semantics; return bytes written."""
    is_root = os.geteuid() == 0
    total = 0
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(fileobj=src, mode="r|", errorlevel=2)  # noqa: SIM115 - with below
    except tarfile.ReadError as e:
        raise ImageFailure(f"layer is not a tar archive: {e}") from None
    with tar:
        try:
            for m in tar:
                total += _extract_one(tar, m, root, is_root, dirs)
        except tarfile.TarError as e:
            raise ImageFailure(f"layer tar is damaged: {e}") from None
    for path, m in reversed(dirs):  # after their contents: mode and mtime of directories
        os.chmod(path, m.mode & 0o7777)
        os.utime(path, (m.mtime, m.mtime))
    return total


def _extract_one(tar: tarfile.TarFile, m: tarfile.TarInfo, root: str, is_root: bool,
                 dirs: list) -> int:
    parts = _clean(m.name, "name")
    if not parts:
        if m.isdir():
            dirs.append((root, m))
        return 0
    base = parts[-1]
    parent = _parent_dir(root, parts, m.name)
    if base == OPAQUE:
        if is_root:
            os.setxattr(parent, "trusted.overlay.opaque", b"y")
        return 0
    if base.startswith(WHITEOUT):
        target = os.path.join(parent, base[len(WHITEOUT):])
        _remove(target)
        if is_root:
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        return 0
    path = os.path.join(parent, base)
    if m.isdir():
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                _remove(path)
                os.mkdir(path, 0o755)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        dirs.append((path, m))
        _owner_xattrs(path, m, is_root)
        return 0
    _remove(path)
    written = 0
    if m.isreg():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            f = tar.extractfile(m)
            assert f is not None
            while chunk := f.read(1 << 20):
                os.write(fd, chunk)
                written += len(chunk)
        finally:
            os.close(fd)
    elif m.issym():
        os.symlink(m.linkname, path)
    elif m.islnk():
        tparts = _clean(m.linkname, "hardlink target")
        if not tparts:
            raise UnsafeLayer(f"layer entry {m.name!r} is a hardlink to the layer root")
        tparent = _parent_dir(root, tparts, m.linkname)
        target = os.path.join(tparent, tparts[-1])
        if not os.path.lexists(target):
            raise UnsafeLayer(f"layer entry {m.name!r} links to {m.linkname!r}, which is not "
                              "in the layer")
        os.link(target, path, follow_symlinks=False)
        return 0
    elif m.ischr() or m.isblk():
        if not is_root:
            return 0  # device nodes need root
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(path, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
    elif m.isfifo():
        os.mkfifo(path, m.mode & 0o7777)
    else:
        raise UnsafeLayer(f"layer entry {m.name!r} has an unsupported type {m.type!r}")
    _owner_xattrs(path, m, is_root)
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)
    os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
    return written


def _owner_xattrs(path: str, m: tarfile.TarInfo, is_root: bool) -> None:
    if is_root:
        os.chown(path, m.uid, m.gid, follow_symlinks=False)
    for key, value in (m.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay."):
                continue  # a layer may not forge overlayfs metadata
            try:
                os.setxattr(path, name, value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
            except OSError:
                pass  # e.g. security.* without the privilege: as docker, best effort
