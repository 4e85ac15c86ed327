"""`list`: every container the runtime knows, as a table (runc's columns), ids or JSON."""

from __future__ import annotations

from berth.runtime.errors import ContainerNotFound
from berth.runtime.state import to_oci
from berth.runtime.store import Store


def list_containers(store: Store) -> list[dict]:
    out = []
    for cid in store.ids():
        try:
            out.append(to_oci(store, cid, store.load(cid)))
        except ContainerNotFound:
            continue
    return out


def render_table(states: list[dict]) -> str:
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for s in states:
        rows.append((s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                     s.get("owner") or "root"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
                   for r in rows)
