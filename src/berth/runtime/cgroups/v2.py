"""cgroup v2: one unified hierarchy, controllers enabled down the tree.

Device rules on v2 need an eBPF program attached to the cgroup; berth does
not load one yet (docs/known-limits.md), so they are recorded, not enforced.
"""

from __future__ import annotations

import os
import time

from berth.runtime.cgroups import (
    kill_pids,
    missing,
    mkdirs,
    own_cgroups,
    procs,
    read,
    resolve,
    rmdirs,
    write,
)
from berth.runtime.errors import SetupError


class V2:
    version = 2

    def __init__(self, mountpoint: str, path: str) -> None:
        self.mountpoint = mountpoint
        self.path = path
        self.dir = resolve(mountpoint, own_cgroups().get("", "/"), path)
        self.created: list[str] = []

    def to_state(self) -> dict:
        return {"version": 2, "path": self.path, "mountpoint": self.mountpoint, "dir": self.dir,
                "created": self.created}

    @classmethod
    def from_state(cls, st: dict) -> V2:
        self = cls.__new__(cls)
        self.mountpoint, self.path, self.dir = st["mountpoint"], st["path"], st["dir"]
        self.created = st.get("created") or []
        return self

    @property
    def dirs(self) -> dict[str, str]:
        return {"": self.dir}

    def plan(self) -> None:
        """Name the directories create() is about to make before it makes them (see V1)."""
        self.created = missing(self.dir)

    def create(self) -> None:
        # enable every available controller on the way down
        for child in missing(self.dir):
            parent = os.path.dirname(child)
            avail = read(parent + "/cgroup.controllers").split()
            enabled = read(parent + "/cgroup.subtree_control").split()
            want = [c for c in avail if c not in enabled]
            if want:
                try:
                    write(parent + "/cgroup.subtree_control", " ".join("+" + c for c in want))
                except SetupError:
                    pass  # a parent with processes cannot delegate; limits then fail clearly
            self.created += [m for m in mkdirs(child) if m not in self.created]

    def join_files(self) -> list[str]:
        """What a process writes "0" to to move itself in (join_self)."""
        return [self.dir + "/cgroup.procs"]

    def pids(self) -> list[int]:
        return procs(self.dir)

    def freeze(self) -> None:
        self._freeze("1")

    def thaw(self) -> None:
        self._freeze("0")

    def _freeze(self, v: str) -> None:
        write(self.dir + "/cgroup.freeze", v)
        want = "frozen " + v
        for _ in range(1000):
            if want in read(self.dir + "/cgroup.events"):
                return
            time.sleep(0.001)
        raise SetupError(f"cgroup: {self.dir} did not reach cgroup.freeze={v}")

    def kill_all(self, sig: int = 9) -> None:
        if sig == 9 and os.path.exists(self.dir + "/cgroup.kill"):
            write(self.dir + "/cgroup.kill", "1")
        kill_pids(self.pids, sig)

    def destroy(self) -> None:
        rmdirs(self.created)

    def _f(self, name: str) -> str:
        return f"{self.dir}/{name}"

    def apply(self, res: dict | None) -> None:
        if not res:
            return
        mem = res.get("memory") or {}
        limit = mem.get("limit")
        if limit is not None:
            write(self._f("memory.max"), "max" if limit < 0 else str(limit))
        if mem.get("reservation") is not None:
            write(self._f("memory.low"), str(mem["reservation"]))
        if mem.get("swap") is not None:
            swap = mem["swap"]
            if swap < 0:
                write(self._f("memory.swap.max"), "max")
            elif limit is None or limit < 0:
                raise SetupError("cgroup: linux.resources.memory.swap needs memory.limit on v2")
            else:
                write(self._f("memory.swap.max"), str(swap - limit))
        if mem.get("disableOOMKiller"):
            raise SetupError("cgroup: disableOOMKiller is not available on cgroup v2")
        cpu = res.get("cpu") or {}
        if cpu.get("shares"):
            weight = 1 + ((cpu["shares"] - 2) * 9999) // 262142
            write(self._f("cpu.weight"), str(weight))
        if cpu.get("quota") or cpu.get("period"):
            quota = cpu.get("quota")
            period = cpu.get("period") or 100000
            write(self._f("cpu.max"), f"{'max' if not quota or quota < 0 else quota} {period}")
        if cpu.get("cpus"):
            write(self._f("cpuset.cpus"), cpu["cpus"])
        if cpu.get("mems"):
            write(self._f("cpuset.mems"), cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit") is not None:
            lim = pids["limit"]
            write(self._f("pids.max"), str(lim) if lim > 0 else "max")
        blk = res.get("blockIO") or {}
        if blk.get("weight") is not None:
            write(self._f("io.weight"), str(blk["weight"]))
        for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"),
                          ("throttleWriteIOPSDevice", "wiops")):
            for td in blk.get(key) or ():
                write(self._f("io.max"), f"{td['major']}:{td['minor']} {name}={td['rate']}")
        for h in res.get("hugepageLimits") or ():
            write(self._f(f"hugetlb.{h['pageSize']}.max"), str(h["limit"]))
        for key, value in (res.get("unified") or {}).items():
            if "/" in key or key.startswith("."):
                raise SetupError(f"cgroup: linux.resources.unified key {key!r} is not a file name")
            write(self._f(key), value)

    def apply_devices(self, rules: list[dict]) -> None:
        """Not enforced on v2 yet (needs an eBPF program); see docs/known-limits.md."""
