"""Links in the company's own ids: ``crossrec export links``, and ``links``/``similar`` with
``--ids``, on a trained and linked world whose true pairs are known."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crossrec.idmap import IdMap
from crossrec.link.export import COLUMNS
from crossrec.link.query import person_links
from crossrec.workspace import Workspace
from tests.conftest import write
from tests.worlds import linked_world

STATUSES = {"asserted", "probable", "below threshold", "not chosen"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ws, data = linked_world(tmp_path_factory)
    root = ws.root
    ws.close()  # the commands below open the store in their own process
    return root, data


def crossrec(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossrec", *map(str, args)], capture_output=True, text=True
    )


def ids_args(data: Path, *platforms: str) -> list[str]:
    return [x for p in platforms for x in ("--ids", f"{p}={data / p / 'events.csv'}")]


def raw_accounts(path: Path) -> set[str]:
    with path.open() as fh:
        return {row["account"] for row in csv.DictReader(fh)}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def pair(p1: str, a1: str, p2: str, a2: str) -> frozenset[tuple[str, str]]:
    return frozenset({(p1, a1), (p2, a2)})


def test_export_writes_raw_id_pairs_that_score_as_the_store_does_against_the_truth(world, tmp_path):
    root, data = world
    out = tmp_path / "links.csv"
    r = crossrec(
        "export", "links", "-w", root, *ids_args(data, "video", "music"), "--out", out, "--json"
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    header, rows = read_csv(out)
    assert header == list(COLUMNS)
    with Workspace(root) as ws:
        stored = ws.store.read("links").to_pylist()
        ps = ws.pseudonymiser
    assert summary["links"] == len(stored) and summary["written"] == len(rows) == len(stored) > 0
    assert summary["left_out"] == 0 and summary["unresolved"] == {}
    assert "written" in r.stderr and "raw ids" in r.stderr
    # every row is a stored link, named by the raw ids the company uses
    exported = {
        pair(
            row["platform_a"],
            ps.account(row["platform_a"], row["account_a"]),
            row["platform_b"],
            ps.account(row["platform_b"], row["account_b"]),
        )
        for row in rows
    }
    assert exported == {
        pair(s["platform_a"], s["account_a"], s["platform_b"], s["account_b"]) for s in stored
    }
    for row in rows:
        for side in ("a", "b"):
            assert row[f"account_{side}"] in raw_accounts(
                data / row[f"platform_{side}"] / "events.csv"
            )
        assert row["status"] == "asserted"
        assert 0.0 <= float(row["probability"]) <= 1.0
        evidence = json.loads(row["evidence"])
        assert evidence and all("signal" in e and "value" in e for e in evidence)
    # the raw pairs meet the truth exactly as often as the stored pseudonyms do
    with (data / "truth_links.csv").open() as fh:
        truth_rows = list(csv.DictReader(fh))
    truth_raw = {
        pair(t["platform_a"], t["account_a"], t["platform_b"], t["account_b"]) for t in truth_rows
    }
    truth_ps = {
        pair(
            t["platform_a"],
            ps.account(t["platform_a"], t["account_a"]),
            t["platform_b"],
            ps.account(t["platform_b"], t["account_b"]),
        )
        for t in truth_rows
    }
    hits_raw = sum(
        pair(r["platform_a"], r["account_a"], r["platform_b"], r["account_b"]) in truth_raw
        for r in rows
    )
    hits_stored = sum(
        pair(s["platform_a"], s["account_a"], s["platform_b"], s["account_b"]) in truth_ps
        for s in stored
    )
    assert hits_raw == hits_stored
    assert hits_raw / len(rows) >= 0.5  # the world's target precision is 0.6
    assert not [p for p in tmp_path.iterdir() if p.name != "links.csv"]  # no temporary left


def test_parquet_export_and_the_status_filter(world, tmp_path):
    root, data = world
    out = tmp_path / "links.parquet"
    r = crossrec(
        "export",
        "links",
        "-w",
        root,
        *ids_args(data, "video", "music"),
        "--out",
        out,
        "--status",
        "all",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    table = pq.read_table(out)
    assert table.column_names == list(COLUMNS)
    assert str(table.schema.field("probability").type) == "double"
    assert set(table.column("status").to_pylist()) <= {"asserted", "probable"}
    assert json.loads(r.stdout)["written"] == table.num_rows > 0
    # links written without a status are asserted: probable ones are a subset of all
    r = crossrec(
        "export",
        "links",
        "-w",
        root,
        *ids_args(data, "video", "music"),
        "--out",
        tmp_path / "p.csv",
        "--status",
        "probable",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    probable = json.loads(r.stdout)["written"]
    asserted = table.column("status").to_pylist().count("asserted")
    assert probable + asserted == table.num_rows


def test_accounts_the_lists_cannot_resolve_are_counted_never_guessed(world, tmp_path):
    root, data = world
    music = sorted(raw_accounts(data / "music" / "events.csv"))
    half = set(music[: len(music) // 2])
    # id lists of another shape: one column named uid
    ids_file = write(tmp_path / "music_ids.csv", "uid\n" + "".join(f"{a}\n" for a in sorted(half)))
    video = sorted(raw_accounts(data / "video" / "events.csv"))
    video_file = write(tmp_path / "video_ids.csv", "uid\n" + "".join(f"{a}\n" for a in video))
    out = tmp_path / "links.csv"
    r = crossrec(
        "export",
        "links",
        "-w",
        root,
        "--ids",
        f"video={video_file}",
        "--ids",
        f"music={ids_file}",
        "--columns",
        "account=uid",
        "--out",
        out,
        "--json",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    _, written = read_csv(out)
    assert summary["left_out"] > 0 and set(summary["unresolved"]) == {"music"}
    assert summary["written"] + summary["left_out"] == summary["links"]
    assert len(written) == summary["written"]
    for row in written:
        side = "a" if row["platform_a"] == "music" else "b"
        assert row[f"account_{side}"] in half
    assert "left out" in r.stderr and "music:" in r.stderr


def test_export_mistakes_are_one_line_errors_and_keep_the_old_file(world, tmp_path):
    root, data = world
    old = write(tmp_path / "links.csv", "kept\n")
    cases = [
        (["--out", tmp_path / "links.txt", *ids_args(data, "video")], ".csv or .parquet"),
        (["--out", old], "needs --ids"),
        (["--out", old, *ids_args(data, "video"), "--status", "maybe"], "--status 'maybe'"),
        (["--out", old, "--ids", f"video={tmp_path / 'none.csv'}"], "none.csv: no such file"),
        (["--out", old, *ids_args(data, "video"), "--columns", "account=uid"], "no column 'uid'"),
        (["--out", old, "--ids", "video"], "is not PLATFORM=FILE"),
        (["--out", old, "--ids", f"vidoe={data / 'video' / 'events.csv'}"], "no platform 'vidoe'"),
    ]
    for args, message in cases:
        r = crossrec("export", "links", "-w", root, *args)
        assert r.returncode == (3 if "no such file" in message else 2), (args, r.stderr)
        assert r.stderr.startswith("error:") and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
    assert old.read_text() == "kept\n"


def test_links_and_similar_show_raw_ids_with_ids(world):
    root, data = world
    with Workspace(root) as ws:
        link = ws.store.read("links").to_pylist()[0]
        ids = IdMap.from_specs(
            [f"{p}={data / p / 'events.csv'}" for p in ("video", "music")], ws.pseudonymiser
        )
    raw_a = ids.raw(link["platform_a"], link["account_a"])
    raw_b = ids.raw(link["platform_b"], link["account_b"])
    assert raw_a and raw_b
    r = crossrec(
        "links",
        "-w",
        root,
        "--platform",
        link["platform_a"],
        "--account",
        raw_a,
        *ids_args(data, "video", "music"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    shown = {(a["platform"], a["account_raw"]) for a in doc["accounts"]}
    assert {(link["platform_a"], raw_a), (link["platform_b"], raw_b)} <= shown
    edge = next(e for e in doc["links"] if e["status"] == "asserted")
    assert {edge["account_a_raw"], edge["account_b_raw"]} == {raw_a, raw_b}
    assert doc["candidates"] == []  # linked: no candidate list
    table = crossrec(
        "links",
        "-w",
        root,
        "--platform",
        link["platform_a"],
        "--account",
        raw_a,
        *ids_args(data, "video", "music"),
    )
    assert raw_b in table.stdout and link["account_b"] not in table.stdout
    on = "music" if link["platform_a"] == "video" else "video"
    r = crossrec(
        "similar",
        "-w",
        root,
        "--platform",
        link["platform_a"],
        "--account",
        raw_a,
        "--on",
        on,
        "-k",
        "5",
        *ids_args(data, on),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    similar = json.loads(r.stdout)["similar"]
    assert len(similar) == 5
    assert all(s["account_raw"] in raw_accounts(data / on / "events.csv") for s in similar)
    assert all(s["account"].startswith("a") for s in similar)  # existing keys kept
    # without --ids the raw id fields are there, empty
    r = crossrec(
        "similar",
        "-w",
        root,
        "--platform",
        link["platform_a"],
        "--account",
        raw_a,
        "--on",
        on,
        "-k",
        "2",
        "--json",
    )
    assert [s["account_raw"] for s in json.loads(r.stdout)["similar"]] == [None, None]


def test_an_unlinked_account_shows_its_best_candidates(world):
    root, data = world
    with Workspace(root) as ws:
        linked = {
            (r[f"platform_{s}"], r[f"account_{s}"])
            for t in ("links", "known_links")
            for r in ws.store.read(t).to_pylist()
            for s in ("a", "b")
        }
        ids = IdMap.from_specs([f"music={data / 'music' / 'events.csv'}"], ws.pseudonymiser)
        ps = ws.pseudonymiser
        raw = next(
            a
            for a in sorted(raw_accounts(data / "video" / "events.csv"))
            if ("video", ps.account("video", a)) not in linked
        )
        doc = person_links(ws, "video", raw, ids=ids, candidates=True)
        threshold = json.loads((root / "models" / "v0001" / "link" / "link.json").read_text())[
            "threshold"
        ]
    assert doc["links"] == [] and doc["person"] is None
    cands = doc["candidates"]
    assert 0 < len(cands) <= 10
    probs = [c["probability"] for c in cands]
    assert probs == sorted(probs, reverse=True)
    assert all(c["platform"] == "music" and c["status"] in STATUSES for c in cands)
    assert all(c["status"] != "asserted" for c in cands)
    for c in cands:
        if c["status"] == "below threshold":
            assert threshold is None or c["probability"] < threshold
    music = raw_accounts(data / "music" / "events.csv")
    assert all(c["account_raw"] in music for c in cands)
    r = crossrec("links", "-w", root, "--platform", "video", "--account", raw)
    assert r.returncode == 0, r.stderr
    assert "best candidates" in r.stdout and cands[0]["status"] in r.stdout
    r = crossrec("links", "-w", root, "--platform", "video", "--account", raw, "--json")
    assert [c["account"] for c in json.loads(r.stdout)["candidates"]] == [
        c["account"] for c in cands
    ]
