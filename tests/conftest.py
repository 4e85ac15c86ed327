"""Fixtures shared by every test: the local busybox image and runtime bundles.

Integration tests run the real berth-runtime binary as root against a private
--root directory and a per-test cgroup, and clean up containers, cgroups and
mounts they leave, whatever the outcome.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RUNTIME = str(VENV_BIN / "berth-runtime")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def teardown_bridges(root: Path) -> None:
    """Remove the bridges and nftables rules of every network of a berth root.

    berth keeps a network's bridge after its last container leaves (as docker keeps
    docker0); a test's root goes with its tmp_path, so its bridges must go first.
    """
    from berth.engine import networks
    from berth.engine.state import State
    state = State(str(root))
    try:
        for name in networks.names(state):
            networks.teardown(state, name)
    finally:
        state.close()


@pytest.fixture(autouse=True)
def _no_bridges_left(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """After each test that had a tmp_path: tear down the bridges of berth roots in it."""
    tmp = request.getfixturevalue("tmp_path") if os.geteuid() == 0 and \
        "tmp_path" in request.fixturenames else None  # now: it is torn down before us
    yield
    if tmp is None:
        return
    for pattern in ("engine.db", "*/engine.db", "*/*/engine.db"):
        for db in tmp.glob(pattern):
            teardown_bridges(db.parent)


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox image directory (oci/ layout and rootfs/), built once if not given."""
    given = os.environ.get("BERTH_TEST_IMAGE")
    if given and (Path(given) / "rootfs").is_dir():
        return Path(given).resolve()
    from berth.images import busybox
    out = tmp_path_factory.mktemp("busybox")
    busybox.build(str(out))
    return out


@pytest.fixture(scope="session")
def busybox_rootfs(busybox_image: Path) -> Path:
    return busybox_image / "rootfs"


class Runtime:
    """berth-runtime (or another runc-compatible binary) with a private state root."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.created: list[str] = []

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 60,
                 **kw: object) -> subprocess.CompletedProcess:
        if args and args[0] in ("create", "run") and args[-1] not in self.created:
            self.created.append(args[-1])
        if args and (args[0] == "create" or (args[0] in ("run", "exec") and (
                "-d" in args or "--detach" in args))) and "stdout" not in kw:
            # the container inherits stdout and stderr: pipes would stay open as long as it
            # runs, so a detached container writes to files instead
            out_path = self.root.parent / f"{args[-1]}.out"
            err_path = self.root.parent / f"{args[-1]}.err"
            with open(out_path, "w") as o, open(err_path, "w") as e:
                rc = subprocess.run(self.cmd(*args), stdout=o, stderr=e, timeout=timeout,
                                    **kw).returncode  # type: ignore[call-overload]
            p = subprocess.CompletedProcess(args, rc, out_path.read_text(), err_path.read_text())
        else:
            p = subprocess.run(self.cmd(*args), capture_output=True, text=True,
                               timeout=timeout, **kw)  # type: ignore[call-overload]
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self.created:
            subprocess.run(self.cmd("delete", "--force", cid), capture_output=True)


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    rt = Runtime(RUNTIME, tmp_path / "state")
    yield rt
    rt.cleanup()


class Bundle:
    """A bundle directory whose config.json starts as `berth-runtime spec` with the image root."""

    def __init__(self, path: Path, rootfs: Path, cgroup: str) -> None:
        from berth.runtime.spec import default_spec

        self.path = path
        self.cgroup = cgroup
        self.config = default_spec()
        self.config["root"] = {"path": str(rootfs), "readonly": True}
        self.config["linux"]["cgroupsPath"] = cgroup
        self.config["process"]["args"] = ["true"]

    def write(self) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(self.config, indent=1))
        return str(self.path)

    def with_args(self, *args: str) -> Bundle:
        self.config["process"]["args"] = list(args)
        return self

    def copy_rootfs(self, rootfs: Path) -> Path:
        """A private, writable copy of the rootfs (for tests that write into it)."""
        dest = self.path / "rootfs"
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(rootfs), str(dest)], check=True)
        self.config["root"] = {"path": "rootfs", "readonly": False}
        return dest

    def clone(self, name: str) -> Bundle:
        b = copy.copy(self)
        b.path = self.path.parent / name
        b.config = copy.deepcopy(self.config)
        return b


@pytest.fixture
def bundle(tmp_path: Path, busybox_rootfs: Path) -> Bundle:
    cg = f"/berth-test/{uuid.uuid4().hex[:12]}"
    b = Bundle(tmp_path / "bundle", busybox_rootfs, cg)
    yield b
    remove_cgroup(cg)


def remove_cgroup(path: str) -> None:
    for base in Path("/sys/fs/cgroup").iterdir():
        d = base / path.lstrip("/")
        if d.is_dir():
            try:
                d.rmdir()
            except OSError:
                pass


def mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(prefix)]
