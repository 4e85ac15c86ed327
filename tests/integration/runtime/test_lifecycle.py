"""The runtime's verbs and states: create, start, state, kill, delete, exec, list, ps, hooks."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import mounts_under
from tests.integration.runtime.test_isolation import wait_for_status

pytestmark = pytest.mark.root


def test_create_start_state_kill_delete(runtime, bundle, tmp_path: Path) -> None:
    bundle.with_args("sleep", "60")
    pid_file = tmp_path / "pid"
    runtime("create", "--bundle", bundle.write(), "--pid-file", str(pid_file), "c1")
    st = runtime.state("c1")
    assert st["status"] == "created"
    assert st["id"] == "c1" and st["bundle"] == str(bundle.path) and st["ociVersion"]
    assert pid_file.read_text() == str(st["pid"])  # bare pid, no newline, like runc
    # created: init waits in its namespaces and cgroup; the process has not run yet
    assert os.readlink(f"/proc/{st['pid']}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert bundle.cgroup in Path(f"/proc/{st['pid']}/cgroup").read_text()
    assert "sleep" not in Path(f"/proc/{st['pid']}/cmdline").read_text()

    runtime("start", "c1")
    st = runtime.state("c1")
    assert st["status"] == "running"
    assert Path(f"/proc/{st['pid']}/cmdline").read_bytes() == b"sleep\x0060\x00"
    assert runtime("start", "c1", check=False).returncode != 0  # not twice

    p = runtime("delete", "c1", check=False)  # running: refused, nothing changed
    assert p.returncode != 0 and "not stopped" in p.stderr
    assert runtime.state("c1")["status"] == "running"

    runtime("kill", "c1", "KILL")
    wait_for_status(runtime, "c1", "stopped")
    assert runtime.state("c1")["pid"] == 0
    assert runtime("kill", "c1", "TERM", check=False).returncode != 0  # stopped: error
    runtime("delete", "c1")
    p = runtime("state", "c1", check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr
    assert not any((Path("/sys/fs/cgroup") / c / bundle.cgroup.lstrip("/")).exists()
                   for c in ("memory", "pids", "cpu", "devices"))


def test_delete_of_created_container_needs_force(runtime, bundle) -> None:
    runtime("create", "--bundle", bundle.write(), "c1")
    assert runtime("delete", "c1", check=False).returncode != 0
    assert runtime.state("c1")["status"] == "created"
    runtime("delete", "--force", "c1")
    assert runtime("state", "c1", check=False).returncode != 0


def test_duplicate_id_is_refused(runtime, bundle) -> None:
    runtime("create", "--bundle", bundle.write(), "dup")
    p = runtime("create", "--bundle", bundle.write(), "dup", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr
    assert runtime.state("dup")["status"] == "created"


def test_signal_reaches_init(runtime, bundle, tmp_path: Path) -> None:
    rootfs = bundle.copy_rootfs(Path(bundle.config["root"]["path"]))
    bundle.with_args("sh", "-c", "trap 'echo got-usr1 > /tmp/sig; exit 0' USR1; "
                     "while true; do sleep 0.1; done")
    runtime("create", "--bundle", bundle.write(), "c1")
    runtime("start", "c1")
    runtime("kill", "c1", "USR1")
    wait_for_status(runtime, "c1", "stopped")
    assert (rootfs / "tmp" / "sig").read_text() == "got-usr1\n"


def test_exec_joins_the_container(runtime, bundle) -> None:
    bundle.config["hostname"] = "exec-target"
    bundle.config["process"]["env"].append("FROM_CONFIG=1")
    bundle.with_args("sleep", "60")
    runtime("create", "--bundle", bundle.write(), "c1")
    runtime("start", "c1")
    p = runtime("exec", "--env", "EXTRA=2", "--cwd", "/tmp", "c1", "sh", "-c",
                "hostname; echo $FROM_CONFIG$EXTRA; pwd; cat /proc/1/cmdline | tr '\\0' ' '; "
                "exit 3", check=False)
    assert p.returncode == 3
    assert p.stdout.split("\n")[:4] == ["exec-target", "12", "/tmp", "sleep 60 "]
    p = runtime("exec", "--user", "1000:1000", "c1", "id")
    assert p.stdout.strip() == "uid=1000 gid=1000"
    p = runtime("exec", "c1", "no-such-program", check=False)
    assert p.returncode != 0 and "not found" in p.stderr


def test_exec_process_file_and_detach(runtime, bundle, tmp_path: Path) -> None:
    bundle.with_args("sleep", "60")
    runtime("create", "--bundle", bundle.write(), "c1")
    runtime("start", "c1")
    proc = {"args": ["sleep", "30"], "cwd": "/", "env": ["PATH=/bin"]}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    runtime("exec", "--detach", "--process", str(tmp_path / "p.json"), "--pid-file",
            str(tmp_path / "epid"), "c1")
    epid = int((tmp_path / "epid").read_text())
    assert Path(f"/proc/{epid}/cmdline").read_bytes() == b"sleep\x0030\x00"
    assert epid in json.loads(runtime("ps", "--format", "json", "c1").stdout)
    table = runtime("ps", "c1").stdout
    assert "sleep 30" in table and "sleep 60" in table


def test_list_shows_runc_columns(runtime, bundle) -> None:
    runtime("create", "--bundle", bundle.write(), "listed")
    lines = runtime("list").stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    fields = lines[1].split()
    assert fields[0] == "listed" and fields[2] == "created" and fields[3] == str(bundle.path)
    assert runtime("list", "-q").stdout.split() == ["listed"]


def test_hooks_run_in_order_with_state_on_stdin(runtime, bundle, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"

    def hook(name: str) -> dict:
        return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {name} $(cat) >> {log}"]}

    bundle.config["hooks"] = {k: [hook(k)] for k in (
        "prestart", "createRuntime", "createContainer", "poststart", "poststop")}
    # startContainer runs inside the container: its path and output are the container's
    rootfs = bundle.copy_rootfs(Path(bundle.config["root"]["path"]))
    bundle.config["hooks"]["startContainer"] = [
        {"path": "/bin/sh", "args": ["sh", "-c", "cat > /start.json; cat /proc/1/cmdline > "
                                     "/start.cmd; echo process-not-yet > /order"]}]
    bundle.with_args("sh", "-c", "echo process >> /order")
    bundle.config["annotations"] = {"org.example/key": "value"}
    runtime("create", "--bundle", bundle.write(), "c1")
    runtime("start", "c1")
    wait_for_status(runtime, "c1", "stopped")
    runtime("delete", "c1")
    entries = [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1]))
               for line in log.read_text().splitlines()]
    assert [e[0] for e in entries] == ["createRuntime", "createContainer", "prestart",
                                       "poststart", "poststop"]
    assert (rootfs / "order").read_text() == "process-not-yet\nprocess\n"
    start_state = json.loads((rootfs / "start.json").read_text())
    assert start_state["id"] == "c1"
    for _, st in entries:
        assert st["id"] == "c1" and st["bundle"] == str(bundle.path)
        assert st["annotations"] == {"org.example/key": "value"}
    assert dict(entries)["prestart"]["status"] == "created"
    assert dict(entries)["poststart"]["status"] == "running"
    assert dict(entries)["poststop"]["status"] == "stopped"


def test_failing_prestart_hook_removes_the_container(runtime, bundle) -> None:
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    runtime("create", "--bundle", bundle.write(), "c1")
    p = runtime("start", "c1", check=False)
    assert p.returncode != 0 and "hooks.prestart[0]" in p.stderr
    assert runtime("state", "c1", check=False).returncode != 0


def test_failing_poststop_hook_only_warns(runtime, bundle, tmp_path: Path) -> None:
    mark = tmp_path / "second-ran"
    bundle.config["hooks"] = {"poststop": [
        {"path": "/bin/false"}, {"path": "/bin/touch", "args": ["touch", str(mark)]}]}
    runtime("run", "--bundle", bundle.write(), "c1")
    assert mark.exists()


def test_console_socket_receives_the_pty(runtime, bundle, tmp_path: Path) -> None:
    """process.terminal: the pty master arrives on --console-socket (what conmon does)."""
    import socket

    sock_path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    bundle.config["process"]["terminal"] = True
    bundle.with_args("sh", "-c", "tty; echo cols=$(stty size)")
    bundle.config["process"]["consoleSize"] = {"height": 30, "width": 99}
    runtime("create", "--bundle", bundle.write(), "--console-socket", sock_path, "c1")
    conn, _ = srv.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    conn.close()
    srv.close()
    master = fds[0]
    runtime("start", "c1")
    wait_for_status(runtime, "c1", "stopped")
    out = b""
    os.set_blocking(master, False)
    deadline = time.monotonic() + 5
    while b"cols=" not in out and time.monotonic() < deadline:
        try:
            out += os.read(master, 4096)
        except BlockingIOError:
            time.sleep(0.02)
        except OSError:
            break
    os.close(master)
    text = out.decode()
    assert "/dev/pts/0" in text
    assert "cols=30 99" in text


def test_runc_and_berth_agree(runtime, bundle, tmp_path: Path) -> None:
    """The same bundle under runc and under berth-runtime: same output from inside."""
    from tests.conftest import Runtime

    script = ("hostname; id; echo home=$HOME; grep -E '^(CapEff|CapBnd|NoNewPrivs)' "
              "/proc/self/status; "
              "ls /dev | sort | tr '\\n' ' '; echo; ls /proc/self/fd | wc -l; "
              "cat /proc/self/mountinfo | cut -d' ' -f5 | tr '\\n' ' '")
    bundle.with_args("sh", "-c", script)
    path = bundle.write()
    runc = Runtime("runc", tmp_path / "runc-state")
    try:
        theirs = runc("run", "--bundle", path, "cmp-runc").stdout
    finally:
        runc.cleanup()
    ours = runtime("run", "--bundle", path, "cmp-berth").stdout
    assert ours == theirs and "home=/root\n" in ours  # HOME from /etc/passwd, as runc


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[5].type"),
    (lambda c: c.__setitem__("root", {"path": "/no/such/rootfs"}), "root.path"),
    (lambda c: c["mounts"].append({"destination": "relative/dir", "type": "tmpfs"}),
     "mounts[7].destination"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_BOGUS"),
     "process.capabilities.bounding"),
    (lambda c: c["process"].__setitem__("rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1,
                                                       "hard": 1}]), "process.rlimits[0].type"),
    (lambda c: c["linux"].__setitem__("sysctl", {"kernel.pid_max": "1000"}),
     "linux.sysctl.kernel.pid_max"),
    (lambda c: c.__setitem__("ociVersion", 3), "ociVersion"),
])
def test_bad_config_is_one_clear_error_and_leaves_nothing(runtime, bundle, mutate,
                                                          field: str) -> None:
    mutate(bundle.config)
    p = runtime("create", "--bundle", bundle.write(), "bad", check=False)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], p.stderr
    assert runtime("list", "-q").stdout == ""
    assert not os.path.exists(runtime.root / "bad")
    assert not any((Path("/sys/fs/cgroup") / c / bundle.cgroup.lstrip("/")).exists()
                   for c in ("memory", "pids", "cpu", "devices"))


def test_failing_mount_leaves_nothing(runtime, bundle, tmp_path: Path) -> None:
    bundle.config["mounts"].append({"destination": "/data", "type": "bind",
                                    "source": str(tmp_path / "missing"), "options": ["rbind"]})
    before = mounts_under(str(tmp_path))
    p = runtime("create", "--bundle", bundle.write(), "badmount", check=False)
    assert p.returncode == 1
    assert "mounts[7] (/data)" in p.stderr and "does not exist" in p.stderr
    assert runtime("list", "-q").stdout == ""
    assert mounts_under(str(tmp_path)) == before
    assert not any((Path("/sys/fs/cgroup") / c / bundle.cgroup.lstrip("/")).exists()
                   for c in ("memory", "pids", "cpu", "devices"))


def test_unknown_container_and_usage_errors(runtime) -> None:
    for args in (("state", "nope"), ("start", "nope"), ("kill", "nope", "KILL"),
                 ("delete", "nope"), ("state",), ("kill",), ("frobnicate",)):
        p = runtime(*args, check=False)
        assert p.returncode != 0, args
        assert p.stderr.startswith("berth-runtime: "), args


def test_features_and_version() -> None:
    from tests.conftest import RUNTIME
    feats = json.loads(subprocess.run([RUNTIME, "features"], capture_output=True, text=True,
                                      check=True).stdout)
    assert "user" in feats["linux"]["namespaces"]
    assert feats["linux"]["seccomp"]["enabled"] is True
    assert "berth-runtime" in subprocess.run([RUNTIME, "--version"], capture_output=True,
                                             text=True, check=True).stdout


def test_init_is_forked_into_its_pid_namespace_and_the_runtime_keeps_its_own(
        bundle, tmp_path: Path) -> None:
    """One stage (no user namespace): the runtime unshares a pid namespace, forks init into
    it and takes its own pid_for_children back; a later fork of the runtime's process (a
    hook, a supervisor's next container) is in the host's pid namespace again."""
    import sys
    bundle.with_args("sh", "-c", "echo $$; readlink /proc/self/ns/pid; sleep 30").write()
    code = f"""
