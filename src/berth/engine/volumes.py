"""Volumes: named directories under <berth root>/volumes, and the -v/--mount/--tmpfs syntax.

A named volume is <root>/volumes/<name>/_data. The first time a new, empty
volume is mounted into a container, it is seeded with what the image has at
the mount point, as docker does. Binds mount a host path; anonymous volumes
(`-v /path`) get a random name and are removed with `rm -v`.
"""

from __future__ import annotations

import os
import time

from berth.engine.errors import EngineError, InvalidOption
from berth.oci import jsonfast as json

# (json, re, secrets and shutil are not imported here: `berth run` reads this module,
# and those four cost it ~15 ms)
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _NAME_FIRST | frozenset("_.-")


def valid_name(name: str) -> bool:
    """[a-zA-Z0-9][a-zA-Z0-9_.-]*, docker's rule for volume names."""
    return bool(name) and name[0] in _NAME_FIRST and set(name) <= _NAME_CHARS


class VolumeNotFound(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such volume: {name}")


class VolumeInUse(EngineError):
    pass


def volumes_dir(root: str) -> str:
    return os.path.join(root, "volumes")


def path(root: str, name: str) -> str:
    return os.path.join(volumes_dir(root), name, "_data")


def create(root: str, name: str | None = None, labels: dict[str, str] | None = None) -> str:
    name = name or os.urandom(32).hex()
    if not valid_name(name):
        raise InvalidOption(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    d = os.path.join(volumes_dir(root), name)
    if not os.path.isdir(d):
        os.makedirs(os.path.join(d, "_data"), 0o755)
        with open(os.path.join(d, "meta.json"), "w") as f:
            f.write(json.dumps({"created": time.time(), "labels": labels or {},
                                "seeded": False}))
    return name


def exists(root: str, name: str) -> bool:
    return os.path.isdir(os.path.join(volumes_dir(root), name, "_data"))


def names(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(volumes_dir(root)) if exists(root, n))
    except FileNotFoundError:
        return []


def inspect(root: str, name: str) -> dict:
    if not exists(root, name):
        raise VolumeNotFound(name)
    with open(os.path.join(volumes_dir(root), name, "meta.json"), "rb") as f:
        meta = json.loads(f.read())
    return {"CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(meta["created"])),
            "Driver": "local", "Labels": meta.get("labels") or {},
            "Mountpoint": path(root, name), "Name": name, "Options": {}, "Scope": "local"}


def remove(root: str, name: str, in_use: set[str]) -> None:
    if not exists(root, name):
        raise VolumeNotFound(name)
    if name in in_use:
        raise VolumeInUse(f"volume {name} is in use by a container: remove the container first")
    import shutil
    shutil.rmtree(os.path.join(volumes_dir(root), name))


def seed(root: str, name: str, image_dir: str) -> None:
    """Copy the image's content at the mount point into a new, empty volume (once)."""
    meta_path = os.path.join(volumes_dir(root), name, "meta.json")
    with open(meta_path, "rb") as f:
        meta = json.loads(f.read())
    data = path(root, name)
    if meta.get("seeded") or os.listdir(data) or not os.path.isdir(image_dir):
        return
    import shutil
    for entry in os.listdir(image_dir):
        src = os.path.join(image_dir, entry)
        dst = os.path.join(data, entry)
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)
    st = os.stat(image_dir)
    os.chown(data, st.st_uid, st.st_gid)
    os.chmod(data, st.st_mode & 0o7777)
    meta["seeded"] = True
    with open(meta_path, "w") as f:
        f.write(json.dumps(meta))


# --- the flags ---------------------------------------------------------------


def parse_volume(text: str) -> dict:
    """-v SRC:DST[:OPTS] | -v DST (anonymous). OPTS: ro, rw, z, Z, and propagation."""
    parts = text.split(":")
    if len(parts) == 1:
        src, dst, opts = "", parts[0], ""
    elif len(parts) == 2:
        src, dst, opts = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dst, opts = parts
    else:
        raise InvalidOption(f"invalid volume specification {text!r}")
    if not dst.startswith("/"):
        raise InvalidOption(f"invalid volume specification {text!r}: the mount point {dst!r} "
                            "is not an absolute path")
    ro = False
    for o in filter(None, opts.split(",")):
        if o in ("ro", "rw"):
            ro = o == "ro"
        elif o not in ("z", "Z", "private", "rprivate", "shared", "rshared", "slave",
                       "rslave", "nocopy"):
            raise InvalidOption(f"invalid volume specification {text!r}: unknown option {o!r}")
    if src.startswith("/"):
        return {"type": "bind", "source": src, "target": dst, "readonly": ro}
    if src and not valid_name(src):
        raise InvalidOption(f"invalid volume specification {text!r}: {src!r} is neither an "
                            "absolute host path nor a volume name")
    return {"type": "volume", "source": src, "target": dst, "readonly": ro,
            "nocopy": "nocopy" in opts.split(",")}


def parse_mount(text: str) -> dict:
    """--mount type=bind|volume|tmpfs,source=...,target=...,readonly[,tmpfs-size=...]"""
    kv: dict[str, str] = {}
    for item in text.split(","):
        k, eq, v = item.partition("=")
        kv[k.strip()] = v if eq else "true"
    kind = kv.pop("type", "volume")
    target = kv.pop("target", kv.pop("destination", kv.pop("dst", "")))
    source = kv.pop("source", kv.pop("src", ""))
    ro = kv.pop("readonly", kv.pop("ro", "false")) in ("true", "1")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidOption(f"--mount {text!r}: type must be bind, volume or tmpfs")
    if not target.startswith("/"):
        raise InvalidOption(f"--mount {text!r}: target must be an absolute path")
    m: dict = {"type": kind, "source": source, "target": target, "readonly": ro}
    if kind == "bind" and not source.startswith("/"):
        raise InvalidOption(f"--mount {text!r}: a bind needs an absolute source path")
    if kind == "tmpfs":
        m["options"] = [f"size={kv.pop('tmpfs-size')}"] if "tmpfs-size" in kv else []
        if "tmpfs-mode" in kv:
            m["options"].append(f"mode={kv.pop('tmpfs-mode')}")
    kv.pop("bind-propagation", None)
    kv.pop("volume-nocopy", None)
    if kv:
        raise InvalidOption(f"--mount {text!r}: unknown field {sorted(kv)[0]!r}")
    return m


def parse_tmpfs(text: str) -> dict:
    dst, _, opts = text.partition(":")
    if not dst.startswith("/"):
        raise InvalidOption(f"--tmpfs {text!r}: the mount point must be an absolute path")
    return {"type": "tmpfs", "source": "", "target": dst, "readonly": False,
            "options": [o for o in opts.split(",") if o]}


def resolve(root: str, mounts: list[dict]) -> list[dict]:
    """Give anonymous volumes a name, create named ones, check bind sources exist."""
    out = []
    for m in mounts:
        m = dict(m)
        if m["type"] == "volume":
            if not m["source"]:
                m["source"] = create(root)
                m["anonymous"] = True
            elif not exists(root, m["source"]):
                create(root, m["source"])
        elif m["type"] == "bind" and not os.path.exists(m["source"]):
            raise InvalidOption(f"invalid mount config: bind source path does not exist: "
                                f"{m['source']}")
        out.append(m)
    return out


def oci_mounts(root: str, mounts: list[dict]) -> list[dict]:
    out = []
    for m in mounts:
        ro = ["ro"] if m.get("readonly") else []
        if m["type"] == "tmpfs":
            out.append({"destination": m["target"], "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "nodev", *ro, *(m.get("options") or [])]})
        else:
            src = m["source"] if m["type"] == "bind" else path(root, m["source"])
            out.append({"destination": m["target"], "type": "bind", "source": src,
                        "options": ["rbind", "rprivate", *ro]})
    return out
