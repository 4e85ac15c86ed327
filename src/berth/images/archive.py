"""Image archives: load and save docker-archive and oci-archive tars; import a rootfs tar.

`load` reads either format (told apart by manifest.json vs index.json),
verifies every blob against its digest, unpacks the layers and indexes the
images under their names. Nothing is indexed until every blob and layer of an
image is in place, so a bad archive leaves at most unreferenced blobs, which
`image prune` removes. OCI image layouts given as a directory load the same way.
"""

from __future__ import annotations

import io
import os
import tarfile
import time

from berth.images import layers
from berth.images.errors import ArchiveError, ImageFailure
from berth.images.reference import parse
from berth.oci import image as oci
from berth.oci import jsonfast
from berth.oci.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from berth.images.store import Store

REF_ANNOTATION = "org.opencontainers.image.ref.name"


class _Source:
    """Files of an archive (a tar file or an unpacked directory) by name."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dir = os.path.isdir(path)
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if not self.dir:
            try:
                self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
            except (tarfile.TarError, OSError) as e:
                raise ArchiveError(f"{path}: not a readable tar archive: {e}") from None
            for m in self.tar.getmembers():
                name = m.name.lstrip("./") if m.name.startswith("./") else m.name
                self.members[name] = m

    def has(self, name: str) -> bool:
        if self.dir:
            return os.path.exists(os.path.join(self.path, name))
        return name in self.members

    def open(self, name: str) -> BinaryIO:
        if self.dir:
            return open(os.path.join(self.path, name), "rb")
        assert self.tar is not None
        m = self.members.get(name)
        if m is None:
            raise ArchiveError(f"{self.path}: {name} is missing from the archive")
        if m.issym() or m.islnk():  # docker archives link duplicate layers
            target = os.path.normpath(os.path.join(os.path.dirname(name), m.linkname)) \
                if m.issym() else m.linkname
            return self.open(target)
        f = self.tar.extractfile(m)
        if f is None:
            raise ArchiveError(f"{self.path}: {name} is not a file")
        return f  # type: ignore[return-value]

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def json(self, name: str) -> object:
        try:
            return jsonfast.loads(self.read(name))
        except ValueError as e:
            raise ArchiveError(f"{self.path}: {name}: {e}") from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def load(store: Store, path: str) -> list[str]:
    """Load every image of an archive or OCI layout; return the names (or ids) loaded."""
    src = _Source(path)
    try:
        if src.has("manifest.json"):  # docker >= 25 writes index.json beside it too
            return _load_docker(store, src)
        if src.has("index.json"):
            return _load_oci(store, src)
        raise ArchiveError(f"{path}: neither a docker-archive (manifest.json) nor an "
                           "oci-archive (index.json)")
    except SpecError as e:
        raise ArchiveError(f"{path}: {e}") from None
    finally:
        src.close()


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _load_oci(store: Store, src: _Source) -> list[str]:
    idx = oci.index(src.json("index.json"), "index.json")
    loaded: list[str] = []
    for i, desc in enumerate(idx["manifests"]):
        names = []
        ref = (desc.get("annotations") or {}).get(REF_ANNOTATION)
        if ref:
            names.append(_name_for(ref))
        mt = desc["mediaType"]
        data = _copy_small(store, src, desc, f"index.json manifests[{i}]")
        if mt in oci.INDEX_TYPES:
            sub = oci.index(jsonfast.loads(data), desc["digest"])
            desc = oci.select_platform(sub)
            data = _copy_small(store, src, desc, f"index {desc['digest']}")
        image_id = _load_manifest(store, src, desc["digest"], data, names)
        loaded += names or [image_id]
    return loaded


def _name_for(ref: str) -> str:
    """An OCI ref.name annotation is either a full reference or just a tag."""
    if "/" in ref or ":" in ref or "@" in ref:
        return str(parse(ref))
    return str(parse("localhost/image:" + ref)) if ref else ""


def _copy_small(store: Store, src: _Source, desc: dict, what: str) -> bytes:
    data = src.read(_blob_name(desc["digest"]))
    store.put_blob(data, desc["digest"], what)
    return data


def _load_manifest(store: Store, src: _Source, digest: str, data: bytes,
                   names: list[str]) -> str:
    man = oci.manifest(jsonfast.loads(data), digest)
    cfg_bytes = src.read(_blob_name(man["config"]["digest"]))
    store.put_blob(cfg_bytes, man["config"]["digest"], "config")
    config = oci.image_config(jsonfast.loads(cfg_bytes), man["config"]["digest"])
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(man["layers"]):
        raise ArchiveError(f"manifest {digest}: {len(man['layers'])} layers but the config "
                           f"lists {len(diff_ids)} diff_ids")
    parent = None
    for layer, diff_id in zip(man["layers"], diff_ids, strict=True):
        chain = diff_id if parent is None else oci.sha256(f"{parent} {diff_id}".encode())
        if not store.has_layer(chain) or not store.has_blob(layer["digest"]):
            with src.open(_blob_name(layer["digest"])) as f:
                layers.unpack(store, f, layer["mediaType"], layer["digest"], diff_id, parent,
                              layer["size"])
        parent = chain
    return store.add_image(digest, oci.media_type_of(man) or oci.OCI_MANIFEST, config, names)


def _load_docker(store: Store, src: _Source) -> list[str]:
    entries = src.json("manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError(f"{src.path}: manifest.json must be a list")
    loaded: list[str] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("Config"), str) \
                or not isinstance(e.get("Layers"), list):
            raise ArchiveError(f"{src.path}: manifest.json[{i}] needs Config and Layers")
        cfg_bytes = src.read(e["Config"])
        cfg_digest = store.put_blob(cfg_bytes, None, "config")
        config = oci.image_config(jsonfast.loads(cfg_bytes), e["Config"])
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(e["Layers"]):
            raise ArchiveError(f"{src.path}: manifest.json[{i}] has {len(e['Layers'])} layers, "
                               f"the config {len(diff_ids)}")
        parent = None
        descs = []
        for name, diff_id in zip(e["Layers"], diff_ids, strict=True):
            chain = diff_id if parent is None else oci.sha256(f"{parent} {diff_id}".encode())
            with src.open(name) as f:
                head = f.read(4)
            mt = {"gzip": oci.DOCKER_LAYER, "zstd": oci.OCI_LAYER_ZSTD,
                  "none": "application/vnd.docker.image.rootfs.diff.tar"}[
                layers.sniff_compression(head)]
            known = store.layer_blob(diff_id)
            if store.has_layer(chain) and known:
                blob, mt = known
                size = os.path.getsize(store.blob_path(blob))
            else:
                with src.open(name) as f:
                    blob, _, _ = layers.unpack(store, f, mt, None, diff_id, parent)
                size = os.path.getsize(store.blob_path(blob))
            descs.append({"mediaType": mt, "digest": blob, "size": size})
            parent = chain
        man = {"schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
               "config": {"mediaType": oci.DOCKER_CONFIG, "digest": cfg_digest,
                          "size": len(cfg_bytes)},
               "layers": descs}
        man_bytes = jsonfast.dumps(man).encode()
        man_digest = store.put_blob(man_bytes)
        names = [str(parse(t)) for t in e.get("RepoTags") or []]
        image_id = store.add_image(man_digest, oci.DOCKER_MANIFEST, config, names)
        loaded += [parse(n).short + ":" + (parse(n).tag or "") for n in names] or [image_id]
    return loaded


# --- save ---------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None,
         fileobj: BinaryIO | None = None, size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = int(time.time())
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        info.size = size or 0
        tar.addfile(info, fileobj)


def save(store: Store, refs: list[str], out: BinaryIO, fmt: str = "docker-archive") -> None:
    """Write the images named by `refs` as one archive (docker-archive or oci-archive)."""
    if fmt not in ("docker-archive", "oci-archive"):
        raise ImageFailure(f"unknown archive format {fmt!r} (docker-archive or oci-archive)")
    ids = [(r, store.resolve(r)) for r in refs]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if fmt == "oci-archive":
            _save_oci(store, ids, tar)
        else:
            _save_docker(store, ids, tar)


def _save_oci(store: Store, ids: list[tuple[str, str]], tar: tarfile.TarFile) -> None:
    _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    seen: set[str] = set()
    entries = []
    for ref, image_id in ids:
        img = store.image(image_id)
        man = store.manifest(image_id)
        for d in [img["manifest"], man["config"]["digest"], *(x["digest"] for x in man["layers"])]:
            if d in seen:
                continue
            seen.add(d)
            with store.open_blob(d) as f:
                _add(tar, _blob_name(d), fileobj=f, size=os.fstat(f.fileno()).st_size)
        desc = {"mediaType": img["media_type"], "digest": img["manifest"],
                "size": os.path.getsize(store.blob_path(img["manifest"]))}
        if not ref.startswith("sha256:") and ref not in image_id:
            desc["annotations"] = {REF_ANNOTATION: str(parse(ref))}
        entries.append(desc)
    _add(tar, "index.json", jsonfast.dumps({"schemaVersion": 2,
                                            "mediaType": oci.OCI_INDEX,
                                            "manifests": entries}).encode())


def _save_docker(store: Store, ids: list[tuple[str, str]], tar: tarfile.TarFile) -> None:
    entries = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    for ref, image_id in ids:
        config = store.config(image_id)
        man = store.manifest(image_id)
        hexid = image_id.partition(":")[2]
        if hexid not in written:
            _add(tar, f"{hexid}.json", store.read_blob(image_id))
        layer_names = []
        for layer, diff_id in zip(man["layers"], config["rootfs"]["diff_ids"], strict=True):
            name = f"{diff_id.partition(':')[2]}/layer.tar"
            layer_names.append(name)
            if name in written:
                continue
            written.add(name)
            data = _uncompressed(store, layer)
            _add(tar, name, data)
        written.add(hexid)
        tags = []
        if not ref.startswith("sha256:") and not image_id.partition(":")[2].startswith(ref):
            r = parse(ref)
            if r.tag:
                tags.append(f"{r.short}:{r.tag}")
                repositories.setdefault(r.short, {})[r.tag] = hexid
        entries.append({"Config": f"{hexid}.json", "RepoTags": tags or None,
                        "Layers": layer_names})
    _add(tar, "manifest.json", jsonfast.dumps(entries).encode())
    _add(tar, "repositories", jsonfast.dumps(repositories).encode())


def _uncompressed(store: Store, layer: dict) -> bytes:
    compression = oci.LAYER_COMPRESSION[layer["mediaType"]]
    with store.open_blob(layer["digest"]) as f:
        raw = f.read()
    if compression == "gzip":
        import zlib
        return zlib.decompress(raw, wbits=47)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


# --- import -------------------------------------------------------------------


def import_rootfs(store: Store, src: BinaryIO, name: str | None = None,
                  changes: list[str] | None = None, message: str = "") -> str:
    """`berth import`: one layer from a rootfs tar (plain, gzip or zstd), with --change."""
    import gzip

    from berth.images.changes import apply_changes

    head = src.read(4)
    body = _Prefixed(head, src)
    compression = layers.sniff_compression(head)
    mt = {"gzip": oci.OCI_LAYER_GZIP, "zstd": oci.OCI_LAYER_ZSTD, "none": oci.OCI_LAYER}[
        compression]
    blob, diff_id, _ = layers.unpack(store, body, mt, None, None, None)  # type: ignore[arg-type]
    if compression == "none":  # store it compressed, as registries expect
        with store.open_blob(blob) as f:
            gz = gzip.compress(f.read(), mtime=0)
        blob = store.put_blob(gz)
        mt = oci.OCI_LAYER_GZIP
        store.note_layer_blob(diff_id, blob, mt)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = {"architecture": "amd64", "os": "linux", "created": now,
              "config": apply_changes({}, changes or []),
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created": now, "created_by": "berth import",
                           **({"comment": message} if message else {})}]}
    cfg_bytes = jsonfast.dumps(config).encode()
    cfg = store.put_blob(cfg_bytes)
    man = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
           "config": {"mediaType": oci.OCI_CONFIG, "digest": cfg, "size": len(cfg_bytes)},
           "layers": [{"mediaType": mt, "digest": blob,
                       "size": os.path.getsize(store.blob_path(blob))}]}
    man_digest = store.put_blob(jsonfast.dumps(man).encode())
    return store.add_image(man_digest, oci.OCI_MANIFEST, config,
                           [str(parse(name))] if name else [])


class _Prefixed:
    """A stream with its first bytes already read (to sniff the compression)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out = self.head if n < 0 else self.head[:n]
            self.head = self.head[len(out):]
            if n < 0 or len(out) < n:
                out += self.rest.read(-1 if n < 0 else n - len(out))
            return out
        return self.rest.read(n)
