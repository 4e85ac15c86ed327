"""runtime/seccomp.py: validation names the bad field; prepared filters behave in the kernel.

The kernel tests load the filter in a forked child (a seccomp filter cannot be removed) and
report back through a pipe and the exit status. They set no_new_privs first, so they need no
root, except the one that checks the filter leaves no_new_privs alone.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import os
import signal
from collections.abc import Callable

import pytest

from berth.runtime import libseccomp, linux, seccomp
from berth.runtime.errors import ConfigError, SetupError
from tests.unit.runtime.child import in_child

only_as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

# a docker-like profile: three architectures, flags, more than 8 rules, args, unknown names
PROFILE: dict = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
              "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    "syscalls": [
        {"names": ["read", "write", "openat", "close", "exit_group", "socketcall",
                   "berth_no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"},
                  {"index": 1, "value": 64, "op": "SCMP_CMP_LE"}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_TRAP"},
        {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["kexec_load"], "action": "SCMP_ACT_KILL"},
        {"names": ["acct"], "action": "SCMP_ACT_LOG"},
        {"names": ["mount"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},  # equals the default: skipped
    ],
}


def profile(**changes: object) -> dict:
    spec = copy.deepcopy(PROFILE)
    spec.update(changes)
    return spec


def rule(**changes: object) -> dict:
    return profile(syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", **changes}])


def arg(**changes: object) -> dict:
    return rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 1, "op": "SCMP_CMP_EQ", **changes}])


# --- validation -------------------------------------------------------------------------------


def test_profile_is_valid() -> None:
    seccomp.validate(PROFILE)


def test_optional_fields_may_be_null_or_absent_and_unknown_properties_are_ignored() -> None:
    seccomp.validate({"defaultAction": "SCMP_ACT_ALLOW"})
    seccomp.validate({"defaultAction": "SCMP_ACT_ALLOW", "architectures": None, "flags": None,
                      "syscalls": None, "defaultErrnoRet": None, "listenerPath": None,
                      "org.example.future": True})


@pytest.mark.parametrize(("spec", "field", "problem"), [
    ([], "linux.seccomp", "must be an object"),
    ({}, "linux.seccomp.defaultAction", "is required"),
    (profile(defaultAction="SCMP_ACT_FOO"), "linux.seccomp.defaultAction",
     "unknown action 'SCMP_ACT_FOO'"),
    (profile(defaultAction="SCMP_ACT_NOTIFY"), "linux.seccomp.defaultAction",
     "not supported yet"),
    (profile(defaultAction="SCMP_ACT_ALLOW"), "linux.seccomp.defaultErrnoRet",
     "SCMP_ACT_ALLOW does not return an errno"),
    (profile(defaultErrnoRet=-1), "linux.seccomp.defaultErrnoRet", "must be an errno"),
    (profile(defaultErrnoRet=True), "linux.seccomp.defaultErrnoRet", "must be an errno"),
    (profile(defaultErrnoRet=0x10000), "linux.seccomp.defaultErrnoRet", "must be an errno"),
    (profile(architectures="SCMP_ARCH_X86_64"), "linux.seccomp.architectures",
     "must be a list"),
    (profile(architectures=["SCMP_ARCH_X86_64", "x86"]), "linux.seccomp.architectures[1]",
     "unknown architecture 'x86'"),
    (profile(flags=["SECCOMP_FILTER_FLAG_FOO"]), "linux.seccomp.flags[0]",
     "unknown or unsupported flag 'SECCOMP_FILTER_FLAG_FOO'"),
    (profile(flags=[7]), "linux.seccomp.flags[0]", "must be a non-empty string"),
    (profile(listenerPath="/run/seccomp.sock"), "linux.seccomp.listenerPath",
     "not supported yet"),
    (profile(syscalls={}), "linux.seccomp.syscalls", "must be a list"),
    (profile(syscalls=[None]), "linux.seccomp.syscalls[0]", "must be an object"),
    (rule(names=None), "linux.seccomp.syscalls[0].names", "is required"),
    (rule(names=[]), "linux.seccomp.syscalls[0].names", "at least one syscall"),
    (rule(names="getcwd"), "linux.seccomp.syscalls[0].names", "must be a list"),
    (rule(names=["getcwd", ""]), "linux.seccomp.syscalls[0].names[1]", "non-empty string"),
    (rule(action=None), "linux.seccomp.syscalls[0].action", "is required"),
    (rule(action="SCMP_ACT_NOTIFY"), "linux.seccomp.syscalls[0].action", "not supported yet"),
    (rule(action="SCMP_ACT_KILL", errnoRet=1), "linux.seccomp.syscalls[0].errnoRet",
     "does not return an errno"),
    (rule(errnoRet="EPERM"), "linux.seccomp.syscalls[0].errnoRet", "must be an errno"),
    (rule(args={}), "linux.seccomp.syscalls[0].args", "must be a list"),
    (rule(args=[[]]), "linux.seccomp.syscalls[0].args[0]", "must be an object"),
    (arg(index=None), "linux.seccomp.syscalls[0].args[1].index", "is required"),
    (arg(index=6), "linux.seccomp.syscalls[0].args[1].index", "must be from 0 to 5"),
    (arg(value=None), "linux.seccomp.syscalls[0].args[1].value", "is required"),
    (arg(value=-1), "linux.seccomp.syscalls[0].args[1].value", "unsigned 64-bit"),
    (arg(value=1 << 64), "linux.seccomp.syscalls[0].args[1].value", "unsigned 64-bit"),
    (arg(value=1.0), "linux.seccomp.syscalls[0].args[1].value", "unsigned 64-bit"),
    (arg(valueTwo="1"), "linux.seccomp.syscalls[0].args[1].valueTwo", "unsigned 64-bit"),
    (arg(op=None), "linux.seccomp.syscalls[0].args[1].op", "is required"),
    (arg(op="SCMP_CMP_FOO"), "linux.seccomp.syscalls[0].args[1].op",
     "unknown operator 'SCMP_CMP_FOO'"),
])
def test_validate_names_the_bad_field(spec: object, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        seccomp.validate(spec)  # type: ignore[arg-type]
    assert e.value.field == field
    assert problem in str(e.value)
    assert str(e.value).startswith(f"config.json: {field}: ")


def test_validate_names_the_rule_by_its_index() -> None:
    spec = profile()
    spec["syscalls"][3]["action"] = "SCMP_ACT_FOO"
    with pytest.raises(ConfigError) as e:
        seccomp.validate(spec)
    assert str(e.value) == ("config.json: linux.seccomp.syscalls[3].action: "
                            "unknown action 'SCMP_ACT_FOO'")


def test_validate_uses_the_given_field_prefix() -> None:
    with pytest.raises(ConfigError) as e:
        seccomp.validate(rule(action="SCMP_ACT_FOO"), field="spec.linux.seccomp")
    assert e.value.field == "spec.linux.seccomp.syscalls[0].action"


# --- building the filter ------------------------------------------------------------------------


def test_prepare_builds_a_docker_like_profile_and_skips_unknown_names() -> None:
    filt = seccomp.prepare(PROFILE)
    try:
        assert filt.skipped == ["berth_no_such_syscall"]
    finally:
        filt.release()


def test_prepare_validates_first() -> None:
    with pytest.raises(ConfigError):
        seccomp.prepare(rule(action="SCMP_ACT_FOO"))


def test_release_is_idempotent_and_a_released_filter_cannot_load() -> None:
    filt = seccomp.prepare(PROFILE)
    filt.release()
    filt.release()
    with pytest.raises(SetupError, match="released"):
        filt.load()


def test_rules_equal_to_the_default_action_are_skipped() -> None:
    # libseccomp would reject these rules; runc drops them and so do we
    filt = seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW",
                            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"}]})
    filt.release()
    filt = seccomp.prepare({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})
    filt.release()


class _FailingRules:
    """libseccomp with seccomp_rule_add_array failing with EINVAL"""

    def __init__(self, real: linux.Library) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def seccomp_rule_add_array(self, *args: object) -> int:
        return -errno.EINVAL


def test_a_rule_libseccomp_rejects_is_a_setup_error_naming_syscall_and_rule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libseccomp, "_lib_cache", _FailingRules(libseccomp._lib()))
    with pytest.raises(SetupError) as e:
        seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW",
                         "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]})
    assert str(e.value) == ("seccomp: cannot add the rule for syscall 'getcwd' "
                            "(linux.seccomp.syscalls[0]): Invalid argument")


# --- in the kernel ------------------------------------------------------------------------------




def load(spec: dict) -> None:
    """In the child: set no_new_privs as the runtime would, then load the filter."""
    filt = seccomp.prepare(spec)
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    filt.load()


def outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"


def test_errno_rule_blocks_getcwd() -> None:
    def child() -> str:
        before = outcome(os.getcwd)
        load({"defaultAction": "SCMP_ACT_ALLOW",
              "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})
        try:
            os.getcwd()
        except PermissionError:
            return f"{before} EPERM"
        return f"{before} getcwd still works"

    assert in_child(child) == "ok EPERM"


def test_errno_defaults_to_eperm_and_errno_ret_is_returned() -> None:
    def child() -> str:
        load({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})
        return f"{outcome(os.getcwd)} {outcome(lambda: os.chdir('/'))}"

    assert in_child(child) == "EPERM ENOSYS"


def test_default_errno_ret_applies_to_the_default_action() -> None:
    allowed = ["read", "write", "close", "exit_group", "exit", "brk", "mmap", "munmap",
               "mremap", "madvise", "futex", "rt_sigreturn", "rt_sigprocmask", "rt_sigaction",
               "getpid", "gettid", "sigaltstack", "fstat", "newfstatat", "lseek"]

    def child() -> str:
        load({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
              "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]})
        return outcome(os.getcwd)

    assert in_child(child) == "ENOSYS"


def test_unknown_syscall_names_are_skipped_and_the_rest_of_the_rule_applies() -> None:
    def child() -> str:
        filt = seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["berth_no_such_syscall", "getcwd"], "action": "SCMP_ACT_ERRNO"}]})
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        filt.load()
        return f"{filt.skipped} {outcome(os.getcwd)}"

    assert in_child(child) == "['berth_no_such_syscall'] EPERM"


_QUERY = 0xFFFFFFFF  # personality(0xffffffff) only reads the persona; personality(0) is a no-op


def _personality(persona: int) -> Callable[[], object]:
    def call() -> object:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.personality.argtypes = [ctypes.c_ulong]
        if libc.personality(persona) == -1:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return None

    return call


@pytest.mark.parametrize(("op", "value", "value_two", "expected"), [
    ("SCMP_CMP_EQ", _QUERY, None, "EPERM ok"),
    ("SCMP_CMP_NE", 0, None, "EPERM ok"),
    ("SCMP_CMP_GT", 0, None, "EPERM ok"),
    ("SCMP_CMP_GE", _QUERY, None, "EPERM ok"),
    ("SCMP_CMP_LT", _QUERY, None, "ok EPERM"),
    ("SCMP_CMP_LE", 0, None, "ok EPERM"),
    ("SCMP_CMP_MASKED_EQ", 0xFF00, 0xFF00, "EPERM ok"),
])
def test_argument_conditions(op: str, value: int, value_two: int | None, expected: str) -> None:
    cond = {"index": 0, "value": value, "op": op}
    if value_two is not None:
        cond["valueTwo"] = value_two

    def child() -> str:
        load({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [cond]}]})
        return f"{outcome(_personality(_QUERY))} {outcome(_personality(0))}"

    assert in_child(child) == expected


def test_conditions_on_one_argument_are_alternatives() -> None:
    def child() -> str:
        load({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": _QUERY, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})
        return " ".join(outcome(_personality(p)) for p in (_QUERY, 8, 0))

    assert in_child(child) == "EPERM EPERM ok"


def test_conditions_on_different_arguments_must_all_hold() -> None:
    def child() -> str:
        me = os.getpid()
        load({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": me, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}]})
        return " ".join(outcome(lambda p=pid, s=sig: os.kill(p, s)) for pid, sig in
                        ((me, 0), (me, signal.SIGCONT), (os.getppid(), 0)))

    assert in_child(child) == "EPERM ok ok"


def test_filter_flags_load() -> None:
    def child() -> str:
        load({"defaultAction": "SCMP_ACT_ALLOW", "flags": list(seccomp.FLAGS),
              "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]})
        return outcome(os.getcwd)

    assert in_child(child) == "EPERM"


def _status(*keys: str) -> str:
    with open("/proc/self/status") as f:
        lines = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return " ".join(f"{k}={lines[k]}" for k in keys)


@pytest.mark.root
@only_as_root
def test_the_filter_leaves_no_new_privs_to_the_runtime() -> None:
    def child() -> str:
        seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}).load()  # as root, no NNP
        return _status("NoNewPrivs", "Seccomp")

    assert in_child(child) == "NoNewPrivs=0 Seccomp=2"


@pytest.mark.root
@only_as_root
def test_loading_without_no_new_privs_or_cap_sys_admin_says_what_to_do() -> None:
    def child() -> str:
        filt = seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW"})
        eff, prm, inh = linux.capget()
        linux.capset(eff & ~(1 << 21), prm, inh)  # CAP_SYS_ADMIN out of the effective set
        try:
            filt.load()
        except SetupError as e:
            return str(e)
        return "loaded"

    assert in_child(child) == ("seccomp: loading the filter failed: Permission denied; set "
                               "process.noNewPrivileges or load the filter while the process "
                               "still has CAP_SYS_ADMIN")


# --- compiled programs kept in a cache directory ----------------------------------------------

_DENY = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                      {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                      {"names": ["berth_no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]}


def _fresh(code: str) -> str:
    """`code` in a fresh interpreter (no libseccomp loaded yet), berth on its path."""
    import subprocess
    import sys
    from pathlib import Path
    src = str(Path(seccomp.__file__).resolve().parents[2])
    p = subprocess.run([sys.executable, "-I", "-S", "-c",
                        f"import sys; sys.path.insert(0, {src!r})\n" + code],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _prepared_in_fresh_process(cache: str) -> str:
    """What prepare() returns there, whether it loaded libseccomp, and what the program
    does once loaded (in a child with no_new_privs)."""
    return _fresh(f"""
