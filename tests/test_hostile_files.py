"""The hostile-input corpus through file ingest and the CLI: every readable file keeps its
good rows, every bad row is quarantined on its physical line with its reason, only files that
are not tables are refused (exit code 3), and no case gives a traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from crossrec.errors import IngestError
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
