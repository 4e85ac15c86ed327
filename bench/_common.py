"""What the engine benches share: private berth and podman roots in one work directory,
and the busybox image loaded into both under the same name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BERTH = str(Path(sys.executable).parent / "berth")
IMAGE = "bench:1"  # podman sees it as localhost/bench:1


def require_fresh_frozen() -> None:
    """berth run loads its modules from one file only while that file matches the sources
    (src/berth/frozen.py): a bench after an edit without `make frozen` would time plain
    imports, ~3-5 ms more, without a word."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    p = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c",
                        f"import sys; sys.path.insert(0, {src!r}); "
                        "from berth.frozen import thaw; print(thaw())"],
                       capture_output=True, text=True)
    if p.stdout.strip() != "True":
        raise SystemExit("berth run's frozen modules are missing or stale: run `make frozen` "
                         "first")


def engines(work: Path) -> tuple[dict[str, str], list[str]]:
    """(the environment berth runs with, the podman command prefix), both under `work`."""
    env = dict(os.environ, BERTH_ROOT=str(work / "berth"), BERTH_RUNTIME_ROOT=str(work / "rt"))
    podman = ["podman", "--root", str(work / "p"), "--runroot", str(work / "pr"),
              "--runtime", "runc"]
    return env, podman


def load_image(image: Path, env: dict[str, str], podman: list[str], tar: Path) -> None:
    """The busybox OCI layout at `image` into berth as IMAGE, and through a docker
    archive at `tar` into podman."""
    subprocess.run([BERTH, "load", "-i", str(image / "oci")], env=env, check=True,
                   capture_output=True)
    subprocess.run([BERTH, "tag", "localhost/image:latest", IMAGE], env=env, check=True)
    subprocess.run([BERTH, "save", "-o", str(tar), IMAGE], env=env, check=True)
    subprocess.run([*podman, "load", "-i", str(tar)], check=True, capture_output=True)


def cleanup(work: Path, env: dict[str, str], podman: list[str]) -> None:
    """Everything both engines made under `work` (berth's bridges included)."""
    subprocess.run([BERTH, "system", "reset", "-f"], env=env, capture_output=True)
    subprocess.run([*podman, "rm", "-af", "-t", "0"], capture_output=True)
    subprocess.run([*podman, "system", "reset", "--force"], capture_output=True)
    subprocess.run(["umount", "-R", str(work / "p")], capture_output=True)
