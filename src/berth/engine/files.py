"""A container's filesystem from the outside: cp, export, diff and commit.

All of them work on the container's overlay snapshot, mounted on the host
(it already is while the container runs), with every path resolved inside it
(secure_join), so a symlink in the container cannot point them at the host.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import time

from berth.engine.errors import EngineError
from berth.engine.state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from berth.images.store import Store


@contextlib.contextmanager
def mounted(state: State, store: Store, ref: str) -> Iterator[tuple[dict, str]]:
    """The container's merged filesystem, mounted for the duration (if it was not)."""
    from berth.engine.containers import _mount, refresh, unmount
    c = refresh(state, state.get(ref))
    was = os.path.ismount(os.path.join(state.dir(c["id"]), "rootfs"))
    from berth.oci import jsonfast
    rootfs = _mount(state, store, c, volatile=jsonfast.loads(c["spec"]).get("remove", False))
    try:
        yield c, rootfs
    finally:
        if not was and c["status"] != "running":
            unmount(state, c["id"])


def copy_out(state: State, store: Store, ref: str, src: str, dest: str) -> None:
    from berth.runtime.mounts import secure_join
    with mounted(state, store, ref) as (_, rootfs):
        path = secure_join(rootfs, src)
        if not os.path.lexists(path):
            raise EngineError(f"Could not find the file {src} in container {ref}")
        if os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(src.rstrip("/")) or "root")
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.copytree(path, dest, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(path, dest, follow_symlinks=False)


def copy_in(state: State, store: Store, ref: str, src: str, dest: str) -> None:
    from berth.runtime.mounts import secure_join
    if not os.path.lexists(src):
        raise EngineError(f"could not find the file {src} on the host")
    with mounted(state, store, ref) as (_, rootfs):
        target = secure_join(rootfs, dest)
        if os.path.isdir(target) and not os.path.islink(target):
            target = secure_join(rootfs, os.path.join(dest, os.path.basename(src.rstrip("/"))))
        elif not os.path.isdir(os.path.dirname(target)):
            raise EngineError(f"no such directory in the container: {os.path.dirname(dest)}")
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target, follow_symlinks=False)


def export(state: State, store: Store, ref: str, out: BinaryIO) -> None:
    """The container's whole filesystem as a tar stream (docker export)."""
    with mounted(state, store, ref) as (_, rootfs), \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, rootfs))
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                elif info.type in (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                   tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
                    tar.addfile(info)


def diff(state: State, store: Store, ref: str) -> list[tuple[str, str]]:
    from berth.images.snapshots import changes
    c = state.get(ref)
    return changes(os.path.join(state.dir(c["id"]), "upper"), store.layer_dirs(c["image_id"]))


def commit(state: State, store: Store, ref: str, name: str | None, message: str = "",
           author: str = "", changes: list[str] | None = None) -> str:
    """A new image: the container's image plus one layer made of its upper directory."""
    import gzip

    from berth.images import layers
    from berth.images.changes import apply_changes
    from berth.images.reference import parse
    from berth.oci import image as oci
    from berth.oci import jsonfast

    c = state.get(ref)
    buf = io.BytesIO()
    from berth.images.snapshots import upper_tar
    upper_tar(os.path.join(state.dir(c["id"]), "upper"), buf)
    data = buf.getvalue()
    blob = gzip.compress(data, mtime=0)
    parent_cfg = store.config(c["image_id"])
    diff_ids = list(parent_cfg["rootfs"]["diff_ids"])
    parent_chain = oci.chain_ids(diff_ids)[-1] if diff_ids else None
    digest, diff_id, _ = layers.unpack(store, io.BytesIO(blob), oci.OCI_LAYER_GZIP,
                                       oci.sha256(blob), oci.sha256(data), parent_chain,
                                       len(blob))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = dict(parent_cfg)
    config["created"] = now
    if author:
        config["author"] = author
    config["config"] = apply_changes(dict(parent_cfg.get("config") or {}), changes or [])
    config["rootfs"] = {"type": "layers", "diff_ids": [*diff_ids, diff_id]}
    args = " ".join(jsonfast.loads(c["command"]))
    config["history"] = [*(parent_cfg.get("history") or []),
                         {"created": now, "created_by": args,
                          **({"comment": message} if message else {}),
                          **({"author": author} if author else {})}]
    cfg_bytes = jsonfast.dumps(config).encode()
    cfg_digest = store.put_blob(cfg_bytes)
    man_parent = store.manifest(c["image_id"])
    man = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
           "config": {"mediaType": oci.OCI_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
           "layers": [*man_parent["layers"], {"mediaType": oci.OCI_LAYER_GZIP, "digest": digest,
                                              "size": len(blob)}]}
    man_digest = store.put_blob(jsonfast.dumps(man).encode())
    return store.add_image(man_digest, oci.OCI_MANIFEST, config,
                           [str(parse(name))] if name else [])
