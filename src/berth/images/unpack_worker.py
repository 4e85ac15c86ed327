"""One layer unpacked in a process of its own, so that a pull's layers unpack on every core.

pull.py starts one per layer (`python -I -S`, given the parent's sys.path):
the compressed stream arrives on stdin as it downloads; the worker writes the
blob into a temp file and the tree into a directory, both named by the parent
under the store's tmp/, fsyncs the blob, and prints one JSON line: what it
found (digests and sizes) or the error. It checks nothing against the
descriptor and commits nothing: the parent verifies the digests and moves the
blob and the directory into place, or kills the worker and removes both. A
worker whose stdin ends early (its parent died) fails on truncated data.

What it must not do: open the store's database, or read anything but stdin.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    """argv: compression, layer directory, blob temp file, digest (for messages)."""
    compression, root, blob_path, digest = argv
    from berth.images import layers
    from berth.images.errors import DigestMismatch, ImageFailure
    from berth.oci import jsonfast

    out: dict
    try:
        fd = os.open(blob_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            got = layers.unpack_into(lambda n: os.read(0, n), compression, root, fd,
                                     f"layer {digest}", digest, verified=True)  # by the parent
            os.fsync(fd)
        finally:
            os.close(fd)
        out = {"blob": got.blob, "blob_size": got.blob_size, "diff_id": got.diff_id,
               "size": got.size}
    except DigestMismatch as e:
        out = {"error": "DigestMismatch", "message": str(e), "expected": e.expected,
               "actual": e.actual}
    except ImageFailure as e:
        out = {"error": type(e).__name__, "message": str(e)}
    except Exception as e:  # e.g. ENOSPC: the parent turns it into an ImageFailure
        out = {"error": "", "message": f"{type(e).__name__}: {e}"}
    os.write(1, (jsonfast.dumps(out) + "\n").encode())
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
