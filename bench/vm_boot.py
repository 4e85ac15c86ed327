"""How long a VM takes to boot to its init marker: berth vs the same raw qemu command,
and berth's fast profile vs a naive qemu command line.

The guest is berth's test guest (Debian's kernel, busybox initramfs; /init prints
BERTH-GUEST-READY on the serial console). Every sample is wall time measured from this
process with time.perf_counter, from launching the command until the marker is in the
serial log (polled every 20 ms, as `berth vm start --wait-for` does). TCG throughout
(`--accel tcg`), so the numbers do not depend on whether the host's KVM works.

1. overhead: `berth vm start NAME --accel tcg --wait-for BERTH-GUEST-READY` against the
   exact command line berth runs (berth.vm.qemu.command), launched directly. Alternating.
   Target: berth / raw <= 1.05.
2. profile: berth's fast profile (the command line berth builds: -nodefaults, no option
   ROMs, `quiet`, and the uncompressed kernel booted through PVH) against a naive command
   (`qemu-system-x86_64 -m 256 -kernel vmlinuz -initrd ... -append console=ttyS0`, qemu's
   default machine and devices). Both launched directly, alternating. Target: <= 0.6.
3. memory: qemu's RSS for the running VM, and berth's: berth keeps no process per VM
   (no daemon, no monitor), so 0 while the VM runs; the peak RSS of `berth vm start`
   itself is shown too.

    .venv/bin/python bench/vm_boot.py --runs 5     (about 3 minutes under TCG)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))

from berth.vm.definition import from_flags  # noqa: E402
from berth.vm.guest import MARKER, build  # noqa: E402
from berth.vm.qemu import command  # noqa: E402
from berth.vm.store import Paths  # noqa: E402

BERTH = os.path.join(os.path.dirname(sys.executable), "berth")
POLL = 0.02
MEMORY = "256M"


def wait_marker(log: str, t0: float, timeout: float = 180) -> float:
    while True:
        try:
            with open(log, "rb") as f:
                if MARKER.encode() in f.read():
                    return time.perf_counter() - t0
        except FileNotFoundError:
            pass
        if time.perf_counter() - t0 > timeout:
            sys.exit(f"vm_boot: no {MARKER} in {log} within {timeout}s")
        time.sleep(POLL)


def kill_pidfile(pidfile: str) -> int:
    """Kill the qemu of a pid file; its RSS in bytes just before."""
    with open(pidfile) as f:
        pid = int(f.read())
    rss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass
    while os.path.exists(f"/proc/{pid}"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    break
        except OSError:
            break
        time.sleep(0.01)
    return rss


def run_berth(env: dict) -> tuple[float, int, int]:
    """(seconds to marker, qemu RSS, peak RSS of `berth vm start`, in bytes).

    The peak comes from wait4's rusage: the larger of berth's own and that of the qemu
    launcher it waits for (qemu -daemonize forks early; the launcher stays small).
    """
    t0 = time.perf_counter()
    p = subprocess.Popen([BERTH, "vm", "start", "bench", "--accel", "tcg", "--wait-for",
                          MARKER], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    if p.returncode != 0:
        sys.exit(f"vm_boot: berth vm start failed: {err.strip()}")
    state = env["BERTH_STATE_DIR"]
    rss = kill_pidfile(os.path.join(state, "vms", "bench", "qemu.pid"))
    subprocess.run([BERTH, "vm", "ls", "-q"], env=env, capture_output=True)  # marks stopped
    return secs, rss, usage.ru_maxrss * 1024


def run_raw(cmd: list[str], log: str, pidfile: str | None, daemonize: bool) -> tuple[float, int]:
    if os.path.exists(log):
        os.unlink(log)
    t0 = time.perf_counter()
    if daemonize:
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        secs = wait_marker(log, t0)
        assert pidfile is not None
        return secs, kill_pidfile(pidfile)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    secs = wait_marker(log, t0)
    p.kill()
    p.wait()
    return secs, 0


def summary(xs: list[float]) -> dict:
    return {"median_s": round(statistics.median(xs), 3), "min_s": round(min(xs), 3),
            "max_s": round(max(xs), 3), "runs": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print JSON only")
    a = ap.parse_args()
    g = build()
    if g.vmlinux is None:
        sys.exit("vm_boot: the guest kernel cannot boot through PVH (no CONFIG_PVH)")
    work = tempfile.mkdtemp(prefix="berth-vm-boot-")
    state = os.path.join(work, "state")
    env = dict(os.environ, BERTH_STATE_DIR=state)
    cmdline = g.cmdline + " berth.httpd=0"
    p = subprocess.run([BERTH, "vm", "create", "bench", "--memory", MEMORY, "--accel", "tcg",
                        "--kernel", g.vmlinux, "--initrd", g.initrd, "--cmdline", cmdline,
                        "--disk", "size=64M", "--network", "user"],
                       env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"vm_boot: berth vm create failed: {p.stderr.strip()}")
    spec = from_flags("bench", memory=MEMORY, accel="tcg", kernel=g.vmlinux, initrd=g.initrd,
                      cmdline=cmdline, disks=("size=64M",), networks=("user",))
    raw_dir = os.path.join(work, "raw")
    os.makedirs(raw_dir)
    raw_paths = Paths(raw_dir, raw_dir)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", raw_paths.disk(0), "64M"],
                   check=True)
    spec.disks[0].file = raw_paths.disk(0)
    raw_cmd = command(spec, raw_paths, "tcg")
    naive_log = os.path.join(work, "naive.log")
    naive_cmd = ["qemu-system-x86_64", "-m", MEMORY, "-kernel", g.kernel, "-initrd", g.initrd,
                 "-append", "console=ttyS0 berth.httpd=0", "-display", "none",
                 "-serial", f"file:{naive_log}"]
    berth_s, raw_s, naive_s, fast_s = [], [], [], []
    qemu_rss, berth_peak = [], []
    try:
        for i in range(a.runs):
            for which in (("berth", "raw") if i % 2 == 0 else ("raw", "berth")):
                if which == "berth":
                    s, rss, peak = run_berth(env)
                    berth_s.append(s)
                    qemu_rss.append(rss)
                    berth_peak.append(peak)
                else:
                    raw_s.append(run_raw(raw_cmd, raw_paths.serial_log, raw_paths.pidfile,
                                         True)[0])
            for which in (("naive", "fast") if i % 2 == 0 else ("fast", "naive")):
                if which == "naive":
                    naive_s.append(run_raw(naive_cmd, naive_log, None, False)[0])
                else:
                    fast_s.append(run_raw(raw_cmd, raw_paths.serial_log, raw_paths.pidfile,
                                          True)[0])
            if not a.json:
                print(f"run {i + 1}/{a.runs}: berth {berth_s[-1]:.2f}s raw {raw_s[-1]:.2f}s"
                      f" naive {naive_s[-1]:.2f}s fast {fast_s[-1]:.2f}s", file=sys.stderr)
    finally:
        subprocess.run([BERTH, "vm", "rm", "--force", "bench"], env=env, capture_output=True)
        subprocess.run(["rm", "-rf", work])
    result = {
        "overhead": {"berth_vm_start": summary(berth_s), "raw_qemu": summary(raw_s),
                     "ratio": round(statistics.median(berth_s) / statistics.median(raw_s), 3),
                     "target": 1.05},
        "profile": {"naive_qemu": summary(naive_s), "fast_profile": summary(fast_s),
                    "ratio": round(statistics.median(fast_s) / statistics.median(naive_s), 3),
                    "target": 0.6},
        "memory": {"qemu_rss_mib": round(statistics.median(qemu_rss) / 2**20, 1),
                   "berth_resident_per_vm_mib": 0,
                   "berth_vm_start_peak_rss_mib": round(max(berth_peak) / 2**20, 1)},
        "commands": {"fast": raw_cmd, "naive": naive_cmd},
        "host_load": os.getloadavg(),
    }
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    o, pr, m = result["overhead"], result["profile"], result["memory"]
    print(f"berth vm start   median {o['berth_vm_start']['median_s']:.2f}s"
          f"  min {o['berth_vm_start']['min_s']:.2f}s")
    print(f"raw qemu         median {o['raw_qemu']['median_s']:.2f}s"
          f"  min {o['raw_qemu']['min_s']:.2f}s")
    print(f"ratio berth/raw  {o['ratio']:.3f}  (target <= 1.05)")
    print(f"naive qemu       median {pr['naive_qemu']['median_s']:.2f}s")
    print(f"fast profile     median {pr['fast_profile']['median_s']:.2f}s")
    print(f"ratio fast/naive {pr['ratio']:.3f}  (target <= 0.6)")
    print(f"qemu RSS {m['qemu_rss_mib']} MiB; berth resident per VM 0 MiB (no daemon);"
          f" `berth vm start` peak RSS {m['berth_vm_start_peak_rss_mib']} MiB")
    print(f"host load average {result['host_load'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
