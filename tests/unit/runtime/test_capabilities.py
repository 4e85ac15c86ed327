"""runtime/capabilities.py: parsing, the kernel calls it makes, and what the kernel then shows.

Unit tests record runtime.linux calls; the root tests change capabilities in a forked child and
read /proc/self/status there, reporting back through a pipe.
"""

from __future__ import annotations

import os

import pytest

from berth.runtime import capabilities, linux
from berth.runtime.capabilities import NAMES, Capabilities
from berth.runtime.errors import ConfigError, SetupError
from tests.unit.runtime.child import in_child

only_as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CHOWN = 1 << NAMES["CAP_CHOWN"]
KILL = 1 << NAMES["CAP_KILL"]
SETPCAP = 1 << NAMES["CAP_SETPCAP"]


@pytest.fixture
def kernel_38(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel whose last capability is CAP_AUDIT_READ (37 is below; 38-40 are too new)."""
    monkeypatch.setattr(capabilities, "last_cap", lambda: 37)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Record prctl and capset instead of making them."""
    recorded: list[tuple] = []

    def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        recorded.append(("prctl", option, arg2, arg3))
        return 0

    def capset(effective: int, permitted: int, inheritable: int) -> None:
        recorded.append(("capset", effective, permitted, inheritable))

    monkeypatch.setattr(linux, "prctl", prctl)
    monkeypatch.setattr(linux, "capset", capset)
    monkeypatch.setattr(capabilities, "last_cap", lambda: 5)
    return recorded


# --- names and parsing --------------------------------------------------------------------------


def test_names_cover_every_capability_up_to_checkpoint_restore() -> None:
    assert sorted(NAMES.values()) == list(range(41))
    assert NAMES["CAP_CHOWN"] == 0
    assert NAMES["CAP_SYS_ADMIN"] == 21
    assert NAMES["CAP_AUDIT_READ"] == 37
    assert NAMES["CAP_CHECKPOINT_RESTORE"] == 40


def test_last_cap_is_the_kernels() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert capabilities.last_cap() == int(f.read())


def test_last_cap_can_be_probed_without_proc() -> None:
    assert capabilities._probe_last_cap() == capabilities.last_cap()


def test_parse_returns_a_mask() -> None:
    assert capabilities.parse(["CAP_CHOWN", "CAP_KILL", "CAP_CHOWN"], "f") == CHOWN | KILL
    assert capabilities.parse([], "f") == 0


def test_parse_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError) as e:
        capabilities.parse(["CAP_CHOWN", "CAP_FOO"], "process.capabilities.bounding")
    assert str(e.value) == ("config.json: process.capabilities.bounding: "
                            "unknown capability 'CAP_FOO'")
    assert e.value.field == "process.capabilities.bounding"


@pytest.mark.usefixtures("kernel_38")
def test_parse_rejects_names_above_the_kernels_last_capability() -> None:
    assert capabilities.parse(["CAP_AUDIT_READ"], "f") == 1 << 37
    with pytest.raises(ConfigError, match="'CAP_BPF' is not supported by this kernel"):
        capabilities.parse(["CAP_BPF"], "f")


@pytest.mark.parametrize("names", ["CAP_CHOWN", None, [0], {"CAP_CHOWN": True}])
def test_parse_rejects_what_is_not_a_list_of_names(names: object) -> None:
    with pytest.raises(ConfigError, match="must be a list of capability names"):
        capabilities.parse(names, "f")  # type: ignore[arg-type]


@pytest.mark.usefixtures("kernel_38")
def test_parse_lenient_returns_the_names_to_ignore() -> None:
    mask, ignored = capabilities.parse_lenient(
        ["CAP_CHOWN", "CAP_FOO", "CAP_BPF", "CAP_KILL"], "f")
    assert mask == CHOWN | KILL
    assert ignored == ["CAP_FOO", "CAP_BPF"]


# --- from_config --------------------------------------------------------------------------------


def test_missing_capabilities_are_empty() -> None:
    for caps in (Capabilities.from_config(None), Capabilities.from_config({})):
        assert [getattr(caps, s) for s in capabilities.SETS] == [0, 0, 0, 0, 0]
        assert caps.warnings == []


@pytest.mark.usefixtures("kernel_38")
def test_from_config_parses_every_set_and_warns_about_what_it_ignores() -> None:
    caps = Capabilities.from_config({
        "bounding": ["CAP_CHOWN", "CAP_KILL"],
        "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_PERFMON"],
        "inheritable": None,
        "ambient": ["CAP_CHOWN"],
    })
    assert (caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient) == (
        CHOWN | KILL, CHOWN, CHOWN | KILL, 0, CHOWN)
    assert caps.warnings == [
        "process.capabilities.permitted: ignoring capability 'CAP_PERFMON' "
        "(not supported by this kernel)",
        "process.capabilities.ambient: CAP_CHOWN is not raised: it is not in both the "
        "permitted and inheritable sets",
    ]


def test_an_unknown_capability_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown capability 'CAP_FOO'") as e:
        Capabilities.from_config({"bounding": ["CAP_CHOWN", "CAP_FOO"]})
    assert e.value.field == "process.capabilities.bounding"


def test_from_config_names_the_bad_field() -> None:
    with pytest.raises(ConfigError) as e:
        Capabilities.from_config({"effective": "CAP_CHOWN"})
    assert e.value.field == "process.capabilities.effective"
    with pytest.raises(ConfigError) as e:
        Capabilities.from_config(["CAP_CHOWN"], field="spec.process.capabilities")  # type: ignore[arg-type]
    assert e.value.field == "spec.process.capabilities"


