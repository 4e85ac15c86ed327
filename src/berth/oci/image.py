"""The OCI image model: digests, descriptors, manifests, indexes and image configs.

Parsed strictly at the edge: a wrong type or a missing required field is a
SpecError naming the field's path. Unknown properties are kept (the image
spec says implementations must ignore them). Docker's schema2 media types
are accepted beside OCI's, since registries and `docker save` produce them.
"""

from __future__ import annotations

from berth.oci.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
LAYER_COMPRESSION = {  # media type -> compression
    OCI_LAYER: "none", OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: "none", OCI_LAYER_NONDIST + "+gzip": "gzip",
    OCI_LAYER_NONDIST + "+zstd": "zstd",
    DOCKER_LAYER: "gzip", DOCKER_FOREIGN: "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
}

_HEX = frozenset("0123456789abcdef")


def check_digest(value: Any, field: str, document: str = "manifest") -> str:
    """A digest "algorithm:hex"; only sha256 (and sha512) are accepted."""
    if not isinstance(value, str) or ":" not in value:
        raise SpecError(field, f"{value!r} is not a digest such as sha256:<64 hex digits>",
                        document)
    algo, _, hexpart = value.partition(":")
    want = {"sha256": 64, "sha512": 128}.get(algo)
    if want is None:
        raise SpecError(field, f"unsupported digest algorithm {algo!r}", document)
    if len(hexpart) != want or not set(hexpart) <= _HEX:
        raise SpecError(field, f"{value!r} is not a valid {algo} digest", document)
    return value


def sha256(data: bytes) -> str:
    import hashlib  # here, not at the top: `berth run` reads manifests but never digests (~3 ms)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _obj(v: Any, field: str, doc: str) -> dict:
    if not isinstance(v, dict):
        raise SpecError(field, "must be a JSON object", doc)
    return v


def descriptor(d: Any, field: str, doc: str = "manifest") -> dict:
    _obj(d, field, doc)
    if not isinstance(d.get("mediaType"), str) or not d["mediaType"]:
        raise SpecError(field + ".mediaType", "is required (a media type string)", doc)
    check_digest(d.get("digest"), field + ".digest", doc)
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SpecError(field + ".size", f"must be a non-negative integer, not {size!r}", doc)
    return d


def media_type_of(doc: dict) -> str | None:
    """A manifest's or index's media type, from the document or from its shape."""
    mt = doc.get("mediaType")
    if isinstance(mt, str):
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    return None


def _header(doc: Any, name: str, allowed: tuple[str, ...], kind: str) -> str:
    """schemaVersion 2 and a media type among `allowed` (given or told by the shape)."""
    _obj(doc, "(document)", name)
    if doc.get("schemaVersion") != 2:
        raise SpecError("schemaVersion", f"must be 2, not {doc.get('schemaVersion')!r}", name)
    mt = media_type_of(doc)
    if mt not in allowed:
        raise SpecError("mediaType", f"unknown {kind} media type {mt!r}", name)
    return mt


def manifest(doc: Any, name: str = "manifest") -> dict:
    _header(doc, name, MANIFEST_TYPES, "manifest")
    cfg = descriptor(doc.get("config"), "config", name)
    if cfg["mediaType"] not in CONFIG_TYPES:
        raise SpecError("config.mediaType", f"unknown config media type {cfg['mediaType']!r}",
                        name)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise SpecError("layers", "must be a list of descriptors", name)
    for i, layer in enumerate(layers):
        descriptor(layer, f"layers[{i}]", name)
        if layer["mediaType"] not in LAYER_COMPRESSION:
            raise SpecError(f"layers[{i}].mediaType",
                            f"unknown layer media type {layer['mediaType']!r}", name)
    return doc


def index(doc: Any, name: str = "index") -> dict:
    _header(doc, name, INDEX_TYPES, "index")
    ms = doc.get("manifests")
    if not isinstance(ms, list):
        raise SpecError("manifests", "must be a list of descriptors", name)
    for i, m in enumerate(ms):
        descriptor(m, f"manifests[{i}]", name)
        plat = m.get("platform")
        if plat is not None:
            _obj(plat, f"manifests[{i}].platform", name)
    return doc


def select_platform(idx: dict, os_: str = "linux", arch: str = "amd64",
                    variant: str | None = None) -> dict:
    """The index entry for a platform (linux/amd64 by default)."""
    fallback = None
    for m in idx["manifests"]:
        p = m.get("platform") or {}
        if p.get("os") == os_ and p.get("architecture") == arch and (
                variant is None or p.get("variant") in (None, variant)):
            return m
        if not p and m["mediaType"] in MANIFEST_TYPES and fallback is None:
            fallback = m
    if fallback is not None:
        return fallback
    have = ", ".join(f"{(m.get('platform') or {}).get('os')}/"
                     f"{(m.get('platform') or {}).get('architecture')}" for m in idx["manifests"])
    raise SpecError("manifests", f"no image for {os_}/{arch} (the index has: {have or 'none'})",
                    "index")


def image_config(doc: Any, name: str = "image config") -> dict:
    _obj(doc, "(document)", name)
    for key in ("architecture", "os"):
        if not isinstance(doc.get(key), str):
            raise SpecError(key, "is required (a string)", name)
    rootfs = _obj(doc.get("rootfs"), "rootfs", name)
    if rootfs.get("type") != "layers":
        raise SpecError("rootfs.type", f"must be \"layers\", not {rootfs.get('type')!r}", name)
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise SpecError("rootfs.diff_ids", "must be a list of digests", name)
    for i, d in enumerate(diff_ids):
        check_digest(d, f"rootfs.diff_ids[{i}]", name)
    cfg = doc.get("config")
    if cfg is not None:
        _obj(cfg, "config", name)
        for key in ("Env", "Cmd", "Entrypoint"):
            v = cfg.get(key)
            if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise SpecError(f"config.{key}", "must be a list of strings", name)
    return doc


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256(f"{out[-1]} {d}".encode()))
    return out
