"""`vm ls` and `vm inspect`: what berth knows of its VMs, corrected to what is true."""

from __future__ import annotations

import os

from berth.vm import disks
from berth.vm.errors import QMPError, VMError
from berth.vm.qmp import QMP
from berth.vm.status import refresh
from berth.vm.store import Record, Store


def summary(rec: Record) -> dict:
    s = rec.spec
    return {"name": rec.name, "status": rec.status, "cpus": s["cpus"],
            "memory_mib": s["memory_mib"], "disks": len(s["disks"]),
            "accel": rec.accel if rec.status in ("running", "paused") else None,
            "pid": rec.pid}


def ls(store: Store) -> list[dict]:
    return [summary(refresh(store, r)) for r in store.all()]


def inspect(name: str, store: Store) -> dict:
    rec = refresh(store, store.get(name))
    paths = store.paths(name)
    out = summary(rec)
    out.update({"created": rec.created, "started": rec.started, "definition": rec.spec,
                "paths": {"dir": paths.dir, "qmp": paths.qmp, "serial": paths.serial,
                          "serial_log": paths.serial_log, "pidfile": paths.pidfile,
                          "seed": paths.seed if os.path.exists(paths.seed) else None}})
    files = []
    for i, d in enumerate(rec.spec["disks"]):
        path = d["path"] or d.get("file") or paths.disk(i)
        entry: dict = {"id": d.get("id") or f"disk{i}", "path": path, "backing": d["base"],
                       "owned_by_berth": d["path"] is None}
        try:
            info = disks.info(path)
            entry.update({"format": info.get("format"), "virtual_size": info.get("virtual-size"),
                          "actual_size": info.get("actual-size")})
        except VMError as e:
            entry["error"] = str(e)
        files.append(entry)
    out["disk_files"] = files
    if rec.status in ("running", "paused"):
        try:
            out["runstate"] = QMP(paths.qmp, timeout=3).execute("query-status")["status"]
        except QMPError as e:
            out["runstate"] = f"unknown ({e})"
    return out