import os, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[3] / "src")!r})
from berth.runtime.run import create_and_start
from berth.runtime.delete import delete
from berth.runtime.store import Store
out = os.open({str(tmp_path / "init.out")!r}, os.O_WRONLY | os.O_CREAT, 0o644)
store = Store({str(tmp_path / "state")!r})
pid = create_and_start(store, "onefork", {str(bundle.path)!r}, stdio=(0, out, 2))
children = os.readlink("/proc/self/ns/pid_for_children")
child = os.fork()
if child == 0:
    os._exit(0)
os.waitpid(child, 0)
print(os.readlink("/proc/self/ns/pid"), children, os.readlink(f"/proc/{{pid}}/ns/pid"),
      open(f"/proc/{{pid}}/stat").read().split()[3] == str(os.getpid()))
time.sleep(0.3)
delete(store, "onefork", force=True)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    own, children, init_ns, init_is_our_child = p.stdout.split()
    assert children == own  # taken back right after the fork
    assert init_ns != own and init_is_our_child == "True"  # one fork: init is our own child
    inside = (tmp_path / "init.out").read_text().split()
    assert inside == ["1", init_ns]  # pid 1 of the namespace it was forked into


def test_a_create_killed_at_any_moment_leaves_nothing_after_delete(runtime, bundle) -> None:
    """The first record names the cgroup directories create is about to make, so a
    runtime SIGKILLed between making them and anything else leaves nothing to `delete -f`."""
    import signal
    bundle.with_args("sleep", "60")
    path = bundle.write()
    for i, delay in enumerate([0.0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02,
                               0.03, 0.05]):
        cid = f"k{i}"
        p = subprocess.Popen(runtime.cmd("create", "--bundle", path, cid),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if (runtime.root / cid).exists():
            runtime("delete", "--force", cid, check=False)
        for base in Path("/sys/fs/cgroup").iterdir():
            assert not (base / bundle.cgroup.lstrip("/")).exists(), (delay, base)
