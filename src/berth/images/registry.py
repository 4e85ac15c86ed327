"""The registry client, on http11: ping and auth, manifests, blobs, uploads.

What it owns: the HTTP conversation with one registry host, for pull, push
and login. The /v2/ ping tells it how to authenticate (a Basic or Bearer
challenge); bearer tokens are fetched from the challenge's realm for the
scopes a request needs and cached; a 401 later (an expired token, a scope not
asked for) is answered once more. Blob downloads are BlobStreams
(blob_stream.py), which resume after a broken connection. Uploads are one
PUT, or PATCH chunks and a closing PUT; a cross-repository mount is a POST
that may answer 201 at once.

A layer's blob is not fetched here but in its unpack worker: `blob_job` hands
it the URL and the headers (the token included), the worker opens its own
BlobStream with `blob_opener`, and asks this side for fresh headers when the
registry answers 401 (an expired token): no layer byte passes through the
main process.

One Registry is one connection per origin, for one thread at a time; push
gives each of its threads a `sibling()`, which shares the auth state.

What it must not do: touch the store, decide which platform to pull, read
credential files, or import aiohttp or asyncio (a pull's start-up cost is
mostly imports: docs/architecture.md, images). Loopback registries
(localhost, 127.0.0.0/8, ::1) are spoken to over plain http, as docker treats
them as insecure by default; `tls_verify=False` elsewhere means https without
certificate checks, falling back to http when the host does not speak TLS.
"""

from __future__ import annotations

import time

from berth.images import http11
from berth.images.blob_stream import BlobStream, blob_opener, read_small, tls_failed
from berth.images.errors import DigestMismatch, RegistryError
from berth.images.registry_base import (
    CONNECT_RETRIES,
    MANIFEST_ACCEPT,
    MAX_MANIFEST,
    RETRIES,
    NotFound,
    Unauthorized,
    Unreachable,
    endpoint_for,
    error_text,
    parse_challenge,
    token_of,
    transport,
)
from berth.oci import image as oci

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from berth.images.auth import Credentials


