"""A distribution-spec v2 registry client on aiohttp for push and login: uploads, auth.

What it owns: the HTTP conversation with one registry host when pushing. The
/v2/ ping tells it how to authenticate (a Basic or Bearer challenge); bearer
tokens are fetched from the challenge's realm for the scopes a request needs
and cached; a 401 later (an expired token, a scope not asked for) is answered
once more. Pulls do not come here: registry_pull.py speaks to the registry
on http11 (no aiohttp import on the pull path, see docs/architecture.md).

What it must not do: touch the store, decide which platform to pull, or read
credential files (pull.py, push.py and auth.py do). Loopback registries
(localhost, 127.0.0.0/8, ::1) are spoken to over plain http, as docker treats
them as insecure by default; `tls_verify=False` elsewhere means https without
certificate checks, falling back to http when the host does not speak TLS.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import urllib.parse

import aiohttp

from berth.images.errors import DigestMismatch, RegistryError
from berth.images.registry_base import (
    CONNECT_RETRIES,
    MANIFEST_ACCEPT,
    RETRIES,
    USER_AGENT,
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
    from typing import Any

    from berth.images.auth import Credentials

_BROKEN = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError,
           ConnectionError)


class Registry:
    """One registry host; use `async with Registry(host) as reg:` so the session is closed."""

    def __init__(self, host: str, *, credentials: Credentials | None = None,
                 tls_verify: bool | None = None, timeout: float = 60.0,
                 connections: int = 8) -> None:
        self.host = host
        self.endpoint = endpoint_for(host)
        self.credentials = credentials
        self.scheme, self.tls_verify, self._fallback = transport(self.endpoint, tls_verify)
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._pinged = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    # --- session -------------------------------------------------------------------

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.connections,
                                             ssl=self.tls_verify)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=False,
                read_bufsize=1 << 20, headers={"User-Agent": USER_AGENT})
        return self._session

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.endpoint}{path}"

    # --- auth ----------------------------------------------------------------------

    async def ping(self) -> None:
        """GET /v2/: learn the auth challenge (and, with tls_verify off, http or https)."""
        async with self._lock:
            if self._pinged:
                return
            try:
                resp = await self._send("GET", self.url("/v2/"))
            except RegistryError:
                if not self._fallback:
                    raise
                self.scheme, self._fallback = "http", False
                resp = await self._send("GET", self.url("/v2/"))
            async with resp:
                if resp.status == 401:
                    header = resp.headers.get("WWW-Authenticate", "")
                    if not header:
                        raise Unauthorized(f"{self.host}: the registry answered 401 without a "
                                           "WWW-Authenticate challenge")
                    self._challenge = parse_challenge(header)
                elif resp.status == 404:
                    raise RegistryError(f"{self.host} is not a registry (no /v2/ endpoint)")
                elif resp.status >= 400:
                    raise RegistryError(f"{self.host}: /v2/: "
                                        f"{error_text(resp.status, await resp.read())}")
            self._pinged = True

    async def check_login(self) -> None:
        """Prove the credentials work (for `berth login`): Unauthorized if they do not."""
        await self.ping()
        if self._challenge is None:
            return  # an open registry accepts anyone
        scheme, params = self._challenge
        if scheme == "basic":
            if self.credentials is None:
                raise Unauthorized(f"{self.host}: a username and password are required")
            resp = await self._send("GET", self.url("/v2/"), headers=self._basic_header())
            async with resp:
                if resp.status == 401:
                    raise Unauthorized(f"{self.host}: login failed: wrong username or password")
                if resp.status >= 400:
                    raise RegistryError(f"{self.host}: login failed: "
                                        f"{error_text(resp.status, await resp.read())}")
        elif scheme == "bearer":
            await self._fetch_token(params, ())
        else:
            raise RegistryError(f"{self.host}: unsupported authentication scheme {scheme!r}")

    def _basic_header(self) -> dict[str, str]:
        assert self.credentials is not None
        raw = f"{self.credentials.username}:{self.credentials.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def _auth_headers(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if self._challenge is None:
            return {}
        scheme, params = self._challenge
        if scheme == "basic":
            return self._basic_header() if self.credentials is not None else {}
        if scheme == "bearer":
            token = self._tokens.get(scopes)
            if token is None or token[1] < time.monotonic():
                await self._fetch_token(params, scopes)
                token = self._tokens[scopes]
            return {"Authorization": "Bearer " + token[0]}
        return {}

    async def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]) -> None:
        realm = params.get("realm")
        if not realm:
            raise Unauthorized(f"{self.host}: bearer challenge without a realm")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", s) for s in scopes]
        creds = self.credentials
        headers: dict[str, str] = {}
        method, data = "GET", None
        if creds is not None and creds.identity_token:
            method = "POST"  # an OAuth2 refresh token, as docker stores after `login`
            data = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": params.get("service", ""), "client_id": "berth",
                    "scope": " ".join(scopes)}
            query = []
        elif creds is not None:
            headers = self._basic_header()
            if not scopes:
                query.append(("account", creds.username))
        sep = "&" if "?" in realm else "?"
        url = realm + (sep + urllib.parse.urlencode(query) if query else "")
        resp = await self._send(method, url, headers=headers, data=data)
        async with resp:
            body = await resp.read()
            if resp.status in (401, 403):
                raise Unauthorized(f"{self.host}: the token service refused the credentials "
                                   f"({error_text(resp.status, body)}): berth login "
                                   f"{self.host}")
            if resp.status >= 400:
                raise RegistryError(f"{self.host}: token service {realm}: "
                                    f"{error_text(resp.status, body)}")
        token, expires = token_of(body, self.host, realm)
        self._tokens[scopes] = (token, time.monotonic() + max(expires - 10, 10))

    # --- requests ------------------------------------------------------------------

    async def _send(self, method: str, url: str, **kw: Any) -> aiohttp.ClientResponse:
        """One HTTP request, with retries after connection failures when it is safe."""
        retry = method != "PATCH"  # a chunk may have been half appended: the caller decides
        body = kw.get("data")
        for attempt in range(RETRIES + 1):
            if isinstance(body, bytes) and len(body) > 1 << 20:
                kw["data"] = io.BytesIO(body)  # aiohttp sends it without blocking the loop
            try:
                return await self.session.request(method, url,
                                                  allow_redirects=True, **kw)
            except aiohttp.ClientSSLError as e:
                raise RegistryError(f"{self.host}: TLS failed ({e}); for a registry without "
                                    "a valid certificate use --tls-verify=false") from None
            except _BROKEN as e:
                # refused or unresolvable: twice more; broken half way: RETRIES more times
                limit = CONNECT_RETRIES if isinstance(e, aiohttp.ClientConnectorError) \
                    else RETRIES
                if not retry or attempt >= limit:
                    raise Unreachable(f"cannot reach registry {self.host}: "
                                      f"{e.__class__.__name__}: {e}") from None
                await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))
        raise AssertionError("unreachable")

    async def request(self, method: str, path: str, scopes: tuple[str, ...],
                      headers: dict[str, str] | None = None, expect: tuple[int, ...] = (200,),
                      what: str = "", **kw: Any) -> aiohttp.ClientResponse:
        """An authenticated request to the registry; the caller closes the response.

        A status outside `expect` becomes NotFound / Unauthorized / RegistryError
        with the registry's own message.
        """
        await self.ping()
        url = path if path.startswith(("http://", "https://")) else self.url(path)
        what = what or f"{method} {path}"
        for attempt in range(3):
            h = dict(headers or {})
            h.update(await self._auth_headers(scopes))
            resp = await self._send(method, url, headers=h, **kw)
            if resp.status in expect:
                return resp
            body = await resp.read() if method != "HEAD" else b""
            resp.release()
            if resp.status == 401 and attempt == 0:
                challenge = resp.headers.get("WWW-Authenticate")
                if challenge:  # a new or a wider challenge: answer it once more
                    self._challenge = parse_challenge(challenge)
                    self._tokens.pop(scopes, None)
                if self._challenge is not None and (self._challenge[0] == "bearer"
                                                    or self.credentials is not None):
                    continue
            if resp.status in (502, 503, 504) and method in ("GET", "HEAD") and attempt < 2:
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            break
        if resp.status == 401:
            raise Unauthorized(
                f"{self.host}: {what}: authentication required"
                + (" (the credentials were refused)" if self.credentials else "")
                + f": berth login {self.host}")
        msg = f"{self.host}: {what}: {error_text(resp.status, body)}"
        if resp.status == 404:
            raise NotFound(msg)
        raise RegistryError(msg)

    # --- manifests -----------------------------------------------------------------

    async def head_manifest(self, repo: str, reference: str) -> dict | None:
        """A descriptor {mediaType, digest, size} for a manifest, or None if absent."""
        try:
            resp = await self.request("HEAD", f"/v2/{repo}/manifests/{reference}",
                                      (f"repository:{repo}:pull",),
                                      headers={"Accept": MANIFEST_ACCEPT})
        except NotFound:
            return None
        async with resp:
            return {"mediaType": resp.headers.get("Content-Type", ""),
                    "digest": resp.headers.get("Docker-Content-Digest", ""),
                    "size": resp.content_length or 0}

    async def put_manifest(self, repo: str, reference: str, data: bytes,
                           media_type: str) -> str:
        """Upload a manifest under a tag (or its digest); return the digest."""
        resp = await self.request("PUT", f"/v2/{repo}/manifests/{reference}",
                                  (f"repository:{repo}:pull,push",),
                                  headers={"Content-Type": media_type}, data=data,
                                  expect=(201, 200), what=f"push manifest {repo}:{reference}")
        async with resp:
            got = resp.headers.get("Docker-Content-Digest")
        digest = oci.sha256(data)
        if got and got != digest:
            raise DigestMismatch(f"{self.host}/{repo}: pushed manifest", digest, got)
        return digest

    # --- blobs ---------------------------------------------------------------------

    async def head_blob(self, repo: str, digest: str, scopes: tuple[str, ...] = ()) -> int | None:
        """The size of a blob in `repo`, or None if the registry does not have it there."""
        try:
            resp = await self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                                      scopes or (f"repository:{repo}:pull",))
        except NotFound:
            return None
        async with resp:
            return resp.content_length

    # --- uploads -------------------------------------------------------------------

    async def start_upload(self, repo: str, scopes: tuple[str, ...], digest: str | None = None,
                           mount_from: str | None = None) -> str | None:
        """POST an upload: None if the blob was mounted from `mount_from`, else the location."""
        path = f"/v2/{repo}/blobs/uploads/"
        if mount_from and digest:
            path += "?" + urllib.parse.urlencode({"mount": digest, "from": mount_from})
        resp = await self.request("POST", path, scopes, expect=(201, 202),
                                  what=f"start upload to {repo}")
        async with resp:
            if resp.status == 201:
                return None
            location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host}: upload to {repo}: no Location in the answer")
        return self._absolute(location)

    def _absolute(self, location: str) -> str:
        return urllib.parse.urljoin(self.url("/"), location)

    async def upload_monolithic(self, location: str, digest: str, data: bytes,
                                scopes: tuple[str, ...]) -> None:
        url = _with_query(location, digest=digest)
        resp = await self.request("PUT", url, scopes, data=data, expect=(201,),
                                  headers={"Content-Type": "application/octet-stream"},
                                  what=f"upload blob {digest}")
        resp.release()

    async def upload_chunk(self, location: str, data: bytes, start: int,
                           scopes: tuple[str, ...]) -> str:
        """PATCH one chunk at `start`; return the location for the next one."""
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{start}-{start + len(data) - 1}"}
        resp = await self.request("PATCH", location, scopes, data=data, headers=headers,
                                  expect=(202,), what="upload chunk")
        async with resp:
            nxt = resp.headers.get("Location")
            rng = resp.headers.get("Range")
        if rng and rng.rpartition("-")[2].isdigit() \
                and int(rng.rpartition("-")[2]) != start + len(data) - 1:
            raise RegistryError(f"{self.host}: upload chunk at {start}: the registry holds "
                                f"{rng}, expected 0-{start + len(data) - 1}")
        return self._absolute(nxt) if nxt else location

    async def finish_upload(self, location: str, digest: str, scopes: tuple[str, ...]) -> None:
        resp = await self.request("PUT", _with_query(location, digest=digest), scopes,
                                  expect=(201,), data=b"", what=f"finish upload of {digest}")
        resp.release()

    async def cancel_upload(self, location: str, scopes: tuple[str, ...]) -> None:
        try:
            resp = await self.request("DELETE", location, scopes, expect=(204, 404))
            resp.release()
        except RegistryError:
            pass


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + urllib.parse.urlencode(params)
