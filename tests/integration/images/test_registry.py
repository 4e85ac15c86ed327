"""Pull and push against a real registry (Debian's docker-registry, distribution 2.8, on loopback).

Interop both ways: an image podman made, copied in by skopeo, is pulled by
berth; what berth pushes is read by skopeo and pulled and run by podman.
Bad input (a tampered or truncated blob, an unknown media type) fails with a
clear error and leaves nothing in the store but verified, unreferenced blobs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from berth.images import archive, auth
from berth.images.errors import DigestMismatch, ImageFailure, SizeMismatch
from berth.images.pull import pull
from berth.images.push import push
from berth.images.registry import NotFound, Unauthorized
from berth.images.store import Store
from berth.oci import image as oci
from tests.integration.images.conftest import PASSWORD, USER, RegistryProcess, seed, skopeo
from tests.unit.images.test_registry_client import layer_blob

pytestmark = [pytest.mark.e2e]


class Events:
    """A progress sink that records (short id or "", status)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, id: str, status: str, current: int | None = None,
                 total: int | None = None) -> None:
        self.seen.append((id, status))

    def statuses(self) -> list[str]:
        return [s for _, s in self.seen]


def assert_nothing_committed(store: Store) -> None:
    assert list(store.images()) == []
    assert store.db.execute("SELECT * FROM tags").fetchall() == []
    assert store.db.execute("SELECT * FROM digests").fetchall() == []
    assert os.listdir(store.tmp) == []
    for chain_id, *_ in store.db.execute("SELECT * FROM layers").fetchall():
        assert os.path.isdir(store.layer_dir(chain_id))  # complete, verified layers only
    indexed = {c.partition(":")[2] for (c,) in store.db.execute("SELECT chain_id FROM layers")}
    assert {d for d in os.listdir(store.layers) if d != "l"} == indexed


# --- raw registry calls, to set up what berth should then read -------------------------


def http(method: str, url: str, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def put_blob(reg: RegistryProcess, repo: str, data: bytes) -> str:
    digest = oci.sha256(data)
    status, headers, body = http("POST", f"http://{reg.host}/v2/{repo}/blobs/uploads/")
    assert status == 202, body
    loc = headers["Location"]
    loc = loc if loc.startswith("http") else f"http://{reg.host}{loc}"
    sep = "&" if "?" in loc else "?"
    status, _, body = http("PUT", f"{loc}{sep}digest={digest}", data,
                           {"Content-Type": "application/octet-stream"})
    assert status == 201, body
    return digest


def put_manifest(reg: RegistryProcess, repo: str, ref: str, doc: dict,
                 media_type: str) -> tuple[int, str]:
    data = json.dumps(doc).encode()
    status, _, body = http("PUT", f"http://{reg.host}/v2/{repo}/manifests/{ref}", data,
                           {"Content-Type": media_type})
    return status, oci.sha256(data) if status == 201 else body.decode()


def tiny_image(reg: RegistryProcess, repo: str, files: dict[str, bytes],
               arch: str = "amd64", layer_type: str = oci.OCI_LAYER_GZIP,
               docker: bool = False) -> dict:
    """Upload a one-layer image (OCI, or Docker schema 2); return its descriptor."""
    raw, blob = layer_blob(files)
    layer = put_blob(reg, repo, blob)
    config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [oci.sha256(raw)]}}
    cfg = json.dumps(config).encode()
    man_type = oci.DOCKER_MANIFEST if docker else oci.OCI_MANIFEST
    man = {"schemaVersion": 2, "mediaType": man_type,
           "config": {"mediaType": oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG,
                      "digest": put_blob(reg, repo, cfg), "size": len(cfg)},
           "layers": [{"mediaType": oci.DOCKER_LAYER if docker else layer_type,
                       "digest": layer, "size": len(blob)}]}
    status, digest = put_manifest(reg, repo, oci.sha256(json.dumps(man).encode()), man,
                                  man_type)
    assert status == 201, digest
    return {"mediaType": man_type, "digest": digest,
            "size": len(json.dumps(man).encode()),
            "platform": {"architecture": arch, "os": "linux"}, "config": man["config"]["digest"]}


