"""`berth run` from the image store, in the foreground: checked from inside the container."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

BERTH = str(Path(sys.executable).parent / "berth")


@pytest.fixture
def berth(tmp_path: Path, busybox_image: Path):  # type: ignore[no-untyped-def]
    """berth with a private root holding the busybox image as `busybox`."""
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"))

    def call(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        p = subprocess.run([BERTH, *args], capture_output=True, text=True, env=env, timeout=60,
                           **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)}: {p.returncode}: {p.stderr}")
        return p

    call("load", "-i", str(busybox_image / "oci"))
    call("tag", "localhost/image:latest", "busybox")
    yield call
    for cid in call("ps", "-aq", check=False).stdout.split():
        call("rm", "-f", cid, check=False)


def test_run_uses_the_image_config_and_flags(berth) -> None:  # type: ignore[no-untyped-def]
    p = berth("run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "nobody",
              "--hostname", "box", "busybox", "sh", "-c",
              'echo "$GREETING $(hostname) $(pwd) $(id -u):$(id -g)"; echo $PATH; '
              "cat /proc/1/cmdline | tr '\\0' ' '")
    lines = p.stdout.splitlines()
    assert lines[0] == "hi box /tmp 65534:65534"
    assert lines[1] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[2].startswith("sh -c ")


def test_exit_code_and_rm_leave_nothing(berth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = berth("run", "--rm", "busybox", "sh", "-c", "exit 42", check=False)
    assert p.returncode == 42
    assert berth("ps", "-aq").stdout == ""
    assert os.listdir(tmp_path / "root" / "containers") == []
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


def test_writes_go_to_the_containers_own_layer(berth) -> None:  # type: ignore[no-untyped-def]
    berth("run", "--name", "writer", "busybox", "sh", "-c", "echo data > /etc/new; rm /bin/vi")
    p = berth("run", "--rm", "busybox", "sh", "-c", "ls /etc/new /bin/vi 2>&1; true")
    assert "/etc/new: No such file" in p.stdout  # another container: a fresh upper layer
    assert "/bin/vi" in p.stdout and "No such file or directory" not in p.stdout.split("\n")[1]
    ps = berth("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    assert ps.startswith("writer Exited (0)")
    assert berth("rm", "writer").stdout == "writer\n"


def test_read_only_and_limits(berth) -> None:  # type: ignore[no-untyped-def]
    p = berth("run", "--rm", "--read-only", "-m", "64m", "--pids-limit", "30", "busybox", "sh",
              "-c", "touch /x 2>/dev/null && echo rw || echo ro; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
    assert p.stdout.split() == ["ro", str(64 << 20), "30"]


def test_name_conflict_and_missing_image(berth) -> None:  # type: ignore[no-untyped-def]
    berth("run", "--name", "taken", "busybox", "true")
    p = berth("run", "--name", "taken", "busybox", "true", check=False)
    assert p.returncode == 125 and 'name "/taken" is already in use' in p.stderr
    p = berth("run", "--rm", "--pull", "never", "nosuchimage", "true", check=False)
    assert p.returncode == 125 and "not found" in p.stderr
    p = berth("run", "--rm", "busybox", "no-such-command", check=False)
    assert p.returncode != 0 and "not found" in p.stderr
    assert [c for c in berth("ps", "-a", "--format", "{{.Names}}").stdout.split()] == ["taken"]


@pytest.mark.e2e
def test_same_answers_as_podman(berth, busybox_rootfs: Path) -> None:  # type: ignore[no-untyped-def]
    """The same image and command under podman (runc) and berth: same view from inside."""
    import shutil
    if shutil.which("podman") is None:
        pytest.skip("podman not installed")
    # `id` differs on purpose: docker (which berth follows) lists the primary group in
    # the process's groups, podman does not
    script = ("id -u; id -g; pwd; echo $PATH; grep -E '^(CapEff|CapBnd)' /proc/self/status; "
              "cat /proc/1/comm; ls /sys/class/net")
    name = "localhost/berth-cmp:1"
    tar = subprocess.run(["tar", "-C", str(busybox_rootfs), "-c", "."], capture_output=True,
                         check=True).stdout
    subprocess.run(["podman", "import", "--change",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "-", name], input=tar, capture_output=True, check=True)
    try:
        # podman's default capabilities are docker's minus these three; berth follows docker
        theirs = subprocess.run(["podman", "--runtime", "runc", "run", "--rm", "--network",
                                 "none", "--cap-add", "MKNOD,NET_RAW,AUDIT_WRITE", name,
                                 "sh", "-c", script], capture_output=True,
                                text=True, check=True).stdout
    finally:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)
    ours = berth("run", "--rm", "--network", "none", "busybox", "sh", "-c", script).stdout
    assert ours == theirs


def _volatile_root(mountinfo_line: str) -> bool:
    """Whether the line for / says volatile ("fsync=volatile" on kernels from 6.x)."""
    return bool({"volatile", "fsync=volatile"} & set(mountinfo_line.split()[-1].split(",")))


@pytest.mark.e2e
def test_rm_snapshots_are_volatile_as_podmans(berth, busybox_rootfs: Path) -> None:  # type: ignore[no-untyped-def]
    """run --rm mounts the container's snapshot volatile, as podman does: no sync of the
    host's filesystem when it goes. A container that stays keeps a durable one."""
    import shutil
    if shutil.which("podman") is None:
        pytest.skip("podman not installed")
    script = "grep ' / / ' /proc/self/mountinfo"
    ours = (berth("run", "--rm", "--network", "none", "busybox", "sh", "-c", script).stdout,
            berth("run", "--name", "kept", "--network", "none", "busybox", "sh", "-c",
                  script).stdout)
    again = berth("start", "-a", "kept").stdout  # its snapshot mounts again, as it was
    assert again.split()[4] == "/" and not _volatile_root(again)
    name = "localhost/berth-vol:1"
    tar = subprocess.run(["tar", "-C", str(busybox_rootfs), "-c", "."], capture_output=True,
                         check=True).stdout
    subprocess.run(["podman", "import", "-", name], input=tar, capture_output=True, check=True)
    podman = ["podman", "--runtime", "runc", "run", "--network", "none"]
    try:
        theirs = (subprocess.run([*podman, "--rm", name, "sh", "-c", script],
                                 capture_output=True, text=True, check=True).stdout,
                  subprocess.run([*podman, "--name", "berth-vol-kept", name, "sh", "-c", script],
                                 capture_output=True, text=True, check=True).stdout)
    finally:
        subprocess.run(["podman", "rm", "-f", "berth-vol-kept"], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)
    assert [_volatile_root(x) for x in ours] == [_volatile_root(x) for x in theirs] \
        == [True, False]


