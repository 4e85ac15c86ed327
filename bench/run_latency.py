"""`berth run --rm IMAGE true` vs `podman --runtime runc run --rm` vs `docker run --rm` (issue 4).

All three run the same busybox image (berth loads it, podman imports it, docker loads
what berth saves), alternating, with `--network none` and with each engine's default
bridge, and print medians and the ratios to podman. Targets: berth <= 0.2 x podman
without a network, <= 0.15 x with a bridge. dockerd is started on its own socket and
data root (--iptables=false, with a bridge of its own for the bridge case is not
possible: --bridge=none, so docker is timed with --network none only).

    sudo .venv/bin/python bench/run_latency.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import BERTH, cleanup, engines, load_image, require_fresh_frozen

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.decode()[-500:]}")
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--image", type=Path, default=REPO / "build/images/busybox")
    args = ap.parse_args()
    require_fresh_frozen()
    work = Path(tempfile.mkdtemp(prefix="brl-", dir="/tmp"))
    env, podman = engines(work)
    berth = BERTH
    docker = ["docker", "-H", f"unix://{work}/d.sock"]
    daemon = None
    log = open(work / "dockerd.log", "w")  # noqa: SIM115 - closed in finally
    try:
        load_image(args.image, env, podman, work / "img.tar")
        if shutil.which("dockerd"):
            daemon = subprocess.Popen(
                ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
                 "--host", f"unix://{work}/d.sock", "--data-root", str(work / "d"),
                 "--exec-root", str(work / "de"), "--pidfile", str(work / "d.pid")],
                stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while subprocess.run([*docker, "info"], capture_output=True).returncode:
                if time.monotonic() > deadline:
                    raise SystemExit("dockerd did not start")
                time.sleep(0.2)
            subprocess.run([*docker, "load", "-i", str(work / "img.tar")], check=True,
                           capture_output=True)
        cases = {
            "none": {"berth": [berth, "run", "--rm", "--network", "none", "bench:1", "true"],
                     "podman": [*podman, "run", "--rm", "--network", "none",
                                "localhost/bench:1", "true"]},
            "bridge": {"berth": [berth, "run", "--rm", "bench:1", "true"],
                       "podman": [*podman, "run", "--rm", "localhost/bench:1", "true"]},
        }
        if daemon is not None:
            cases["none"]["docker"] = [*docker, "run", "--rm", "--network", "none", "bench:1",
                                       "true"]
        for name, cmds in cases.items():
            times: dict[str, list[float]] = {k: [] for k in cmds}
            for k, cmd in cmds.items():  # warm-up
                timed(cmd, env if k == "berth" else None)
            for _ in range(args.runs):
                for k, cmd in cmds.items():
                    times[k].append(timed(cmd, env if k == "berth" else None))
            med = {k: statistics.median(v) * 1000 for k, v in times.items()}
            print(f"--network {name} ({args.runs} runs each, alternating)")
            for k, m in med.items():
                ratio = f"  {m / med['podman']:.2f} x podman" if k != "podman" else ""
                print(f"  {k:7} median {m:7.1f} ms{ratio}")
            target = 0.2 if name == "none" else 0.15
            verdict = "met" if med["berth"] / med["podman"] <= target else "NOT met"
            print(f"  target berth <= {target} x podman: {verdict}")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
        log.close()
        cleanup(work, env, podman)
        for d in ("d", "de"):  # dockerd's
            subprocess.run(["umount", "-R", str(work / d)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
