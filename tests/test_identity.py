"""The identity rule for raw ids: one rule in Python and in the ingest SQL."""

from __future__ import annotations

import duckdb
import pytest

from crossrec.errors import InputError, InvalidIdError
from crossrec.identity import (
    MAX_ID_LENGTH,
    SPACES,
    invalid_sql,
    normalize_id,
    normalized_sql,
    reason_sql,
)

CASES = [
    "u42",
    "  lead",
    "trail \u3000",
    "a/b c",
    "e\u0301te",  # decomposed: stored composed
    "\u00e9te",
    "x" * MAX_ID_LENGTH,
    "x" * (MAX_ID_LENGTH + 1),
    "a\nb",
    "tab\tin",
    "nul\x00",
    "sep\u2028",
    "del\x7f",
    "   ",
    "",
    "漢字 id",
]


def _sql(raw: str) -> tuple[str | None, str | None]:
    """What the ingest SQL makes of ``raw``: (stored id, reason) like normalize_id."""
    text = raw.strip(SPACES) or None
    con = duckdb.connect()
    trimmed = con.execute("SELECT nullif(trim(?), '')", [raw]).fetchone()
    assert trimmed is not None and trimmed[0] == text  # DuckDB's trim is the rule's trim
    if text is None:
        return None, "missing account"
    row = con.execute(
        f"SELECT y, {invalid_sql('y')}, {reason_sql('y', 'account')} "
        f"FROM (SELECT {normalized_sql('x')} AS y FROM (SELECT ? AS x))",
        [text],
    ).fetchone()
    assert row is not None
    return (None, row[2]) if row[1] else (row[0], None)


def _py(raw: str) -> tuple[str | None, str | None]:
    try:
        return normalize_id(raw, "account"), None
    except InvalidIdError as exc:
        return None, exc.reason


@pytest.mark.parametrize("raw", CASES)
def test_python_and_sql_apply_the_same_rule(raw: str) -> None:
    assert _py(raw) == _sql(raw)


def test_ids_are_trimmed_and_composed() -> None:
    assert normalize_id("  lead ", "account") == "lead"
    assert normalize_id("e\u0301", "item") == "\u00e9"
    assert normalize_id("a/b c", "account") == "a/b c"


def test_refusals_say_which_field_and_why() -> None:
    with pytest.raises(InvalidIdError) as exc:
        normalize_id("x" * 600, "account")
    assert exc.value.field == "account"
    assert exc.value.reason == "invalid account: 600 characters (at most 512)"
    assert isinstance(exc.value, InputError)  # the CLI prints it in one line, HTTP says 400
    with pytest.raises(InvalidIdError, match="control character U\\+000A"):
        normalize_id("a\nb", "item")
    with pytest.raises(InvalidIdError, match="missing item"):
        normalize_id(" ", "item")
    with pytest.raises(InvalidIdError, match="not text"):
        normalize_id(42, "account")
    with pytest.raises(InvalidIdError, match="lone surrogate"):
        normalize_id("a\ud800", "account")


# -- on ingest: files and records refuse what the rule refuses, with the same reason -----------
def test_file_and_record_ingest_quarantine_ids_the_rule_refuses(ws, tmp_path):
    from tests.conftest import write

    long_id = "x" * 600
    body = f'account,item\n{long_id},i1\n"a\tb",i2\n  lead ,i3\nok,"it\x01em"\nok,e\u0301\n'
    [s] = ws.ingest_events("video", write(tmp_path / "e.csv", body))
    assert (s.accepted, s.quarantined) == (2, 3)
    reasons = sorted((r["line"], r["field"], r["reason"]) for r in ws.quarantine().list(limit=100))
    assert reasons == [
        (2, "account", "invalid account: 600 characters (at most 512)"),
        (3, "account", "invalid account: control character U+0009"),
        (5, "item", "invalid item: control character U+0001"),
    ]
    stored = ws.store.read("events", columns=["account", "item"]).to_pylist()
    assert {(r["account"], r["item"]) for r in stored} == {
        (ws.account_id("video", "lead"), "i3"),
        (ws.account_id("video", "ok"), "\u00e9"),
    }
    records = [{"account": long_id, "item": "i1"}, {"account": " lead", "item": "i4"}]
    r = ws.ingest_records("video", records, source="http")
    assert (r.accepted, r.quarantined, r.reasons) == (1, 1, {"invalid account": 1})
    assert r.accounts == [ws.account_id("video", "lead")]
