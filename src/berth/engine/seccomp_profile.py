"""The seccomp profile every container gets unless it is privileged or asks otherwise.

Docker loads a default profile into every container; so does berth. Docker's is an
allow-list; berth's refuses what docker's documentation lists as the significant
syscalls its profile blocks, and lets everything else through: the same protection
where it matters (the kernel's keyrings, modules, clocks, reboot, namespaces and
mounts, BPF and perf, io_uring, obsolete calls), without the risk of refusing a call
a program needs that a hand-kept list forgot. As docker's does, the profile gives a
container back the calls its capabilities entitle it to: --cap-add SYS_ADMIN lets it
mount and unshare, SYS_TIME set the clock, and so on. Refused calls fail with EPERM;
clone3 with ENOSYS, so that the C library falls back to clone, whose namespace flags
the profile can see (clone3 passes them in memory, out of a filter's reach).

`--security-opt seccomp=unconfined` and `--privileged` load none;
`--security-opt seccomp=FILE` loads FILE instead. The runtime keeps compiled programs
(runtime/seccomp.py), so a container pays ~0.3 ms for its profile, not a compilation.
"""

from __future__ import annotations

import os

# capability that lifts the refusal (None: nothing does) -> syscalls refused without it
REFUSED: dict[str | None, tuple[str, ...]] = {
    None: ("add_key", "keyctl", "request_key",  # the keyrings are not namespaced
           "io_uring_setup", "io_uring_enter", "io_uring_register",
           "create_module", "get_kernel_syms", "query_module", "nfsservctl", "sysfs",
           "_sysctl", "uselib", "ustat", "vm86", "vm86old"),
    "CAP_SYS_ADMIN": ("mount", "umount", "umount2", "pivot_root", "setns", "unshare",
                      "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
                      "mount_setattr", "swapon", "swapoff", "quotactl", "quotactl_fd",
                      "lookup_dcookie", "fanotify_init", "name_to_handle_at"),
    "CAP_SYS_BOOT": ("reboot", "kexec_load", "kexec_file_load"),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64",
                     "clock_adjtime", "clock_adjtime64"),
    "CAP_SYS_PTRACE": ("kcmp", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
                       "userfaultfd"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYSLOG": ("syslog",),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
}
# refused unless the container has any one of these
REFUSED_UNLESS_ANY: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("CAP_SYS_ADMIN", "CAP_BPF"), ("bpf",)),
    (("CAP_SYS_ADMIN", "CAP_PERFMON"), ("perf_event_open",)),
)
# clone's flags that make new namespaces (refused without CAP_SYS_ADMIN)
_NEW_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000)  # NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET
_EPERM, _ENOSYS = 1, 38

ARCHITECTURES = {  # the ABIs a process of this machine can call the kernel through
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def default_profile(capabilities: list[str] | set[str]) -> dict:
    """The OCI `linux.seccomp` object for a container with these capabilities."""
    caps = set(capabilities)
    refused = [name for cap, names in REFUSED.items() if cap not in caps for name in names]
    refused += [name for any_of, names in REFUSED_UNLESS_ANY if not caps & set(any_of)
                for name in names]
    rules: list[dict] = [{"names": refused, "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM}]
    if "CAP_SYS_ADMIN" not in caps:
        # several conditions on one argument: any of them (one rule each), as runc does
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM,
                      "args": [{"index": 0, "value": flag, "valueTwo": flag,
                                "op": "SCMP_CMP_MASKED_EQ"} for flag in _NEW_NAMESPACES]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ARCHITECTURES.get(os.uname().machine, []),
            "syscalls": rules}