# --- pull --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_pull_of_a_podman_made_image_copied_in_by_skopeo(registry, image_store: Store,
                                                        podman_archive: Path, fmt: str) -> None:
    ref = seed(registry, podman_archive, "berth/busybox:1", "--format", fmt)
    events = Events()
    image_id = pull(image_store, ref, progress=events)
    assert image_store.resolve(ref) == image_id
    assert image_store.names(image_id) == [ref]
    manifest_digest = image_store.image(image_id)["manifest"]
    assert image_store.digest_names(image_id) == [f"{registry.host}/berth/busybox@"
                                                  f"{manifest_digest}"]
    assert image_store.image(image_id)["media_type"] == (oci.OCI_MANIFEST if fmt == "oci"
                                                         else oci.DOCKER_MANIFEST)
    assert image_store.config(image_id)["config"]["Env"] == ["PATH=/bin:/usr/bin"]
    dirs = image_store.layer_dirs(image_id)
    assert os.path.isfile(os.path.join(dirs[-1], "bin/busybox"))
    assert os.listdir(image_store.tmp) == []
    assert events.statuses()[0] == "1: Pulling from " + f"{registry.host}/berth/busybox"
    assert "Pull complete" in events.statuses()
    assert events.statuses()[-1] == f"Status: Downloaded newer image for {ref}"
    again = Events()
    assert pull(image_store, ref, progress=again) == image_id
    assert again.statuses()[-1] == f"Status: Image is up to date for {ref}"
    assert "Downloading" not in again.statuses()
    # by digest too: the same image, no new tag
    assert pull(image_store, f"{registry.host}/berth/busybox@{manifest_digest}") == image_id
    assert image_store.names(image_id) == [ref]
    # localhost is a loopback registry as well (plain http, like docker's default)
    local = f"localhost:{registry.port}/berth/busybox:1"
    assert pull(image_store, local) == image_id
    assert image_store.names(image_id) == sorted([ref, local])


@pytest.mark.parametrize("index_type", [oci.OCI_INDEX, oci.DOCKER_LIST])
def test_an_index_yields_its_linux_amd64_image(registry, image_store: Store,
                                               index_type: str) -> None:
    docker = index_type == oci.DOCKER_LIST
    arm = tiny_image(registry, "multi/app", {"arch": b"arm64"}, arch="arm64", docker=docker)
    amd = tiny_image(registry, "multi/app", {"arch": b"amd64"}, docker=docker)
    s390 = tiny_image(registry, "multi/app", {"arch": b"s390x"}, arch="s390x", docker=docker)
    idx = {"schemaVersion": 2, "mediaType": index_type,
           "manifests": [{k: v for k, v in d.items() if k != "config"}
                         for d in (arm, amd, s390)]}
    status, idx_digest = put_manifest(registry, "multi/app", "v1", idx, index_type)
    assert status == 201, idx_digest
    ref = f"{registry.host}/multi/app:v1"
    image_id = pull(image_store, ref)
    assert image_id == amd["config"]
    assert image_store.image(image_id)["manifest"] == amd["digest"]
    assert image_store.image(image_id)["media_type"] == amd["mediaType"]
    (layer,) = image_store.layer_dirs(image_id)
    assert Path(layer, "arch").read_bytes() == b"amd64"
    assert f"{registry.host}/multi/app@{idx_digest}" in image_store.digest_names(image_id)
    assert image_store.resolve(f"{registry.host}/multi/app@{idx_digest}") == image_id


def test_an_index_without_linux_amd64_is_refused(registry, image_store: Store) -> None:
    arm = tiny_image(registry, "multi/armonly", {"a": b"a"}, arch="arm64")
    idx = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
           "manifests": [{k: v for k, v in arm.items() if k != "config"}]}
    assert put_manifest(registry, "multi/armonly", "v1", idx, oci.OCI_INDEX)[0] == 201
    with pytest.raises(ImageFailure, match=r"no image for linux/amd64 \(the index has: "
                                           r"linux/arm64\)"):
        pull(image_store, f"{registry.host}/multi/armonly:v1")
    assert_nothing_committed(image_store)


