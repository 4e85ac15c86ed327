"""How long `berth pull` takes for a ~200 MB, 5-layer image from a loopback registry, vs podman.

The image is written here as an OCI layout (5 gzip layers; each about 24 MB of
random, incompressible files and 16 MB of compressible text in small files),
pushed with skopeo into a docker-registry started on 127.0.0.1 (a temporary
config and storage, stopped at the end). Then, alternating so that drift in
the host's load falls on both alike:

  berth:  a fresh Python process pulls into an empty store (interpreter start,
          imports, manifest, parallel streaming download + unpack, index)
  podman: `podman --root <empty> --runroot <empty> pull --tls-verify=false`

Each sample is wall time measured from this process; storage is removed
between samples (not timed). The first run of each is a warm-up, discarded.
It prints median, min and p90 for each and the ratio berth/podman of the
medians (the target is <= 0.5).

Then the unpack floor, per layer, from local files: berth's layers.unpack
(hashing the blob and the tar, keeping the blob, extracting) against GNU
`tar -xzf` of the same blob and `tar -xf` of the same uncompressed tar, in MB/s
of uncompressed tar.

    .venv/bin/python bench/pull.py --runs 5
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
TARGET = 0.5
LAYERS = 5
RANDOM_MB = 24
TEXT_MB = 16
WORDS = (b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         b"november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(i: int) -> bytes:
    buf = io.BytesIO()
    rnd = __import__("random").Random(i)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name: str, data: bytes | None) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
        add(f"layer{i}", None)
        add(f"layer{i}/bin", None)
        for j in range(RANDOM_MB // 4):
            add(f"layer{i}/bin/blob{j}", os.urandom(4 << 20))
        add(f"layer{i}/share", None)
        for j in range(TEXT_MB * 1024 // 40):  # 40 kB text files
            words = [rnd.choice(WORDS) for _ in range(40 * 1024 // 6)]
            add(f"layer{i}/share/doc{j}.txt", b" ".join(words)[: 40 * 1024])
    return buf.getvalue()


def make_layout(path: str) -> list[tuple[bytes, bytes]]:
    """Write the OCI layout; return [(uncompressed tar, gzip blob)] per layer."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)
    layers, diff_ids, out = [], [], []
    for i in range(LAYERS):
        raw = layer_tar(i)
        gz = gzip.compress(raw, compresslevel=6, mtime=0)
        out.append((raw, gz))
        for data in (gz,):
            with open(os.path.join(blobs, sha256(data)[7:]), "wb") as f:
                f.write(data)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": sha256(gz), "size": len(gz)})
        diff_ids.append(sha256(raw))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(config), "size": len(config)},
                           "layers": layers}).encode()
    for data in (config, manifest):
        with open(os.path.join(blobs, sha256(data)[7:]), "wb") as f:
            f.write(data)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": sha256(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
    return out


