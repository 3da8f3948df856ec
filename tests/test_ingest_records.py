"""Record ingest (HTTP and stream batches): the file-ingest rules, quarantine, identity."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossrec.errors import InputError
from tests.conftest import MOVIELENS, write


def events_of(ws, platform=None):
    return ws.store.read("events", platform=platform, order_by=["seq"]).to_pylist()


def test_records_parse_like_a_file(ws):
    records = [
        {"account": "u1", "item": "m1", "value": 4.0, "timestamp": 964982703, "device": "tv"},
        {"account": "u1", "item": "m2", "value": "3.5", "timestamp": "2020-01-01T10:00:00+02:00"},
        {"account": 7, "item": 12, "value": 5, "timestamp": 1600000000000, "event": "rating"},
        {"account": " u3 ", "item": "m3", "timestamp": "2021-06-01 12:30:00"},
    ]
    s = ws.ingest_records("video", records, source="http")
    assert (s.accepted, s.quarantined, s.duplicates) == (4, 0, 0)
    rows = events_of(ws)
    assert [r["item"] for r in rows] == ["m1", "m2", "12", "m3"]
    assert [r["value"] for r in rows] == [4.0, 3.5, 5.0, None]
    assert [r["ts"] for r in rows] == [
        datetime.fromtimestamp(964982703, UTC),
        datetime(2020, 1, 1, 8, 0, tzinfo=UTC),  # zone honoured
        datetime.fromtimestamp(1600000000, UTC),  # milliseconds detected
        datetime(2021, 6, 1, 12, 30, tzinfo=UTC),  # no zone: UTC
    ]
    assert [r["event_type"] for r in rows] == ["interact", "interact", "rating", "interact"]
    assert json.loads(rows[0]["attrs"]) == {"device": "tv"}
    assert rows[1]["attrs"] is None
    # pseudonymised like file ingest; text is trimmed, integers are ids too
    assert rows[0]["account"] == ws.account_id("video", "u1")
    assert rows[2]["account"] == ws.account_id("video", "7")
    assert rows[3]["account"] == ws.account_id("video", "u3")
    assert s.accounts == sorted({ws.account_id("video", a) for a in ("u1", "7", "u3")})
    assert ws.store.count("accounts", platform="video") == 3


BAD = [
    ({"item": "x"}, "account", "missing account"),
    ({"account": "  ", "item": "x"}, "account", "missing account"),
    ({"account": "a"}, "item", "missing item"),
    ({"account": "a", "item": "x", "value": "abc"}, "value", "unparsable value: abc"),
    ({"account": "a", "item": "x", "value": "NaN"}, "value", "non-finite value: NaN"),
    ({"account": "a", "item": "x", "timestamp": "yesterday"}, "timestamp", None),
    ({"account": "a", "item": "x", "timestamp": "2300-01-01"}, "timestamp", None),
    ({"account": "a", "item": "x", "timestamp": -99999999999}, "timestamp", None),
]


def test_bad_records_get_the_file_reasons(ws, tmp_path):
    """The same rows as a JSON-lines file and as records give the same field and reason."""
    s = ws.ingest_records("video", [r for r, _, _ in BAD], source="http")
    assert (s.accepted, s.quarantined) == (0, len(BAD))
    f = write(tmp_path / "bad.jsonl", "".join(json.dumps(r) + "\n" for r, _, _ in BAD))
    [fs] = ws.ingest_events("music", f)
    assert fs.quarantined == len(BAD)
    rows = ws.quarantine().list(limit=100)
    by_record = {r["line"]: r for r in rows if r["file"] == "http"}
    by_line = {r["line"]: r for r in rows if r["file"] == str(f)}
    for n, (record, fld, reason) in enumerate(BAD, start=1):
        got = by_record[n]
        assert (got["field"], got["platform"], got["kind"]) == (fld, "video", "events")
        assert (got["field"], got["reason"]) == (by_line[n]["field"], by_line[n]["reason"])
        if reason:
            assert got["reason"] == reason
        assert json.loads(got["raw"]) == record
    assert ws.store.count("events") == 0


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"account": ["a"], "item": "x"}, "account", "must be a string or an integer"),
        ({"account": "a", "item": {"id": 1}}, "item", "not an object"),
        ({"account": True, "item": "x"}, "account", "not a boolean"),
        ({"account": "a", "item": 1.5}, "item", "not a number"),
        ({"account": "a", "item": "x", "value": True}, "value", "must be a number or a string"),
        ({"account": "a", "item": "x", "timestamp": [1]}, "timestamp", "not an array"),
        ({"account": "a", "item": "x", "event_id": {"k": 1}}, "event_id", "wrong type"),
        ({"account": "a\udc80", "item": "x"}, "account", "bad encoding"),
        ({"account": "a", "item": "x", "note": "\ud800"}, None, "bad encoding"),
        ("not an object", None, "not a JSON object"),
        (None, None, "not a JSON object"),
    ],
)
def test_wrong_types_are_quarantined(ws, record, field, reason):
    s = ws.ingest_records("p", [record, {"account": "ok", "item": "fine"}], source="http")
    assert (s.accepted, s.quarantined) == (1, 1)
    [row] = ws.quarantine().list()
    assert row["field"] == field
    assert reason in row["reason"]
    assert row["line"] == 1
    assert row["raw"]  # the raw record is kept, even when it is not valid text


def test_sent_twice_is_a_duplicate_and_repeats_within_a_batch_count(ws):
    batch = [
        {"account": "a", "item": "x", "event": "view", "value": 1},
        {"account": "a", "item": "x", "event": "view", "value": 1},  # the same event
        {"account": "b", "item": "y", "event_id": "e1"},
        {"account": "c", "item": "z", "event_id": "e1"},  # the same id: the same event
    ]
    first = ws.ingest_records("p", batch, source="http")
    assert (first.accepted, first.duplicates) == (2, 2)
    again = ws.ingest_records("p", batch, source="http")
    assert (again.accepted, again.duplicates) == (0, 4)
    assert ws.store.count("events") == 2
    assert ws.stats()["duplicates"] == 6
    # the first occurrence of a repeated event id is the one kept
    kept = {r["event_id"]: r["account"] for r in events_of(ws)}
    assert kept["e1"] == ws.account_id("p", "b")
    # the same event id on another platform is another event
    assert ws.ingest_records("q", batch[2:], source="http").accepted == 1


def test_event_from_a_file_and_as_a_record_is_stored_once(ws, tmp_path):
    f = write(
        tmp_path / "e.csv",
        "account,item,event,value,timestamp\nu1,m1,view,2.5,1600000000\nu2,m2,,,\n",
    )
    ws.ingest_events("video", f)
    s = ws.ingest_records(
        "video",
        [
            {"account": "u1", "item": "m1", "event": "view", "value": 2.5, "timestamp": 1.6e9},
            {"account": "u2", "item": "m2"},
            {"account": "u2", "item": "m2", "event": "like"},
        ],
        source="http",
    )
    assert (s.accepted, s.duplicates) == (1, 2)
    assert ws.store.count("events") == 3


def test_numbered_records_are_quarantined_once_per_source(ws):
    bad = [{"account": "a"}, {"item": "x"}]
    for _ in range(2):
        s = ws.ingest_records("p", bad, source="kafka:t/0", numbers=[41, 42])
        assert s.quarantined == 2
    assert ws.quarantine().count() == 2
    assert {r["line"] for r in ws.quarantine().list()} == {41, 42}
    # unnumbered calls are each their own: nothing is lost
    ws.ingest_records("p", bad, source="http")
    ws.ingest_records("p", bad, source="http")
    assert ws.quarantine().count() == 6
    with pytest.raises(InputError, match="record numbers"):
        ws.ingest_records("p", bad, source="x", numbers=[1])


def test_extra_runs_in_the_same_transaction(ws):
    def fail() -> None:
        raise RuntimeError("offsets could not be written")

    with pytest.raises(RuntimeError):
        ws.ingest_records("p", [{"account": "a", "item": "x"}], source="s", extra=fail)
    assert ws.store.count("events") == 0
    assert ws.store.count("accounts") == 0
    seen: list[int] = []
    ws.ingest_records(
        "p",
        [{"account": "a", "item": "x"}],
        source="s",
        extra=lambda: seen.append(ws.store.count("events")),
    )
    assert seen == [1]  # the events are visible to extra: it runs inside the transaction


def test_personal_keys_become_identifiers_not_attributes(tmp_path):
    from crossrec.workspace import Workspace

    root = tmp_path / "ws"
    Workspace.init(root).close()
    cfg = root / "crossrec.toml"
    cfg.write_text(
        cfg.read_text().replace("personal_columns = []", 'personal_columns = ["email_hash"]')
    )
    with Workspace(root) as ws:
        ws.ingest_events("video", write(tmp_path / "v.csv", "account,item,email_hash\nu1,x,H1\n"))
        ws.ingest_records(
            "music",
            [{"account": "z9", "item": "y", "email_hash": " H1 ", "device": "phone"}],
            source="http",
        )
        ids = ws.store.read("account_identifiers", order_by=["platform"]).to_pylist()
        assert [r["platform"] for r in ids] == ["music", "video"]
        assert ids[0]["value"] == ids[1]["value"]
        assert ids[0]["account"] == ws.account_id("music", "z9")
        [music] = events_of(ws, "music")
        assert json.loads(music["attrs"]) == {"device": "phone"}


def test_attribute_values_are_kept_as_text_like_json_lines(ws, tmp_path):
    record = {"account": "a", "item": "x", "n": 3, "f": 0.5, "b": False, "o": {"k": [1]}, "z": None}
    ws.ingest_records("p", [record], source="http")
    write(tmp_path / "e.jsonl", json.dumps(record) + "\n")
    ws.ingest_events("q", tmp_path / "e.jsonl")
    attrs = [json.loads(r["attrs"]) for r in events_of(ws)]
    assert attrs[0] == {"n": "3", "f": "0.5", "b": "false", "o": '{"k": [1]}', "z": None}
    assert attrs[0] == attrs[1]


def test_rules_also_run_as_a_materialised_table(ws):
    """The path taken if the rules' SQL ever stops being one ``CREATE TABLE ... AS`` query."""
    ws.record_ingestor._checked_from = None
    s = ws.ingest_records("p", [{"account": "a", "item": "x"}, {"account": "b"}], source="h")
    assert (s.accepted, s.quarantined) == (1, 1)


