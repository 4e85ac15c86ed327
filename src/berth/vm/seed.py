"""The cloud-init NoCloud seed: an ISO 9660 volume labelled `cidata` holding `user-data`
and `meta-data` (and `network-config` when given), made with pycdlib (no genisoimage).

user-data is either the file the definition names, or a #cloud-config document made
from hostname / users / ssh_authorized_keys / runcmd.
"""

from __future__ import annotations

import io
import os
import uuid

from berth.vm.definition import CloudInit, VMSpec


def user_data(ci: CloudInit) -> bytes:
    if ci.user_data:
        with open(ci.user_data, "rb") as f:
            return f.read()
    import yaml

    doc: dict = {}
    if ci.hostname:
        doc["hostname"] = ci.hostname
    if ci.users:
        doc["users"] = ci.users
    if ci.ssh_authorized_keys:
        doc["ssh_authorized_keys"] = ci.ssh_authorized_keys
    if ci.runcmd:
        doc["runcmd"] = ci.runcmd
    return b"#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False).encode()


def meta_data(spec: VMSpec) -> bytes:
    ci = spec.cloud_init
    hostname = (ci.hostname if ci and ci.hostname else spec.name)
    iid = f"berth-{spec.name}-{uuid.uuid4().hex[:8]}"
    return f"instance-id: {iid}\nlocal-hostname: {hostname}\n".encode()


def build_iso(files: dict[str, bytes]) -> bytes:
    """An ISO 9660 image (Joliet and Rock Ridge names too) labelled cidata."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for i, (name, data) in enumerate(sorted(files.items())):
        iso.add_fp(io.BytesIO(data), len(data), f"/F{i}.;1", rr_name=name,
                   joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def write_seed(path: str, spec: VMSpec) -> None:
    assert spec.cloud_init is not None
    data = build_iso({"user-data": user_data(spec.cloud_init), "meta-data": meta_data(spec)})
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_iso(path: str) -> dict[str, bytes]:
    """The files of a seed ISO by their Rock Ridge names (for tests and `vm inspect`)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(path)
    try:
        out = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dir():
                continue
            name = child.rock_ridge.name().decode()
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
            out[name] = buf.getvalue()
        return out
    finally:
        iso.close()


def volume_label(path: str) -> str:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(path)
    try:
        return iso.pvd.volume_identifier.decode().strip()
    finally:
        iso.close()