class Registry:
    def __init__(self, base: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cfg = os.path.join(base, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {base}/storage\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {secrets.token_hex(8)}\n")
        with open(os.path.join(base, "registry.log"), "wb") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=log,
                                         stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    sys.exit("bench/pull: docker-registry did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def time_berth(ref: str, root: str) -> float:
    code = ("import sys\nfrom berth.images.store import Store\nfrom berth.images.pull import pull\n"
            "s = Store(sys.argv[1]); pull(s, sys.argv[2]); s.close()\n")
    t0 = time.perf_counter()
    p = subprocess.run([PYTHON, "-c", code, root, ref], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench/pull: berth pull failed: {p.stderr[-2000:]}")
    return elapsed


def time_podman(ref: str, root: str) -> float:
    runroot = tempfile.mkdtemp(prefix="berth-bench-")  # podman wants <= 50 characters
    cmd = ["podman", "--root", root, "--runroot", runroot]
    try:
        t0 = time.perf_counter()
        p = subprocess.run([*cmd, "pull", "-q", "--tls-verify=false", ref], capture_output=True,
                           text=True)
        elapsed = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"bench/pull: podman pull failed: {p.stderr[-2000:]}")
        return elapsed
    finally:
        subprocess.run([*cmd, "system", "reset", "--force"], capture_output=True)
        subprocess.run(["umount", "-R", os.path.join(root, "overlay")], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return f"median {statistics.median(xs):6.2f} s   min {xs[0]:6.2f} s   p90 {p90:6.2f} s"


def unpack_floor(work: str, layers: list[tuple[bytes, bytes]]) -> None:
    sys.path.insert(0, os.path.join(REPO, "src"))
    from berth.images import layers as berth_layers
    from berth.images.store import Store

    total = sum(len(raw) for raw, _ in layers)
    files = []
    for i, (raw, gz) in enumerate(layers):
        for name, data in ((f"{i}.tar", raw), (f"{i}.tar.gz", gz)):
            with open(os.path.join(work, name), "wb") as f:
                f.write(data)
        files.append((os.path.join(work, f"{i}.tar"), os.path.join(work, f"{i}.tar.gz"),
                      sha256(raw), sha256(gz), len(gz)))

    def run(label: str, fn) -> None:  # type: ignore[no-untyped-def]
        best = None
        for _ in range(3):
            subprocess.run(["sync"])
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        assert best is not None
        print(f"  {label:42s} {total / best / 1e6:7.1f} MB/s  ({best:5.2f} s for "
              f"{total / 1e6:.0f} MB)")

    def berth(gzipped: bool) -> None:
        root = os.path.join(work, "store")
        st = Store(root)
        try:
            for tar_path, gz_path, diff_id, digest, _ in files:
                path = gz_path if gzipped else tar_path
                mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzipped else "")
                with open(path, "rb") as f:
                    berth_layers.unpack(st, f, mt, digest if gzipped else diff_id, diff_id,
                                        None, os.path.getsize(path))
        finally:
            st.close()
            shutil.rmtree(root)

    def tar(gzipped: bool) -> None:
        for tar_path, gz_path, *_ in files:
            dest = os.path.join(work, "x")
            os.makedirs(dest)
            subprocess.run(["tar", "-xzf" if gzipped else "-xf",
                            gz_path if gzipped else tar_path, "-C", dest], check=True)
            shutil.rmtree(dest)

    print("unpack, uncompressed MB/s (best of 3, all 5 layers one after another):")
    run("berth layers.unpack, gzip blob", lambda: berth(True))
    run("tar -xzf, gzip blob", lambda: tar(True))
    run("berth layers.unpack, plain tar", lambda: berth(False))
    run("tar -xf, plain tar (the floor)", lambda: tar(False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed pulls of each (after a warm-up)")
    ap.add_argument("--skip-unpack", action="store_true")
    args = ap.parse_args()
    for tool in ("docker-registry", "skopeo", "podman"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/pull: {tool} is needed")
    work = tempfile.mkdtemp(prefix="berth-bench-pull-", dir="/var/tmp")
    reg = None
    try:
        t0 = time.perf_counter()
        layers = make_layout(os.path.join(work, "layout"))
        raw_mb = sum(len(r) for r, _ in layers) / 1e6
        gz_mb = sum(len(g) for _, g in layers) / 1e6
        print(f"image: {LAYERS} layers, {raw_mb:.0f} MB of tar, {gz_mb:.0f} MB gzipped "
              f"(built in {time.perf_counter() - t0:.1f} s)")
        reg = Registry(os.path.join(work))
        ref = f"127.0.0.1:{reg.port}/bench/big:1"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                        f"oci:{work}/layout:latest", f"docker://{ref}"], check=True,
                       capture_output=True)
        times: dict[str, list[float]] = {"berth": [], "podman": []}
        for i in range(args.runs + 1):
            for name, fn in (("berth", time_berth), ("podman", time_podman)):
                root = os.path.join(work, f"{name}-root")
                dt = fn(ref, root)
                shutil.rmtree(root, ignore_errors=True)
                if i:
                    times[name].append(dt)
                print(f"  run {i}{' (warm-up)' if not i else ''}: {name:6s} {dt:6.2f} s",
                      flush=True)
        print(f"pull of {ref} ({args.runs} runs each, alternating):")
        for name, xs in times.items():
            print(f"  {name:6s} {summary(xs)}")
        ratio = statistics.median(times["berth"]) / statistics.median(times["podman"])
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(f"  ratio berth/podman (medians): {ratio:.2f}  (target <= {TARGET}: {verdict})")
        if not args.skip_unpack:
            reg.stop()
            reg = None
            unpack_floor(work, layers)
    finally:
        if reg is not None:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
