"""The id resolver: raw ids read as ingest reads them resolve every stored pseudonym."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crossrec.errors import IngestError, InputError
from crossrec.idmap import IdMap, parse_id_spec
from tests.conftest import write

EVENTS = """userId,movieId,rating
u1,m1,4.0
 u2 ,m2,3.5
u2,m1,5
\u3000u3\u00a0,m3,1
,m4,2
"""


def stored_accounts(ws, platform: str) -> set[str]:
    rows = ws.store.read("accounts").to_pylist()
    return {r["account"] for r in rows if r["platform"] == platform}


def test_every_ingested_account_resolves_to_its_trimmed_raw_id(ws, tmp_path):
    f = write(tmp_path / "video.csv", EVENTS)
    ws.ingest_events("video", f, columns={"account": "userId", "item": "movieId"})
    ids = IdMap.from_specs([f"video={f}"], ws.pseudonymiser, {"account": "userId"})
    stored = stored_accounts(ws, "video")
    assert len(stored) == 3
    assert sorted(ids.raw("video", a) or "?" for a in stored) == ["u1", "u2", "u3"]
    assert all(("video", a) in ids for a in stored)
    assert ids.stats() == {"video": {"files": [str(f)], "ids": 3}}


def test_other_platform_or_unknown_pseudonym_is_not_guessed(ws, tmp_path):
    f = write(tmp_path / "e.csv", "account,item\nu1,m1\n")
    ids = IdMap.from_specs([("video", f)], ws.pseudonymiser)
    same_raw_other_platform = ws.pseudonymiser.account("music", "u1")
    assert ids.raw("music", same_raw_other_platform) is None
    assert ids.raw("video", same_raw_other_platform) is None
    assert ("music", same_raw_other_platform) not in ids
    assert ids.raw("video", ws.pseudonymiser.account("video", "u1")) == "u1"


def test_parquet_integer_ids_and_jsonl_read_as_ingest_reads_them(ws, tmp_path):
    pq.write_table(
        pa.table({"uid": pa.array([7, 8, 7], pa.int64()), "item": ["a", "b", "c"]}),
        tmp_path / "p.parquet",
    )
    ws.ingest_events("shop", tmp_path / "p.parquet", columns={"account": "uid"})
    lines = [json.dumps({"account": a, "item": "x"}) for a in (12, "k9", 12)]
    write(tmp_path / "m.jsonl", "\n".join(lines) + "\n")
    ws.ingest_events("music", tmp_path / "m.jsonl")
    shop = IdMap.from_specs(
        [f"shop={tmp_path / 'p.parquet'}"], ws.pseudonymiser, {"account": "uid"}
    )
    music = IdMap.from_specs([f"music={tmp_path / 'm.jsonl'}"], ws.pseudonymiser)
    assert sorted(shop.raw("shop", a) or "?" for a in stored_accounts(ws, "shop")) == ["7", "8"]
    assert sorted(music.raw("music", a) or "?" for a in stored_accounts(ws, "music")) == [
        "12",
        "k9",
    ]


def test_several_files_per_platform_are_merged(ws, tmp_path):
    a = write(tmp_path / "a.csv", "account\nx1\nx2\n")
    b = write(tmp_path / "b.csv", "account;other\nx2;1\nx3;2\n")
    ids = IdMap.from_specs([f"video={a}", f"video={b}"], ws.pseudonymiser)
    assert ids.stats()["video"] == {"files": [str(a), str(b)], "ids": 3}
    assert len(ids) == 3


def test_missing_file_and_missing_column_name_the_file(ws, tmp_path):
    with pytest.raises(IngestError, match=r"nope\.csv: no such file"):
        IdMap.from_specs([f"video={tmp_path / 'nope.csv'}"], ws.pseudonymiser)
    f = write(tmp_path / "e.csv", "userId,item\nu1,m1\n")
    with pytest.raises(InputError, match=r"e\.csv: no column 'account' \(columns: userId, item\)"):
        IdMap.from_specs([f"video={f}"], ws.pseudonymiser)
    with pytest.raises(InputError, match="no column 'uid'"):
        IdMap.from_specs([f"video={f}"], ws.pseudonymiser, {"account": "uid"})
    with pytest.raises(InputError, match="cannot be mapped for an id list"):
        IdMap.from_specs([f"video={f}"], ws.pseudonymiser, {"item": "item"})


def test_spec_must_be_platform_equals_file():
    assert parse_id_spec("video=data/e.csv")[0] == "video"
    for bad in ("video", "=e.csv", "video="):
        with pytest.raises(InputError, match="is not PLATFORM=FILE"):
            parse_id_spec(bad)


def test_ids_ingest_refuses_or_writes_in_another_form_match_the_store(ws, tmp_path):
    # NFC: "é" typed as e + accent is stored as the one character; a control character is
    # quarantined by ingest, so the id list never offers it
    f = write(tmp_path / "e.csv", "account,item\ncafe\u0301,m1\nbad\u0007id,m2\nok,m3\n")
    [s] = ws.ingest_events("video", f)
    assert s.quarantined == 1
    ids = IdMap.from_specs([f"video={f}"], ws.pseudonymiser)
    assert sorted(ids.raw("video", a) or "?" for a in stored_accounts(ws, "video")) == [
        "caf\u00e9",
        "ok",
    ]
    assert len(ids) == 2