# --- the calls made -----------------------------------------------------------------------------


def test_drop_bounding_drops_every_capability_not_kept(calls: list[tuple]) -> None:
    Capabilities(bounding=CHOWN | KILL).drop_bounding()
    assert calls == [("prctl", linux.PR_CAPBSET_DROP, n, 0) for n in (1, 2, 3, 4)]


def test_apply_sets_the_sets_then_exactly_the_ambient_set(calls: list[tuple]) -> None:
    Capabilities(effective=CHOWN, permitted=CHOWN | KILL, inheritable=CHOWN | KILL,
                 ambient=CHOWN | KILL).apply()
    assert calls == [
        ("capset", CHOWN, CHOWN | KILL, CHOWN | KILL),
        ("prctl", linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL, 0),
        ("prctl", linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, NAMES["CAP_CHOWN"]),
        ("prctl", linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, NAMES["CAP_KILL"]),
    ]


@pytest.mark.parametrize(("caps", "message"), [
    (Capabilities(effective=KILL, permitted=CHOWN),
     "effective capability CAP_KILL is not in the permitted set"),
])
def test_apply_refuses_sets_the_kernel_cannot_have(calls: list[tuple], caps: Capabilities,
                                                   message: str) -> None:
    with pytest.raises(SetupError, match=message):
        caps.apply()
    assert calls == []


def test_ambient_outside_permitted_and_inheritable_is_skipped(calls: list[tuple]) -> None:
    Capabilities(permitted=CHOWN | KILL, inheritable=KILL, ambient=CHOWN | KILL).apply()
    raised = [c[3] for c in calls if c[:3] == ("prctl", linux.PR_CAP_AMBIENT,
                                                linux.PR_CAP_AMBIENT_RAISE)]
    assert raised == [NAMES["CAP_KILL"]]


def test_kernel_refusals_name_the_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    def prctl(option: int, arg2: int = 0, *rest: int) -> int:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(linux, "prctl", prctl)
    monkeypatch.setattr(capabilities, "last_cap", lambda: 5)
    with pytest.raises(SetupError, match="cannot drop CAP_CHOWN from the bounding set"):
        Capabilities().drop_bounding()
    monkeypatch.setattr(linux, "capset", lambda *masks: None)
    with pytest.raises(SetupError, match="cannot clear the ambient capabilities"):
        Capabilities(permitted=KILL, inheritable=KILL, ambient=KILL).apply()
    Capabilities(permitted=KILL).apply()  # nothing asked of the ambient set: no error


def test_keep_caps_across_setuid(calls: list[tuple]) -> None:
    capabilities.keep_caps_across_setuid()
    assert calls == [("prctl", linux.PR_SET_KEEPCAPS, 1, 0)]


# --- in the kernel ------------------------------------------------------------------------------




def status(*keys: str) -> str:
    with open("/proc/self/status") as f:
        lines = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return " ".join(f"{k}={lines[k]}" for k in keys)


def expect(**masks: int) -> str:
    return " ".join(f"{k}={v:016x}" for k, v in masks.items())


@pytest.mark.root
@only_as_root
def test_drop_bounding_and_apply_as_root() -> None:
    def child() -> str:
        caps = Capabilities(bounding=CHOWN | KILL, effective=CHOWN | KILL,
                            permitted=CHOWN | KILL)
        caps.drop_bounding()
        caps.apply()
        return status("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb")

    assert in_child(child) == expect(CapEff=CHOWN | KILL, CapPrm=CHOWN | KILL, CapInh=0,
                                     CapBnd=CHOWN | KILL, CapAmb=0)


@pytest.mark.root
@only_as_root
def test_capabilities_survive_setresuid_with_keep_caps() -> None:
    def child() -> str:
        caps = Capabilities(bounding=CHOWN | KILL, effective=CHOWN | KILL,
                            permitted=CHOWN | KILL, inheritable=CHOWN, ambient=CHOWN)
        capabilities.keep_caps_across_setuid()
        caps.drop_bounding()
        os.setgroups([])
        os.setresgid(1000, 1000, 1000)
        os.setresuid(1000, 1000, 1000)
        after_setuid = status("CapEff")
        caps.apply()
        return f"{os.getresuid()} {after_setuid} " + status("CapEff", "CapPrm", "CapInh",
                                                            "CapBnd", "CapAmb")

    assert in_child(child) == f"(1000, 1000, 1000) CapEff={0:016x} " + expect(
        CapEff=CHOWN | KILL, CapPrm=CHOWN | KILL, CapInh=CHOWN, CapBnd=CHOWN | KILL,
        CapAmb=CHOWN)


@pytest.mark.root
@only_as_root
def test_without_keep_caps_setresuid_loses_the_permitted_set() -> None:
    def child() -> str:
        caps = Capabilities(bounding=CHOWN, effective=CHOWN, permitted=CHOWN)
        caps.drop_bounding()
        os.setresuid(1000, 1000, 1000)
        try:
            caps.apply()
        except SetupError as e:
            return str(e)
        return "applied"

    assert in_child(child).startswith("cannot set capabilities (effective ['CAP_CHOWN'], "
                                      "permitted ['CAP_CHOWN'], inheritable []): ")
