"""Raw account ids never reach the workspace outside the quarantine."""

from __future__ import annotations

import os
import stat

from crossrec.privacy import SECRET_ENV, Pseudonymiser
from tests.conftest import write


def _workspace_bytes(root, *, skip=("quarantine.duckdb",)):
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.startswith(skip):
                continue
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                yield path, fh.read()


def test_no_raw_account_id_outside_the_quarantine(ws, tmp_path):
    raw_ids = [f"raw-user-{i:05d}-zq" for i in range(300)]
    rows = [f"{rid},item{i % 17},view,{i % 5},{964982703 + i}" for i, rid in enumerate(raw_ids)]
    rows.append("raw-bad-user-zq,item1,view,notanumber,964982703")  # quarantined
    write(tmp_path / "e.csv", "account,item,event,value,timestamp\n" + "\n".join(rows) + "\n")
    links = "platform_a,account_a,platform_b,account_b\n" + "\n".join(
        f"video,{rid},music,{rid}" for rid in raw_ids[:50]
    )
    write(tmp_path / "links.csv", links + "\n")
    ws.ingest_events("video", tmp_path / "e.csv")
    ws.ingest_events("music", tmp_path / "e.csv")
    ws.ingest_links(tmp_path / "links.csv")
    ws.stats()
    ws.close()
    found = [
        (path, rid)
        for path, data in _workspace_bytes(ws.root)
        for rid in raw_ids
        if rid.encode() in data
    ]
    assert found == []
    # the quarantine keeps the raw row of the bad line, apart from the store
    quarantine = (ws.root / "quarantine.duckdb").read_bytes()
    assert b"raw-bad-user-zq" in quarantine


def test_key_file_is_private_and_env_wins(tmp_path, monkeypatch):
    from crossrec.workspace import Workspace

    monkeypatch.delenv(SECRET_ENV, raising=False)
    ws = Workspace.init(tmp_path / "ws")
    key = ws.root / "crossrec.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    from_file = ws.account_id("p", "u1")
    monkeypatch.setenv(SECRET_ENV, "another secret")
    assert Workspace(ws.root).account_id("p", "u1") != from_file
    ws.close()


def test_pseudonyms_are_keyed_and_scoped():
    a, b = Pseudonymiser(b"k1"), Pseudonymiser(b"k2")
    assert a.account("p", "x") == a.account("p", "x")
    assert a.account("p", "x") != b.account("p", "x")
    assert a.account("p", "x") != a.account("q", "x")
    assert a.identifier("email", "h") == a.identifier("email", "h")
    assert a.accounts("p", ["x", "y"]) == [a.account("p", "x"), a.account("p", "y")]


def test_pseudonyms_computed_by_duckdb_equal_the_python_ones():
    import duckdb

    raws = ["u1", "42", "héllo wörld", "日本", " spaced ", "x" * 300]
    con = duckdb.connect()
    con.execute("CREATE TABLE r AS SELECT unnest(?) AS raw", [raws])
    for key in (b"k", b"0123456789" * 10):  # short key, and one longer than a SHA-256 block
        p = Pseudonymiser(key)
        expr, params = p.account_sql("video", "raw")
        got = [r[0] for r in con.execute(f"SELECT {expr} FROM r ORDER BY rowid", params).fetchall()]
        assert got == p.accounts("video", raws)
        expr, params = p.identifier_sql("email_hash", "raw")
        got = [r[0] for r in con.execute(f"SELECT {expr} FROM r ORDER BY rowid", params).fetchall()]
        assert got == p.identifiers("email_hash", raws)
