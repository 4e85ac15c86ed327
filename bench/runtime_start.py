"""How long `berth-runtime run` takes to start and tear down a container, next to runc.

One bundle (config.json from `berth-runtime spec`, busybox rootfs read-only, process
/bin/true, no terminal) is run again and again by both runtimes, alternating berth and
runc so that drift in the host's load falls on both alike. Each sample is the wall time
of one `<runtime> --root <state dir> run --bundle <bundle> <unique id>` (create, start,
wait for /bin/true, delete), measured from this process with time.perf_counter. The
first two runs of each runtime are warm-up and are discarded.

It prints median, min and p90 per runtime and the ratio berth/runc of the medians (the
target is <= 1.2). Needs root, like the runtimes themselves. Run it with

    make bench
    .venv/bin/python bench/runtime_start.py --image build/images/busybox/rootfs --runs 50

(`make bench` calls `$(VENV)/bin/python bench/runtime_start.py --image $(BUSYBOX_IMAGE)/rootfs`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 2
TARGET = 1.2


def make_bundle(berth: str, rootfs: str, bundle: str) -> None:
    subprocess.run([berth, "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["root"] = {"path": rootfs, "readonly": True}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def run_once(rt: str, state: str, bundle: str, cid: str) -> float:
    cmd = [rt, "--root", state, "run", "--bundle", bundle, cid]
    t0 = time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    elapsed = time.perf_counter() - t0
    if code != 0:
        sys.exit(f"runtime_start: `{rt} run` exited {code} (its output is discarded: "
                 "run it by hand on the same bundle to see why)")
    return elapsed * 1000


def summary(ms: list[float]) -> dict:
    return {"median_ms": statistics.median(ms), "min_ms": min(ms),
            "p90_ms": statistics.quantiles(ms, n=10, method="inclusive")[-1], "runs": len(ms)}


def cleanup(rt: str, state: str) -> None:
    """`delete --force` whatever an interrupted or failed run left in the state dir."""
    for cid in os.listdir(state) if os.path.isdir(state) else ():
        subprocess.run([rt, "--root", state, "delete", "--force", cid],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=os.path.join(REPO, "build/images/busybox/rootfs"),
                   help="the rootfs directory to run /bin/true from")
    p.add_argument("--runs", type=int, default=25, help="measured runs per runtime")
    p.add_argument("--berth", default=os.path.join(os.path.dirname(sys.executable),
                                                   "berth-runtime"))
    p.add_argument("--runc", default=shutil.which("runc") or "runc")
    p.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    a = p.parse_args()
    rootfs = os.path.abspath(a.image)
    if not os.path.isfile(os.path.join(rootfs, "bin/true")):
        sys.exit(f"runtime_start: {rootfs}/bin/true not found (build the image: make images)")
    if a.runs < 2:
        sys.exit("runtime_start: --runs must be at least 2")
    runtimes = {"berth": a.berth, "runc": a.runc}
    samples: dict[str, list[float]] = {name: [] for name in runtimes}
    tmp = tempfile.mkdtemp(prefix="berth-bench-")
    states = {name: os.path.join(tmp, f"state-{name}") for name in runtimes}
    try:
        bundle = os.path.join(tmp, "bundle")
        os.mkdir(bundle)
        make_bundle(a.berth, rootfs, bundle)
        for i in range(WARMUP + a.runs):
            for name, rt in runtimes.items():
                ms = run_once(rt, states[name], bundle, f"bench-{name}-{os.getpid()}-{i}")
                if i >= WARMUP:
                    samples[name].append(ms)
    finally:
        for name, rt in runtimes.items():
            cleanup(rt, states[name])
        shutil.rmtree(tmp, ignore_errors=True)
    stats = {name: summary(ms) for name, ms in samples.items()}
    ratio = stats["berth"]["median_ms"] / stats["runc"]["median_ms"]
    print(f"{'runtime':<8} {'median ms':>10} {'min ms':>8} {'p90 ms':>8}   ({a.runs} runs each)")
    for name, s in stats.items():
        print(f"{name:<8} {s['median_ms']:>10.1f} {s['min_ms']:>8.1f} {s['p90_ms']:>8.1f}")
    print(f"ratio berth/runc (median): {ratio:.2f} (target <= {TARGET})")
    if a.json:
        print(json.dumps({"runtimes": stats, "ratio_median": ratio, "target": TARGET}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
