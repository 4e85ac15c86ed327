"""The registry clients against a small in-process registry that speaks real HTTP (aiohttp.web).

What the real docker-registry cannot be made to do is done here: bearer
tokens from a token service, connections cut in the middle of a blob (with
and without Range support), a manifest of an unknown media type, schema 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from aiohttp import web

from berth.images.auth import Credentials
from berth.images.errors import ImageFailure, RegistryError, SizeMismatch
from berth.images.pull import PullCancelled, pull_async
from berth.images.push import push
from berth.images.registry import Registry
from berth.images.registry_base import Unauthorized, is_loopback, parse_challenge
from berth.images.store import Store
from berth.oci import image as oci

# --- pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize("header, scheme, params", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"', "bearer",
     {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
      "scope": "repository:library/busybox:pull"}),
    ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
    ('Bearer realm="x", scope="a:b:pull,push", error="insufficient_scope"', "bearer",
     {"realm": "x", "scope": "a:b:pull,push", "error": "insufficient_scope"}),
    ('Bearer realm=http://h/t,service=s', "bearer", {"realm": "http://h/t", "service": "s"}),
    ('Bearer realm="a \\"quoted\\" realm"', "bearer", {"realm": 'a "quoted" realm'}),
])
def test_parse_challenge(header: str, scheme: str, params: dict) -> None:
    assert parse_challenge(header) == (scheme, params)


@pytest.mark.parametrize("host, loop", [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.1.2.3", True), ("[::1]:5000", True),
    ("localhost", True), ("quay.io", False), ("10.0.0.1:5000", False), ("docker.io", False),
])
def test_loopback_hosts_are_spoken_to_over_http(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop
    assert Registry(host).scheme == ("http" if loop else "https")


def test_tls_verify_false_elsewhere_means_unverified_https() -> None:
    reg = Registry("registry.example:5000", tls_verify=False)
    assert (reg.scheme, reg.tls_verify) == ("https", False)
    assert Registry("docker.io").endpoint == "registry-1.docker.io"


# --- a fake registry ---------------------------------------------------------------------


def layer_blob(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            t.addfile(info, io.BytesIO(content))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, mtime=0)


class FakeRegistry:
    """Serves one repository from dicts; knobs for auth, broken connections and Range."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.auth: str | None = None  # None, "basic" or "bearer"
        self.token_requests: list[dict] = []
        self.cut_after: int | None = None  # bytes of a blob sent before the connection drops
        self.cuts_left = 0
        self.ranges = True
        self.range_requests: list[str] = []
        self.short_content_length = False
        self.stall = 0.0  # seconds a cut blob waits before the connection drops
        self.hold: asyncio.Event | None = None  # or: until this is set
        self.port = 0
        self.expire_once: set[str] = set()  # blobs whose first GET finds the token expired
        self.revoked: set[str] = set()
        self.uploads: dict[str, bytearray] = {}  # open uploads by id
        self.upload_log: list[str] = []  # "POST", "PATCH <range>", "PUT <digest>", "DELETE"
        self.refuse: set[str] = set()  # digests whose upload is answered 400
        self.open_uploads = 0
        self.most_open = 0
        self.together = 0  # if set: a POST waits (up to 10 s) until this many uploads are open
        self.opened = asyncio.Event()

    def add_image(self, repo_tag: str, files: dict[str, bytes],
                  man_type: str = oci.OCI_MANIFEST,
                  more_layers: tuple[dict[str, bytes], ...] = ()) -> tuple[str, bytes]:
        """An image of one layer per dict of files; return (config digest, first blob)."""
        descs, diff_ids, first = [], [], b""
        for content in (files, *more_layers):
            raw, blob = layer_blob(content)
            first = first or blob
            self.blobs[oci.sha256(blob)] = blob
            descs.append({"mediaType": oci.OCI_LAYER_GZIP, "digest": oci.sha256(blob),
                          "size": len(blob)})
            diff_ids.append(oci.sha256(raw))
        cfg = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        self.blobs[oci.sha256(cfg)] = cfg
        man = json.dumps({"schemaVersion": 2, "mediaType": man_type,
                          "config": {"mediaType": oci.OCI_CONFIG, "digest": oci.sha256(cfg),
                                     "size": len(cfg)},
                          "layers": descs}).encode()
        self.manifests[repo_tag] = (man, man_type)
        self.manifests[repo_tag.split(":")[0] + ":" + oci.sha256(man)] = (man, man_type)
        return oci.sha256(cfg), first

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth is None:
            return True
        if self.auth == "basic":
            return header == "Basic " + base64.b64encode(b"u:p").decode()
        prefix = "Bearer tok-" + request.match_info.get("repo", "").replace("/", "-") + "-"
        return header.startswith(prefix) and header[7:] not in self.revoked

    def _challenge(self, request: web.Request) -> web.Response:
        if self.auth == "basic":
            h = 'Basic realm="fake"'
        else:
            repo = request.match_info.get("repo", "")
            h = (f'Bearer realm="http://127.0.0.1:{self.port}/token",service="fake",'
                 f'scope="repository:{repo}:pull"')
        return web.json_response({"errors": [{"code": "UNAUTHORIZED",
                                              "message": "authentication required"}]},
                                 status=401, headers={"WWW-Authenticate": h})

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append({"query": dict(request.query),
                                    "scopes": request.query.getall("scope", []),
                                    "auth": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(b"u:p").decode():
            return web.json_response({"details": "bad creds"}, status=401)
        scope = request.query.get("scope", "")
        repo = scope.split(":")[1] if scope else ""
        token = f"tok-{repo.replace('/', '-')}-{len(self.token_requests)}"
        return web.json_response({"token": token, "expires_in": 300})

    async def ping(self, request: web.Request) -> web.Response:
        if self.auth and not request.headers.get("Authorization"):
            return self._challenge(request)
        if self.auth == "basic" and not self._authorized(request):
            return self._challenge(request)
        return web.json_response({})

    async def manifest(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._challenge(request)
        key = request.match_info["repo"] + ":" + request.match_info["ref"]
        if key not in self.manifests:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN",
                                                  "message": "manifest unknown"}]}, status=404)
        data, mt = self.manifests[key]
        return web.Response(body=data, headers={"Content-Type": mt,
                                                "Docker-Content-Digest": oci.sha256(data)})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._challenge(request)
        if request.match_info["digest"] in self.expire_once:
            self.expire_once.discard(request.match_info["digest"])
            self.revoked.add(request.headers.get("Authorization", "")[7:])
            return self._challenge(request)
        data = self.blobs.get(request.match_info["digest"])
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN",
                                                  "message": "blob unknown"}]}, status=404)
        start, status, headers = 0, 200, {}
        rng = request.headers.get("Range")
        if rng:
            self.range_requests.append(rng)
        if rng and self.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body) - (len(body) // 2 if self.short_content_length else 0)
        if self.short_content_length:
            body = body[: resp.content_length]
        await resp.prepare(request)
        if self.cut_after is not None and self.cuts_left > 0 and len(body) > self.cut_after:
            self.cuts_left -= 1
            await resp.write(body[: self.cut_after])
            if self.hold is not None:
                await self.hold.wait()
            else:
                await asyncio.sleep(self.stall)
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(body)
        await resp.write_eof()
        return resp

    async def start_upload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._challenge(request)
        self.upload_log.append("POST")
        uid = f"u{len(self.upload_log)}"
        self.uploads[uid] = bytearray()
        self.open_uploads += 1
        self.most_open = max(self.most_open, self.open_uploads)
        if self.open_uploads >= self.together:
            self.opened.set()
        elif not self.opened.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.opened.wait(), 10)
        return web.Response(status=202, headers={
            "Location": f"/v2/{request.match_info['repo']}/blobs/uploads/{uid}?_state=x"})

    async def upload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._challenge(request)
        uid, data = request.match_info["uid"], await request.read()
        if request.method == "DELETE":
            self.upload_log.append("DELETE")
            self.open_uploads -= 1
            self.uploads.pop(uid, None)
            return web.Response(status=204)
        if request.method == "PATCH":
            self.upload_log.append(f"PATCH {request.headers['Content-Range']}")
            self.uploads[uid] += data
            return web.Response(status=202, headers={
                "Location": request.path_qs, "Range": f"0-{len(self.uploads[uid]) - 1}"})
        digest = request.query["digest"]
        self.upload_log.append(f"PUT {digest}")
        if digest in self.refuse:
            return web.json_response({"errors": [{"code": "DIGEST_INVALID",
                                                  "message": "refused"}]}, status=400)
        blob = bytes(self.uploads.pop(uid) + data)
        self.open_uploads -= 1
        assert oci.sha256(blob) == digest
        self.blobs[digest] = blob
        return web.Response(status=201, headers={"Docker-Content-Digest": digest})

    async def put_manifest(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._challenge(request)
        data = await request.read()
        key = request.match_info["repo"] + ":" + request.match_info["ref"]
        self.manifests[key] = (data, request.headers["Content-Type"])
        return web.Response(status=201, headers={"Docker-Content-Digest": oci.sha256(data)})

    async def __aenter__(self) -> FakeRegistry:
        app = web.Application()
        app.router.add_get("/v2/", self.ping)
        app.router.add_get("/token", self.token)
        app.router.add_post("/v2/{repo:.+}/blobs/uploads/", self.start_upload)
        app.router.add_route("*", "/v2/{repo:.+}/blobs/uploads/{uid}", self.upload)
        app.router.add_put("/v2/{repo:.+}/manifests/{ref}", self.put_manifest)
        app.router.add_route("*", "/v2/{repo:.+}/manifests/{ref}", self.manifest)
        app.router.add_route("*", "/v2/{repo:.+}/blobs/{digest}", self.blob)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(autouse=True)
def no_credential_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pull() looks credentials up: only in an empty directory of this test's."""
    monkeypatch.setenv("BERTH_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(str(tmp_path / "store"))
    yield s
    s.close()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def clean(store: Store) -> None:
    assert list(store.images()) == []
    assert os.listdir(store.tmp) == []
    assert [d for d in os.listdir(store.layers) if d != "l"] == []


# --- auth --------------------------------------------------------------------------------


def test_bearer_tokens_from_the_token_service(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.auth = "bearer"
            cfg, _ = fake.add_image("team/app:1", {"f": b"hello"})
            image_id = await pull_async(store, f"{fake.host}/team/app:1",
                                        credentials=Credentials("u", "p"))
            assert image_id == cfg
            assert fake.token_requests[0]["scopes"] == ["repository:team/app:pull"]
            assert fake.token_requests[0]["query"]["service"] == "fake"
            assert len(fake.token_requests) == 1  # one token, cached for every request
            with pytest.raises(Unauthorized, match="token service refused"):
                await pull_async(store, f"{fake.host}/team/app:1",
                                 credentials=Credentials("u", "wrong"))
            with pytest.raises(Unauthorized, match=f"berth login {fake.host}"):
                await pull_async(store, f"{fake.host}/team/app:1", credentials=None)
    run(main())


def test_a_worker_asks_for_a_fresh_token_when_its_own_expired(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.auth = "bearer"
            cfg, first = fake.add_image("team/app:1", {"f": os.urandom(100_000)})
            fake.expire_once = {oci.sha256(first)}
            image_id = await pull_async(store, f"{fake.host}/team/app:1",
                                        credentials=Credentials("u", "p"))
            assert image_id == cfg
            assert fake.expire_once == set()  # the layer's GET met the expired token
            assert len(fake.token_requests) == 2  # and the worker got a new one
    run(main())
    assert os.listdir(store.tmp) == []


def test_basic_auth_and_check_login() -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.auth = "basic"
            with Registry(fake.host, credentials=Credentials("u", "p")) as reg:
                await asyncio.to_thread(reg.check_login)
            with Registry(fake.host, credentials=Credentials("u", "x")) as reg, \
                    pytest.raises(Unauthorized, match="wrong username or password"):
                await asyncio.to_thread(reg.check_login)
            with Registry(fake.host) as reg, \
                    pytest.raises(Unauthorized, match="authentication required"):
                await asyncio.to_thread(reg.get_manifest, "a/b", "1")
            with Registry(fake.host, credentials=Credentials("u", "x")) as reg, \
                    pytest.raises(Unauthorized, match="the credentials were refused"):
                await asyncio.to_thread(reg.get_manifest, "a/b", "1")
            fake.add_image("a/b:1", {"f": b"x"})
            with Registry(fake.host, credentials=Credentials("u", "p")) as reg:
                data, _, _ = await asyncio.to_thread(reg.get_manifest, "a/b", "1")
            assert data == fake.manifests["a/b:1"][0]
    run(main())


# --- broken connections ------------------------------------------------------------------


@pytest.mark.parametrize("ranges", [True, False])
def test_blob_download_survives_cut_connections(store: Store, ranges: bool) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            cfg, blob = fake.add_image("a/b:1", {"big": os.urandom(300_000)})
            fake.cut_after, fake.cuts_left, fake.ranges = 100_000, 2, ranges
            image_id = await pull_async(store, f"{fake.host}/a/b:1")
            assert image_id == cfg
            assert fake.cuts_left == 0
            assert fake.range_requests  # it asked to resume
            assert fake.range_requests[0].startswith("bytes=")
    run(main())
    assert os.listdir(store.tmp) == []


def test_blob_stream_resumes_at_the_right_byte() -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            data = os.urandom(250_000)
            digest = oci.sha256(data)
            fake.blobs[digest] = data
            for ranges in (True, False):
                fake.cut_after, fake.cuts_left, fake.ranges = 60_000, 3, ranges
                with Registry(fake.host) as reg:
                    stream = await asyncio.to_thread(reg.open_blob, "x/y", digest, len(data))
                    got = bytearray()
                    while chunk := await asyncio.to_thread(stream.read, 10_000):
                        got += chunk
                    stream.close()
                assert bytes(got) == data
                assert stream.restarts == 3
    run(main())


def test_a_connection_that_always_breaks_gives_up_with_a_clear_error(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"big": os.urandom(200_000)})
            fake.cut_after, fake.cuts_left, fake.ranges = 0, 1000, False
            with pytest.raises(RegistryError, match="download failed after"):
                await pull_async(store, f"{fake.host}/a/b:1")
    run(main())
    clean(store)


def test_a_blob_shorter_than_its_descriptor_is_refused_at_once(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"big": os.urandom(50_000)})
            fake.short_content_length = True
            with pytest.raises(SizeMismatch, match="size mismatch"):
                await pull_async(store, f"{fake.host}/a/b:1")
    run(main())
    clean(store)


# --- manifests ---------------------------------------------------------------------------


def test_an_unknown_manifest_media_type_is_refused(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"f": b"x"}, man_type="application/vnd.example.thing+json")
            with pytest.raises(ImageFailure, match="unsupported manifest media type "
                                                   "'application/vnd.example.thing\\+json'"):
                await pull_async(store, f"{fake.host}/a/b:1")
    run(main())
    clean(store)
    assert os.listdir(store.blobs) == []


def test_schema1_is_refused_with_a_reason(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            doc = json.dumps({"schemaVersion": 1, "name": "a/b", "tag": "1",
                              "fsLayers": []}).encode()
            fake.manifests["a/b:1"] = (doc, "application/vnd.docker.distribution.manifest.v1"
                                            "+prettyjws")
            with pytest.raises(ImageFailure, match="schema 1 manifest: not supported"):
                await pull_async(store, f"{fake.host}/a/b:1")
    run(main())
    clean(store)


def test_a_manifest_that_does_not_match_its_digest_is_refused(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"f": b"x"})
            man, mt = fake.manifests["a/b:1"]
            digest = oci.sha256(man)
            fake.manifests["a/b:" + digest] = (man.replace(b'"schemaVersion": 2',
                                                           b'"schemaVersion":  2'), mt)
            with pytest.raises(ImageFailure, match="digest mismatch"):
                await pull_async(store, f"{fake.host}/a/b@{digest}")
    run(main())
    clean(store)


def test_one_bad_layer_stops_the_others_and_leaves_nothing_half_done(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            _, first = fake.add_image("a/b:1", {"small": b"s" * 1000},
                                      more_layers=tuple({f"big{i}": os.urandom(400_000)}
                                                        for i in range(3)))
            fake.blobs[oci.sha256(first)] = first[:10] + bytes([first[10] ^ 1]) + first[11:]
            # the big layers stall half way for a while: they are mid-unpack when the small
            # one fails, and must stop and clean up
            fake.cut_after, fake.cuts_left, fake.stall = 200_000, 3, 0.5
            with pytest.raises(ImageFailure, match="digest mismatch|corrupt gzip|not a tar") as e:
                await pull_async(store, f"{fake.host}/a/b:1")
            assert not isinstance(e.value, PullCancelled)  # the cause, not its echo
            assert workers() == []  # every unpack worker killed and reaped
    run(main())
    clean(store)


# --- push --------------------------------------------------------------------------------


def push_in_thread(store: Store, *args: object, **kw: object) -> str:
    """push() off the event loop, on a connection to the store of its own thread's."""
    def in_thread() -> str:
        own = Store(store.root)
        try:
            return push(own, *args, **kw)  # type: ignore[arg-type]
        finally:
            own.close()
    return asyncio.to_thread(in_thread)  # type: ignore[return-value]


def test_push_in_threads_shares_one_token_and_chunks_big_blobs(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as source, FakeRegistry() as dest:
            source.add_image("a/b:1", {"small": b"s" * 1000},
                             more_layers=tuple({f"big{i}": os.urandom(100_000)}
                                               for i in range(3)))
            image_id = await pull_async(store, f"{source.host}/a/b:1")
            dest.auth, dest.together = "bearer", 3
            events: list[tuple[str, str]] = []
            digest = await push_in_thread(
                store, image_id, f"{dest.host}/team/app:2",
                progress=lambda id, status, *_: events.append((id, status)),
                credentials=Credentials("u", "p"), chunk_size=64 << 10, concurrency=3)
            man = dest.manifests["team/app:2"][0]
            assert digest == oci.sha256(man) == store.image(image_id)["manifest"]
            assert set(dest.blobs) == set(source.blobs)
            assert len(dest.token_requests) == 1  # every thread used the one token
            assert dest.token_requests[0]["scopes"] == ["repository:team/app:pull,push"]
            assert dest.most_open == 3  # three blobs went up at once
            assert sum(e.startswith("PATCH 65536-") for e in dest.upload_log) == 3
            assert sorted(s for _, s in events if s == "Pushed") == ["Pushed"] * 4
            # a second push finds every blob there (HEAD) and uploads nothing
            log = len(dest.upload_log)
            events.clear()
            await push_in_thread(store, image_id, f"{dest.host}/team/app:2",
                                 progress=lambda id, status, *_: events.append((id, status)),
                                 credentials=Credentials("u", "p"))
            assert len(dest.upload_log) == log
            assert [s for _, s in events].count("Layer already exists") == 4
    run(main())


def test_a_refused_blob_stops_the_push_and_cancels_the_other_uploads(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.images import push as pushing
    monkeypatch.setattr(pushing, "ATTEMPTS", 1)

    async def main() -> None:
        async with FakeRegistry() as source, FakeRegistry() as dest:
            _, first = source.add_image("a/b:1", {"small": b"s" * 1000},
                                        more_layers=tuple({f"big{i}": os.urandom(300_000)}
                                                          for i in range(3)))
            image_id = await pull_async(store, f"{source.host}/a/b:1")
            dest.refuse = {oci.sha256(first)}
            with pytest.raises(RegistryError, match="digest invalid: refused"):
                await push_in_thread(store, image_id, f"{dest.host}/team/app:2",
                                     chunk_size=64 << 10, concurrency=4)
            assert "team/app:2" not in dest.manifests
            assert dest.open_uploads == 0  # each upload either finished or was cancelled
            assert "DELETE" in dest.upload_log
    run(main())


def workers() -> list:
    """This process's unpack workers still alive (reaped ones are gone from the table)."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "berth.images.unpack_worker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_worker_that_dies_is_a_clear_error(store: Store,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.images import pull as pulling
    monkeypatch.setattr(pulling, "WORKER", "import sys\n# berth.images.unpack_worker\n"
                                           "sys.stderr.write('boom\\n'); sys.exit(3)\n")

    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"f": os.urandom(300_000)})
            with pytest.raises(ImageFailure, match=r"unpack worker failed \(status 3\): boom"):
                await pull_async(store, f"{fake.host}/a/b:1")
            assert workers() == []
    run(main())
    clean(store)
    assert os.listdir(store.blobs) == []


def test_a_stuck_worker_is_killed_when_another_layer_fails(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers of the big layers hang before they download anything: the bad small
    layer's failure must still end the pull, killing them."""
    from berth.images import pull as pulling
    stuck = (pulling.WORKER.split("from berth")[0]
             + "import time\n# berth.images.unpack_worker\n"
               "from berth.images import unpack_worker as u\n"
               "job = u._line()\n"
               "if any(d in job.decode() for d in {digests!r}): time.sleep(120)\n"
               "u._pending[:0] = job + b'\\n'\nsys.exit(u.main([]))\n")

    async def main() -> None:
        async with FakeRegistry() as fake:
            _, first = fake.add_image("a/b:1", {"small": b"s" * 1000},
                                      more_layers=tuple({f"big{i}": os.urandom(3_000_000)}
                                                        for i in range(2)))
            big = {d for d, b in fake.blobs.items() if len(b) > 1_000_000}
            monkeypatch.setattr(pulling, "WORKER", stuck.format(digests=big))
            fake.blobs[oci.sha256(first)] = first[:-8] + b"\0" * 8  # a bad gzip trailer
            with pytest.raises(ImageFailure, match="digest mismatch|corrupt gzip") as e:
                await pull_async(store, f"{fake.host}/a/b:1")
            assert not isinstance(e.value, PullCancelled)
            assert workers() == []
    run(main())
    clean(store)


def test_cancelling_a_pull_kills_its_workers_and_removes_their_files(store: Store) -> None:
    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"big": os.urandom(400_000)},
                           more_layers=({"big2": os.urandom(400_000)},))
            fake.cut_after, fake.cuts_left, fake.hold = 100_000, 2, asyncio.Event()  # mid-blob
            task = asyncio.create_task(pull_async(store, f"{fake.host}/a/b:1"))
            while len(workers()) < 2 or not os.listdir(store.tmp):
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert workers() == []
            fake.hold.set()
    run(main())
    clean(store)


def test_sigint_kills_the_workers_and_removes_their_files(store: Store) -> None:
    """`berth pull` interrupted (SIGINT to the pulling process alone) mid-blob."""
    import signal
    import subprocess
    import sys

    import psutil

    def workers_of(pid: int) -> list[psutil.Process]:
        try:
            children = psutil.Process(pid).children()
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if "berth.images.unpack_worker" in " ".join(p.cmdline())]

    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    code = ("import sys\nfrom berth.images.store import Store\n"
            "from berth.images.pull import pull\n"
            "s = Store(sys.argv[1])\ntry:\n    pull(s, sys.argv[2])\nfinally:\n    s.close()\n")

    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"big": os.urandom(400_000)},
                           more_layers=({"big2": os.urandom(400_000)},))
            fake.cut_after, fake.cuts_left, fake.hold = 100_000, 2, asyncio.Event()  # mid-blob
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, store.root, f"{fake.host}/a/b:1",
                stderr=subprocess.PIPE)
            try:
                while len(os.listdir(store.tmp)) < 4:  # two layers' blobs and directories
                    assert proc.returncode is None, "the pull ended before it was interrupted"
                    await asyncio.sleep(0.02)
                started = workers_of(proc.pid)
                assert len(started) >= 2
                proc.send_signal(signal.SIGINT)
                _, err = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                fake.hold.set()
            assert proc.returncode != 0
            assert b"KeyboardInterrupt" in err
            assert [p for p in started if alive(p)] == []  # killed, not orphaned
    run(main())
    clean(store)


def test_an_unsafe_layer_is_refused_as_unsafe_through_the_worker(store: Store) -> None:
    from berth.images.errors import UnsafeLayer

    async def main() -> None:
        async with FakeRegistry() as fake:
            fake.add_image("a/b:1", {"../escape": b"x"})
            with pytest.raises(UnsafeLayer, match="contains '..': refused"):
                await pull_async(store, f"{fake.host}/a/b:1")
    run(main())
    clean(store)


def test_an_unreachable_registry_is_a_clear_error(store: Store) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError, match=f"cannot reach registry 127.0.0.1:{port}"):
        run(pull_async(store, f"127.0.0.1:{port}/a/b:1"))
    clean(store)
