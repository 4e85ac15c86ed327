"""The host's vCPUs and RAM, what running VMs hold, and the over-allocation check.

A VM may not ask for more vCPUs than the host has, nor more RAM than the host has;
starting one may not take the RAM held by running VMs past the host's total. Each rule
is lifted by --overcommit (the definition's `overcommit: true`).
"""

from __future__ import annotations

import os

from berth.vm.definition import VMSpec
from berth.vm.errors import ResourceError
from berth.vm.store import Store


def host() -> dict:
    """The host's CPUs and RAM (/proc/meminfo: cheaper than importing psutil on `start`)."""
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {"cpus": os.cpu_count() or 1, "memory_mib": mem_kib >> 10}


def allocated(store: Store, exclude: str | None = None) -> dict:
    """vCPUs and RAM held by the VMs whose qemu is running."""
    from berth.vm.status import refresh

    cpus = mem = count = 0
    for rec in store.all():
        if rec.name == exclude:
            continue
        rec = refresh(store, rec)
        if rec.status in ("running", "paused"):
            cpus += rec.spec["cpus"]
            mem += rec.spec["memory_mib"]
            count += 1
    return {"vms": count, "cpus": cpus, "memory_mib": mem}


def check(spec: VMSpec, store: Store, starting: bool = False) -> None:
    if spec.overcommit:
        return
    h = host()
    if spec.cpus > h["cpus"]:
        raise ResourceError(f"vm {spec.name!r} asks for {spec.cpus} vCPUs but the host has "
                            f"{h['cpus']}: ask for fewer or pass --overcommit")
    if spec.memory_mib > h["memory_mib"]:
        raise ResourceError(f"vm {spec.name!r} asks for {spec.memory_mib} MiB of RAM but the "
                            f"host has {h['memory_mib']} MiB: ask for less or pass --overcommit")
    if starting:
        held = allocated(store, exclude=spec.name)["memory_mib"]
        if held + spec.memory_mib > h["memory_mib"]:
            raise ResourceError(
                f"vm {spec.name!r} asks for {spec.memory_mib} MiB of RAM but running vms hold "
                f"{held} MiB of the host's {h['memory_mib']} MiB: stop one or pass --overcommit")
