"""Layers, snapshots and archives on the real kernel: unpacking, whiteouts, overlay mounts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.images import archive, layers, snapshots
from berth.images.errors import DigestMismatch, ImageFailure, SizeMismatch, UnsafeLayer
from berth.images.store import Store
from berth.oci import image as oci

pytestmark = pytest.mark.root


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path / "store"))
    yield s
    s.close()


def make_tar(entries: list[tuple]) -> bytes:
    """entries: (name, kind, payload) with kind file|dir|sym|link|wh|opq."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1000000
            data = None
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
                info.mode = 0o644
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def unpack_bytes(store: Store, data: bytes, parent: str | None = None,
                 compress: bool = True) -> tuple[str, str, int]:
    blob = gzip.compress(data) if compress else data
    mt = oci.OCI_LAYER_GZIP if compress else oci.OCI_LAYER
    return layers.unpack(store, io.BytesIO(blob), mt, oci.sha256(blob), oci.sha256(data),
                         parent, len(blob))


def test_unpack_keeps_modes_links_and_verifies_both_digests(store: Store) -> None:
    data = make_tar([("etc", "dir", None), ("etc/conf", "file", "x=1\n"),
                     ("etc/alias", "sym", "conf"), ("etc/hard", "link", "etc/conf")])
    blob, diff_id, size = unpack_bytes(store, data)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    root = Path(store.layer_dir(diff_id)) / "diff"
    assert (root / "etc/conf").read_text() == "x=1\n"
    assert os.readlink(root / "etc/alias") == "conf"
    assert (root / "etc/hard").stat().st_ino == (root / "etc/conf").stat().st_ino
    assert (root / "etc/conf").stat().st_mtime == 1000000
    assert store.has_blob(blob) and size == 4
    assert os.listdir(store.tmp) == []


@pytest.mark.parametrize("entries, words", [
    ([("../escape", "file", "x")], "contains '..'"),
    ([("a/../../escape", "file", "x")], "contains '..'"),
    ([("link", "sym", "/tmp"), ("link/evil", "file", "x")], "through the symlink"),
    ([("link", "sym", "../.."), ("link/evil", "file", "x")], "through the symlink"),
    ([("hard", "link", "../../etc/passwd")], "contains '..'"),
    ([("hard", "link", "/etc/passwd")], "not in the layer"),
    # a directory replaced by a symlink: what was known of it must be forgotten
    ([("a", "dir", None), ("a/f", "file", "x"), ("a", "sym", "/tmp"), ("a/evil", "file", "x")],
     "through the symlink"),
    ([("d", "dir", None), ("d/.wh...", "file", "")], "whiteout of '..'"),
    ([(".wh.", "file", "")], "whiteout of ''"),
])
def test_layers_that_write_outside_are_refused(store: Store, tmp_path: Path, entries: list,
                                               words: str) -> None:
    before = set(os.listdir("/tmp"))
    with pytest.raises(UnsafeLayer, match=words):
        unpack_bytes(store, make_tar(entries))
    assert os.listdir(store.tmp) == []
    assert not store.db.execute("SELECT * FROM layers").fetchall()
    assert set(os.listdir("/tmp")) - before <= {p.name for p in tmp_path.parents}
    assert not Path("/tmp/evil").exists() and not (tmp_path / "evil").exists()


def test_names_modes_xattrs_and_special_files_are_kept(store: Store) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode = kind, 1_000_000, 0o644
            for k, v in kw.items():
                setattr(info, k, v)
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("ro", tarfile.DIRTYPE, mode=0o555)
        add("ro/inside", data=b"i")  # written before the directory becomes read-only
        add("suid", data=b"#!", mode=0o4755, uid=1000, gid=1000)
        add("not-utf8-\udcff", data=b"n")
        add("noted", data=b"x", pax_headers={"SCHILY.xattr.user.note": "hi",
                                             "SCHILY.xattr.trusted.overlay.opaque": "y"})
        add("fifo", tarfile.FIFOTYPE, mode=0o640)
        add("null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add("again", data=b"first")
        add("again", data=b"second")  # a later entry replaces an earlier one
    data = buf.getvalue()
    _, diff_id, size = unpack_bytes(store, data)
    root = Path(store.layer_dir(diff_id)) / "diff"
    assert (root / "ro/inside").read_bytes() == b"i"
    assert stat.S_IMODE((root / "ro").stat().st_mode) == 0o555
    assert (root / "ro").stat().st_mtime == 1_000_000
    st = (root / "suid").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 1000, 1000)
    assert os.path.exists(os.path.join(os.fsencode(root), b"not-utf8-\xff"))
    assert os.getxattr(root / "noted", "user.note") == b"hi"
    assert "trusted.overlay.opaque" not in os.listxattr(root / "noted")
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)
    assert os.major((root / "null").lstat().st_rdev) == 1
    assert (root / "again").read_bytes() == b"second"
    assert size == len(b"i#!nxfirstsecond")


