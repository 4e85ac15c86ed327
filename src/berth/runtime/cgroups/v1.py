"""cgroup v1: one directory per mounted controller (also the hybrid layout)."""

from __future__ import annotations

import os
import time

from berth.runtime.cgroups import (
    kill_pids,
    missing,
    mkdirs,
    mounts,
    own_cgroups,
    procs,
    read,
    resolve,
    rmdirs,
    write,
)
from berth.runtime.errors import SetupError

# controllers berth puts every container in (others only when resources ask for them)
_ALWAYS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio",
           "net_cls", "net_prio", "hugetlb", "perf_event")


class V1:
    version = 1

    def __init__(self, path: str) -> None:
        self.path = path
        _, ctrl_mounts = mounts()
        own = own_cgroups()
        self.dirs: dict[str, str] = {}
        for ctrl, mnt in ctrl_mounts.items():
            self.dirs[ctrl] = resolve(mnt, own.get(ctrl, "/"), path)
        self.created: list[str] = []

    def to_state(self) -> dict:
        return {"version": 1, "path": self.path, "dirs": self.dirs, "created": self.created}

    @classmethod
    def from_state(cls, st: dict) -> V1:
        self = cls.__new__(cls)
        self.path = st["path"]
        self.dirs = st["dirs"]
        self.created = st.get("created") or []
        return self

    def _unique_dirs(self) -> list[str]:
        return list(dict.fromkeys(self.dirs.values()))

    def _wanted(self) -> list[str]:
        return [self.dirs[c] for c in [*_ALWAYS, *(c for c in self.dirs if c.startswith("name="))]
                if c in self.dirs]

    def plan(self) -> None:
        """Name the directories create() is about to make before it makes them: a runtime
        killed in between then leaves a record from which delete removes them."""
        self.created = list(dict.fromkeys(p for d in self._wanted() for p in missing(d)))

    def create(self) -> None:
        for ctrl in [*_ALWAYS, *(c for c in self.dirs if c.startswith("name="))]:
            d = self.dirs.get(ctrl)
            if d is None:
                continue
            made = mkdirs(d)
            self.created += [m for m in made if m not in self.created]
            if ctrl == "cpuset":  # a new v1 cpuset starts empty: copy cpus and mems down
                for child in made:
                    parent = os.path.dirname(child)
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        if not read(os.path.join(child, f)):
                            write(os.path.join(child, f), read(os.path.join(parent, f)))

    def join_files(self) -> list[str]:
        """What a single-threaded process writes "0" to to move itself in (join_self)."""
        return [d + "/tasks" for d in self._unique_dirs() if os.path.isdir(d)]

    def pids(self) -> list[int]:
        for ctrl in ("pids", "memory", "freezer", "cpu"):
            d = self.dirs.get(ctrl)
            if d and os.path.isdir(d):
                return procs(d)
        return []

    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def _freezer(self, state: str) -> None:
        d = self.dirs.get("freezer")
        if d is None:
            raise SetupError("cgroup: the freezer controller is not mounted")
        write(d + "/freezer.state", state)
        for _ in range(1000):
            if read(d + "/freezer.state") == state:
                return
            time.sleep(0.001)
        raise SetupError(f"cgroup: {d} did not reach {state}")

    def kill_all(self, sig: int = 9) -> None:
        kill_pids(self.pids, sig)

    def destroy(self) -> None:
        by_root: dict[str, list[str]] = {}
        for d in self.created:  # one chain per hierarchy, top first
            root = next((v for v in self.dirs.values() if v == d or v.startswith(d + "/")), d)
            by_root.setdefault(root, []).append(d)
        for chain in by_root.values():
            rmdirs(chain)

    # --- resources ------------------------------------------------------

    def _file(self, ctrl: str, name: str) -> str:
        d = self.dirs.get(ctrl)
        if d is None:
            raise SetupError(f"cgroup: the {ctrl} controller is not mounted on this host "
                             f"(needed for {name})")
        return f"{d}/{name}"

    def apply(self, res: dict | None) -> None:
        if not res:
            return
        mem = res.get("memory") or {}
        if mem:
            limit, swap = mem.get("limit"), mem.get("swap")
            if limit is not None:
                write(self._file("memory", "memory.limit_in_bytes"), str(limit))
            if swap is not None:
                write(self._file("memory", "memory.memsw.limit_in_bytes"), str(swap))
            if mem.get("reservation") is not None:
                write(self._file("memory", "memory.soft_limit_in_bytes"), str(mem["reservation"]))
            if mem.get("kernel") is not None:
                write(self._file("memory", "memory.kmem.limit_in_bytes"), str(mem["kernel"]))
            if mem.get("kernelTCP") is not None:
                write(self._file("memory", "memory.kmem.tcp.limit_in_bytes"),
                      str(mem["kernelTCP"]))
            if mem.get("swappiness") is not None:
                write(self._file("memory", "memory.swappiness"), str(mem["swappiness"]))
            if mem.get("disableOOMKiller"):
                write(self._file("memory", "memory.oom_control"), "1")
        cpu = res.get("cpu") or {}
        if cpu:
            if cpu.get("shares"):
                write(self._file("cpu", "cpu.shares"), str(cpu["shares"]))
            if cpu.get("period"):
                write(self._file("cpu", "cpu.cfs_period_us"), str(cpu["period"]))
            if cpu.get("quota") is not None and cpu["quota"] != 0:
                write(self._file("cpu", "cpu.cfs_quota_us"), str(cpu["quota"]))
            if cpu.get("realtimePeriod"):
                write(self._file("cpu", "cpu.rt_period_us"), str(cpu["realtimePeriod"]))
            if cpu.get("realtimeRuntime"):
                write(self._file("cpu", "cpu.rt_runtime_us"), str(cpu["realtimeRuntime"]))
            if cpu.get("cpus"):
                write(self._file("cpuset", "cpuset.cpus"), cpu["cpus"])
            if cpu.get("mems"):
                write(self._file("cpuset", "cpuset.mems"), cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit") is not None:
            lim = pids["limit"]
            write(self._file("pids", "pids.max"), str(lim) if lim > 0 else "max")
        if res.get("devices") is not None:
            self.apply_devices(res["devices"])
        blk = res.get("blockIO") or {}
        if blk:
            self._blkio(blk)
        for h in res.get("hugepageLimits") or ():
            write(self._file("hugetlb", f"hugetlb.{h['pageSize']}.limit_in_bytes"),
                  str(h["limit"]))
        net = res.get("network") or {}
        if net.get("classID") is not None:
            write(self._file("net_cls", "net_cls.classid"), str(net["classID"]))
        for p in net.get("priorities") or ():
            write(self._file("net_prio", "net_prio.ifpriomap"), f"{p['name']} {p['priority']}")
        if res.get("unified"):
            raise SetupError("cgroup: linux.resources.unified needs cgroup v2 "
                             "(this host's controllers are on cgroup v1)")

    def _blkio(self, blk: dict) -> None:
        if blk.get("weight") is not None:
            write(self._file("blkio", "blkio.weight"), str(blk["weight"]))
        if blk.get("leafWeight") is not None:
            write(self._file("blkio", "blkio.leaf_weight"), str(blk["leafWeight"]))
        for wd in blk.get("weightDevice") or ():
            dev = f"{wd['major']}:{wd['minor']}"
            if wd.get("weight") is not None:
                write(self._file("blkio", "blkio.weight_device"), f"{dev} {wd['weight']}")
            if wd.get("leafWeight") is not None:
                write(self._file("blkio", "blkio.leaf_weight_device"),
                      f"{dev} {wd['leafWeight']}")
        for key, fname in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                           ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                           ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                           ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
            for td in blk.get(key) or ():
                write(self._file("blkio", fname), f"{td['major']}:{td['minor']} {td['rate']}")

    def apply_devices(self, rules: list[dict]) -> None:
        """Write the device rules in their order: the last matching rule wins, as in the spec."""
        for rule in rules:
            kind = rule.get("type") or "a"
            major = "*" if rule.get("major") in (None, -1) else str(rule["major"])
            minor = "*" if rule.get("minor") in (None, -1) else str(rule["minor"])
            access = rule.get("access") or "rwm"
            line = "a" if kind == "a" else f"{kind} {major}:{minor} {access}"
            name = "devices.allow" if rule.get("allow") else "devices.deny"
            write(self._file("devices", name), line)
