"""`berth ps` with N running containers (issue 4: <= 100 ms at 100), beside `podman ps`.

Starts N idle containers in each engine (private roots), then times `ps` several
times, alternating, and prints medians.

    sudo .venv/bin/python bench/ps_latency.py [--count 100] [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import BERTH, IMAGE, cleanup, engines, load_image

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--image", type=Path, default=REPO / "build/images/busybox")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bps-", dir="/tmp"))
    env, podman = engines(work)
    berth = BERTH
    try:
        load_image(args.image, env, podman, work / "i.tar")
        for _ in range(args.count):
            subprocess.run([berth, "run", "-d", "--network", "none", IMAGE, "sleep", "900"],
                           env=env, check=True, capture_output=True)
            subprocess.run([*podman, "run", "-d", "--network", "none", "localhost/bench:1",
                            "sleep", "900"], check=True, capture_output=True)
        times: dict[str, list[float]] = {"berth": [], "podman": []}
        for _ in range(args.runs):
            for name, cmd, e in (("berth", [berth, "ps"], env), ("podman", [*podman, "ps"], None)):
                t = time.perf_counter()
                out = subprocess.run(cmd, env=e, capture_output=True, text=True, check=True)
                times[name].append(time.perf_counter() - t)
                assert len(out.stdout.splitlines()) == args.count + 1, out.stdout[:200]
        print(f"ps with {args.count} running containers ({args.runs} runs each, alternating)")
        for name, ts in times.items():
            print(f"  {name:7} median {statistics.median(ts) * 1000:7.1f} ms")
        b = statistics.median(times["berth"]) * 1000
        print(f"  target berth <= 100 ms: {'met' if b <= 100 else 'NOT met'}")
    finally:
        cleanup(work, env, podman)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
