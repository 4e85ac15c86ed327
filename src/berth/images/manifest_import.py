"""From a manifest and its config to an indexed image: the steps pull and load share.

`check` parses both documents strictly (turning SpecError into ImageFailure
with where the document came from) and checks they agree; `plan` says which
layers the store still lacks, with the chain id each will be indexed under;
`commit` stores the manifest and config blobs and indexes the image, the
last step, so an image is never indexed before every layer is in place.
Where the layers come from (an archive, a registry stream) is the caller's.
"""

from __future__ import annotations

from berth.images.errors import ImageFailure
from berth.oci import image as oci
from berth.oci import jsonfast
from berth.oci.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from berth.images.store import Store


class LayerStep:
    """One layer of a plan (a plain class: `dataclasses` costs a pull ~15 ms to import)."""

    __slots__ = ("media_type", "digest", "size", "diff_id", "parent", "chain_id", "present")

    def __init__(self, media_type: str, digest: str, size: int, diff_id: str,
                 parent: str | None, chain_id: str, present: bool) -> None:
        self.media_type = media_type
        self.digest = digest      # the blob (compressed) digest
        self.size = size
        self.diff_id = diff_id    # the tar's digest, from the config
        self.parent = parent      # the chain id below this layer
        self.chain_id = chain_id
        self.present = present    # unpacked and its blob held: nothing to fetch


def check(man_bytes: bytes, man_digest: str, cfg_bytes: bytes,
          where: str) -> tuple[dict, dict]:
    """(manifest, config) parsed and checked against each other; ImageFailure if not valid."""
    try:
        man = oci.manifest(jsonfast.loads(man_bytes), f"{where} manifest {man_digest}")
        config = oci.image_config(jsonfast.loads(cfg_bytes),
                                  f"{where} config {man['config']['digest']}")
    except SpecError as e:
        raise ImageFailure(str(e)) from None
    except ValueError as e:
        raise ImageFailure(f"{where}: manifest {man_digest} or its config is not JSON: {e}") \
            from None
    n_diff, n_layers = len(config["rootfs"]["diff_ids"]), len(man["layers"])
    if n_diff != n_layers:
        raise ImageFailure(f"{where}: manifest {man_digest} has {n_layers} layers but its "
                           f"config lists {n_diff} diff_ids")
    return man, config


def plan(store: Store, man: dict, config: dict) -> list[LayerStep]:
    """Every layer of the image, lowest first, marked present or to fetch."""
    steps: list[LayerStep] = []
    parent: str | None = None
    for layer, diff_id in zip(man["layers"], config["rootfs"]["diff_ids"], strict=True):
        chain = diff_id if parent is None else oci.sha256(f"{parent} {diff_id}".encode())
        present = store.has_layer(chain) and store.has_blob(layer["digest"])
        steps.append(LayerStep(layer["mediaType"], layer["digest"], layer["size"], diff_id,
                               parent, chain, present))
        parent = chain
    return steps


def commit(store: Store, man_bytes: bytes, man_digest: str, media_type: str,
           cfg_bytes: bytes, cfg_digest: str, config: dict,
           names: Iterable[str] = ()) -> str:
    """Store the manifest and config blobs, then index the image; return its id."""
    store.put_blob(cfg_bytes, cfg_digest, "config")
    store.put_blob(man_bytes, man_digest, "manifest")
    return store.add_image(man_digest, media_type, config, names)