def test_bad_platform_and_empty_batch(ws):
    with pytest.raises(InputError, match="platform name"):
        ws.ingest_records("bad platform!", [{"account": "a", "item": "x"}], source="http")
    s = ws.ingest_records("p", [], source="http")
    assert (s.accepted, s.quarantined, s.duplicates, s.accounts) == (0, 0, 0, [])


def test_mixed_platform_batch(ws):
    """The stream consumer's path: one call, several platforms, per-record sources."""
    from crossrec.ingest.record_quarantine import source_fingerprint

    records = [{"account": "a", "item": "x"}, {"account": "a", "item": "x"}, {"item": "y"}]
    origins = [(f"kafka:t/{i}", source_fingerprint(f"kafka:t/{i}"), 5) for i in range(3)]
    r = ws.record_ingestor.ingest_mixed(["video", "music", "music"], records, origins=origins)
    assert (r.accepted, r.quarantined, r.duplicates) == (2, 1, 0)
    assert r.accounts == sorted(
        [("music", ws.account_id("music", "a")), ("video", ws.account_id("video", "a"))]
    )
    [q] = ws.quarantine().list()
    assert (q["file"], q["line"], q["platform"]) == ("kafka:t/2", 5, "music")


# -- junk never raises anything but the documented errors -----------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "1e400", "2020-13-45", "1600000000", "NaN", "-inf", "0x10"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_keys = st.sampled_from(["account", "item", "event", "value", "timestamp", "event_id", "x", ""])
_records = st.lists(
    st.one_of(st.dictionaries(_keys | st.text(max_size=4), _json, max_size=7), _json),
    max_size=12,
)


