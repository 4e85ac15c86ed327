"""One layer fetched and unpacked in a process of its own, so that a pull's layers use every core.

pull.py starts one per layer (`python -I -S`, given the parent's sys.path;
some before it knows the layers, so that their start overlaps the manifest's
round trips) and writes it one JSON line on stdin, its job: the blob's URL,
the headers to send (the registry's token among them), its digest, size and
compression, how to speak TLS, and where to write. The worker downloads
the blob itself (blob_stream.py's BlobStream: resumed after a broken
connection), writes it into a temp file and the tree into a directory, both
named by the parent under the store's tmp/, fsyncs the blob, and prints one
JSON line: what it found (digests and sizes) or the error.

On the way it prints `p <bytes>` lines (progress), and `auth` when the
registry answers 401 (a token that expired): the parent then writes a JSON
line of fresh headers on its stdin. It checks nothing against the
descriptor but the size and commits nothing: the parent verifies the
digests and moves the blob and the directory into place, or kills the
worker and removes both. A worker whose parent died finds its stdin closed;
one whose stdin ends before a job exits quietly.

What it must not do: open the store's database, or import more than the
fetch and the unpack need (it starts once per layer: see docs/architecture.md).
"""

from __future__ import annotations

import os
import sys

_pending = bytearray()


def _line() -> bytes:
    """One line from stdin (b"" at its end); what follows it stays for the next call."""
    while (end := _pending.find(b"\n")) < 0:
        data = os.read(0, 65536)
        if not data:
            return b""
        _pending.extend(data)
    line = bytes(_pending[:end])
    del _pending[:end + 1]
    return line


def main(argv: list[str]) -> int:
    """The job comes on stdin (argv is not used)."""
    from berth.images import http11, layers
    from berth.images.blob_stream import BlobStream, blob_opener
    from berth.images.errors import DigestMismatch, ImageFailure, SizeMismatch
    from berth.oci import jsonfast

    first = _line()
    if not first:
        return 0  # started ahead and not needed
    out: dict
    pool = None
    digest = "?"
    try:
        job = jsonfast.loads(first)
        digest, root, blob_path = job["digest"], job["root"], job["blob"]
        pool = http11.Pool(tls_verify=job["tls_verify"], timeout=job["timeout"])

        def reauth() -> dict[str, str]:
            os.write(1, b"auth\n")
            line = _line()
            return jsonfast.loads(line) if line else {}

        size = job["size"]
        step, shown = max(size // 50, 1 << 20), 0

        def progress(offset: int) -> None:
            nonlocal shown
            if offset - shown >= step or offset == size:
                os.write(1, b"p %d\n" % offset)
                shown = offset

        opener = blob_opener(pool, job["url"], job["headers"], job["what"], job["host"], reauth)
        stream = BlobStream(opener, job["what"], size, progress)
        fd = os.open(blob_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            got = layers.unpack_into(stream.read, job["compression"], root, fd, f"layer {digest}",
                                     digest, verified=True)  # by the parent
            os.fsync(fd)
        finally:
            os.close(fd)
            stream.close()
        out = {"blob": got.blob, "blob_size": got.blob_size, "diff_id": got.diff_id,
               "size": got.size}
    except (DigestMismatch, SizeMismatch) as e:
        out = {"error": type(e).__name__, "message": str(e), "expected": e.expected,
               "actual": e.actual}
    except ImageFailure as e:
        out = {"error": type(e).__name__, "message": str(e)}
    except Exception as e:  # e.g. ENOSPC: the parent turns it into an ImageFailure
        out = {"error": "", "message": f"{type(e).__name__}: {e}"}
    finally:
        if pool is not None:
            pool.close()
    os.write(1, (jsonfast.dumps(out) + "\n").encode())
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
