"""`berth pull`: an image from a registry into the store, layers unpacked while they stream.

The manifest is negotiated (OCI or Docker schema2, manifest or index;
linux/amd64 chosen from an index) and verified against its digest; the
config comes next (registry.py, on http11: no aiohttp or asyncio on this
path). Each missing layer is then fetched and unpacked by an unpack worker,
a process of its own (unpack_worker; several layers at once, so that
unpacking uses every core rather than one under the GIL): the worker gets
the blob's URL and headers, downloads it itself, hashes the compressed
stream, keeps it as a temp blob, decompresses, hashes the tar and extracts
it, all in one pass; no layer byte passes through this process. The worker
commits nothing: this side checks both digests and the size it reports,
then moves the blob and the directory into place and indexes the layer.

Nothing is indexed until everything is in place: a failing layer stops the
others (each worker is killed and reaped, its temp blob and half-unpacked
directory removed), and the image is neither indexed nor tagged; so does an
interrupt (SIGINT) or a cancelled pull_async. Layers already complete stay
in the store (verified, unreferenced; `image prune` removes them), as podman
keeps them for the next attempt.
"""

from __future__ import annotations

import os
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
    import subprocess
    import threading

    from berth.images.auth import Credentials
    from berth.images.progress import Progress
    from berth.images.reference import Reference
    from berth.images.store import Store

CONCURRENCY = 6  # layers fetched and unpacked at once (docker: 3; all 5 of the bench's at once
# finish ~5% sooner than 4 then 1 on two cores)
PRESTART = os.cpu_count() or 1  # workers started before the manifest is known (their start,
# ~20 ms each, overlaps its round trips); killed unused when no layer is missing
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")


class PullCancelled(ImageFailure):
    """The pull was cancelled (pull_async's task, or another layer failed): it stopped."""


def pull(store: Store, ref: str, tls_verify: bool | None = None,
         progress: Progress | None = None, *, credentials: Credentials | None = None,
         platform: str = "linux/amd64", concurrency: int = CONCURRENCY,
         cancel: threading.Event | None = None) -> str:
    """Pull `ref` into the store, tag it with the reference; return the image id.

    `cancel`, when set (from another thread), stops the pull as an interrupt
    does: PullCancelled, workers killed, nothing committed.
    """
    r = parse(ref)
    report: Progress = Throttle(progress) if progress is not None else discard
    if credentials is None:
        from berth.images.auth import lookup
        credentials = lookup(r.registry, r.repository)
    spares = _Spares(min(concurrency, PRESTART))
    try:
        with Registry(r.registry, credentials=credentials, tls_verify=tls_verify) as reg:
            return _pull(store, reg, r, report, platform, concurrency, cancel, spares)
    finally:
        spares.close()


async def pull_async(store: Store, ref: str, *, tls_verify: bool | None = None,
                     progress: Progress | None = None, credentials: Credentials | None = None,
                     platform: str = "linux/amd64", concurrency: int = CONCURRENCY) -> str:
    """pull() for callers that run an event loop (the Docker API server), in a thread.

    Cancelling the awaiting task stops the pull (its workers killed and
    reaped, their files removed) before CancelledError reaches the caller.
    """
    import asyncio
    import threading

    cancel = threading.Event()

    def in_thread() -> str:
        from berth.images.store import Store
        own = Store(store.root)  # a SQLite connection belongs to the thread that opened it
        try:
            return pull(own, ref, tls_verify, progress, credentials=credentials,
                        platform=platform, concurrency=concurrency, cancel=cancel)
        finally:
            own.close()

    done = asyncio.get_running_loop().run_in_executor(None, in_thread)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.gather(done, return_exceptions=True)
        raise


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise PullCancelled("pull cancelled")