import errno, os
from berth.runtime import libseccomp, linux, seccomp
filt = seccomp.prepare({_DENY!r}, cache_dir={cache!r})
mapped = "libseccomp" in open("/proc/self/maps").read()
pid = os.fork()
if pid == 0:
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    filt.load()
    out = []
    for call in (os.getcwd, lambda: os.chdir("/")):
        try:
            call()
            out.append("ok")
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    print(type(filt).__name__, mapped, filt.skipped, *out, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
""")


def test_a_compiled_program_is_kept_and_loaded_without_libseccomp(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = str(tmp_path / "cache")
    first = _prepared_in_fresh_process(cache)
    assert first == "BpfFilter True ['berth_no_such_syscall'] EPERM ENOSYS\n"
    assert len(os.listdir(cache)) == 1
    again = _prepared_in_fresh_process(cache)  # from the cache: libseccomp never loaded
    assert again == "BpfFilter False ['berth_no_such_syscall'] EPERM ENOSYS\n"
    other = dict(_DENY, syscalls=_DENY["syscalls"][:1])
    _fresh(f"from berth.runtime import seccomp; "
           f"seccomp.prepare({other!r}, cache_dir={cache!r})")
    assert len(os.listdir(cache)) == 2  # another profile, another program


@pytest.mark.parametrize("damage", ["another libseccomp", "torn", "garbage"])
def test_a_stale_or_damaged_program_is_compiled_again(tmp_path, damage: str) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    _prepared_in_fresh_process(str(cache))
    (path,) = cache.iterdir()
    head, _, program = path.read_bytes().partition(b"\n")
    if damage == "another libseccomp":  # its file changed since: another size
        lib, mtime, size = head.decode().split('"lib":"', 1)[1].split('"', 1)[0].rsplit(" ", 2)
        head = head.replace(f"{mtime} {size}".encode(), f"{mtime} {int(size) + 1}".encode())
        path.write_bytes(head + b"\n" + program)
    elif damage == "torn":
        path.write_bytes(head + b"\n" + program[:-3])
    else:
        path.write_bytes(b"\x00garbage")
    assert _prepared_in_fresh_process(str(cache)) == \
        "BpfFilter True ['berth_no_such_syscall'] EPERM ENOSYS\n"
    assert path.read_bytes().partition(b"\n")[2] == program  # written again, whole


def test_an_unwritable_cache_is_no_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = _prepared_in_fresh_process(str(blocker / "cache"))
    assert out.endswith("EPERM ENOSYS\n")


def test_the_cache_is_no_container(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from berth.runtime.errors import UsageError
    from berth.runtime.store import SECCOMP_CACHE, Store
    store = Store(str(tmp_path))
    (tmp_path / SECCOMP_CACHE).mkdir()
    (tmp_path / "c1").mkdir()
    assert store.ids() == ["c1"]
    with pytest.raises(UsageError, match="seccomp cache"):
        store.reserve(SECCOMP_CACHE)