@pytest.fixture(scope="module")
def fuzz_ws(tmp_path_factory):
    from crossrec.workspace import Workspace

    workspace = Workspace.init(tmp_path_factory.mktemp("junk") / "ws")
    quarantined: list[int] = []
    yield workspace, quarantined
    # every record reported quarantined is in the quarantine (checked once: opening it is slow)
    assert workspace.quarantine().count() == sum(quarantined)
    workspace.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=_records)
def test_junk_records_never_raise_and_every_record_is_counted(fuzz_ws, batch):
    ws, quarantined = fuzz_ws
    events = ws.store.count("events")
    s = ws.ingest_records("p", batch, source="fuzz")  # only documented errors may escape
    assert s.accepted + s.quarantined + s.duplicates == len(batch)
    assert ws.store.count("events") - events == s.accepted
    quarantined.append(s.quarantined)


# -- real data ------------------------------------------------------------------------------------
@pytest.mark.skipif(not MOVIELENS.exists(), reason="shared MovieLens data not present")
def test_movielens_as_records_gives_the_events_of_the_file(ws, tmp_path):
    ratings = MOVIELENS / "ratings.csv"
    with ratings.open(encoding="utf-8") as fh:
        rows = [r for _, r in zip(range(5000), csv.DictReader(fh), strict=False)]
    head = write(
        tmp_path / "head.csv",
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{r['userId']},{r['movieId']},{r['rating']},{r['timestamp']}\n" for r in rows),
    )
    mapping = {"account": "userId", "item": "movieId", "value": "rating"}
    [fs] = ws.ingest_events("file", head, columns=mapping)
    records = [
        {"account": r["userId"], "item": r["movieId"], "value": r["rating"], "timestamp": ts}
        for r in rows
        for ts in [int(r["timestamp"])]
    ]
    total = 0
    for start in range(0, len(records), 1000):  # as a stream would send them
        total += ws.ingest_records("rec", records[start : start + 1000], source="http").accepted
    assert total == fs.accepted == 5000

    def key(r: dict) -> tuple:
        return (r["item"], r["value"], r["ts"], r["event_type"])

    by_file = [key(r) for r in events_of(ws, "file")]
    by_records = [key(r) for r in events_of(ws, "rec")]
    assert by_file == by_records
    assert ws.store.count("accounts", platform="rec") == ws.store.count("accounts", platform="file")


def test_quarantine_raw_of_unserialisable_record(ws):
    loop: dict = {"account": "a"}
    loop["self"] = loop  # circular: cannot be JSON
    s = ws.ingest_records("p", [loop, {"account": "a", "item": "x", "big": 10**5000}], source="h")
    assert s.quarantined == 2
    rows = ws.quarantine().list()
    assert all(r["raw"] for r in rows)
    assert {r["reason"].split(":")[0] for r in rows} == {"wrong type"}
