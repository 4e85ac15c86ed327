"""`berth push`: an image of the store to a registry, sending only the blobs it lacks.

For each blob (layers, then the config): HEAD it in the destination
repository and skip it if present; else, when the store knows the blob was
pulled from or pushed to another repository of the same registry (its
repo@digest references), ask the registry to mount it from there; else upload
it: one PUT for a small blob, PATCH chunks for a big one. The manifest goes
last, byte for byte as stored, so its digest does not change. A failed
upload is started again from the beginning (a few times) before giving up.
"""

from __future__ import annotations

import asyncio
import os

from berth.images.errors import ImageFailure, RegistryError
from berth.images.progress import Throttle, discard
from berth.images.reference import parse
from berth.images.registry import Registry, Unauthorized

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.images.auth import Credentials
    from berth.images.progress import Progress
    from berth.images.reference import Reference
    from berth.images.store import Store

CHUNK_SIZE = 16 << 20  # bigger blobs are sent in PATCH chunks of this size
CONCURRENCY = 4
ATTEMPTS = 3


def push(store: Store, ref_or_id: str, dest_ref: str | None = None,
         tls_verify: bool | None = None, progress: Progress | None = None, *,
         credentials: Credentials | None = None, chunk_size: int = CHUNK_SIZE,
         concurrency: int = CONCURRENCY) -> str:
    """Push a local image (a name or id) to `dest_ref` (default: its own name); return the
    manifest digest."""
    return asyncio.run(push_async(store, ref_or_id, dest_ref, tls_verify=tls_verify,
                                  progress=progress, credentials=credentials,
                                  chunk_size=chunk_size, concurrency=concurrency))


async def push_async(store: Store, ref_or_id: str, dest_ref: str | None = None, *,
                     tls_verify: bool | None = None, progress: Progress | None = None,
                     credentials: Credentials | None = None, chunk_size: int = CHUNK_SIZE,
                     concurrency: int = CONCURRENCY) -> str:
    """push() for callers that already run an event loop."""
    image_id = store.resolve(ref_or_id)
    dest = parse(dest_ref or ref_or_id)
    if dest.digest and not dest.tag:
        raise ImageFailure(f"push to {dest}: name a tag, not a digest")
    report: Progress = Throttle(progress) if progress is not None else discard
    if credentials is None:
        from berth.images.auth import lookup
        credentials = lookup(dest.registry, dest.repository)
    async with Registry(dest.registry, credentials=credentials, tls_verify=tls_verify) as reg:
        digest = await _push(store, reg, image_id, dest, report, chunk_size, concurrency)
    store.note_digest_ref(f"{dest.name}@{digest}", image_id)
    return digest


def mount_sources(store: Store, registry: str, repository: str) -> dict[str, list[str]]:
    """blob digest -> other repositories of `registry` known to hold it (pulled or pushed)."""
    sources: dict[str, list[str]] = {}
    for img in store.images():
        repos = []
        for name in store.digest_names(img["id"]):
            r = parse(name)
            if r.registry == registry and r.repository != repository \
                    and r.repository not in repos:
                repos.append(r.repository)
        if not repos:
            continue
        man = store.manifest(img["id"])
        for d in [man["config"]["digest"], *(layer["digest"] for layer in man["layers"])]:
            have = sources.setdefault(d, [])
            have += [r for r in repos if r not in have]
    return sources


async def _push(store: Store, reg: Registry, image_id: str, dest: Reference, report: Progress,
                chunk_size: int, concurrency: int) -> str:
    repo = dest.repository
    img = store.image(image_id)
    man_bytes = store.read_blob(img["manifest"])
    man = store.manifest(image_id)
    report("", f"The push refers to repository [{dest.name}]")
    sources = mount_sources(store, dest.registry, repo)
    blobs = [(layer["digest"], layer["size"]) for layer in man["layers"]]
    blobs.append((man["config"]["digest"], man["config"]["size"]))
    for digest, _ in blobs:
        if not store.has_blob(digest):
            raise ImageFailure(f"image {image_id[7:19]}: blob {digest} is not in the store: "
                               "cannot push (pull or load the image again)")
    mount_repos = sorted({r for d, _ in blobs for r in sources.get(d, [])})
    scopes = (f"repository:{repo}:pull,push", *(f"repository:{r}:pull" for r in mount_repos))
    for digest, _ in blobs[:-1]:
        report(digest, "Preparing")
    sem = asyncio.Semaphore(concurrency)

    async def one(digest: str, size: int, quiet: bool) -> None:
        async with sem:
            await _push_blob(store, reg, repo, digest, size, sources.get(digest, []), scopes,
                             discard if quiet else report, chunk_size)

    tasks = [asyncio.create_task(one(d, s, i == len(blobs) - 1))
             for i, (d, s) in enumerate(blobs)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    tag = dest.tag or "latest"
    digest = await reg.put_manifest(repo, tag, man_bytes, img["media_type"])
    report("", f"{tag}: digest: {digest} size: {len(man_bytes)}")
    return digest


async def _push_blob(store: Store, reg: Registry, repo: str, digest: str, size: int,
                     mount_from: list[str], scopes: tuple[str, ...], report: Progress,
                     chunk_size: int) -> None:
    if await reg.head_blob(repo, digest, scopes) is not None:
        report(digest, "Layer already exists")
        return
    location = None
    for src in mount_from:
        location = await reg.start_upload(repo, scopes, digest, mount_from=src)
        if location is None:
            report(digest, f"Mounted from {src}")
            return
        break  # the registry could not mount: it opened an upload instead, use it
    for attempt in range(ATTEMPTS):
        if location is None:
            location = await reg.start_upload(repo, scopes)
        if location is None:  # a registry may mount by digest on its own
            report(digest, "Layer already exists")
            return
        try:
            await _upload(store, reg, location, digest, size, scopes, report, chunk_size)
            report(digest, "Pushed")
            return
        except RegistryError as e:
            await reg.cancel_upload(location, scopes)
            location = None
            if isinstance(e, Unauthorized) or attempt == ATTEMPTS - 1:
                raise
            report(digest, f"Retrying in {attempt + 1} second{'s' if attempt else ''}")
            await asyncio.sleep(attempt + 1)


async def _upload(store: Store, reg: Registry, location: str, digest: str, size: int,
                  scopes: tuple[str, ...], report: Progress, chunk_size: int) -> None:
    path = store.blob_path(digest)
    if os.path.getsize(path) != size:
        raise ImageFailure(f"blob {digest} in the store is {os.path.getsize(path)} bytes, the "
                           f"manifest says {size}")
    with open(path, "rb") as f:
        if size <= chunk_size:
            data = f.read()
            report(digest, "Pushing", 0, size)
            await reg.upload_monolithic(location, digest, data, scopes)
            report(digest, "Pushing", size, size)
            return
        sent = 0
        while sent < size:
            data = await asyncio.to_thread(f.read, chunk_size)
            if not data:
                raise RegistryError(f"blob {digest} ended at {sent} of {size} bytes")
            location = await reg.upload_chunk(location, data, sent, scopes)
            sent += len(data)
            report(digest, "Pushing", sent, size)
    await reg.finish_upload(location, digest, scopes)