def test_damaged_data_is_named_as_such_and_a_wrong_blob_as_a_digest_mismatch(
        store: Store) -> None:
    data = bytearray(make_tar([("f", "file", "payload" * 1000)]))
    data[100] ^= 0xFF  # the header's mode field: a bad checksum
    blob = gzip.compress(bytes(data))
    with pytest.raises(ImageFailure, match="is not a tar archive: bad header checksum"):
        layers.unpack(store, io.BytesIO(blob), oci.OCI_LAYER_GZIP, oci.sha256(blob),
                      oci.sha256(bytes(data)), None, len(blob))
    # the same damage in a blob that is not the one named: the cause is the digest
    with pytest.raises(DigestMismatch):
        layers.unpack(store, io.BytesIO(blob), oci.OCI_LAYER_GZIP, oci.sha256(b"other"),
                      oci.sha256(bytes(data)), None, len(blob))
    assert os.listdir(store.tmp) == []
    assert os.listdir(store.blobs) == []


def test_absolute_names_land_inside_the_layer(store: Store) -> None:
    _, diff_id, _ = unpack_bytes(store, make_tar([("/abs-berth-test", "file", "in")]))
    assert (Path(store.layer_dir(diff_id)) / "diff/abs-berth-test").read_text() == "in"
    assert not Path("/abs-berth-test").exists()


@pytest.mark.parametrize("damage, error", [
    ("digest", DigestMismatch), ("truncate", ImageFailure), ("diff_id", DigestMismatch),
    ("size", SizeMismatch)])
def test_bad_blobs_commit_nothing(store: Store, damage: str, error: type) -> None:
    data = make_tar([("f", "file", "payload" * 1000)])
    blob = gzip.compress(data)
    digest, diff_id, size = oci.sha256(blob), oci.sha256(data), len(blob)
    if damage == "digest":
        digest = oci.sha256(b"other")
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "diff_id":
        diff_id = oci.sha256(b"other")
    elif damage == "size":
        size += 1
    with pytest.raises(error):
        layers.unpack(store, io.BytesIO(blob), oci.OCI_LAYER_GZIP, digest, diff_id, None, size)
    assert os.listdir(store.tmp) == []
    assert os.listdir(store.blobs) == []
    assert [d for d in os.listdir(store.layers) if d != "l"] == []


def test_unknown_media_type_is_refused(store: Store) -> None:
    with pytest.raises(ImageFailure, match="unknown layer media type"):
        layers.unpack(store, io.BytesIO(b""), "application/x-weird", None, None, None)


def test_zstd_layers(store: Store) -> None:
    import zstandard
    data = make_tar([("z", "file", "zstd!")])
    blob = zstandard.ZstdCompressor().compress(data)
    _, diff_id, _ = layers.unpack(store, io.BytesIO(blob), oci.OCI_LAYER_ZSTD, oci.sha256(blob),
                                  oci.sha256(data), None)
    assert (Path(store.layer_dir(diff_id)) / "diff/z").read_text() == "zstd!"


def build_image(store: Store, layer_tars: list[bytes], name: str) -> str:
    """Index an image from raw layer tars (what a pull or load ends with)."""
    parent, descs, diff_ids = None, [], []
    for data in layer_tars:
        blob, diff_id, _ = unpack_bytes(store, data, parent)
        parent = diff_id if parent is None else oci.sha256(f"{parent} {diff_id}".encode())
        diff_ids.append(diff_id)
        descs.append({"mediaType": oci.OCI_LAYER_GZIP, "digest": blob,
                      "size": os.path.getsize(store.blob_path(blob))})
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cfg = json.dumps(config).encode()
    man = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
           "config": {"mediaType": oci.OCI_CONFIG, "digest": store.put_blob(cfg),
                      "size": len(cfg)}, "layers": descs}
    return store.add_image(store.put_blob(json.dumps(man).encode()), oci.OCI_MANIFEST, config,
                           [name])