class Registry:
    """One registry host; use `with Registry(host) as reg:` to close its connections."""

    def __init__(self, host: str, *, credentials: Credentials | None = None,
                 tls_verify: bool | None = None, timeout: float = 60.0) -> None:
        self.host = host
        self.endpoint = endpoint_for(host)
        self.credentials = credentials
        self.scheme, self.tls_verify, self._fallback = transport(self.endpoint, tls_verify)
        self.timeout = timeout
        self.pool = http11.Pool(tls_verify=self.tls_verify, timeout=timeout)
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._pinged = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def sibling(self) -> Registry:
        """Another client for this host, with its own connections, sharing the auth state
        (the challenge as pinged, the token cache): one per thread."""
        other = Registry(self.host, credentials=self.credentials, tls_verify=self.tls_verify,
                         timeout=self.timeout)
        self.ping()
        other.scheme, other._fallback = self.scheme, False
        other._challenge, other._pinged, other._tokens = self._challenge, True, self._tokens
        return other

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.endpoint}{path}"

    # --- auth ----------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: learn the auth challenge (and, with tls_verify off, http or https)."""
        if self._pinged:
            return
        try:
            resp = self._send("GET", self.url("/v2/"))
        except RegistryError:
            if not self._fallback:
                raise
            self.scheme, self._fallback = "http", False
            resp = self._send("GET", self.url("/v2/"))
        body = read_small(resp)
        if resp.status == 401:
            header = resp.headers.get("www-authenticate", "")
            if not header:
                raise Unauthorized(f"{self.host}: the registry answered 401 without a "
                                   "WWW-Authenticate challenge")
            self._challenge = parse_challenge(header)
        elif resp.status == 404:
            raise RegistryError(f"{self.host} is not a registry (no /v2/ endpoint)")
        elif resp.status >= 400:
            raise RegistryError(f"{self.host}: /v2/: {error_text(resp.status, body)}")
        self._pinged = True

    def check_login(self) -> None:
        """Prove the credentials work (for `berth login`): Unauthorized if they do not."""
        self.ping()
        if self._challenge is None:
            return  # an open registry accepts anyone
        scheme, params = self._challenge
        if scheme == "basic":
            if self.credentials is None:
                raise Unauthorized(f"{self.host}: a username and password are required")
            resp = self._send("GET", self.url("/v2/"), self._basic_header())
            body = read_small(resp)
            if resp.status == 401:
                raise Unauthorized(f"{self.host}: login failed: wrong username or password")
            if resp.status >= 400:
                raise RegistryError(f"{self.host}: login failed: "
                                    f"{error_text(resp.status, body)}")
        elif scheme == "bearer":
            self._fetch_token(params, ())
        else:
            raise RegistryError(f"{self.host}: unsupported authentication scheme {scheme!r}")

    def _basic_header(self) -> dict[str, str]:
        import binascii
        assert self.credentials is not None
        raw = f"{self.credentials.username}:{self.credentials.password}".encode()
        return {"Authorization": "Basic " + binascii.b2a_base64(raw, newline=False).decode()}

    def auth_headers(self, scopes: tuple[str, ...], fresh: bool = False) -> dict[str, str]:
        """The Authorization header for a request needing `scopes` (fresh: a new token)."""
        if self._challenge is None:
            return {}
        scheme, params = self._challenge
        if scheme == "basic":
            return self._basic_header() if self.credentials is not None else {}
        if scheme == "bearer":
            token = None if fresh else self._tokens.get(scopes)
            if token is None or token[1] < time.monotonic():
                token = self._fetch_token(params, scopes)
            return {"Authorization": "Bearer " + token[0]}
        return {}

    def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]
                     ) -> tuple[str, float]:
        realm = params.get("realm")
        if not realm:
            raise Unauthorized(f"{self.host}: bearer challenge without a realm")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", s) for s in scopes]
        creds = self.credentials
        headers: dict[str, str] = {}
        method, body = "GET", b""
        if creds is not None and creds.identity_token:
            method = "POST"  # an OAuth2 refresh token, as docker stores after `login`
            body = http11.urlencode([
                ("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                ("service", params.get("service", "")), ("client_id", "berth"),
                ("scope", " ".join(scopes))]).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            query = []
        elif creds is not None:
            headers = self._basic_header()
            if not scopes:
                query.append(("account", creds.username))
        sep = "&" if "?" in realm else "?"
        url = realm + (sep + http11.urlencode(query) if query else "")
        resp = self._send(method, url, headers, body)
        data = read_small(resp)
        if resp.status in (401, 403):
            raise Unauthorized(f"{self.host}: the token service refused the credentials "
                               f"({error_text(resp.status, data)}): berth login {self.host}")
        if resp.status >= 400:
            raise RegistryError(f"{self.host}: token service {realm}: "
                                f"{error_text(resp.status, data)}")
        token, expires = token_of(data, self.host, realm)
        self._tokens[scopes] = entry = (token, time.monotonic() + max(expires - 10, 10))
        return entry

    # --- requests ------------------------------------------------------------------

    def _send(self, method: str, url: str, headers: dict[str, str] | None = None,
              body: bytes = b"") -> http11.Response:
        """One HTTP request (redirects followed), retried after connection failures.

        Not a PATCH: a chunk may have been half appended, the caller decides.
        """
        for attempt in range(RETRIES + 1):
            try:
                return http11.fetch(self.pool, method, url, headers, body)[0]
            except http11.TLSFailed as e:
                raise tls_failed(self.host, e) from None
            except http11.HTTPFailure as e:
                # refused or unresolvable: twice more; broken half way: RETRIES more times
                limit = CONNECT_RETRIES if isinstance(e, http11.ConnectFailed) else RETRIES
                if attempt >= limit or method == "PATCH":
                    raise Unreachable(f"cannot reach registry {self.host}: {e}") from None
                time.sleep(min(0.1 * 2 ** attempt, 2.0))
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, scopes: tuple[str, ...],
                headers: dict[str, str] | None = None, expect: tuple[int, ...] = (200,),
                what: str = "", body: bytes = b"") -> http11.Response:
        """An authenticated request to the registry; the caller reads and closes the response.

        A status outside `expect` becomes NotFound / Unauthorized / RegistryError
        with the registry's own message.
        """
        self.ping()
        url = path if path.startswith(("http://", "https://")) else self.url(path)
        what = what or f"{method} {path}"
        for attempt in range(3):
            h = dict(headers or {})
            h.update(self.auth_headers(scopes))
            resp = self._send(method, url, h, body)
            if resp.status in expect:
                return resp
            answer = read_small(resp)
            if resp.status == 401 and attempt == 0:
                challenge = resp.headers.get("www-authenticate")
                if challenge:  # a new or a wider challenge: answer it once more
                    self._challenge = parse_challenge(challenge)
                    self._tokens.pop(scopes, None)
                if self._challenge is not None and (self._challenge[0] == "bearer"
                                                    or self.credentials is not None):
                    continue
            if resp.status in (502, 503, 504) and method in ("GET", "HEAD") and attempt < 2:
                time.sleep(0.2 * (attempt + 1))
                continue
            break
        if resp.status == 401:
            raise Unauthorized(
                f"{self.host}: {what}: authentication required"
                + (" (the credentials were refused)" if self.credentials else "")
                + f": berth login {self.host}")
        msg = f"{self.host}: {what}: {error_text(resp.status, answer)}"
        if resp.status == 404:
            raise NotFound(msg)
        raise RegistryError(msg)

    # --- manifests -----------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, by tag or digest, verified."""
        what = f"manifest {repo}:{reference}" if ":" not in reference \
            else f"manifest {repo}@{reference}"
        try:
            resp = self.request("GET", f"/v2/{repo}/manifests/{reference}",
                                (f"repository:{repo}:pull",),
                                headers={"Accept": MANIFEST_ACCEPT}, what=what)
        except NotFound:
            raise NotFound(f"{self.host}/{repo}: {what} not found in the registry") from None
        try:
            if (resp.length or 0) > MAX_MANIFEST:
                raise RegistryError(f"{self.host}: {what} is larger than 4 MiB: refused")
            data = resp.read_all(MAX_MANIFEST)
        except http11.HTTPFailure as e:
            if "answer over" in str(e):
                raise RegistryError(f"{self.host}: {what} is larger than 4 MiB: refused") \
                    from None
            raise Unreachable(f"cannot reach registry {self.host}: {e}") from None
        finally:
            resp.close()
        header_digest = resp.headers.get("docker-content-digest")
        content_type = resp.headers.get("content-type", "").partition(";")[0].strip()
        digest = oci.sha256(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{self.host}/{repo}: manifest", reference, digest)
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise DigestMismatch(f"{self.host}/{repo}: {what}", header_digest, digest)
        return data, content_type, digest

    def head_manifest(self, repo: str, reference: str) -> dict | None:
        """A descriptor {mediaType, digest, size} for a manifest, or None if absent."""
        try:
            resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}",
                                (f"repository:{repo}:pull",),
                                headers={"Accept": MANIFEST_ACCEPT})
        except NotFound:
            return None
        resp.close()
        return {"mediaType": resp.headers.get("content-type", ""),
                "digest": resp.headers.get("docker-content-digest", ""),
                "size": resp.length or 0}

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Upload a manifest under a tag (or its digest); return the digest."""
        resp = self.request("PUT", f"/v2/{repo}/manifests/{reference}",
                            (f"repository:{repo}:pull,push",),
                            headers={"Content-Type": media_type}, body=data,
                            expect=(201, 200), what=f"push manifest {repo}:{reference}")
        read_small(resp)
        got = resp.headers.get("docker-content-digest")
        digest = oci.sha256(data)
        if got and got != digest:
            raise DigestMismatch(f"{self.host}/{repo}: pushed manifest", digest, got)
        return digest

    # --- blobs ---------------------------------------------------------------------

    def blob_job(self, repo: str, digest: str) -> tuple[str, dict[str, str]]:
        """(URL, headers) with which an unpack worker fetches a blob itself."""
        self.ping()
        return (self.url(f"/v2/{repo}/blobs/{digest}"),
                self.auth_headers((f"repository:{repo}:pull",)))

    def open_blob(self, repo: str, digest: str, size: int | None = None,
                  on_data: Callable[[int], None] | None = None) -> BlobStream:
        url, headers = self.blob_job(repo, digest)
        what = f"{self.host}/{repo}: blob {digest}"
        scopes = (f"repository:{repo}:pull",)
        opener = blob_opener(self.pool, url, headers, what, self.host,
                             lambda: self.auth_headers(scopes, fresh=True))
        return BlobStream(opener, what, size, on_data)

    def get_blob(self, repo: str, digest: str, size: int | None = None,
                 limit: int = MAX_MANIFEST) -> bytes:
        """A small blob (a config) in memory, verified against its digest and size."""
        if size is not None and size > limit:
            raise RegistryError(f"{self.host}/{repo}: blob {digest} is {size} bytes: too big "
                                "to hold in memory")
        stream = self.open_blob(repo, digest, size)
        chunks = []
        try:
            while data := stream.read(1 << 20):
                chunks.append(data)
                if stream.offset > limit:
                    raise RegistryError(f"{self.host}/{repo}: blob {digest} is larger than "
                                        f"{limit} bytes: refused")
        finally:
            stream.close()
        blob = b"".join(chunks)
        got = oci.sha256(blob)
        if got != digest:
            raise DigestMismatch(f"{self.host}/{repo}: blob", digest, got)
        return blob

    def head_blob(self, repo: str, digest: str, scopes: tuple[str, ...] = ()) -> int | None:
        """The size of a blob in `repo`, or None if the registry does not have it there."""
        try:
            resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                                scopes or (f"repository:{repo}:pull",))
        except NotFound:
            return None
        resp.close()
        return resp.length

    # --- uploads -------------------------------------------------------------------

    def start_upload(self, repo: str, scopes: tuple[str, ...], digest: str | None = None,
                     mount_from: str | None = None) -> str | None:
        """POST an upload: None if the blob was mounted from `mount_from`, else the location."""
        path = f"/v2/{repo}/blobs/uploads/"
        if mount_from and digest:
            path += "?" + http11.urlencode([("mount", digest), ("from", mount_from)])
        resp = self.request("POST", path, scopes, expect=(201, 202),
                            what=f"start upload to {repo}")
        read_small(resp)
        if resp.status == 201:
            return None
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"{self.host}: upload to {repo}: no Location in the answer")
        return http11.join_url(self.url("/"), location)

    def upload_monolithic(self, location: str, digest: str, data: bytes,
                          scopes: tuple[str, ...]) -> None:
        """PUT a whole blob into an upload started with start_upload."""
        resp = self.request("PUT", _with_query(location, digest=digest), scopes, body=data,
                            expect=(201,), headers={"Content-Type": "application/octet-stream"},
                            what=f"upload blob {digest}")
        read_small(resp)

    def upload_chunk(self, location: str, data: bytes, start: int,
                     scopes: tuple[str, ...]) -> str:
        """PATCH one chunk at `start`; return the location for the next one."""
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{start}-{start + len(data) - 1}"}
        resp = self.request("PATCH", location, scopes, headers=headers, body=data,
                            expect=(202,), what="upload chunk")
        read_small(resp)
        nxt = resp.headers.get("location")
        end = resp.headers.get("range", "").rpartition("-")[2]
        if end.isdigit() and int(end) != start + len(data) - 1:
            raise RegistryError(f"{self.host}: upload chunk at {start}: the registry holds "
                                f"{resp.headers['range']}, expected 0-{start + len(data) - 1}")
        return http11.join_url(self.url("/"), nxt) if nxt else location

    def finish_upload(self, location: str, digest: str, scopes: tuple[str, ...]) -> None:
        """The closing PUT of a chunked upload, naming the digest."""
        resp = self.request("PUT", _with_query(location, digest=digest), scopes,
                            expect=(201,), what=f"finish upload of {digest}")
        read_small(resp)

    def cancel_upload(self, location: str, scopes: tuple[str, ...]) -> None:
        """DELETE an upload that failed (best effort)."""
        try:
            read_small(self.request("DELETE", location, scopes, expect=(204, 404)))
        except RegistryError:
            pass


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + http11.urlencode(list(params.items()))
