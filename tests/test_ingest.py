"""Ingest known answers: mapping, parsing, dedupe, attributes, items, links, formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossrec.errors import IngestError, InputError
from tests.conftest import write

EVENTS = """userId,movieId,rating,ts,device
u1,m1,4.0,964982703,tv
u1,m2,3.5,2020-01-01T10:00:00+02:00,phone
u2,m1,5,1600000000000,tv
u3,m3,,,
"""


def events_of(ws):
    return ws.store.read("events", order_by=["seq"]).to_pylist()


def test_columns_mapping_parses_values_and_timestamps(ws, tmp_path):
    f = write(tmp_path / "e.csv", EVENTS)
    [s] = ws.ingest_events(
        "video",
        f,
        columns={"account": "userId", "item": "movieId", "value": "rating", "timestamp": "ts"},
    )
    assert (s.accepted, s.quarantined, s.duplicates) == (4, 0, 0)
    rows = events_of(ws)
    assert [r["item"] for r in rows] == ["m1", "m2", "m1", "m3"]
    assert [r["value"] for r in rows] == [4.0, 3.5, 5.0, None]
    ts = [r["ts"] for r in rows]
    assert ts[0] == datetime.fromtimestamp(964982703, UTC)
    assert ts[1] == datetime(2020, 1, 1, 8, 0, tzinfo=UTC)  # zone honoured
    assert ts[2] == datetime.fromtimestamp(1600000000, UTC)  # milliseconds detected
    assert ts[3] is None
    assert {r["event_type"] for r in rows} == {"interact"}
    # other columns are kept as attributes, not dropped
    assert json.loads(rows[0]["attrs"]) == {"device": "tv"}
    # accounts are pseudonymised, one per raw id
    assert len({r["account"] for r in rows}) == 3
    assert rows[0]["account"] == ws.account_id("video", "u1")
    assert all(r["account"] not in {"u1", "u2", "u3"} for r in rows)


def test_naive_iso_timestamp_is_utc(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item,timestamp\na,x,2021-06-01 12:30:00\n")
    ws.ingest_events("p", f)
    assert events_of(ws)[0]["ts"] == datetime(2021, 6, 1, 12, 30, tzinfo=UTC)


def test_reingest_adds_nothing_and_counts_duplicates(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item,event,value\na,x,view,1\na,x,view,1\nb,y,like,\n")
    [first] = ws.ingest_events("p", f)
    assert (first.accepted, first.duplicates) == (2, 1)  # identical rows in one file
    [again] = ws.ingest_events("p", f)
    assert (again.accepted, again.duplicates) == (0, 3)
    assert ws.store.count("events") == 2
    assert ws.stats()["duplicates"] == 4


def test_event_id_is_identity_when_given(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item,event_id\na,x,e1\na,y,e1\nb,y,e2\n")
    [s] = ws.ingest_events("p", f)
    assert (s.accepted, s.duplicates) == (2, 1)
    # the same event id on another platform is another event
    [s2] = ws.ingest_events("q", f)
    assert s2.accepted == 2


def test_same_raw_id_on_two_platforms_is_two_accounts(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item\n42,x\n")
    ws.ingest_events("video", f)
    ws.ingest_events("music", f)
    accounts = ws.store.read("accounts").column("account").to_pylist()
    assert len(set(accounts)) == 2


def test_items_upsert_with_attrs_and_mapping(ws, tmp_path):
    f = write(
        tmp_path / "items.csv",
        "movieId,title,genres,year\nm1,Toy Story,Animation,1995\n"
        "m2,Heat,Crime,1995\nm1,Toy Story (1995),Animation,1995\n",
    )
    s = ws.ingest_items("video", f, columns={"item": "movieId", "category": "genres"})
    assert (s.accepted, s.duplicates, s.quarantined) == (2, 1, 0)
    items = {r["item"]: r for r in ws.store.read("items").to_pylist()}
    assert items["m1"]["title"] == "Toy Story (1995)"  # last row of an item wins
    assert items["m1"]["category"] == "Animation"
    assert json.loads(items["m2"]["attrs"]) == {"year": "1995"}
    again = ws.ingest_items("video", f, columns={"item": "movieId", "category": "genres"})
    assert again.accepted == 0
    assert ws.store.count("items") == 2


def test_links_are_pseudonymised_and_undirected(ws, tmp_path):
    f = write(
        tmp_path / "links.csv",
        "platform_a,account_a,platform_b,account_b\n"
        "video,u1,music,m9\nmusic,m9,video,u1\nvideo,u2,video,u3\nvideo,,music,x\n",
    )
    s = ws.ingest_links(f)
    assert (s.accepted, s.duplicates, s.quarantined) == (1, 1, 2)
    link = ws.store.read("known_links").to_pylist()[0]
    pair = {(link["platform_a"], link["account_a"]), (link["platform_b"], link["account_b"])}
    assert pair == {
        ("video", ws.account_id("video", "u1")),
        ("music", ws.account_id("music", "m9")),
    }
    reasons = {r["reason"] for r in ws.quarantine().list()}
    assert "missing account_a" in reasons
    assert any(r.startswith("platform_a equals platform_b") for r in reasons)


def test_personal_identifier_columns_are_pseudonymised_equal_across_platforms(tmp_path):
    from crossrec.workspace import Workspace

    root = tmp_path / "ws"
    Workspace.init(root).close()
    cfg = root / "crossrec.toml"
    cfg.write_text(
        cfg.read_text().replace("personal_columns = []", 'personal_columns = ["email_hash"]')
    )
    with Workspace(root) as ws:
        ws.ingest_events("video", write(tmp_path / "v.csv", "account,item,email_hash\nu1,x,H1\n"))
        ws.ingest_events("music", write(tmp_path / "m.csv", "account,item,email_hash\nz9,y,H1\n"))
        ids = ws.store.read("account_identifiers").to_pylist()
        assert len(ids) == 2
        assert ids[0]["value"] == ids[1]["value"] != "H1"
        assert all(r["attrs"] is None for r in ws.store.read("events").to_pylist())


def test_jsonl_and_parquet_give_the_same_events(ws, tmp_path):
    rows = [
        {"account": "a", "item": "x", "value": 1.5, "timestamp": 964982703},
        {"account": "b", "item": "y", "value": None, "timestamp": None, "extra": {"k": 1}},
    ]
    j = write(tmp_path / "e.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    p = tmp_path / "e.parquet"
    pq.write_table(
        pa.Table.from_pylist([{k: v for k, v in r.items() if k != "extra"} for r in rows]), p
    )
    [sj] = ws.ingest_events("j", j)
    [sp] = ws.ingest_events("p", p)
    assert sj.accepted == sp.accepted == 2
    ej = ws.store.read("events", platform="j", order_by=["seq"]).to_pylist()
    ep = ws.store.read("events", platform="p", order_by=["seq"]).to_pylist()
    assert [(r["item"], r["value"], r["ts"]) for r in ej] == [
        (r["item"], r["value"], r["ts"]) for r in ep
    ]
    assert json.loads(ej[1]["attrs"]) == {"extra": '{"k": 1}'}


def test_tsv_is_detected(ws, tmp_path):
    f = write(tmp_path / "e.tsv", "account\titem\tvalue\na\tx\t3\n")
    [s] = ws.ingest_events("p", f)
    assert s.accepted == 1


def test_missing_required_column_is_a_file_error_naming_it(ws, tmp_path):
    f = write(tmp_path / "e.csv", "user,item\na,x\n")
    with pytest.raises(IngestError, match=r"no 'account' column.*--columns account="):
        ws.ingest_events("p", f)
    with pytest.raises(IngestError, match="has no column 'uid'"):
        ws.ingest_events("p", f, columns={"account": "uid"})


def test_bad_platform_name(ws, tmp_path):
    with pytest.raises(InputError):
        ws.ingest_events("bad name!", write(tmp_path / "e.csv", "account,item\na,x\n"))


def test_accounts_first_and_last_seen(ws, tmp_path):
    ws.ingest_events("p", write(tmp_path / "a.csv", "account,item,timestamp\na,x,1000000000\n"))
    ws.ingest_events("p", write(tmp_path / "b.csv", "account,item,timestamp\na,y,900000000\n"))
    [acc] = ws.store.read("accounts").to_pylist()
    assert acc["first_seen"] == datetime.fromtimestamp(900000000, UTC)
    assert acc["last_seen"] == datetime.fromtimestamp(1000000000, UTC)


def test_events_without_timestamp_keep_file_order(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item\na,z\na,y\na,x\n")
    ws.ingest_events("p", f)
    assert [r["item"] for r in events_of(ws)] == ["z", "y", "x"]


def test_store_schema_version_mismatch_is_refused(ws):
    from crossrec.errors import SchemaVersionError
    from crossrec.store import open_store

    ws.store.set_meta("schema_version", "999")
    ws.close()
    with pytest.raises(SchemaVersionError, match="schema version 999"):
        open_store(Path(ws.root) / "crossrec.duckdb")


def test_trimming_equals_duckdb_trim_for_any_text():
    import duckdb

    from crossrec.ingest.validate import trimmed

    values = ["a", " a", "a ", "  ", "", "\u00a0x", "x\u3000", "ü", " ü ", "\ta\t", "a b", None]
    values += ["\u2003" + "é" * 3, "x\u202f", "日本 ", " 日本"]
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT unnest(?) AS x", [values])
    rows = con.execute(f"SELECT x, {trimmed('x')}, nullif(trim(x), '') FROM v").fetchall()
    assert [r[1] for r in rows] == [r[2] for r in rows]


# -- event identity and re-ingest -----------------------------------------------------------------
def test_event_ids_read_back_given_or_derived_and_equal_values_are_one_event(ws, tmp_path):
    import hashlib

    f = write(
        tmp_path / "e.csv",
        "account,item,event,value,timestamp,event_id\n"
        "a,x,view,1,1600000000,\n"
        "a,x,view,1.0,1600000000000,\n"  # the same event: equal value and time, other text
        "b,y,like,,,e7\n",
    )
    [s] = ws.ingest_events("p", f)
    assert (s.accepted, s.duplicates) == (2, 1)
    rows = events_of(ws)
    assert rows[1]["event_id"] == "e7"
    fields = "\x1f".join(["p", ws.account_id("p", "a"), "x", "view", "1.0", "1600000000000000"])
    assert rows[0]["event_id"] == "h" + hashlib.md5(fields.encode()).hexdigest()


def test_a_derived_id_sent_as_event_id_is_the_same_event(ws, tmp_path):
    ws.ingest_events("p", write(tmp_path / "e.csv", "account,item,value\na,x,2.5\n"))
    [row] = events_of(ws)
    again = pa.table(
        {
            "platform": ["p"],
            "account": [row["account"]],
            "item": ["x"],
            "event_type": ["interact"],
            "value": [2.5],
            "ts": pa.array([None], pa.timestamp("us", tz="UTC")),
            "event_id": [row["event_id"]],  # the 'h' + digest text a reader of the store sees
            "seq": [100],
            "attrs": pa.array([None], pa.string()),
        }
    )
    with ws.store.transaction():
        result = ws.store.insert_events(again.to_reader(), unique=True, platform="p")
    assert (result.offered, result.inserted) == (1, 0)


def test_reingest_is_not_read_again_but_counts_and_reasons_are_the_same(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item,value\na,x,1\nb,y,oops\na,x,1\nc,z,\n")
    [first] = ws.ingest_events("p", f)
    [again] = ws.ingest_events("p", write(tmp_path / "copy.csv", f.read_bytes()))
    assert (first.accepted, first.duplicates, first.quarantined) == (2, 1, 1)
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 3, 1)
    assert again.reasons == first.reasons == {"unparsable value": 1}
    assert ws.quarantine().count() == 1
    assert ws.stats()["duplicates"] == 4
    assert ws.store.count("ingest_log") == 2


def test_the_same_file_with_another_mapping_is_read_again(ws, tmp_path):
    f = write(tmp_path / "e.csv", "user,item,other\na,x,y\nb,y,z\n")
    [first] = ws.ingest_events("p", f, columns={"account": "user"})
    [other] = ws.ingest_events("p", f, columns={"account": "user", "item": "other"})
    assert first.accepted == 2
    assert (other.accepted, other.duplicates) == (2, 0)
    assert {r["item"] for r in events_of(ws)} == {"x", "y", "z"}


def test_typed_parquet_columns_parse_like_their_text(ws, tmp_path):
    t0 = datetime(2021, 6, 1, 12, 30, tzinfo=UTC)
    table = pa.table(
        {
            "account": pa.array([42, 43, 44, 45], pa.int64()),
            "item": ["x", " y ", "z", "w"],
            "value": pa.array([3, None, float("nan"), 1.5], pa.float64()),
            "timestamp": pa.array([t0, None, t0, datetime(1960, 1, 1)], pa.timestamp("s")),
        }
    )
    p = tmp_path / "e.parquet"
    pq.write_table(table, p)
    [s] = ws.ingest_events("p", p)
    assert (s.accepted, s.quarantined) == (2, 2)
    rows = events_of(ws)
    assert [(r["item"], r["value"], r["ts"]) for r in rows] == [("x", 3.0, t0), ("y", None, None)]
    assert rows[0]["account"] == ws.account_id("p", "42")
    bad = {r["line"]: r for r in ws.quarantine().list()}
    assert bad[3]["reason"].startswith("non-finite value")
    assert bad[4]["reason"].startswith("timestamp out of range")
    assert json.loads(bad[3]["raw"])["account"] == "44"
