"""A blob download that survives broken connections, for the main process and unpack workers.

What it owns: `blob_opener` (a GET of a blob from an offset, with the
registry's headers; a 401 asks for fresh headers once) and `BlobStream`,
which resumes after a broken connection (with Range when the server honours
it, else by re-reading and skipping what was already delivered), so the
consumer never sees the break. An unpack worker imports this module, not
registry.py: it gets the URL and the headers from the main process.

What it must not do: authenticate (registry.py does, and hands over
headers), touch the store, or import more than http11 and registry_base.
"""

from __future__ import annotations

import time

from berth.images import http11
from berth.images.errors import RegistryError, SizeMismatch
from berth.images.registry_base import (
    RETRIES,
    BlobNotFound,
    Unauthorized,
    Unreachable,
    error_text,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

TRANSIENT = (429, 500, 502, 503, 504)  # statuses a blob download retries like a broken connection


def tls_failed(host: str, e: Exception) -> RegistryError:
    """The error for a TLS handshake that failed, saying what to do."""
    return RegistryError(f"{host}: TLS failed ({e}); for a registry without a valid "
                         "certificate use --tls-verify=false")


def read_small(resp: http11.Response, limit: int = 1 << 16) -> bytes:
    """An error or small answer's body, read and the response closed (b"" if it breaks)."""
    try:
        data = resp.read_all(limit)
    except http11.HTTPFailure:
        data = b""
    resp.close()
    return data


def blob_opener(pool: http11.Pool, url: str, headers: dict[str, str], what: str, host: str,
                reauth: Callable[[], dict[str, str]] | None = None
                ) -> Callable[[int], http11.Response]:
    """open(offset) -> a 200 or 206 response for the blob from `offset` on.

    Unreachable (which a BlobStream retries) for a broken connection or a
    transient status; a 401 asks `reauth` for new headers once (a token that
    expired) before it is Unauthorized; a 404 is BlobNotFound.
    """
    current = dict(headers)

    def open_(offset: int) -> http11.Response:
        nonlocal current
        for attempt in (0, 1):
            h = dict(current)
            if offset:
                h["Range"] = f"bytes={offset}-"
            try:
                resp = http11.fetch(pool, "GET", url, h)[0]
            except http11.TLSFailed as e:
                raise tls_failed(host, e) from None
            except http11.HTTPFailure as e:
                raise Unreachable(f"cannot reach registry {host}: {e}") from None
            if resp.status in (200, 206):
                return resp
            body = read_small(resp)
            if resp.status == 401 and attempt == 0 and reauth is not None:
                current = reauth()
                continue
            break
        if resp.status == 401:
            raise Unauthorized(f"{what}: authentication required: berth login {host}")
        if resp.status == 404:
            raise BlobNotFound(f"{what} not found in the registry")
        if resp.status in TRANSIENT:
            raise Unreachable(f"{what}: {error_text(resp.status, body)}")
        raise RegistryError(f"{what}: {error_text(resp.status, body)}")

    return open_


class BlobStream:
    """A blob download that survives broken connections; read() never repeats a byte.

    After a break it asks for `Range: bytes=<offset>-`; a server that answers
    200 instead of 206 sends the whole blob again, and the bytes already
    delivered are skipped. A response that ends cleanly before `size` is a
    truncated blob (an error, not retried); one longer than `size` is refused.
    """

    def __init__(self, open_: Callable[[int], http11.Response], what: str, size: int | None,
                 on_data: Callable[[int], None] | None = None) -> None:
        self.open_ = open_
        self.what = what
        self.size = size
        self.on_data = on_data
        self.offset = 0
        self.resp: http11.Response | None = None
        self.skip = 0
        self.eof = False
        self.failures = 0
        self.restarts = 0
        self.last_break = -1

    def _open(self) -> None:
        resp = self.open_(self.offset)
        start = 0
        if resp.status == 206:
            rng = resp.headers.get("content-range", "")
            if not rng.startswith(f"bytes {self.offset}-"):
                resp.close()
                raise RegistryError(f"{self.what}: asked for bytes from {self.offset}, got "
                                    f"{rng or 'no Content-Range'}")
            start = self.offset
        self.skip = self.offset - start  # a 200 after a break: the bytes we had come again
        if self.size is not None and resp.length is not None \
                and resp.length != self.size - start:
            resp.close()
            raise SizeMismatch(self.what, self.size, start + resp.length)
        self.resp = resp

    def _broken(self, e: BaseException) -> None:
        """Count a break (breaks in a row without a byte of progress give up) and wait."""
        if self.resp is not None:
            self.resp.keep = False
            self.resp.close()
            self.resp = None
        self.failures = 1 if self.offset > self.last_break else self.failures + 1
        self.last_break = self.offset
        self.restarts += 1
        if self.failures > RETRIES or self.restarts > 10 * RETRIES:
            raise RegistryError(f"{self.what}: download failed after {self.restarts} attempts "
                                f"at byte {self.offset}: {e.__class__.__name__}: {e}") from None
        time.sleep(min(0.05 * 2 ** (self.failures - 1), 2.0))

    def read(self, n: int = 1 << 20) -> bytes:
        """Up to n bytes; b"" at the end of the blob."""
        while not self.eof:
            if self.resp is None:
                try:
                    self._open()
                except Unreachable as e:
                    self._broken(e)
                    continue
            assert self.resp is not None
            try:
                data = self.resp.read(n)
            except http11.HTTPFailure as e:
                self._broken(e)
                continue
            if not data:
                self.resp.close()
                self.resp = None
                if self.skip:
                    self._broken(ConnectionError("short answer after a restart"))
                    continue
                if self.size is not None and self.offset < self.size:
                    raise SizeMismatch(f"{self.what} is truncated", self.size, self.offset)
                self.eof = True
                break
            if self.skip:
                drop = min(self.skip, len(data))
                self.skip -= drop
                data = data[drop:]
                if not data:
                    continue
            self.offset += len(data)
            if self.size is not None and self.offset > self.size:
                raise SizeMismatch(self.what, self.size, self.offset)
            if self.on_data is not None:
                self.on_data(self.offset)
            return data
        return b""

    def close(self) -> None:
        if self.resp is not None:
            self.resp.close()
            self.resp = None
