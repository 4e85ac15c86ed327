"""One script of everyday docker commands, run with `docker` against Debian's dockerd and
with `berth`: the same exit codes and the same output shapes.

dockerd runs on its own socket, data root and exec root, without iptables or a bridge,
and is stopped (with its containerd) afterwards. Both engines get the same busybox
image: berth saves it, docker loads it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import teardown_bridges

pytestmark = [pytest.mark.e2e, pytest.mark.root,
              pytest.mark.skipif(shutil.which("dockerd") is None or shutil.which("docker") is None,
                                 reason="dockerd and the docker CLI are needed")]

BERTH = str(Path(sys.executable).parent / "berth")
HEX64 = re.compile(r"^[0-9a-f]{64}\n$")

# (command, how to compare stdout[, what to feed its stdin]): "same" exact, "hex64" an id,
# "head" first line only, "prefix:N" first N characters, "empty", "none" (exit code only)
SCRIPT: list[tuple] = [
    (["run", "--rm", "--network", "none", "busybox", "echo", "hello"], "same"),
    (["run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 3"], "same"),
    (["run", "--rm", "--network", "none", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "busybox",
      "sh", "-c", "echo $A $(pwd) $(id -u) $(id -g)"], "same"),
    (["run", "--rm", "--network", "none", "busybox", "id"], "same"),
    (["run", "--rm", "--network", "none", "--entrypoint", "/bin/echo", "busybox", "hi"], "same"),
    (["run", "--rm", "--network", "none", "--read-only", "busybox", "touch", "/x"], "none"),
    (["run", "--rm", "--network", "none", "busybox", "nosuchcommand"], "none"),
    (["run", "--rm", "--network", "none", "busybox", "/etc"], "none"),  # 126, not 127
    (["run", "--rm", "--network", "none", "busybox", "cat"], "same", "hi\n"),  # no -i: nothing
    (["run", "--rm", "--network", "none", "-i", "busybox", "cat"], "same", "hi\n"),
    (["run", "--name", "compat8", "--network", "none", "busybox", "sh", "-c",
      "echo out; echo err >&2; exit 4"], "same"),
    (["logs", "compat8"], "same"),  # a foreground run is logged too
    (["rm", "compat8"], "same"),
    (["run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo $HOME"], "same"),
    (["run", "--rm", "--network", "none", "-u", "nobody", "busybox", "sh", "-c", "echo $HOME"],
     "same"),
    (["run", "--rm", "--network", "none", "-h", "boxname", "busybox", "hostname"], "same"),
    # the default seccomp profile, lifted by a capability, or none
    *((["run", "--rm", "--network", "none", *opts, "busybox", "sh", "-c",
        "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null; echo $?; "
        "mount -t tmpfs x /mnt 2>/dev/null; echo $?"], "same")
      for opts in ([], ["--cap-add", "SYS_ADMIN"], ["--security-opt", "seccomp=unconfined"])),
    (["run", "-d", "--name", "compat1", "--network", "none", "busybox", "sleep", "30"], "hex64"),
    (["ps"], "head"),
    (["ps", "--format", "{{.Names}} {{.Image}} {{.Command}}"], "same"),
    (["exec", "compat1", "cat", "/proc/1/comm"], "same"),
    (["exec", "compat1", "sh", "-c", "exit 5"], "same"),
    (["pause", "compat1"], "same"),
    (["ps", "--format", "{{.Names}} {{.State}}"], "same"),
    (["unpause", "compat1"], "same"),
    (["inspect", "nosuchthing"], "same"),  # [] and an error, exit 1
    (["logs", "compat1"], "empty"),
    (["inspect", "-f", "{{.State.Running}} {{.Name}} {{.Path}}", "compat1"], "same"),
    (["stop", "-t", "1", "compat1"], "same"),
    (["wait", "compat1"], "same"),
    (["ps", "-a", "--format", "{{.Names}}"], "same"),
    (["ps", "-a", "--format", "{{.Status}}"], "prefix:12"),
    (["rm", "compat1"], "same"),
    (["rm", "compat1"], "empty"),
    (["images", "--format", "{{.Repository}}:{{.Tag}}"], "same"),
    (["images"], "head"),
    (["tag", "busybox", "mytag:1"], "same"),
    (["images", "--format", "{{.Repository}}:{{.Tag}}", "mytag"], "same"),
    (["rmi", "mytag:1"], "same"),
    (["volume", "create", "compatvol"], "same"),
    (["run", "--rm", "--network", "none", "-v", "compatvol:/data", "busybox", "sh", "-c",
      "echo x > /data/f; cat /data/f"], "same"),
    (["volume", "ls", "--format", "{{.Name}}"], "same"),
    (["volume", "rm", "compatvol"], "same"),
    (["volume", "rm", "compatvol"], "empty"),
    (["run", "--rm", "--network", "none", "--name", "x", "busybox", "true"], "empty"),
    # stdin and ttys of detached containers
    (["run", "-d", "-i", "--name", "compat4", "--network", "none", "busybox", "sh", "-c",
      "read x; echo got:$x; exit 2"], "hex64"),
    (["inspect", "-f", "{{.State.Running}} {{.Config.OpenStdin}} {{.Config.StdinOnce}}",
      "compat4"], "same"),
    # dockerd stops sending output once attach's input ends (it shows nothing here), but
    # waits for the container's exit code, as berth does; berth shows the output too
    (["attach", "compat4"], "none", "hi\n"),
    (["logs", "compat4"], "same"),
    (["create", "-i", "--name", "compat5", "--network", "none", "busybox", "sh", "-c",
      "read x; echo got:$x; exit 3"], "hex64"),
    (["inspect", "-f", "{{.Config.OpenStdin}} {{.Config.StdinOnce}}", "compat5"], "same"),
    (["start", "-a", "-i", "compat5"], "same", "hello\n"),
    (["run", "-dt", "--name", "compat6", "--network", "none", "busybox", "sh", "-c",
      "tty; exec sleep 30"], "hex64"),
    (["exec", "compat6", "true"], "same"),  # a moment for tty's output to reach the log
    (["logs", "compat6"], "same"),
    (["inspect", "-f", "{{.Config.Tty}} {{.State.Running}}", "compat6"], "same"),
    # user networks: connect, disconnect, aliases (dockerd makes its own bridge for these)
    (["network", "create", "compatnet"], "hex64"),
    (["network", "create", "compatnet2"], "hex64"),
    (["run", "-d", "--name", "compat2", "--network", "compatnet", "--network-alias", "svc",
      "busybox", "sleep", "60"], "hex64"),
    (["run", "-d", "--name", "compat3", "--network", "compatnet2", "busybox", "sleep", "60"],
     "hex64"),
    (["exec", "compat3", "ls", "/sys/class/net"], "same"),
    (["network", "connect", "--alias", "peer", "compatnet", "compat3"], "same"),
    (["exec", "compat3", "ls", "/sys/class/net"], "same"),
    (["exec", "compat2", "sh", "-c", "ping -c1 -W2 peer >/dev/null && echo ok"], "same"),
    (["exec", "compat3", "sh", "-c", "ping -c1 -W2 svc >/dev/null && echo ok"], "same"),
    (["inspect", "-f", "{{json .NetworkSettings.Networks.compatnet.Aliases}}", "compat3"],
     "prefix:8"),
    (["network", "connect", "compatnet", "compat3"], "none"),
    (["network", "connect", "nosuchnet", "compat3"], "none"),
    (["network", "disconnect", "compatnet", "compat3"], "same"),
    (["exec", "compat3", "ls", "/sys/class/net"], "same"),
    (["exec", "compat2", "sh", "-c", "ping -c1 -W1 peer >/dev/null 2>&1 && echo ok || echo gone"],
     "same"),
    (["network", "disconnect", "compatnet", "compat3"], "none"),
    (["create", "--name", "compat7", "--network", "compatnet2", "busybox", "sleep", "60"],
     "hex64"),
    (["network", "connect", "compatnet", "compat7"], "same"),
    (["start", "compat7"], "same"),
    (["exec", "compat7", "ls", "/sys/class/net"], "same"),
    (["rm", "-f", "compat2", "compat3", "compat4", "compat5", "compat6", "compat7"], "same"),
    (["network", "rm", "compatnet", "compatnet2"], "same"),
]


@pytest.fixture(scope="module")
def engines(busybox_image: Path):  # type: ignore[no-untyped-def]
    base = Path(tempfile.mkdtemp(prefix="bdk-", dir="/tmp"))  # socket paths must stay short
    sock = base / "d.sock"
    log = open(base / "log", "w")  # noqa: SIM115 - closed in finally
    daemon = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
         "--host", f"unix://{sock}", "--data-root", str(base / "data"),
         "--exec-root", str(base / "exec"), "--pidfile", str(base / "d.pid")],
        stdout=log, stderr=subprocess.STDOUT)
    docker = ["docker", "-H", f"unix://{sock}"]
    env = dict(os.environ, BERTH_ROOT=str(base / "berth"),
               BERTH_RUNTIME_ROOT=str(base / "berth-rt"))
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*docker, "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline or daemon.poll() is not None:
                pytest.fail("dockerd did not start: " + (base / "log").read_text()[-2000:])
            time.sleep(0.2)
        subprocess.run([BERTH, "load", "-i", str(busybox_image / "oci")], env=env, check=True,
                       capture_output=True)
        subprocess.run([BERTH, "tag", "localhost/image:latest", "busybox"], env=env, check=True)
        subprocess.run([BERTH, "rmi", "localhost/image:latest"], env=env, check=True,
                       capture_output=True)
        subprocess.run([BERTH, "save", "-o", str(base / "bb.tar"), "busybox"], env=env,
                       check=True)
        subprocess.run([*docker, "load", "-i", str(base / "bb.tar")], check=True,
                       capture_output=True)
        yield docker, [BERTH], env
    finally:
        ids = subprocess.run([*docker, "ps", "-aq"], capture_output=True,
                             text=True).stdout.split()
        if ids:  # containers first: a network with endpoints cannot go
            subprocess.run([*docker, "rm", "-f", *ids], capture_output=True)
        for net in ("compatnet", "compatnet2"):
            subprocess.run([*docker, "network", "rm", net], capture_output=True)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        ids = subprocess.run([BERTH, "ps", "-aq"], env=env, capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run([BERTH, "rm", "-f", *ids], env=env, capture_output=True)
        for net in ("compatnet", "compatnet2"):
            subprocess.run([BERTH, "network", "rm", net], env=env, capture_output=True)
        teardown_bridges(base / "berth")  # the default bridge stays after its last container
        log.close()
        subprocess.run(["umount", "-R", str(base / "data")], capture_output=True)
        subprocess.run(["umount", "-R", str(base / "exec")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_same_script_same_results(engines) -> None:  # type: ignore[no-untyped-def]
    docker, berth, env = engines
    mismatches = []
    for args, how, *feed in SCRIPT:
        stdin = {"input": feed[0]} if feed else {"stdin": subprocess.DEVNULL}
        d = subprocess.run([*docker, *args], capture_output=True, text=True, timeout=120,
                           **stdin)
        b = subprocess.run([*berth, *args], capture_output=True, text=True, timeout=120, env=env,
                           **stdin)
        where = " ".join(args)
        if (d.returncode == 0) != (b.returncode == 0) or (
                d.returncode not in (0, 1, 125) and d.returncode != b.returncode):
            mismatches.append(f"{where}: exit docker {d.returncode} berth {b.returncode} "
                              f"({d.stderr.strip()[:120]} | {b.stderr.strip()[:120]})")
            continue
        if how == "same" and d.stdout != b.stdout:
            mismatches.append(f"{where}: stdout docker {d.stdout!r} berth {b.stdout!r}")
        elif how == "hex64" and not (HEX64.match(d.stdout) and HEX64.match(b.stdout)):
            mismatches.append(f"{where}: not an id: {d.stdout!r} {b.stdout!r}")
        elif how == "head" and d.stdout.split("\n")[0].split() != \
                b.stdout.split("\n")[0].split():
            mismatches.append(f"{where}: header docker {d.stdout.splitlines()[:1]} "
                              f"berth {b.stdout.splitlines()[:1]}")
        elif how.startswith("prefix:") and d.stdout[:int(how[7:])] != b.stdout[:int(how[7:])]:
            mismatches.append(f"{where}: docker {d.stdout!r} berth {b.stdout!r}")
        elif how == "empty" and (d.stdout, b.stdout) != ("", ""):
            mismatches.append(f"{where}: expected no output: {d.stdout!r} {b.stdout!r}")
    assert mismatches == []


def test_run_it_detaches_and_attaches_as_docker_does(engines) -> None:  # type: ignore[no-untyped-def]
    """`run -it`, then ctrl-p ctrl-q: both leave the container running and exit 0; an
    attach gets the terminal back and the exit code; --rm removes it once it exits."""
    from tests.integration.engine.test_attach import Terminal
    from tests.integration.engine.test_detached import until
    docker, berth, env = engines
    results = {}
    for name, cli in (("docker", docker), ("berth", berth)):
        cenv = dict(env if name == "berth" else os.environ, TERM="xterm")

        def ps(*args: str, cli: list[str] = cli, cenv: dict = cenv) -> str:
            return subprocess.run([*cli, "ps", *args, "--filter", "name=compat-it", "--format",
                                   "{{.Names}}"], capture_output=True, text=True, env=cenv,
                                  timeout=60).stdout

        t = Terminal([*cli[1:], "run", "-it", "--rm", "--name", "compat-it", "--network",
                      "none", "busybox", "sh"], cenv, program=cli[0])
        t.ready()
        t.type(b"echo in-$((6*7))\n")
        t.expect(b"in-42")
        t.type(b"\x10\x11")  # ctrl-p ctrl-q
        detached = t.wait()
        running = ps()
        t = Terminal([*cli[1:], "attach", "compat-it"], cenv, program=cli[0])
        t.ready()
        t.type(b"exit 7\n")
        code = t.wait()
        until(lambda: ps("-a") == "")  # removed (docker's daemon does it a moment later)
        results[name] = (detached, running, code)
    assert results["berth"] == results["docker"] == (0, "compat-it\n", 7)
