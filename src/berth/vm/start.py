"""`vm start`: check, pick the accelerator, run qemu detached, record it, optionally wait
for a line on the serial console (`--wait-for BERTH-GUEST-READY`).

qemu runs with -daemonize: it returns once the VM is set up, with status 0, or prints
why it could not start; the pid file it wrote is the VM's pid from then on.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from berth.vm import kvm, network, qemu, resources
from berth.vm.definition import VMSpec
from berth.vm.errors import DefinitionError, InvalidState, QemuError, VMError
from berth.vm.status import clear_runtime_files, read_pid, refresh
from berth.vm.store import Record, Store

POLL = 0.02  # seconds between looks at the serial log while waiting for a line


@dataclass
class Started:
    record: Record
    note: str | None      # e.g. "kvm unusable: ...; using TCG (software emulation)"
    log_offset: int       # where this boot's output starts in the serial log
    seconds: float        # from the call until qemu was up (and the wait-for line seen)


def start(name: str, store: Store, accel: str | None = None, wait_for: str | None = None,
          timeout: float = 120.0) -> Started:
    t0 = time.monotonic()
    rec = refresh(store, store.get(name))
    if rec.status in ("running", "paused"):
        raise InvalidState(f"vm {name!r} is already running")
    spec = VMSpec.from_dict(rec.spec)
    for key in ("kernel", "initrd"):
        path = getattr(spec, key)
        if path and not os.path.isfile(path):
            raise DefinitionError(key, f"{path}: no such file (it was there at create)",
                                  f"vm {name}")
    resources.check(spec, store, starting=True)
    chosen, note = kvm.choose(accel or spec.accel, store.root)
    if not qemu.installed():
        raise QemuError(f"{qemu.QEMU} is not installed: `apt-get install qemu-system-x86`")
    paths = store.paths(name)
    clear_runtime_files(paths)
    os.makedirs(paths.sock_dir, mode=0o700, exist_ok=True)
    offset = os.path.getsize(paths.serial_log) if os.path.exists(paths.serial_log) else 0
    cmd = qemu.command(spec, paths, chosen, seed=os.path.exists(paths.seed))
    network.setup(rec.spec)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
    except BaseException:
        network.teardown(rec.spec)
        raise
    pid = read_pid(paths)
    if p.returncode != 0 or pid is None:
        network.teardown(rec.spec)
        clear_runtime_files(paths)
        raise QemuError(f"qemu could not start vm {name!r}", cmd, p.stderr)
    store.update(name, status="running", pid=pid, accel=chosen, started=time.time())
    if wait_for:
        wait_serial(store, name, wait_for, offset, timeout)
    return Started(store.get(name), note, offset, time.monotonic() - t0)


def wait_serial(store: Store, name: str, text: str, offset: int = 0,
                timeout: float = 120.0) -> str:
    """Wait until `text` appears in the serial log after `offset`; the log from there."""
    paths = store.paths(name)
    deadline = time.monotonic() + timeout
    needle = text.encode()
    while True:
        try:
            with open(paths.serial_log, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if needle in data:
            return data.decode(errors="replace")
        if refresh(store, store.get(name)).status != "running":
            raise VMError(f"vm {name!r} stopped before {text!r} appeared on its console"
                          f" (see `berth vm logs {name}`)")
        if time.monotonic() > deadline:
            raise VMError(f"vm {name!r} is running but {text!r} did not appear on its console"
                          f" within {timeout:g}s (see `berth vm logs {name}`)")
        time.sleep(POLL)
