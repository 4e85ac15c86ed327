"""Host memory per idle container: berth's supervisor vs podman's conmon (issue 4).

Starts N idle containers (`sleep`) with `berth run -d` and with
`podman --runtime runc run -d`, then sums the resident memory (RSS, from
/proc/<pid>/status) of what each engine keeps on the host for them: berth's
one supervisor, podman's one conmon per container. The containers' own
processes are the same for both and not counted. Prints the totals, the cost
per container and the ratio; the target is <= 1 MB per container at 50.

    sudo .venv/bin/python bench/idle_memory.py [--count 50] [--image DIR]

Uses a private BERTH_ROOT and podman --root so nothing of the user's is touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pids_of(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def berth_side(n: int, image: Path, work: Path) -> int:
    env = dict(os.environ, BERTH_ROOT=str(work / "berth"),
               BERTH_RUNTIME_ROOT=str(work / "berth-rt"))
    berth = str(Path(sys.executable).parent / "berth")
    subprocess.run([berth, "load", "-i", str(image / "oci")], env=env, check=True,
                   capture_output=True)
    subprocess.run([berth, "tag", "localhost/image:latest", "bench"], env=env, check=True)
    try:
        for _ in range(n):
            subprocess.run([berth, "run", "-d", "bench", "sleep", "600"], env=env, check=True,
                           capture_output=True)
        sups = pids_of(f"berth.engine.supervisor {work / 'berth'}")
        return sum(rss_kb(p) for p in sups)
    finally:
        # containers, and the bridge that stays after them
        subprocess.run([berth, "system", "reset", "-f"], env=env, capture_output=True)


def podman_side(n: int, image: Path, work: Path) -> int | None:
    if shutil.which("podman") is None:
        return None
    base = ["podman", "--root", str(work / "podman"), "--runroot", str(work / "podman-run"),
            "--runtime", "runc"]
    tar = subprocess.run(["tar", "-C", str(image / "rootfs"), "-c", "."], capture_output=True,
                         check=True).stdout
    subprocess.run([*base, "import", "--change", "ENV PATH=/bin:/usr/bin", "-",
                    "localhost/bench:1"], input=tar, check=True, capture_output=True)
    try:
        for _ in range(n):
            subprocess.run([*base, "run", "-d", "--network", "none", "localhost/bench:1",
                            "sleep", "600"], check=True, capture_output=True)
        conmons = pids_of(f"conmon.*{work / 'podman'}")
        return sum(rss_kb(p) for p in conmons)
    finally:
        subprocess.run([*base, "rm", "-af", "-t", "0"], capture_output=True)
        subprocess.run([*base, "rmi", "-af"], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--image", type=Path, default=REPO / "build/images/busybox")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="berth-bench-mem-",
                                     ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        b = berth_side(args.count, args.image, work)
        p = podman_side(args.count, args.image, work)
        subprocess.run(["umount", "-R", str(work / "podman")], capture_output=True)
    n = args.count
    print(f"{'engine':10} {'host RSS':>12} {'per container':>15}   ({n} idle containers)")
    print(f"{'berth':10} {b / 1024:10.1f}MB {b / 1024 / n:13.2f}MB   (one supervisor)")
    if p is not None:
        print(f"{'podman':10} {p / 1024:10.1f}MB {p / 1024 / n:13.2f}MB   (a conmon each)")
        print(f"ratio berth/podman (per container): {b / p:.2f}")
    print(f"target <= 1 MB per container: {'met' if b / 1024 / n <= 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