def _pull(store: Store, reg: Registry, r: Reference, report: Progress, platform: str,
          concurrency: int, cancel: threading.Event | None, spares: _Spares) -> str:
    repo = r.repository
    report("", f"{r.tag or r.digest}: Pulling from {r.short}")
    top_bytes, top_type, top_digest = reg.get_manifest(repo, r.digest or r.tag or "latest")
    _check(cancel)
    man_bytes, man_type, man_digest = _resolve_index(reg, repo, top_bytes, top_type,
                                                     top_digest, platform)
    cfg_desc = _config_descriptor(man_bytes, man_digest)
    cfg_bytes = reg.get_blob(repo, cfg_desc["digest"], cfg_desc["size"])
    _check(cancel)
    where = f"{reg.host}/{repo}"
    man, config = manifest_import.check(man_bytes, man_digest, cfg_bytes, where)
    steps = manifest_import.plan(store, man, config)
    names = [str(r.with_tag(r.tag))] if r.tag else []
    up_to_date = all(s.present for s in steps) and _have_image(store,
                                                                f"{r.name}@{man_digest}")
    if not up_to_date:
        for s in steps:
            report(s.digest, "Already exists" if s.present else "Pulling fs layer")
        _fetch_layers(store, reg, repo, [s for s in steps if not s.present], report,
                      concurrency, cancel, spares)
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


