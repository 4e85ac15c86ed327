"""jsonfast parses and writes exactly what the json module does."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.oci import jsonfast

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30)


@given(values)
def test_round_trip_matches_json(v: object) -> None:
    assert jsonfast.loads(json.dumps(v)) == v
    assert json.loads(jsonfast.dumps(v)) == v
    assert json.loads(jsonfast.dumps(v, indent=2)) == v
    assert jsonfast.dumps(v) == json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def test_what_json_cannot_hold_is_a_type_error() -> None:
    for bad in ({"a": {1, 2}}, [object()], {"b": b"x"}):
        with pytest.raises(TypeError, match="cannot serialise"):
            jsonfast.dumps(bad)
        with pytest.raises(TypeError, match="cannot serialise"):
            jsonfast.dumps(bad, indent=2)


@pytest.mark.parametrize("bad", ['{"a":', "[1,]", "nul", '{"a":1} trailing', ""])
def test_malformed_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid JSON"):
        jsonfast.loads(bad)
