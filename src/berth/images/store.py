"""The content-addressed image store: blobs by digest, unpacked layers, and their index.

Layout under the store root (default /var/lib/berth/images as root, or
$BERTH_ROOT/images):

  blobs/sha256/<hex>        manifests, configs and compressed layers, verified on write
  layers/<chain hex>/diff   a layer unpacked once (whiteouts as overlayfs expects them)
  layers/l/<short>          short symlinks to diff/ dirs, to keep overlay mount options short
  tmp/                      everything in progress; renamed into place when complete
  images.db                 SQLite (WAL): images, tags, layers

A blob is written to tmp/, hashed while it streams, fsynced and renamed: a
reader never sees a partial blob and a blob's name is always its digest.
"""

from __future__ import annotations

# (hashlib is imported where a blob is written: `berth run` reads the store, ~5 ms)
import os
import time

from berth import database
from berth.images.errors import DigestMismatch, ImageInUse, ImageNotFound, SizeMismatch
from berth.oci import image as oci

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,            -- config digest, as docker's image id
    manifest TEXT NOT NULL,         -- manifest digest
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,          -- unpacked size of all layers
    created TEXT,                   -- from the config
    added REAL NOT NULL             -- when it came into this store
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,          -- normalised reference, registry/repo:tag
    image TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS digests (  -- repo@digest references an image was pulled by
    name TEXT PRIMARY KEY,
    image TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT,
    size INTEGER NOT NULL,
    short TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS layer_blobs (  -- compressed forms we hold, for push and save
    diff_id TEXT NOT NULL,
    blob TEXT NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (diff_id, blob)
);
"""


def default_root() -> str:
    base = os.environ.get("BERTH_ROOT")
    if base:
        return os.path.join(base, "images")
    if os.geteuid() == 0:
        return "/var/lib/berth/images"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "berth", "images")


class HashingWriter:
    """Write a stream to a temp file while hashing it; commit() checks and renames."""

    def __init__(self, store: Store, what: str) -> None:
        self.store = store
        self.what = what
        self.path = os.path.join(store.tmp, "blob-" + os.urandom(8).hex())
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        import hashlib
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        return len(data)

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def commit(self, expected: str | None = None, size: int | None = None) -> str:
        try:
            got = self.digest()
            if expected is not None and got != expected:
                raise DigestMismatch(self.what, expected, got)
            if size is not None and self.size != size:
                raise SizeMismatch(self.what, size, self.size)
            os.fsync(self.fd)
        except BaseException:
            self.abort()
            raise
        os.close(self.fd)
        self.fd = -1
        os.rename(self.path, self.store.blob_path(got))
        return got

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Store:
    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.layers = os.path.join(self.root, "layers")
        self.links = os.path.join(self.layers, "l")
        self.tmp = os.path.join(self.root, "tmp")
        if not os.path.isdir(self.tmp):  # the last one made: a store made before
            for d in (self.blobs, self.links, self.tmp):
                os.makedirs(d, 0o700 if d == self.tmp else 0o755, exist_ok=True)
        self.db = database.connect(os.path.join(self.root, "images.db"), SCHEMA)
        self.db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.db.close()

    # --- blobs ------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256":
            raise DigestMismatch("blob", "a sha256 digest", digest)
        return os.path.join(self.blobs, hexpart)

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def open_blob(self, digest: str) -> BinaryIO:
        return open(self.blob_path(digest), "rb")

    def writer(self, what: str) -> HashingWriter:
        return HashingWriter(self, what)

    def temp_path(self, kind: str) -> str:
        """A fresh name under tmp/ for something in progress (`kind`-<random>)."""
        return os.path.join(self.tmp, f"{kind}-{os.urandom(8).hex()}")

    def commit_blob(self, path: str, digest: str) -> None:
        """Move a complete, verified and fsynced temp file into place as blob `digest`."""
        os.rename(path, self.blob_path(digest))

    def put_blob(self, data: bytes, expected: str | None = None, what: str = "blob") -> str:
        w = self.writer(what)
        w.write(data)
        return w.commit(expected, len(data) if expected else None)

    def copy_blob(self, src: BinaryIO, expected: str, size: int | None, what: str) -> str:
        if self.has_blob(expected):
            return expected
        w = self.writer(what)
        try:
            while chunk := src.read(1 << 20):
                w.write(chunk)
        except BaseException:
            w.abort()
            raise
        return w.commit(expected, size)

    # --- layers -----------------------------------------------------------

    def layer_dir(self, chain_id: str) -> str:
        return os.path.join(self.layers, chain_id.partition(":")[2])

    def has_layer(self, chain_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM layers WHERE chain_id=?",
                               (chain_id,)).fetchone() is not None

    def layer_short(self, chain_id: str) -> str:
        row = self.db.execute("SELECT short FROM layers WHERE chain_id=?", (chain_id,)).fetchone()
        if row is None:
            raise ImageNotFound(chain_id)
        return row[0]

    def add_layer(self, chain_id: str, diff_id: str, parent: str | None, unpacked: str,
                  size: int) -> None:
        """Move an unpacked layer (a tmp dir holding diff/) into place and index it."""
        final = self.layer_dir(chain_id)
        if self.has_layer(chain_id):
            import shutil
            shutil.rmtree(unpacked, ignore_errors=True)
            return
        if os.path.exists(final):  # a leftover of a crash: the index is the truth
            import shutil
            shutil.rmtree(final, ignore_errors=True)
        os.rename(unpacked, final)
        short = os.urandom(13).hex()
        os.symlink(f"../{chain_id.partition(':')[2]}/diff", os.path.join(self.links, short))
        self.db.execute("INSERT OR IGNORE INTO layers VALUES (?,?,?,?,?)",
                        (chain_id, diff_id, parent, size, short))

    def note_layer_blob(self, diff_id: str, blob: str, media_type: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO layer_blobs VALUES (?,?,?)",
                        (diff_id, blob, media_type))

    def layer_blob(self, diff_id: str) -> tuple[str, str] | None:
        for blob, mt in self.db.execute(
                "SELECT blob, media_type FROM layer_blobs WHERE diff_id=?", (diff_id,)):
            if self.has_blob(blob):
                return blob, mt
        return None

    # --- images -----------------------------------------------------------

    def add_image(self, manifest_digest: str, media_type: str, config: dict,
                  names: Iterable[str] = ()) -> str:
        """Index an image whose blobs and layers are all present; tag it with `names`."""
        image_id = (self.db.execute("SELECT id FROM images WHERE manifest=?", (manifest_digest,))
                    .fetchone() or [None])[0]
        cfg_digest = self._config_digest(manifest_digest)
        image_id = image_id or cfg_digest
        chains = oci.chain_ids(config["rootfs"]["diff_ids"])
        size = sum(self.db.execute("SELECT size FROM layers WHERE chain_id=?", (c,))
                   .fetchone()[0] for c in chains)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("INSERT OR REPLACE INTO images VALUES (?,?,?,?,?,?)",
                            (image_id, manifest_digest, media_type, size,
                             config.get("created"), time.time()))
            for n in names:
                self.db.execute("INSERT OR REPLACE INTO tags VALUES (?,?)", (n, image_id))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return image_id

    def _config_digest(self, manifest_digest: str) -> str:
        from berth.oci import jsonfast
        return jsonfast.loads(self.read_blob(manifest_digest))["config"]["digest"]

    def tag(self, name: str, image_id: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO tags VALUES (?,?)", (name, image_id))

    def note_digest_ref(self, name: str, image_id: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO digests VALUES (?,?)", (name, image_id))

    def untag(self, name: str) -> str | None:
        row = self.db.execute("SELECT image FROM tags WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        self.db.execute("DELETE FROM tags WHERE name=?", (name,))
        return row[0]

    def resolve(self, ref: str) -> str:
        """An image id from a reference, a digest reference, a full or short id."""
        from berth.images.errors import ImageFailure
        from berth.images.reference import parse
        if ref.startswith("sha256:") or (len(ref) >= 4 and set(ref) <= set("0123456789abcdef")):
            hexpart = ref.partition(":")[2] if ref.startswith("sha256:") else ref
            rows = self.db.execute("SELECT id FROM images WHERE id LIKE ?",
                                   (f"sha256:{hexpart}%",)).fetchall()
            if len(rows) == 1:
                return rows[0][0]
            if len(rows) > 1:
                raise ImageFailure(f"image id {ref!r} is ambiguous: use more characters")
        try:
            r = parse(ref)
        except ImageFailure:
            raise ImageNotFound(ref) from None
        table = "digests" if r.digest else "tags"
        row = self.db.execute(f"SELECT image FROM {table} WHERE name=?", (str(r),)).fetchone()
        if row is None and r.digest:
            row = self.db.execute("SELECT id FROM images WHERE manifest=?",
                                  (r.digest,)).fetchone()
        if row is None:
            raise ImageNotFound(ref)
        return row[0]

    def image(self, image_id: str) -> dict:
        row = self.db.execute("SELECT id, manifest, media_type, size, created, added FROM images"
                              " WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise ImageNotFound(image_id)
        return dict(zip(("id", "manifest", "media_type", "size", "created", "added"), row,
                        strict=True))

    def names(self, image_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM tags WHERE image=? ORDER BY name",
                                              (image_id,))]

    def digest_names(self, image_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT name FROM digests WHERE image=? ORDER BY name", (image_id,))]

    def images(self) -> Iterator[dict]:
        for (image_id,) in self.db.execute("SELECT id FROM images ORDER BY added DESC").fetchall():
            yield self.image(image_id)

    def config(self, image_id: str) -> dict:
        from berth.oci import jsonfast
        return jsonfast.loads(self.read_blob(image_id))

    def manifest(self, image_id: str) -> dict:
        from berth.oci import jsonfast
        return jsonfast.loads(self.read_blob(self.image(image_id)["manifest"]))

    def layer_dirs(self, image_id: str) -> list[str]:
        """The image's unpacked layers, lowest first."""
        chains = oci.chain_ids(self.config(image_id)["rootfs"]["diff_ids"])
        return [os.path.join(self.layer_dir(c), "diff") for c in chains]

    def remove_image(self, image_id: str, force: bool = False) -> list[str]:
        """Delete an image and its tags; return the names it had. Blobs stay until prune."""
        names = self.names(image_id)
        if len(names) > 1 and not force:
            raise ImageInUse(f"image {image_id[7:19]} is referenced by several tags "
                             f"({', '.join(names)}): remove them one by one or use --force")
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM tags WHERE image=?", (image_id,))
        self.db.execute("DELETE FROM digests WHERE image=?", (image_id,))
        self.db.execute("DELETE FROM images WHERE id=?", (image_id,))
        self.db.execute("COMMIT")
        return names

    def prune(self, keep_layers: Iterable[str] = ()) -> tuple[int, int]:
        """Remove blobs and layers no image needs; return (count, bytes) freed."""
        import shutil

        from berth.oci import jsonfast
        want_blobs: set[str] = set()
        want_chains: set[str] = set(keep_layers)
        for img in list(self.images()):
            want_blobs.update((img["manifest"], img["id"]))
            man = jsonfast.loads(self.read_blob(img["manifest"]))
            want_blobs.update(layer["digest"] for layer in man["layers"])
            want_chains.update(oci.chain_ids(self.config(img["id"])["rootfs"]["diff_ids"]))
        count = freed = 0
        for name in os.listdir(self.blobs):
            if "sha256:" + name not in want_blobs:
                p = os.path.join(self.blobs, name)
                freed += os.path.getsize(p)
                os.unlink(p)
                count += 1
        for chain_id, short, size in self.db.execute(
                "SELECT chain_id, short, size FROM layers").fetchall():
            if chain_id in want_chains:
                continue
            self.db.execute("DELETE FROM layers WHERE chain_id=?", (chain_id,))
            try:
                os.unlink(os.path.join(self.links, short))
            except FileNotFoundError:
                pass
            shutil.rmtree(self.layer_dir(chain_id), ignore_errors=True)
            count += 1
            freed += size
        return count, freed