def _resolve_index(reg: Registry, repo: str, data: bytes, content_type: str,
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
    sub, sub_type, sub_digest = reg.get_manifest(repo, desc["digest"])
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



# --- layers: each fetched and unpacked by a worker process ------------------------------

# the worker starts without site (fast) and finds berth and its dependencies on the
# parent's sys.path, whatever launched the parent (the venv, the lean launcher, tests)
WORKER = ("import sys\nsys.path[:0] = sys.argv[1].split('\\n')\n"
          "from berth.images.unpack_worker import main\nsys.exit(main(sys.argv[2:]))\n")
CANCEL_POLL = 100  # ms between looks at a cancel event (an interrupt needs none)


class _Spares:
    """Unpack workers started ahead, waiting on stdin for a job; more are started on demand."""

    def __init__(self, n: int) -> None:
        self.procs: list[subprocess.Popen] = []
        try:
            for _ in range(n):
                self.procs.append(_spawn())
        except BaseException:
            self.close()
            raise

    def take(self) -> subprocess.Popen:
        return self.procs.pop(0) if self.procs else _spawn()

    def close(self) -> None:
        """Kill and reap the workers no layer needed."""
        while self.procs:
            _reap(self.procs.pop())


def _spawn() -> subprocess.Popen:
    import subprocess
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", WORKER, "\n".join(p for p in sys.path if p)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _reap(proc: subprocess.Popen) -> None:
    if proc.returncode is None:
        proc.kill()
        proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


class _Worker:
    """One layer's unpack worker: given its job, listened to, then committed or aborted."""

    def __init__(self, store: Store, reg: Registry, repo: str,
                 step: manifest_import.LayerStep, report: Progress,
                 proc: subprocess.Popen) -> None:
        self.store, self.reg, self.step, self.report = store, reg, step, report
        self.proc = proc
        self.scopes = (f"repository:{repo}:pull",)
        self.what = f"layer {step.digest}"
        self.work = store.temp_path("layer")
        self.blob = store.temp_path("blob")
        self.out, self.err = bytearray(), bytearray()
        self.answer = b""
        assert proc.stdout is not None and proc.stderr is not None
        self.open = {proc.stdout.fileno(): self.out, proc.stderr.fileno(): self.err}
        root = os.path.join(self.work, "diff")
        try:
            compression = layers.compression_of(step.media_type)
            os.makedirs(root, 0o755)
            url, headers = reg.blob_job(repo, step.digest)
            self._tell({"compression": compression, "root": root, "blob": self.blob,
                        "digest": step.digest, "url": url, "headers": headers,
                        "size": step.size, "tls_verify": reg.tls_verify,
                        "timeout": reg.timeout, "what": f"{reg.host}/{repo}: blob {step.digest}",
                        "host": reg.host})
        except BaseException:
            self.abort()
            raise

    def _tell(self, doc: dict) -> None:
        assert self.proc.stdin is not None
        try:
            os.write(self.proc.stdin.fileno(), (jsonfast.dumps(doc) + "\n").encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker stopped early: its answer says why

    def readable(self, fd: int) -> bool:
        """Take what the worker wrote on `fd`; False once both its pipes ended."""
        data = os.read(fd, 65536)
        if not data:
            del self.open[fd]
            return bool(self.open)
        buf = self.open[fd]
        buf += data
        if buf is self.out:
            while (end := buf.find(b"\n")) >= 0:
                line = bytes(buf[:end])
                del buf[:end + 1]
                self._line(line)
        return True

    def _line(self, line: bytes) -> None:
        if line.startswith(b"p "):
            self.report(self.step.digest, "Downloading", int(line[2:]), self.step.size)
        elif line == b"auth":  # the registry answered 401: a token that expired
            self._tell(self.reg.auth_headers(self.scopes, fresh=True))
        else:
            self.answer = line

    def finish(self) -> None:
        """The worker ended its output: check its answer, then move its layer into place."""
        self.proc.wait()
        try:
            result = _answer(self.what, self.answer + bytes(self.out), bytes(self.err),
                             self.proc.returncode)
            result.check(self.what, self.step.digest, self.step.size, self.step.diff_id)
        except BaseException:
            self.abort()
            raise
        _reap(self.proc)  # closes its pipes
        step = self.step
        self.store.commit_blob(self.blob, result.blob)
        self.store.note_layer_blob(result.diff_id, result.blob, step.media_type)
        self.store.add_layer(step.chain_id, result.diff_id, step.parent, self.work, result.size)
        self.report(step.digest, "Pull complete")

    def abort(self) -> None:
        """Kill and reap the worker, remove what it wrote."""
        _reap(self.proc)
        layers.remove_quietly(self.blob)
        import shutil
        shutil.rmtree(self.work, ignore_errors=True)


def _fetch_layers(store: Store, reg: Registry, repo: str,
                  steps: list[manifest_import.LayerStep], report: Progress,
                  concurrency: int, cancel: threading.Event | None, spares: _Spares) -> None:
    import select

    pending = list(steps)
    running: dict[int, _Worker] = {}  # by each of its pipes
    poll = select.poll()
    try:
        while pending or running:
            while pending and len(set(running.values())) < concurrency:
                w = _Worker(store, reg, repo, pending.pop(0), report, spares.take())
                for fd in w.open:
                    running[fd] = w
                    poll.register(fd, select.POLLIN)
            for fd, _ in poll.poll(CANCEL_POLL if cancel is not None else None):
                w = running[fd]
                if not w.readable(fd):
                    for f in (fd, *w.open):
                        running.pop(f, None)
                    w.finish()
                if fd not in w.open:
                    poll.unregister(fd)
                    running.pop(fd, None)
            _check(cancel)
    except BaseException:
        for w in set(running.values()):  # a failed layer stops the others
            w.abort()
        raise


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
        raise _error(what, doc)
    return layers.Unpacked(doc["blob"], doc["blob_size"], doc["diff_id"], doc["size"])


def _error(what: str, doc: dict) -> ImageFailure:
    """The exception a worker reported, rebuilt as its own class (ImageFailure if unknown)."""
    from berth.images import errors, registry_base
    kinds = {c.__name__: c for c in (
        errors.DigestMismatch, errors.SizeMismatch, errors.UnsafeLayer, errors.ArchiveError,
        RegistryError, registry_base.Unauthorized, registry_base.NotFound,
        registry_base.BlobNotFound, registry_base.Unreachable)}
    cls = kinds.get(doc["error"])
    if cls is None:
        return ImageFailure(doc["message"] if doc["error"]
                            else f"{what}: unpack failed: {doc['message']}")
    e = cls.__new__(cls)
    Exception.__init__(e, doc["message"])  # the worker's message, as it was
    if "expected" in doc:
        e.expected, e.actual = doc["expected"], doc["actual"]  # type: ignore[attr-defined]
    return e