def test_whiteouts_hide_lower_files_in_the_overlay(store: Store, tmp_path: Path) -> None:
    low = make_tar([("keep", "file", "k"), ("gone", "file", "g"), ("d", "dir", None),
                    ("d/old", "file", "o")])
    up = make_tar([(".wh.gone", "file", ""), ("d", "dir", None), ("d/.wh..wh..opq", "file", ""),
                   ("d/new", "file", "n")])
    image_id = build_image(store, [low, up], "localhost/wh:1")
    target, upper, work = tmp_path / "m", tmp_path / "u", tmp_path / "w"
    target.mkdir()
    snapshots.mount(store, image_id, str(target), str(upper), str(work))
    try:
        assert sorted(os.listdir(target)) == ["d", "keep"]
        assert os.listdir(target / "d") == ["new"]
        (target / "keep").write_text("changed")
        (target / "added").write_text("a")
        os.unlink(target / "d" / "new")
    finally:
        snapshots.unmount(str(target))
    lowers = store.layer_dirs(image_id)
    assert snapshots.changes(str(upper), lowers) == [("A", "/added"), ("C", "/d"),
                                                     ("D", "/d/new"), ("C", "/keep")]
    buf = io.BytesIO()
    snapshots.upper_tar(str(upper), buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as t:
        names = t.getnames()
    assert "d/.wh.new" in names and "added" in names and "keep" in names


def test_many_layers_fit_one_overlay_mount(store: Store, tmp_path: Path) -> None:
    tars = [make_tar([(f"f{i}", "file", str(i))]) for i in range(120)]
    image_id = build_image(store, tars, "localhost/many:1")
    target = tmp_path / "m"
    target.mkdir()
    snapshots.mount(store, image_id, str(target), str(tmp_path / "u"), str(tmp_path / "w"))
    try:
        assert len(os.listdir(target)) == 120
        assert (target / "f119").read_text() == "119"
    finally:
        snapshots.unmount(str(target))


def _volatile(target: Path) -> bool:
    """Whether the overlay at `target` is volatile ("fsync=volatile" on kernels from 6.x)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(target):
            return bool({"volatile", "fsync=volatile"} & set(fields[-1].split(",")))
    raise AssertionError(f"{target} is not mounted")


def test_a_volatile_snapshot_mounts_again_with_its_upper(store: Store, tmp_path: Path) -> None:
    """volatile (run --rm) skips the upper's syncs; the kernel marks the work directory,
    which would refuse the next mount: the snapshot mounts again, its writes kept."""
    image_id = build_image(store, [make_tar([("keep", "file", "k")])], "localhost/vol:1")
    target, upper, work = tmp_path / "m", tmp_path / "u", tmp_path / "w"
    target.mkdir()
    snapshots.mount(store, image_id, str(target), str(upper), str(work), volatile=True)
    try:
        assert _volatile(target)
        (target / "written").write_text("w")
    finally:
        snapshots.unmount(str(target))
    assert (work / "work" / "incompat" / "volatile").is_dir()
    snapshots.mount(store, image_id, str(target), str(upper), str(work), volatile=True)
    try:
        assert (target / "written").read_text() == "w"
        assert (target / "keep").read_text() == "k"
    finally:
        snapshots.unmount(str(target))
    snapshots.mount(store, image_id, str(target), str(tmp_path / "u2"), str(tmp_path / "w2"))
    try:
        assert not _volatile(target)
    finally:
        snapshots.unmount(str(target))


def test_load_of_a_tampered_layout_commits_nothing(store: Store, tmp_path: Path,
                                                   busybox_image: Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(busybox_image / "oci", layout)
    man_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    man = json.loads((layout / "blobs/sha256" / man_digest[7:]).read_text())
    layer = layout / "blobs/sha256" / man["layers"][0]["digest"][7:]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    with pytest.raises(ImageFailure):
        archive.load(store, str(layout))
    assert list(store.images()) == []
    assert os.listdir(store.tmp) == []
    assert not store.db.execute("SELECT * FROM layers").fetchall()


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_load_both_ways(store: Store, tmp_path: Path, busybox_rootfs: Path,
                                    fmt: str) -> None:
    name = f"localhost/berth-archive-test:{fmt}"
    tar = subprocess.run(["tar", "-C", str(busybox_rootfs), "-c", "."], capture_output=True,
                         check=True).stdout
    subprocess.run(["podman", "import", "--change", "ENV PATH=/bin:/usr/bin", "-", name],
                   input=tar, capture_output=True, check=True)
    try:
        subprocess.run(["podman", "save", "--format", fmt, "-o", str(tmp_path / "in.tar"), name],
                       capture_output=True, check=True)
        assert archive.load(store, str(tmp_path / "in.tar")) == [name]
        image_id = store.resolve(name)
        assert store.config(image_id)["config"]["Env"] == ["PATH=/bin:/usr/bin"]
        assert os.path.exists(os.path.join(store.layer_dirs(image_id)[0], "bin/busybox"))
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True, check=True)
        with open(tmp_path / "out.tar", "wb") as f:
            archive.save(store, [name], f, fmt)
        subprocess.run(["podman", "load", "-i", str(tmp_path / "out.tar")], capture_output=True,
                       check=True)
        p = subprocess.run(["podman", "--runtime", "runc", "run", "--rm", "--network", "none",
                            name, "echo", "ok"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout == "ok\n"
    finally:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)
