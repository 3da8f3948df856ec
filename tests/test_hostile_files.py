"""The hostile-input corpus through file ingest and the CLI: every readable file keeps its
good rows, every bad row is quarantined on its physical line with its reason, only files that
are not tables are refused (exit code 3), and no case gives a traceback."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crossrec.errors import IngestError
from tests.conftest import write
from tests.hostile_corpus import FILES, FileCase, write_files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("case", FILES, ids=[c.name for c in FILES])
def test_corpus_file_through_the_python_api(ws, corpus, case: FileCase):
    path = corpus[case.name]
    if case.refused:
        with pytest.raises(IngestError, match=case.refused):
            ws.ingest_events("p", path)
        assert ws.store.count("events") == 0
        return
    [s] = ws.ingest_events("p", path)
    assert (s.accepted, s.quarantined) == (case.stored, case.quarantined), s.reasons
    assert ws.store.count("events") == case.stored
    rows = {r["line"]: r for r in ws.quarantine().list(limit=100)}
    assert len(rows) == case.quarantined
    for line, reason in case.reasons.items():
        assert line in rows, (line, sorted(rows))
        assert rows[line]["reason"].startswith(reason), rows[line]["reason"]
    for line, raw in case.raw_bytes.items():
        assert rows[line]["raw"].encode("latin-1") == raw  # byte for byte
        assert "Latin-1" in rows[line]["reason"]  # and it says so


def test_corpus_through_the_cli_exit_codes_and_one_line_errors(tmp_path, corpus):
    from crossrec.cli import app

    runner = CliRunner()
    w = str(tmp_path / "ws")
    assert runner.invoke(app, ["init", "--workspace", w]).exit_code == 0
    for case in FILES:
        args = ["ingest", "--workspace", w, "--platform", "p", "--events", str(corpus[case.name])]
        r = runner.invoke(app, [*args, "--json"])
        assert "Traceback" not in r.output, (case.name, r.output)
        if case.refused:
            assert r.exit_code == 3, (case.name, r.output)
            assert case.refused in r.output
            continue
        assert r.exit_code == 0, (case.name, r.output)
        [doc] = json.loads(r.stdout)  # stdout holds only the JSON document
        # a file already ingested: its rows are duplicates now (the API test ran it first)
        assert doc["accepted"] + doc["duplicates"] == case.stored, (case.name, doc)
        assert doc["quarantined"] == case.quarantined, (case.name, doc)


def test_unknown_canonical_field_in_columns_is_an_error(tmp_path, corpus):
    from crossrec.cli import app

    runner = CliRunner()
    w = str(tmp_path / "ws")
    runner.invoke(app, ["init", "--workspace", w])
    args = ["ingest", "--workspace", w, "--platform", "p", "--events"]
    r = runner.invoke(app, [*args, str(corpus["bom.csv"]), "--columns", "bogus=account"])
    assert r.exit_code == 2, r.output
    assert "error: --columns maps 'bogus', which is not a field" in r.output
    assert "Traceback" not in r.output


def test_one_crlf_line_in_a_large_file_keeps_every_row(ws, tmp_path):
    """The exact reader streams: 200,000 rows with one CR LF line near the end all stored."""
    path = tmp_path / "large.csv"
    with path.open("wb") as fh:
        fh.write(b"account,item,value\n")
        for i in range(200_000):
            fh.write(f"u{i % 5000},i{i},{i % 5}{chr(13) if i == 190_000 else ''}\n".encode())
        fh.write(b"bad,row,x\n")
    [s] = ws.ingest_events("p", path)
    assert (s.accepted, s.quarantined) == (200_000, 1)
    [row] = ws.quarantine().list()
    assert row["line"] == 200_002 and row["reason"].startswith("unparsable value")


_BYTE_BAD = {
    "nul": lambda a: f"{a},i\x00x,1".encode(),
    "stray_cr": lambda a: f"{a},i\rx,1".encode(),
    "latin1": lambda a: f"{a},caf".encode() + b"\xe9,1",
    "unterminated": lambda a: f'{a},"open,1'.encode(),
    "fields": lambda a: f"{a},i,1,extra".encode(),
}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kinds=st.lists(st.sampled_from(["good", "blank", *_BYTE_BAD]), max_size=40),
    endings=st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=41, max_size=41),
    cr_only=st.booleans(),
)
def test_generated_line_endings_and_bad_bytes_lose_no_row(
    tmp_path_factory, kinds, endings, cr_only
):
    """Any mix of LF and CR LF lines (or CR alone), blank lines and rows with bad bytes: every
    good row is stored, every bad row quarantined on its own physical line."""
    from crossrec.workspace import Workspace

    if cr_only:
        kinds = [k for k in kinds if k != "stray_cr"]  # in a CR file every CR ends a line
        endings = [b"\r"] * len(endings)
    data = b"account,item,value" + endings[0]
    good, bad_lines = 0, []
    for n, kind in enumerate(kinds, start=2):
        if kind == "good":
            data += f"a{n},i{n},{n}".encode()
            good += 1
        elif kind != "blank":
            data += _BYTE_BAD[kind](f"b{n}")
            bad_lines.append(n)
        data += endings[n - 1]
    root = tmp_path_factory.mktemp("gen")
    f = write(root / "e.csv", data)
    with Workspace.init(root / "ws") as ws:
        [s] = ws.ingest_events("p", f)
        assert (s.accepted, s.quarantined) == (good, len(bad_lines)), s.reasons
        assert sorted(r["line"] for r in ws.quarantine().list(limit=100)) == bad_lines


def test_a_line_over_the_size_limit_is_quarantined_unread(ws, tmp_path, monkeypatch):
    from crossrec.ingest import csv_exact

    monkeypatch.setattr(csv_exact, "MAX_LINE_BYTES", 1000)
    huge = "x" * 5000
    f = write(tmp_path / "e.csv", f"account,item\r\na,i1\r\nb,{huge}\nc,i3\n")
    j = write(tmp_path / "e.jsonl", f'{{"account": "a", "item": "i1"}}\n{{"item": "{huge}"}}\n')
    for path in (f, j):
        [s] = ws.ingest_events(path.suffix[1:], path)
        assert (s.accepted, s.quarantined) == (2 if path == f else 1, 1)
    rows = ws.quarantine().list()
    assert [(r["line"], r["reason"]) for r in rows] == [
        (3, "line too long: over 1,000 bytes"),
        (2, "line too long: over 1,000 bytes"),
    ]
