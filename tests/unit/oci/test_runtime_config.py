"""config.json validation: every bad field is named by its path."""

from __future__ import annotations

import copy

import pytest

from berth.oci.errors import SpecError
from berth.oci.runtime_config import validate
from berth.runtime.spec import default_spec


def base() -> dict:
    return copy.deepcopy(default_spec())


def test_default_spec_is_valid() -> None:
    assert validate(base()) is not None


def test_unknown_properties_are_kept() -> None:
    doc = base()
    doc["org.example.future"] = {"x": 1}
    doc["process"]["newThing"] = True
    out = validate(doc)
    assert out["org.example.future"] == {"x": 1} and out["process"]["newThing"] is True


@pytest.mark.parametrize("path, value, field, words", [
    (("linux", "namespaces", 0, "type"), "bogus", "linux.namespaces[0].type",
     "unknown namespace type 'bogus'"),
    (("process", "args"), [], "process.args", "at least the program"),
    (("process", "cwd"), "relative", "process.cwd", "not an absolute path"),
    (("process", "env", 0), "NOEQUALS", "process.env[0]", "NAME=value"),
    (("process", "user", "uid"), -1, "process.user.uid", "out of range"),
    (("process", "rlimits", 0, "type"), "RLIMIT_BOGUS", "process.rlimits[0].type", "unknown"),
    (("process", "rlimits", 0, "soft"), 4096, "process.rlimits[0].soft", "above the hard"),
    (("process", "oomScoreAdj"), 5000, "process.oomScoreAdj", "outside"),
    (("mounts", 0, "destination"), "proc", "mounts[0].destination", "not an absolute path"),
    (("root", "path"), "", "root.path", "must not be empty"),
    (("linux", "rootfsPropagation"), "sideways", "linux.rootfsPropagation", "unknown"),
    (("ociVersion",), 1, "ociVersion", "must be a string"),
    (("ociVersion",), "invalid", "ociVersion", "not a version"),
    (("hostname",), ["a"], "hostname", "must be a string"),
])
def test_bad_values_name_their_field(path: tuple, value: object, field: str, words: str) -> None:
    doc = base()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpecError) as err:
        validate(doc)
    assert err.value.field == field
    assert words in str(err.value)


def test_duplicate_namespace_is_an_error() -> None:
    doc = base()
    doc["linux"]["namespaces"].append({"type": "pid"})
    with pytest.raises(SpecError, match=r"linux.namespaces\[5\].type: namespace 'pid' is "
                                        r"listed twice \(also linux.namespaces\[0\]\)"):
        validate(doc)


def test_id_mappings_need_a_user_namespace() -> None:
    doc = base()
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    with pytest.raises(SpecError, match="user namespace"):
        validate(doc)


def test_hook_timeout_must_be_positive() -> None:
    doc = base()
    doc["hooks"] = {"poststop": [{"path": "/bin/true", "timeout": 0}]}
    with pytest.raises(SpecError, match=r"hooks.poststop\[0\].timeout"):
        validate(doc)
