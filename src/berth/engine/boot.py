"""After a host reboot: records say exited, and restart policies bring back what should run.

berth has no daemon to start at boot, so the first berth command after one does
it: the kernel's boot id differs from the one recorded, so every container the
records call running is marked exited (its processes, mounts and network
endpoints died with the old boot), those run with --rm are removed (their volatile
snapshots are not kept across a crash), and those whose policy is `always` or
`unless-stopped` (and that no one stopped) are started again through the
supervisor. A transaction makes sure only one command does it.
"""

from __future__ import annotations

import sys
import time

from berth.engine.state import State, boot_id
from berth.oci import jsonfast as json


def recover(state: State) -> list[str]:
    """Mark the previous boot's containers exited and restart the ones that should run;
    return the names restarted. Cheap when nothing rebooted: one read, one SELECT."""
    db = state.db
    current = boot_id()
    if state.booted_here(current):
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE key='boot_id'").fetchone()
        if row is not None and row[0] == current:  # another command got here first
            db.execute("COMMIT")
            return []
        was_running = [dict(r) for r in db.execute(
            "SELECT * FROM containers WHERE status='running'").fetchall()]
        if row is not None:  # a first run has nothing of a previous boot to clean up
            db.execute("UPDATE containers SET status='exited', pid=0, paused=0, "
                       "supervised=0, ports='[]', finished=? WHERE status='running'",
                       (time.time(),))
            try:
                db.execute("DELETE FROM endpoints")
            except Exception:  # noqa: BLE001 - no network was ever used
                pass
        db.execute("INSERT OR REPLACE INTO meta VALUES ('boot_id', ?)", (current,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if row is None:
        return []
    restarted = []
    from berth.engine import containers
    for c in was_running:
        spec = json.loads(c["spec"])
        if spec.get("remove"):  # run --rm: it went with its boot (dockerd's restore does so)
            try:
                containers.remove(state, c["id"], force=True, volumes=True, owned=True)
            except Exception as e:  # noqa: BLE001 - one broken container must not stop the rest
                sys.stderr.write(f"berth: removing {c['name']} after reboot: {e}\n")
            continue
        policy = spec.get("restart", "no").partition(":")[0]
        if policy in ("always", "unless-stopped") and not c["stop_requested"]:
            try:
                containers.start_detached(state, c["id"])
                restarted.append(c["name"])
            except Exception as e:  # noqa: BLE001 - one broken container must not stop the rest
                sys.stderr.write(f"berth: restarting {c['name']} after reboot: {e}\n")
    return restarted
