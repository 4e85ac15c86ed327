"""engine/seccomp_profile.py: docker's significant refusals, lifted by the capabilities that
entitle a container to them; always a profile the runtime accepts."""

from __future__ import annotations

import pytest

from berth.engine.seccomp_profile import REFUSED, default_profile
from berth.engine.spec import DEFAULT_CAPS
from berth.runtime import seccomp
from berth.runtime.capabilities import NAMES


def refused(profile: dict) -> set[str]:
    return {n for rule in profile["syscalls"] if "args" not in rule for n in rule["names"]}


def test_docker_default_capabilities_get_every_refusal() -> None:
    prof = default_profile(DEFAULT_CAPS)
    seccomp.validate(prof)
    assert prof["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {n for names in REFUSED.values() for n in names} | {"bpf", "perf_event_open",
                                                               "clone3"} == refused(prof)
    clone = next(r for r in prof["syscalls"] if r["names"] == ["clone"])
    assert clone["action"] == "SCMP_ACT_ERRNO" and len(clone["args"]) == 7


@pytest.mark.parametrize(("cap", "lifted", "kept"), [
    ("CAP_SYS_ADMIN", {"mount", "unshare", "setns", "bpf", "perf_event_open", "clone3"},
     {"keyctl", "reboot", "init_module"}),
    ("CAP_SYS_TIME", {"settimeofday", "clock_settime"}, {"mount"}),
    ("CAP_SYS_PTRACE", {"process_vm_readv", "kcmp"}, {"mount"}),
    ("CAP_BPF", {"bpf"}, {"perf_event_open", "mount"}),
])
def test_a_capability_lifts_what_it_entitles_to(cap: str, lifted: set[str],
                                                  kept: set[str]) -> None:
    prof = default_profile([*DEFAULT_CAPS, cap])
    seccomp.validate(prof)
    assert lifted & refused(prof) == set() and kept <= refused(prof)
    has_clone_rule = any(r["names"] == ["clone"] for r in prof["syscalls"])
    assert has_clone_rule == (cap != "CAP_SYS_ADMIN")


def test_every_capability_still_refuses_the_keyrings_and_obsolete_calls() -> None:
    assert refused(default_profile(NAMES)) == set(REFUSED[None])
