"""Bad input: every kind of bad row is quarantined with its reason; no good row is lost."""

from __future__ import annotations

import csv
import io
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossrec.errors import IngestError
from crossrec.identity import normalize_id
from tests.conftest import write

HEADER = b"account,item,event,value,timestamp\n"
GOOD = [
    b"g1,i1,view,1,964982703\n",
    b'g2,"item, with comma",like,2.5,2020-01-01T00:00:00Z\n',
    b'g3,"say ""hi""",purchase,,\n',
    b"g4,i4,,3,1600000000000\n",
]
BAD = {
    "missing account": b",i9,view,1,964982703\n",
    "missing item": b"b2,,view,1,964982703\n",
    "unparsable value": b"b3,i9,view,abc,964982703\n",
    "non-finite value": b"b4,i9,view,inf,964982703\n",
    "unparsable timestamp": b"b5,i9,view,1,yesterday\n",
    "timestamp out of range": b"b6,i9,view,1,1960-01-01\n",
    "wrong number of fields": b"b7,i9,view,1,964982703,extra\n",
    "bad encoding": b"b8\xff\xfe,i9,view,1,964982703\n",
    "unterminated quote": b'b9,"i9,view,1,964982703\n',
}


def mixed_file(order: list[bytes]) -> bytes:
    return HEADER + b"".join(order)


@pytest.mark.parametrize("unterminated_first", [False, True])
def test_mixed_file_keeps_every_good_row_and_quarantines_every_bad_one(
    ws, tmp_path, unterminated_first
):
    bad = list(BAD.items())
    if unterminated_first:
        bad.sort(key=lambda kv: kv[0] != "unterminated quote")
    lines = []
    for i, (_, row) in enumerate(bad):
        lines.append(GOOD[i % len(GOOD)].replace(b"g", f"g{i}_".encode(), 1))
        lines.append(row)
    f = write(tmp_path / "mixed.csv", mixed_file(lines))
    [s] = ws.ingest_events("p", f)
    assert s.quarantined == len(BAD)
    assert s.accepted == len(bad)
    q = ws.quarantine().list(limit=100)
    by_line = {r["line"]: r for r in q}
    for i, (reason, _) in enumerate(bad):
        row = by_line[2 * i + 3]  # header is line 1; each bad row follows a good one
        assert row["reason"].startswith(reason), (reason, row)
        assert row["file"] == str(f)
    fields = {r["reason"].split(":")[0]: r["field"] for r in q}
    assert fields["missing account"] == "account"
    assert fields["unparsable value"] == "value"
    assert fields["timestamp out of range"] == "timestamp"
    # good rows are stored exactly once, even after re-ingest
    [again] = ws.ingest_events("p", f)
    assert (again.accepted, again.duplicates, again.quarantined) == (0, len(bad), len(BAD))
    assert ws.store.count("events") == len(bad)
    assert ws.quarantine().count() == len(BAD)


def test_jsonl_bad_lines(ws, tmp_path):
    f = write(
        tmp_path / "e.jsonl",
        b'{"account": "a", "item": "x"}\n{not json\n[1, 2]\n\xff\n{"account": "b"}\n'
        b'{"account": "c", "item": "y", "value": "NaN"}\n',
    )
    [s] = ws.ingest_events("p", f)
    assert (s.accepted, s.quarantined) == (1, 5)
    reasons = {r["line"]: r["reason"] for r in ws.quarantine().list()}
    assert reasons[2].startswith("not valid JSON")
    assert reasons[3] == "not a JSON object"
    assert reasons[4].startswith("bad encoding")
    assert reasons[5] == "missing item"
    assert reasons[6].startswith("non-finite value")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "file is empty"),
        ("blank.csv", b"\n\n  \n", "file is empty"),
        ("garbage.csv", os.urandom(4096).replace(b"\n", b"") + b"\x00" * 64, "binary"),
        ("garbage.bin", b"\x00\x01\x02" * 1000, "binary"),
        ("fake.parquet", b"account,item\na,x\n", "not a Parquet file"),
        ("broken.parquet", b"PAR1" + b"\x00" * 100, "cannot be read as Parquet"),
        ("list.jsonl", b"[1]\n[2]\n", "not a JSON-lines table"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_files_that_are_not_tables_are_refused_whole(ws, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(IngestError, match=message):
        ws.ingest_events("p", path)
    assert ws.store.count("events") == 0
    assert ws.quarantine().count() == 0


def test_a_crash_part_way_leaves_the_store_as_it_was(ws, tmp_path, monkeypatch):
    from crossrec.store.duckdb import DuckDBStore

    f = write(tmp_path / "e.csv", "account,item\na,x\nb,y\n")
    ws.ingest_events("p", f)
    before = ws.store.count("events"), ws.store.count("accounts"), ws.stats()["duplicates"]

    def boom(self, table):
        raise RuntimeError("power cut")

    monkeypatch.setattr(DuckDBStore, "upsert_accounts", boom)
    g = write(tmp_path / "g.csv", "account,item\nc,z\nd,w\na,x\n")
    with pytest.raises(RuntimeError):
        ws.ingest_events("p", g)
    after = ws.store.count("events"), ws.store.count("accounts"), ws.stats()["duplicates"]
    assert after == before
    monkeypatch.undo()
    [s] = ws.ingest_events("p", g)
    assert (s.accepted, s.duplicates) == (2, 1)


def test_bad_row_line_numbers_survive_rejected_rows_before_them(ws, tmp_path):
    # a rejected row (wrong field count) before a row failing validation must not shift lines
    content = HEADER + b"a,x,,,\nb,y,view,1,2,3\nc,z,,oops,\nd,w,,,\n"
    [s] = ws.ingest_events("p", write(tmp_path / "e.csv", content))
    lines = {r["line"]: r["reason"] for r in ws.quarantine().list()}
    assert set(lines) == {3, 4}
    assert lines[4].startswith("unparsable value")
    assert s.accepted == 2


# -- generated rows ---------------------------------------------------------------------------
_text = st.text(
    # the characters an id may hold (crossrec.identity): no control or line separators
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
    max_size=12,
)
_good_row = st.tuples(
    st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    _text.filter(lambda s: s.strip() != ""),
    st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False).map(repr)),
    st.one_of(st.none(), st.integers(0, 4_000_000_000).map(str)),
)
_bad_row = st.one_of(
    _good_row.map(lambda r: ("", r[1], r[2], r[3])),
    _good_row.map(lambda r: (r[0], r[1], "not-a-number", r[3])),
    _good_row.map(lambda r: (r[0], r[1], r[2], "99999999999999999")),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    good=st.lists(_good_row, max_size=30),
    bad=st.lists(_bad_row, max_size=10),
    seed=st.integers(0, 2**16),
)
def test_generated_rows_none_lost(tmp_path_factory, good, bad, seed):
    from crossrec.workspace import Workspace

    rows = [("g", r) for r in good] + [("b", r) for r in bad]
    random.Random(seed).shuffle(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["account", "item", "value", "timestamp"])
    for _, r in rows:
        w.writerow(["" if v is None else v for v in r])
    root = tmp_path_factory.mktemp("gen")
    f = write(root / "e.csv", buf.getvalue())
    with Workspace.init(root / "ws") as ws:
        [s] = ws.ingest_events("p", f)
        assert s.quarantined == len(bad)
        assert s.accepted + s.duplicates == len(good)
        stored = ws.store.read("events").to_pylist()
        assert {(r["account"], r["item"]) for r in stored} == {
            (ws.account_id("p", g[0]), normalize_id(g[1], "item")) for g in good
        }
