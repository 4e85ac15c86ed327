"""`vm stats`: what qemu reports through QMP (vCPUs, balloon, block I/O) and what the host
sees of the qemu process (RSS, CPU time)."""

from __future__ import annotations

from berth.vm.errors import InvalidState, QMPError
from berth.vm.qmp import QMP
from berth.vm.status import refresh
from berth.vm.store import Store


def stats(name: str, store: Store) -> dict:
    rec = refresh(store, store.get(name))
    if rec.status not in ("running", "paused") or rec.pid is None:
        raise InvalidState(f"vm {name!r} is not running")
    q = QMP(store.paths(name).qmp)
    status, cpus, blocks = q.run([("query-status", None), ("query-cpus-fast", None),
                                  ("query-blockstats", None)])
    try:
        balloon = q.execute("query-balloon")
    except QMPError:
        balloon = None
    out: dict = {
        "name": name, "runstate": status["status"],
        "vcpus": [{"index": c["cpu-index"], "thread_id": c["thread-id"],
                   "target": c.get("target")} for c in cpus],
        "balloon_bytes": balloon["actual"] if balloon else None,
        "memory_bytes": rec.spec["memory_mib"] << 20,
        "block": {_device(b): {k: b["stats"][k] for k in ("rd_bytes", "wr_bytes",
                                                           "rd_operations", "wr_operations")}
                  for b in blocks},
    }
    try:
        import psutil

        p = psutil.Process(rec.pid)
        with p.oneshot():
            t = p.cpu_times()
            out["host"] = {"pid": rec.pid, "rss_bytes": p.memory_info().rss,
                           "cpu_seconds": round(t.user + t.system, 2),
                           "threads": p.num_threads()}
    except Exception:  # noqa: BLE001 - the process may vanish between the calls
        out["host"] = None
    return out


def _device(b: dict) -> str:
    """The device id (disk0) from /machine/peripheral/disk0/virtio-backend, else the drive."""
    qdev = b.get("qdev") or ""
    parts = qdev.split("/")
    if len(parts) > 3 and parts[2] == "peripheral":
        return parts[3]
    return str(b.get("device") or b.get("node-name") or qdev)
