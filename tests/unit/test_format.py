"""docker-style --format templates, sizes and ages."""

from __future__ import annotations

import pytest

from berth.cli.format import FormatError, human_age, human_size, render

ROWS = [{"ID": "abc", "Names": "web", "Size": "1MB"}, {"ID": "defgh", "Names": "db", "Size": "2GB"}]


def test_plain_and_json() -> None:
    assert render("{{.ID}} {{.Names}}", ROWS) == "abc web\ndefgh db\n"
    assert render("{{json .}}", ROWS[:1]) == '{"ID":"abc","Names":"web","Size":"1MB"}\n'
    assert render("{{json .Names}}", ROWS[:1]) == '"web"\n'


def test_table_aligns_with_headers() -> None:
    out = render("table {{.ID}}\t{{.Names}}", ROWS, {"ID": "CONTAINER ID"})
    assert out.splitlines() == ["CONTAINER ID   NAMES", "abc            web",
                                "defgh          db"]


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(FormatError, match="can't evaluate field Nope"):
        render("{{.Nope}}", ROWS)


@pytest.mark.parametrize("n, s", [(0, "0B"), (999, "999B"), (1000, "1kB"), (4_260_000, "4.26MB"),
                                  (1_500_000_000, "1.5GB")])
def test_human_size(n: int, s: str) -> None:
    assert human_size(n) == s


def test_human_age() -> None:
    assert human_age(100.0, now=100.5) == "Less than a second ago"
    assert human_age(0.0, now=3 * 86400) == "3 days ago"
    assert human_age(None) == "N/A"


def test_nested_fields_and_go_values() -> None:
    doc = [{"State": {"Running": True, "Pid": 7, "Err": None}, "Args": ["a", "b"]}]
    assert render("{{.State.Running}} {{.State.Pid}} {{.Args}}", doc) == "true 7 [a b]\n"
    assert render("{{json .State}}", doc) == '{"Running":true,"Pid":7,"Err":null}\n'
    with pytest.raises(FormatError, match="can't evaluate field Nope"):
        render("{{.State.Nope}}", doc)
