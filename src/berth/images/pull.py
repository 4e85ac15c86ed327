"""`berth pull`: an image from a registry into the store, layers unpacked while they stream.

The manifest is negotiated (OCI or Docker schema2, manifest or index;
linux/amd64 chosen from an index) and verified against its digest; the
config comes next. Each missing layer then streams from the registry
straight into layers.unpack, which runs in a worker thread (bounded, several
layers at once): the thread reads through a small bridge that asks the event
loop for the next bytes, so the download and the unpack proceed together and
the compressed blob is hashed, kept and unpacked in one pass.

Nothing is indexed until everything is in place: a failing layer stops the
others, every worker is waited for (each removes its half-unpacked
directory), and the image is neither indexed nor tagged. Layers already
complete stay in the store (verified, unreferenced; `image prune` removes
them), as podman keeps them for the next attempt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from berth.images import layers, manifest_import
from berth.images.errors import ImageFailure, ImageNotFound, RegistryError
from berth.images.progress import Throttle, discard
from berth.images.reference import parse
from berth.images.registry import Registry
from berth.oci import image as oci
from berth.oci import jsonfast
from berth.oci.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.images.auth import Credentials
    from berth.images.progress import Progress
    from berth.images.reference import Reference
    from berth.images.registry import BlobStream
    from berth.images.store import Store

CONCURRENCY = 4  # layers fetched and unpacked at once (docker: 3)
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")


class PullCancelled(ImageFailure):
    """Another layer failed (or the pull was interrupted): this one stopped."""


def pull(store: Store, ref: str, tls_verify: bool | None = None,
         progress: Progress | None = None, *, credentials: Credentials | None = None,
         platform: str = "linux/amd64", concurrency: int = CONCURRENCY) -> str:
    """Pull `ref` into the store, tag it with the reference; return the image id."""
    return asyncio.run(pull_async(store, ref, tls_verify=tls_verify, progress=progress,
                                  credentials=credentials, platform=platform,
                                  concurrency=concurrency))


async def pull_async(store: Store, ref: str, *, tls_verify: bool | None = None,
                     progress: Progress | None = None, credentials: Credentials | None = None,
                     platform: str = "linux/amd64", concurrency: int = CONCURRENCY) -> str:
    """pull() for callers that already run an event loop (the Docker API server)."""
    r = parse(ref)
    report: Progress = Throttle(progress) if progress is not None else discard
    if credentials is None:
        from berth.images.auth import lookup
        credentials = lookup(r.registry, r.repository)
    async with Registry(r.registry, credentials=credentials, tls_verify=tls_verify) as reg:
        return await _pull(store, reg, r, report, platform, concurrency)


async def _pull(store: Store, reg: Registry, r: Reference, report: Progress, platform: str,
                concurrency: int) -> str:
    repo = r.repository
    report("", f"{r.tag or r.digest}: Pulling from {r.short}")
    top_bytes, top_type, top_digest = await reg.get_manifest(repo, r.digest or r.tag or "latest")
    man_bytes, man_type, man_digest = await _resolve_index(reg, repo, top_bytes, top_type,
                                                           top_digest, platform)
    cfg_desc = _config_descriptor(man_bytes, man_digest)
    cfg_bytes = await reg.get_blob(repo, cfg_desc["digest"], cfg_desc["size"])
    where = f"{reg.host}/{repo}"
    man, config = manifest_import.check(man_bytes, man_digest, cfg_bytes, where)
    steps = manifest_import.plan(store, man, config)
    names = [str(r.with_tag(r.tag))] if r.tag else []
    up_to_date = all(s.present for s in steps) and _have_image(store,
                                                                f"{r.name}@{man_digest}")
    if not up_to_date:
        for s in steps:
            report(s.digest, "Already exists" if s.present else "Pulling fs layer")
        await _fetch_layers(store, reg, repo, [s for s in steps if not s.present], report,
                            concurrency)
    image_id = manifest_import.commit(store, man_bytes, man_digest, man_type, cfg_bytes,
                                      cfg_desc["digest"], config, names)
    store.note_digest_ref(f"{r.name}@{top_digest}", image_id)
    report("", f"Digest: {top_digest}")
    report("", f"Status: {'Image is up to date' if up_to_date else 'Downloaded newer image'} "
               f"for {r}")
    return image_id


def _have_image(store: Store, digest_ref: str) -> bool:
    try:
        store.resolve(digest_ref)
        return True
    except ImageNotFound:
        return False


def _media_type(data: bytes, content_type: str, where: str) -> tuple[str, dict]:
    """The document's media type (its own field first, then Content-Type, then its shape)."""
    if content_type in SCHEMA1:
        raise ImageFailure(f"{where}: a Docker schema 1 manifest: not supported (deprecated "
                           "since 2019); push the image again with a current client")
    try:
        doc = jsonfast.loads(data)
    except ValueError as e:
        raise ImageFailure(f"{where}: the manifest is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageFailure(f"{where}: the manifest is not a JSON object")
    mt = doc.get("mediaType")
    if not isinstance(mt, str) or not mt:
        known = content_type in oci.MANIFEST_TYPES + oci.INDEX_TYPES
        mt = content_type if known else oci.media_type_of(doc)
    if doc.get("schemaVersion") == 1:
        mt = SCHEMA1[0]
    if mt in SCHEMA1:
        raise ImageFailure(f"{where}: a Docker schema 1 manifest: not supported (deprecated "
                           "since 2019); push the image again with a current client")
    if mt not in oci.MANIFEST_TYPES + oci.INDEX_TYPES:
        raise ImageFailure(f"{where}: unsupported manifest media type {mt!r} (berth reads OCI "
                           "and Docker schema 2 manifests and indexes)")
    return mt, doc


async def _resolve_index(reg: Registry, repo: str, data: bytes, content_type: str,
                         digest: str, platform: str) -> tuple[bytes, str, str]:
    """The platform's manifest: the document itself, or the one an index points to."""
    where = f"{reg.host}/{repo}@{digest}"
    mt, doc = _media_type(data, content_type, where)
    if mt in oci.MANIFEST_TYPES:
        return data, mt, digest
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    try:
        desc = oci.select_platform(oci.index(doc, where), os_, arch, variant or None)
    except SpecError as e:
        raise ImageFailure(str(e).replace("index:", f"{where}:", 1)) from None
    sub, sub_type, sub_digest = await reg.get_manifest(repo, desc["digest"])
    if len(sub) != desc["size"]:
        raise ImageFailure(f"{where}: manifest {desc['digest']} is {len(sub)} bytes, the index "
                           f"says {desc['size']}")
    mt, _ = _media_type(sub, sub_type or desc["mediaType"], f"{reg.host}/{repo}@{sub_digest}")
    if mt not in oci.MANIFEST_TYPES:
        raise ImageFailure(f"{where}: the {platform} entry is not an image manifest ({mt})")
    return sub, mt, sub_digest


def _config_descriptor(man_bytes: bytes, digest: str) -> dict:
    try:
        cfg = jsonfast.loads(man_bytes)["config"]
        oci.descriptor(cfg, "config", f"manifest {digest}")
    except (KeyError, TypeError, SpecError) as e:
        raise ImageFailure(f"manifest {digest}: no valid config descriptor ({e})") from None
    if cfg["size"] > 4 << 20:
        raise ImageFailure(f"manifest {digest}: config of {cfg['size']} bytes: too big")
    return cfg


# --- layers: streamed from the loop into worker threads --------------------------------


class _ThreadReader:
    """A blocking read() for a worker thread over a BlobStream that lives on the loop."""

    MIN_READ = 1 << 20

    def __init__(self, stream: BlobStream, loop: asyncio.AbstractEventLoop,
                 cancel: threading.Event) -> None:
        self.stream = stream
        self.loop = loop
        self.cancel = cancel
        self.buf = b""
        self.pos = 0
        self.eof = False

    def _fetch(self) -> bytes:
        if self.cancel.is_set():
            raise PullCancelled(f"layer {self.stream.digest}: stopped (another layer failed)")
        fut = asyncio.run_coroutine_threadsafe(self.stream.read(self.MIN_READ), self.loop)
        while True:
            try:
                return fut.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                if self.cancel.is_set():
                    fut.cancel()
                    raise PullCancelled(f"layer {self.stream.digest}: stopped") from None

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = [self.buf[self.pos:]]
            self.buf, self.pos = b"", 0
            while not self.eof:
                data = self._fetch()
                self.eof = not data
                chunks.append(data)
            return b"".join(chunks)
        if self.pos >= len(self.buf):
            if self.eof:
                return b""
            self.buf, self.pos = self._fetch(), 0
            self.eof = not self.buf
        if self.pos == 0 and n >= len(self.buf):  # the common case: hand the chunk over
            out, self.buf = self.buf, b""
            return out
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out


async def _fetch_layers(store: Store, reg: Registry, repo: str,
                        steps: list[manifest_import.LayerStep], report: Progress,
                        concurrency: int) -> None:
    if not steps:
        return
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    sem = asyncio.Semaphore(concurrency)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(concurrency, len(steps)),
                                                 thread_name_prefix="berth-pull")
    root = store.root

    async def one(step: manifest_import.LayerStep) -> None:
        async with sem:
            if cancel.is_set():
                raise PullCancelled(f"layer {step.digest}: not started")
            got = 0

            def on_data(n: int) -> None:
                nonlocal got
                got += n
                report(step.digest, "Downloading", got, step.size)

            stream = reg.open_blob(repo, step.digest, step.size, on_data)
            reader = _ThreadReader(stream, loop, cancel)
            try:
                await loop.run_in_executor(pool, _unpack, root, reader, step)
            finally:
                await stream.close()
            report(step.digest, "Pull complete")

    tasks = [asyncio.create_task(one(s)) for s in steps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        if not all(t.done() and not t.cancelled() and t.exception() is None for t in tasks):
            cancel.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool.shutdown(wait=True)  # every worker has removed its half-unpacked layer
    errors = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    first = next((e for e in errors if not isinstance(e, PullCancelled)), None) \
        or (errors[0] if errors else None)
    if first is not None:
        if isinstance(first, ImageFailure):
            raise first
        raise RegistryError(f"{reg.host}/{repo}: layer failed: {first}") from first


def _unpack(root: str, reader: _ThreadReader, step: manifest_import.LayerStep) -> None:
    """In a worker thread: unpack one layer through a Store of its own (SQLite is per thread)."""
    from berth.images.store import Store

    st = Store(root)
    try:
        layers.unpack(st, reader, step.media_type, step.digest,  # type: ignore[arg-type]
                      step.diff_id, step.parent, step.size)
    finally:
        st.close()
