"""The last steps before the container's process runs: limits, identity, privileges, execve.

Shared by init (create/start) and exec. `ProcessPlan` is built while host
files are still visible (libseccomp loaded, filter compiled); `execute()`
runs inside the container and never returns. The order follows runc:
rlimits, seccomp (before dropping privileges unless no_new_privs is set),
bounding set, groups and ids, capabilities, no_new_privs, umask, cwd, mark
every inherited descriptor close-on-exec, execve.
"""

from __future__ import annotations

import os

from berth.oci.runtime_config import RLIMITS
from berth.runtime import linux
from berth.runtime.errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.runtime.libseccomp import Filter
    from berth.runtime.seccomp import BpfFilter

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _home(uid: int) -> str:
    """The home directory of `uid` in the (container's) /etc/passwd, "/" without one."""
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.split(":")
                if len(fields) > 5 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def env_dict(env: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env or ():
        k, _, v = e.partition("=")
        out[k] = v
    return out


class ProcessPlan:
    def __init__(self, proc: dict, linux_cfg: dict | None, userns: bool = False,
                 seccomp_cache: str | None = None,
                 seccomp_filter: Filter | BpfFilter | None = None) -> None:
        from berth.runtime.capabilities import Capabilities

        self.proc = proc
        self.userns = userns
        self.caps = Capabilities.from_config(proc.get("capabilities"))
        self.warnings = list(getattr(self.caps, "warnings", []))
        sec = (linux_cfg or {}).get("seccomp")
        self.filter = seccomp_filter  # prepared already (create does it before fork)
        if sec and seccomp_filter is None:
            from berth.runtime import seccomp
            self.filter = seccomp.prepare(sec, cache_dir=seccomp_cache)
        self.env = env_dict(proc.get("env"))
        self.path: str | None = None
        if proc.get("rlimits"):  # imported here, before pivot_root: execute() runs after
            import resource
            self.resource = resource

    def lookup(self) -> str:
        """Find args[0] the way execvp does, in the container's filesystem and PATH; and, as
        runc does, give the process a HOME (its user's, from /etc/passwd, else /) when its
        environment has none."""
        if "HOME" not in self.env:
            self.env["HOME"] = _home((self.proc.get("user") or {}).get("uid", 0))
        prog = self.proc["args"][0]
        if "/" in prog:
            cands = [prog if prog.startswith("/") else os.path.join(self.proc["cwd"], prog)]
        else:
            cands = [os.path.join(d or ".", prog)
                     for d in self.env.get("PATH", DEFAULT_PATH).split(":")]
        for c in cands:
            if os.path.isfile(c) and os.access(c, os.X_OK):
                self.path = c
                return c
        if "/" in prog:
            if os.path.exists(cands[0]):  # a directory, or not executable: runc's 126
                raise SetupError(f"exec: {prog!r}: permission denied")
            raise SetupError(f"exec: {prog!r}: no such executable file")
        raise SetupError(f"exec: {prog!r}: executable file not found in $PATH")

    def apply_rlimits(self) -> None:
        if not self.proc.get("rlimits"):
            return
        resource = self.resource
        for i, r in enumerate(self.proc["rlimits"]):
            num = RLIMITS[r["type"]]
            soft, hard = r["soft"], r["hard"]
            inf = resource.RLIM_INFINITY
            soft = inf if soft >= (1 << 64) - 1 else soft
            hard = inf if hard >= (1 << 64) - 1 else hard
            try:
                resource.setrlimit(num, (soft, hard))
            except (ValueError, OSError) as e:
                cur = resource.getrlimit(num)[1]
                raise SetupError(
                    f"process.rlimits[{i}] ({r['type']}): cannot set soft={r['soft']} "
                    f"hard={r['hard']}: {e} (the current hard limit is "
                    f"{'unlimited' if cur == inf else cur}; raising it needs CAP_SYS_RESOURCE)"
                ) from None

    def execute(self, preserve_fds: int = 0) -> None:
        p = self.proc
        nnp = bool(p.get("noNewPrivileges"))
        self.apply_rlimits()
        if self.filter is not None and not nnp:
            self.filter.load()
        self.caps.drop_bounding()
        user = p.get("user") or {}
        uid, gid = user.get("uid", 0), user.get("gid", 0)
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)
        try:
            if not self.userns or _setgroups_allowed():
                os.setgroups(user.get("additionalGids") or [])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        except OSError as e:
            raise SetupError(f"process.user: cannot switch to uid {uid} gid {gid}: "
                             f"{e.strerror}") from None
        self.caps.apply()
        if nnp:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        if user.get("umask") is not None:
            os.umask(user["umask"])
        try:
            os.chdir(p["cwd"])
        except OSError as e:
            raise SetupError(f"process.cwd: cannot change to {p['cwd']}: {e.strerror}") from None
        linux.close_range_cloexec(3 + preserve_fds)
        path = self.path or self.lookup()
        if self.filter is not None and nnp:
            self.filter.load()
        try:
            os.execve(path, p["args"], self.env)
        except OSError as e:
            raise SetupError(f"exec: {p['args'][0]!r}: {e.strerror}") from None


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def set_oom_score_adj(pid: int, value: int) -> None:
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise SetupError(f"process.oomScoreAdj: cannot set {value}: {e.strerror}"
                         " (lowering it needs CAP_SYS_RESOURCE)") from None
