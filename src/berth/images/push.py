"""`berth push`: an image of the store to a registry, sending only the blobs it lacks.

For each blob (layers, then the config): HEAD it in the destination
repository and skip it if present; else, when the store knows the blob was
pulled from or pushed to another repository of the same registry (its
repo@digest references), ask the registry to mount it from there; else upload
it: one PUT for a small blob, PATCH chunks for a big one. The manifest goes
last, byte for byte as stored, so its digest does not change. A failed
upload is started again from the beginning (a few times) before giving up.

Blobs go up `concurrency` at a time, each thread with its own connection
(`Registry.sibling()`): http11's socket I/O releases the GIL. The first
failure stops the other threads between requests and is raised; the store's
SQLite connection is only used from the calling thread.
"""

from __future__ import annotations

import os
import threading

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


class _Stopped(Exception):
    """Another thread's blob failed: this one gives up between requests."""


def push(store: Store, ref_or_id: str, dest_ref: str | None = None,
         tls_verify: bool | None = None, progress: Progress | None = None, *,
         credentials: Credentials | None = None, chunk_size: int = CHUNK_SIZE,
         concurrency: int = CONCURRENCY) -> str:
    """Push a local image (a name or id) to `dest_ref` (default: its own name); return the
    manifest digest."""
    image_id = store.resolve(ref_or_id)
    dest = parse(dest_ref or ref_or_id)
    if dest.digest and not dest.tag:
        raise ImageFailure(f"push to {dest}: name a tag, not a digest")
    report: Progress = Throttle(progress) if progress is not None else discard
    if credentials is None:
        from berth.images.auth import lookup
        credentials = lookup(dest.registry, dest.repository)
    with Registry(dest.registry, credentials=credentials, tls_verify=tls_verify) as reg:
        digest = _push(store, reg, image_id, dest, report, chunk_size, concurrency)
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


def _push(store: Store, reg: Registry, image_id: str, dest: Reference, report: Progress,
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
    paths = {digest: store.blob_path(digest) for digest, _ in blobs}
    lock = threading.Lock()  # around the queue and the progress sink

    def say(id: str, status: str, current: int | None = None,
            total: int | None = None) -> None:
        with lock:
            report(id, status, current, total)

    todo = list(enumerate(blobs))
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(client: Registry) -> None:
        try:
            while not stop.is_set():
                with lock:
                    if not todo:
                        return
                    i, (digest, size) = todo.pop(0)
                _push_blob(client, repo, paths[digest], digest, size, sources.get(digest, []),
                           scopes, discard if i == len(blobs) - 1 else say, chunk_size, stop)
        except _Stopped:
            pass
        except BaseException as e:
            errors.append(e)
            stop.set()
        finally:
            client.close()

    reg.ping()
    reg.auth_headers(scopes)  # one token, which every thread's sibling shares
    threads = [threading.Thread(target=work, args=(reg.sibling(),), name=f"push-{n}",
                                daemon=True)
               for n in range(max(1, min(concurrency, len(blobs))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:  # KeyboardInterrupt: the threads stop at their next request
        stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    tag = dest.tag or "latest"
    digest = reg.put_manifest(repo, tag, man_bytes, img["media_type"])
    report("", f"{tag}: digest: {digest} size: {len(man_bytes)}")
    return digest


def _push_blob(reg: Registry, repo: str, path: str, digest: str, size: int,
               mount_from: list[str], scopes: tuple[str, ...], report: Progress,
               chunk_size: int, stop: threading.Event) -> None:
    if reg.head_blob(repo, digest, scopes) is not None:
        report(digest, "Layer already exists")
        return
    location = None
    for src in mount_from:
        location = reg.start_upload(repo, scopes, digest, mount_from=src)
        if location is None:
            report(digest, f"Mounted from {src}")
            return
        break  # the registry could not mount: it opened an upload instead, use it
    for attempt in range(ATTEMPTS):
        if stop.is_set():
            raise _Stopped
        if location is None:
            location = reg.start_upload(repo, scopes)
        if location is None:  # a registry may mount by digest on its own
            report(digest, "Layer already exists")
            return
        try:
            _upload(reg, path, location, digest, size, scopes, report, chunk_size, stop)
            report(digest, "Pushed")
            return
        except (RegistryError, _Stopped) as e:
            reg.cancel_upload(location, scopes)
            location = None
            if isinstance(e, (Unauthorized, _Stopped)) or attempt == ATTEMPTS - 1:
                raise
            report(digest, f"Retrying in {attempt + 1} second{'s' if attempt else ''}")
            stop.wait(attempt + 1)


def _upload(reg: Registry, path: str, location: str, digest: str, size: int,
            scopes: tuple[str, ...], report: Progress, chunk_size: int,
            stop: threading.Event) -> None:
    if os.path.getsize(path) != size:
        raise ImageFailure(f"blob {digest} in the store is {os.path.getsize(path)} bytes, the "
                           f"manifest says {size}")
    with open(path, "rb") as f:
        if size <= chunk_size:
            data = f.read()
            report(digest, "Pushing", 0, size)
            reg.upload_monolithic(location, digest, data, scopes)
            report(digest, "Pushing", size, size)
            return
        sent = 0
        while sent < size:
            if stop.is_set():
                raise _Stopped
            data = f.read(chunk_size)
            if not data:
                raise RegistryError(f"blob {digest} ended at {sent} of {size} bytes")
            location = reg.upload_chunk(location, data, sent, scopes)
            sent += len(data)
            report(digest, "Pushing", sent, size)
    reg.finish_upload(location, digest, scopes)
