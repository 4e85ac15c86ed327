"""A busybox OCI image made locally from Debian's busybox-static, with no network.

Used by the tests and `make demo`. The layer holds /bin/busybox, one symlink
per applet, a minimal /etc (passwd, group, hosts) and the usual empty
directories. Output is an OCI image layout (oci-layout, index.json, blobs/)
and, beside it, the unpacked rootfs for runtime bundles. The result is
reproducible: fixed mtimes and owners, sorted entries.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"
MTIME = 946684800  # 2000-01-01, so the digest does not change between builds
DIRS = ("bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "usr/bin", "usr/sbin",
        "sbin", "var", "var/tmp", "run", "mnt")
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n",
}
ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    return sorted(a for a in out.stdout.split() if a and a != "bin/busybox")


def layer_tar(busybox: str = BUSYBOX) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for d in DIRS:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o1777 if d in ("tmp", "var/tmp") else 0o755
            add(ti)
        with open(busybox, "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        add(ti, data)
        for path, text in sorted(FILES.items()):
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode = len(text), 0o644
            add(ti, text.encode())
        seen = {"bin/busybox"}
        for a in applets(busybox):
            if a in seen or a.split("/")[0] not in ("bin", "sbin", "usr"):
                continue
            seen.add(a)
            ti = tarfile.TarInfo(a)
            ti.type, ti.mode = tarfile.SYMTYPE, 0o777
            ti.linkname = "/bin/busybox"
            add(ti)
    return buf.getvalue()


def _blob(layout: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    return "sha256:" + digest


def build(out_dir: str, tag: str = "latest", busybox: str = BUSYBOX) -> dict[str, str]:
    """Write <out_dir>/oci (image layout) and <out_dir>/rootfs; return their paths and digest."""
    layout = os.path.join(out_dir, "oci")
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    tar = layer_tar(busybox)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    gz = gzip.compress(tar, mtime=0)
    layer_digest = _blob(layout, gz)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [ENV_PATH], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "berth.images.busybox from Debian busybox-static"}],
    }
    cfg_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cfg_digest = _blob(layout, cfg_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": len(gz)}],
    }
    man_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    man_digest = _blob(layout, man_bytes)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest,
        "size": len(man_bytes), "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    rootfs = os.path.join(out_dir, "rootfs")
    tmp = rootfs + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        # our own tar, so no path checks are needed; newer Pythons want the filter named
        kwargs = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
        t.extractall(tmp, **kwargs)  # type: ignore[arg-type]
    shutil.rmtree(rootfs, ignore_errors=True)
    os.rename(tmp, rootfs)
    return {"layout": layout, "rootfs": rootfs, "manifest": man_digest}


if __name__ == "__main__":
    import sys
    print(json.dumps(build(sys.argv[1] if len(sys.argv) > 1 else "build/images/busybox")))