@pytest.mark.parametrize("network", ["none", "bridge"])
def test_run_imports_only_what_it_needs(berth, tmp_path: Path, network: str) -> None:  # type: ignore[no-untyped-def]
    """`berth run --rm` must not pay for modules whose import alone costs milliseconds
    (the first run on a network makes its record, bridge and rules: not that one)."""
    berth("run", "--rm", "--network", network, "busybox", "true")
    src = str(Path(__file__).resolve().parents[3] / "src")
    code = (f"import sys; sys.path.insert(0, {src!r}); from berth.frozen import thaw; "
            "thawed = thaw(); from berth.cli.main import main; "
            f"rc = main(['run', '--rm', '--network', {network!r}, 'busybox', 'true']); "
            "print(rc, thawed, ' '.join(sorted(sys.modules))); "
            "print(' '.join(m for m in sys.modules if m.startswith('berth.') "
            "and sys.modules[m].__spec__.loader_state != 'frozen'))")
    env = dict(os.environ, BERTH_ROOT=str(tmp_path / "root"),
               BERTH_RUNTIME_ROOT=str(tmp_path / "runtime"))
    p = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code], capture_output=True,
                       text=True, env=env, timeout=60)
    rc, thawed, mods = p.stdout.split("\n")[0].split(" ", 2)
    assert rc == "0", p.stderr
    # the launcher's frozen modules (berth/frozen.py; `make frozen` builds them) are all
    # the berth modules it runs, but for those of the bridge
    assert thawed == "True", "no fresh frozen file: make frozen"
    imported = set(p.stdout.split("\n")[1].split()) - {"berth.frozen"}
    if network == "bridge":
        imported -= {"berth.engine.networks", "berth.engine.netlink", "berth.engine.ports"}
    assert imported == set(), "add these to berth.frozen.RUN"
    heavy = {"json", "re", "enum", "socket", "subprocess", "ipaddress", "hashlib", "shutil",
             "ctypes", "click", "dataclasses", "typing", "sqlite3", "datetime", "random",
             "secrets", "tempfile", "asyncio", "aiohttp", "berth.engine.supervisor",
             "functools", "collections",  # _sqlite3 would load them (berth.database)
             "berth.runtime.libseccomp"}  # a compiled seccomp program needs no libseccomp
    assert set(mods.split()) & heavy == set()
