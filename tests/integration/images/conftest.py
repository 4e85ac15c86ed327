"""Real registries for the image tests: Debian's docker-registry (distribution 2.8) on loopback.

`registry` is open; `auth_registry` wants a username and password
(htpasswd, bcrypt hashes made with the `bcrypt` package). Each is a process
of its own with a temporary config and storage directory, started on a free
127.0.0.1 port and stopped (and its directory removed) after the test.
`image_store` is an empty berth image store; `seeded` puts the busybox image into a
registry with skopeo, as a podman-made image (podman import of the busybox
rootfs, saved as an oci-archive).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REGISTRY_BIN = shutil.which("docker-registry")
USER, PASSWORD = "berth", "s3cret-pass"

CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
{auth}"""

AUTH = """\
auth:
  htpasswd:
    realm: berth-test
    path: {htpasswd}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryProcess:
    """One docker-registry serving 127.0.0.1:<port> from a private directory."""

    def __init__(self, base: Path, auth: bool) -> None:
        self.base = base
        self.storage = base / "storage"
        self.auth = auth
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.auth:
            import bcrypt

            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.base / "htpasswd").write_text(f"{USER}:{hashed}\n")
            auth = AUTH.format(htpasswd=self.base / "htpasswd")
        for _ in range(5):  # the port may be taken between choosing and binding it
            self.port = _free_port()
            cfg = self.base / "config.yml"
            cfg.write_text(CONFIG.format(storage=self.storage, port=self.port,
                                         secret=secrets.token_hex(16), auth=auth))
            with open(self.base / "registry.log", "ab") as log:
                self.proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(cfg)],
                                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"docker-registry did not start: {self.log()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    return True
            except urllib.error.HTTPError as e:
                return e.code == 401  # up, and asking for credentials
            except OSError:
                time.sleep(0.02)
        return False

    def log(self) -> str:
        try:
            return (self.base / "registry.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_data(self, digest: str) -> Path:
        """The file the registry serves a blob from (for tampering with it)."""
        hexpart = digest.partition(":")[2]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
                / "data")


def _registry(tmp_path_factory: pytest.TempPathFactory, auth: bool):  # type: ignore[no-untyped-def]
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    base = tmp_path_factory.mktemp("registry-auth" if auth else "registry")
    reg = RegistryProcess(base, auth)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from _registry(tmp_path_factory, auth=False)


@pytest.fixture
def auth_registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from _registry(tmp_path_factory, auth=True)


@pytest.fixture
def image_store(tmp_path: Path, private_auth: Path):  # type: ignore[no-untyped-def]
    """An empty store (and private credential files: see private_auth)."""
    from berth.images.store import Store

    s = Store(str(tmp_path / "store"))
    yield s
    s.close()


@pytest.fixture
def private_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """berth reads and writes credentials only under tmp_path, never the machine's own."""
    path = tmp_path / "auth" / "auth.json"
    monkeypatch.setenv("BERTH_AUTH_FILE", str(path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    for d in ("xdg", "docker", "home"):
        (tmp_path / d).mkdir(mode=0o700)
    (tmp_path / "docker" / "config.json").write_text('{"auths": {}}\n')  # podman stats it
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return path


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"skopeo {' '.join(args)}: {p.stderr}"
    return p


@pytest.fixture(scope="session")
def podman_archive(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    """The busybox rootfs made into an image by podman (import), saved as an oci-archive."""
    if shutil.which("podman") is None or shutil.which("skopeo") is None:
        pytest.skip("podman and skopeo are needed")
    base = tmp_path_factory.mktemp("podman")
    root = base / "root"
    runroot = Path(tempfile.mkdtemp(prefix="berth-podman-"))  # podman wants <= 50 characters
    podman = ["podman", "--root", str(root), "--runroot", str(runroot)]
    tar = base / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    name = "localhost/berth-test/busybox:latest"
    try:
        p = subprocess.run([*podman, "import", "--change", "ENV PATH=/bin:/usr/bin",
                            "--change", 'CMD ["sh"]', str(tar), name],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        out = base / "busybox-oci.tar"
        p = subprocess.run([*podman, "save", "--format", "oci-archive", "-o", str(out), name],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True,
                       timeout=120)
        subprocess.run(["umount", "-R", str(root / "overlay")], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)
    tar.unlink()
    return out


def seed(reg: RegistryProcess, archive: Path, name: str, *extra: str) -> str:
    """skopeo copy of an archive into the registry as `name`; return the reference."""
    ref = f"{reg.host}/{name}"
    creds = ["--dest-creds", f"{USER}:{PASSWORD}"] if reg.auth else []
    skopeo("copy", "--dest-tls-verify=false", *creds, *extra, f"oci-archive:{archive}",
           f"docker://{ref}")
    return ref
