"""`berth pull`: an image from a registry into the store, layers unpacked while they stream.

The manifest is negotiated (OCI or Docker schema2, manifest or index;
linux/amd64 chosen from an index) and verified against its digest; the
config comes next. Each missing layer then streams from the registry into
an unpack worker, a process of its own (unpack_worker; several layers at
once, so that unpacking uses every core rather than one under the GIL): the
event loop writes the download into the worker's stdin as it arrives, and
the worker hashes the compressed stream, keeps it as a temp blob, decompresses,
hashes the tar and extracts it, all in one pass. The worker commits nothing:
this side checks both digests and the size it reports, then moves the blob
and the directory into place and indexes the layer.

Nothing is indexed until everything is in place: a failing layer stops the
others (their tasks are cancelled: each kills and reaps its worker, then
removes its temp blob and half-unpacked directory), and the image is neither
indexed nor tagged. Layers already complete stay in the store (verified,
unreferenced; `image prune` removes them), as podman keeps them for the next
attempt.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

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


# --- layers: streamed from the loop into worker processes ------------------------------

# the worker starts without site (fast) and finds berth and its dependencies on the
# parent's sys.path, whatever launched the parent (the venv, the lean launcher, tests)
WORKER = ("import sys\nsys.path[:0] = sys.argv[1].split('\\n')\n"
          "from berth.images.unpack_worker import main\nsys.exit(main(sys.argv[2:]))\n")
PIPE_SIZE = 1 << 20  # F_SETPIPE_SZ: fewer wake-ups per megabyte than the default 64 KiB


async def _fetch_layers(store: Store, reg: Registry, repo: str,
                        steps: list[manifest_import.LayerStep], report: Progress,
                        concurrency: int) -> None:
    if not steps:
        return
    sem = asyncio.Semaphore(concurrency)

    async def one(step: manifest_import.LayerStep) -> None:
        async with sem:
            await _fetch_layer(store, reg, repo, step, report)
            report(step.digest, "Pull complete")

    tasks = [asyncio.create_task(one(s)) for s in steps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for t in tasks:
            t.cancel()  # a failed layer stops the others (a no-op for those already done)
        await asyncio.gather(*tasks, return_exceptions=True)  # each killed its worker and
        # removed what it had written
    errors = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if errors:
        first = next((e for e in errors if not isinstance(e, PullCancelled)), errors[0])
        if isinstance(first, ImageFailure):
            raise first
        raise RegistryError(f"{reg.host}/{repo}: layer failed: {first}") from first


async def _fetch_layer(store: Store, reg: Registry, repo: str,
                       step: manifest_import.LayerStep, report: Progress) -> None:
    """Stream one layer into an unpack worker; commit what it made once it is verified."""
    compression = layers.compression_of(step.media_type)
    what = f"layer {step.digest}"
    work = store.temp_path("layer")
    root = os.path.join(work, "diff")
    blob = store.temp_path("blob")
    os.makedirs(root, 0o755)
    proc: asyncio.subprocess.Process | None = None
    readers: list[asyncio.Task] = []
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-c", WORKER, "\n".join(p for p in sys.path if p),
            compression, root, blob, step.digest, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        readers = [asyncio.create_task(proc.stdout.read()), asyncio.create_task(proc.stderr.read())]
        _widen_pipe(proc.stdin)
        got = 0

        def on_data(n: int) -> None:
            nonlocal got
            got += n
            report(step.digest, "Downloading", got, step.size)

        stream = reg.open_blob(repo, step.digest, step.size, on_data)
        try:
            while data := await stream.read(PIPE_SIZE):
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker stopped early: its answer says why
        finally:
            await stream.close()
        proc.stdin.close()
        out, err = await readers[0], await readers[1]
        await proc.wait()
        result = _answer(what, out, err, proc.returncode)
        result.check(what, step.digest, step.size, step.diff_id)
    except BaseException:
        for r in readers:
            r.cancel()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        layers.remove_quietly(blob)
        shutil.rmtree(work, ignore_errors=True)
        raise
    store.commit_blob(blob, result.blob)
    store.note_layer_blob(result.diff_id, result.blob, step.media_type)
    store.add_layer(step.chain_id, result.diff_id, step.parent, work, result.size)


def _widen_pipe(stdin: asyncio.StreamWriter) -> None:
    pipe = stdin.get_extra_info("pipe")
    try:
        import fcntl
        fcntl.fcntl(pipe.fileno(), 1031, PIPE_SIZE)  # F_SETPIPE_SZ
    except (OSError, AttributeError, ValueError):
        pass  # above /proc/sys/fs/pipe-max-size for an unprivileged user: keep the default


def _answer(what: str, out: bytes, err: bytes, rc: int | None) -> layers.Unpacked:
    """The worker's JSON line as an Unpacked, or its error raised as an ImageFailure."""
    try:
        doc = jsonfast.loads(out.decode())
        if not isinstance(doc, dict):
            raise ValueError(doc)
    except (ValueError, UnicodeDecodeError):
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise ImageFailure(f"{what}: the unpack worker failed (status {rc}): "
                           f"{' '.join(tail) or 'no message'}") from None
    if "error" in doc:
        from berth.images import errors
        if doc["error"] == "DigestMismatch":
            raise errors.DigestMismatch(what, doc["expected"], doc["actual"])
        cls = getattr(errors, doc["error"], None) if doc["error"] else None
        if cls not in (errors.UnsafeLayer, errors.ArchiveError):
            cls = ImageFailure
        message = doc["message"] if doc["error"] else f"{what}: unpack failed: {doc['message']}"
        raise cls(message)
    return layers.Unpacked(doc["blob"], doc["blob_size"], doc["diff_id"], doc["size"])