def test_pull_of_a_missing_tag_or_repository(registry, image_store: Store) -> None:
    with pytest.raises(NotFound, match="manifest nothing/here:v9 not found"):
        pull(image_store, f"{registry.host}/nothing/here:v9")
    assert_nothing_committed(image_store)


# --- bad input ---------------------------------------------------------------------------


def _seeded_layer(registry: RegistryProcess, archive_path: Path, name: str) -> tuple[str, Path]:
    """Seed `name` (repo:tag); return its reference and the registry's file of its layer."""
    ref = seed(registry, archive_path, name)
    repo, tag = name.split(":")
    status, _, body = http("GET", f"http://{registry.host}/v2/{repo}/manifests/{tag}",
                           headers={"Accept": oci.OCI_MANIFEST + "," + oci.DOCKER_MANIFEST})
    assert status == 200
    return ref, registry.blob_data(json.loads(body)["layers"][0]["digest"])


@pytest.mark.parametrize("where", ["gzip header", "middle"])
def test_a_tampered_blob_is_refused_and_nothing_is_committed(registry, image_store: Store,
                                                             podman_archive: Path,
                                                             where: str) -> None:
    ref, data_file = _seeded_layer(registry, podman_archive, "bad/tampered:1")
    data = bytearray(data_file.read_bytes())
    # the gzip header's mtime: still a valid gzip stream of the same tar, but another digest;
    # a byte in the middle: the stream is damaged as well
    data[4 if where == "gzip header" else len(data) // 2] ^= 0xFF
    data_file.write_bytes(bytes(data))
    error = DigestMismatch if where == "gzip header" else ImageFailure
    with pytest.raises(error, match="digest mismatch|corrupt gzip data"):
        pull(image_store, ref)
    assert_nothing_committed(image_store)
    assert image_store.db.execute("SELECT * FROM layers").fetchall() == []


def test_a_truncated_blob_is_refused_and_nothing_is_committed(registry, image_store: Store,
                                                              podman_archive: Path) -> None:
    ref, data_file = _seeded_layer(registry, podman_archive, "bad/truncated:1")
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(SizeMismatch, match="size mismatch"):
        pull(image_store, ref)
    assert_nothing_committed(image_store)
    assert image_store.db.execute("SELECT * FROM layers").fetchall() == []


def test_an_unknown_layer_media_type_is_refused(registry, image_store: Store) -> None:
    desc = tiny_image(registry, "bad/mediatype", {"x": b"x"},
                      layer_type="application/x-unknown-layer")
    with pytest.raises(ImageFailure, match="unknown layer media type 'application/x-unknown-"
                                           "layer'"):
        pull(image_store, f"{registry.host}/bad/mediatype@{desc['digest']}")
    assert_nothing_committed(image_store)
    assert os.listdir(image_store.blobs) == []


# --- push --------------------------------------------------------------------------------


def podman_run(tmp_path: Path, ref: str) -> subprocess.CompletedProcess:
    """podman (private storage) pulls ref over plain http and runs `echo ok` in it."""
    root = tmp_path / "podman-root"
    runroot = Path(tempfile.mkdtemp(prefix="berth-podman-"))  # podman wants <= 50 characters
    podman = ["podman", "--root", str(root), "--runroot", str(runroot)]
    try:
        p = subprocess.run([*podman, "pull", "--tls-verify=false", ref], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return subprocess.run([*podman, "--runtime", "runc", "run", "--rm", "--network",
                               "none", ref, "echo", "ok"], capture_output=True, text=True,
                              timeout=120)
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True,
                       timeout=120)
        subprocess.run(["umount", "-R", str(root / "overlay")], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)


@pytest.mark.root
def test_push_is_read_by_skopeo_and_run_by_podman(registry, image_store: Store,
                                                  podman_archive: Path, tmp_path: Path) -> None:
    (name,) = archive.load(image_store, str(podman_archive))
    events = Events()
    dest = f"{registry.host}/pushed/busybox:v1"
    digest = push(image_store, name, dest, progress=events)
    assert "Pushed" in events.statuses()
    assert events.statuses()[-1].startswith(f"v1: digest: {digest} size: ")
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{dest}").stdout)
    assert info["Digest"] == digest
    assert info["Env"] == ["PATH=/bin:/usr/bin"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    # skopeo copy verifies every blob's digest on the way
    skopeo("copy", "--src-tls-verify=false", f"docker://{dest}", f"oci:{tmp_path / 'copy'}:x")
    p = podman_run(tmp_path, dest)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "ok\n"
    # a second push sends nothing again
    again = Events()
    assert push(image_store, name, dest, progress=again) == digest
    assert "Pushed" not in again.statuses()
    assert "Layer already exists" in again.statuses()


def test_push_mounts_across_repositories_and_uploads_in_chunks(
        registry, image_store: Store, podman_archive: Path, tmp_path: Path) -> None:
    (name,) = archive.load(image_store, str(podman_archive))
    first = f"{registry.host}/chunks/busybox:v1"
    digest = push(image_store, name, first, chunk_size=64 << 10)
    layer = image_store.manifest(image_store.resolve(name))["layers"][0]
    assert layer["size"] > 4 * (64 << 10)  # so it went up in several PATCH chunks
    events = Events()
    second = f"{registry.host}/other/busybox:v2"
    assert push(image_store, name, second, progress=events) == digest
    short = layer["digest"]
    assert (short, "Mounted from chunks/busybox") in events.seen
    # a fresh store pulls what was pushed and finds every digest right
    fresh = Store(str(tmp_path / "fresh"))
    try:
        image_id = pull(fresh, second)
        assert image_id == image_store.resolve(name)
        assert os.path.isfile(os.path.join(fresh.layer_dirs(image_id)[-1], "bin/busybox"))
    finally:
        fresh.close()


# --- login / logout ----------------------------------------------------------------------


def test_login_logout_against_an_htpasswd_registry(auth_registry, image_store: Store,
                                                   podman_archive: Path, private_auth: Path,
                                                   tmp_path: Path) -> None:
    ref = seed(auth_registry, podman_archive, "secret/busybox:1")
    host = auth_registry.host
    with pytest.raises(Unauthorized, match=f"authentication required: berth login {host}"):
        pull(image_store, ref)
    assert_nothing_committed(image_store)
    with pytest.raises(Unauthorized, match="wrong username or password"):
        auth.login(host, USER, "not-the-password")
    assert not private_auth.exists()
    assert auth.login(host, USER, PASSWORD) == str(private_auth)
    assert private_auth.stat().st_mode & 0o777 == 0o600
    assert auth.lookup(host) == auth.Credentials(USER, PASSWORD)
    image_id = pull(image_store, ref)
    assert image_store.resolve(ref) == image_id
    # the file is the one podman and skopeo read
    info = skopeo("inspect", "--tls-verify=false", "--authfile", str(private_auth),
                  f"docker://{ref}")
    assert json.loads(info.stdout)["Digest"]
    # push with the stored credentials, then log out: pulls fail again
    assert push(image_store, ref, f"{host}/secret/copy:2")
    assert auth.logout(host) is True
    assert auth.logout(host) is False
    assert auth.lookup(host) is None
    with pytest.raises(Unauthorized):
        pull(Store(str(tmp_path / "other")), ref)


def test_credentials_podman_wrote_are_used(auth_registry, image_store: Store,
                                           podman_archive: Path, private_auth: Path) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman not installed")
    ref = seed(auth_registry, podman_archive, "secret/podman:1")
    p = subprocess.run(["podman", "login", "--tls-verify=false", "--authfile",
                        str(private_auth), "-u", USER, "--password-stdin", auth_registry.host],
                       input=PASSWORD, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert pull(image_store, ref)


@pytest.mark.root
def test_berth_run_pulls_a_missing_image_and_runs_it(registry, podman_archive: Path,
                                                     tmp_path: Path) -> None:
    """skopeo puts a podman-made image in the registry; `berth run` pulls and runs it."""
    import sys
    ref = seed(registry, podman_archive, "berth/run-me:1")
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"))
    berth = str(Path(sys.executable).parent / "berth")
    p = subprocess.run([berth, "run", "--rm", ref, "sh", "-c", "echo ok from $(hostname)"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok from ")
    assert f"Unable to find image '{ref}' locally" in p.stderr
    listed = subprocess.run([berth, "images", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, env=env, check=True).stdout
    assert listed == f"{registry.host}/berth/run-me:1\n"
