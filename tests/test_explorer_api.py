"""The link explorer's page and JSON routes, served in-process over a small linked workspace:
raw ids where the server holds id lists, evidence placed against the signal distributions of
the served model, the workspace's link summary, and the errors a client gets."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from crossrec.serve.state import ServeState
from crossrec.workspace import Workspace
from tests.worlds import linked_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Path]]:
    ws, data = linked_world(tmp_path_factory)
    yield ws, data
    ws.close()


@contextmanager
def served(ws: Workspace, ids_from: Path | None) -> Iterator[tuple[object, dict[str, dict]]]:
    """A test client over ``ws`` (the id lists of ``ids_from`` when given) and tokens."""
    from fastapi.testclient import TestClient

    from crossrec.idmap import IdMap
    from crossrec.serve.app import create_app
    from crossrec.serve.auth import create_token

    ids = None
    if ids_from is not None:
        specs = [f"{p}={ids_from / p / 'events.csv'}" for p in ("video", "music")]
        ids = IdMap.from_specs(specs, ws.pseudonymiser)
    tokens = {
        "read": create_token(ws.store, ("read",), "explorer-read")[0],
        "write": create_token(ws.store, ("write",), "explorer-write")[0],
    }
    state = ServeState(ws, poll_seconds=3600, ids=ids)
    with TestClient(create_app(state), raise_server_exceptions=False) as client:
        yield client, {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}


def _raw_ids(data: Path, platform: str) -> list[str]:
    with (data / platform / "events.csv").open(newline="") as f:
        return sorted({row["account"] for row in csv.DictReader(f)})


def _linked(ws: Workspace, data: Path) -> tuple[str, str, str]:
    """(raw music id, its partner's raw video id, the partner's pseudonym) of an asserted
    matcher link between accounts of the events files."""
    raw = {
        (p, ws.pseudonymiser.account(p, r)): r
        for p in ("video", "music")
        for r in _raw_ids(data, p)
    }
    for row in ws.store.read("links").to_pylist():
        sides = {row["platform_a"]: row["account_a"], row["platform_b"]: row["account_b"]}
        m, v = ("music", sides.get("music")), ("video", sides.get("video"))
        if row["source"] == "matcher" and m in raw and v in raw:
            return raw[m], raw[v], v[1]
    raise AssertionError("no asserted link between accounts of the events files")


def test_person_shows_partner_by_raw_id_with_evidence_against_distributions(world):
    ws, data = world
    music, video, video_pseudonym = _linked(ws, data)
    with served(ws, data) as (client, auth):
        r = client.get(f"/v1/explorer/platforms/music/accounts/{music}", headers=auth["read"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["account"] == music and doc["person"] is not None
    shown = {(a["platform"], a["account"]): a for a in doc["accounts"]}
    assert shown[("video", video)]["raw_id"] is True
    assert shown[("music", music)]["query"] is True
    link = next(e for e in doc["links"] if video in (e["account_a"], e["account_b"]))
    assert link["status"] == "asserted" and 0.0 <= link["probability"] <= 1.0
    assert link["evidence"], link
    placed = [e for e in link["evidence"] if e["false_below"] is not None]
    assert placed, "no evidence signal has a distribution"
    for e in placed:
        assert 0.0 <= e["true_below"] <= 1.0 and 0.0 <= e["false_below"] <= 1.0
    # the rhythm counts every timestamped event of the account in the store
    rhythm = doc["rhythm"]
    events = ws.store.account_events("music", ws.account_id("music", music), columns=["ts"])
    assert sum(map(sum, rhythm["counts"])) == events.num_rows - events.column("ts").null_count
    assert len(rhythm["counts"]) == 7 and all(len(day) == 24 for day in rhythm["counts"])
    assert video_pseudonym not in json.dumps(doc)  # no pseudonym where the raw id is known


def test_without_id_lists_other_accounts_are_shown_by_pseudonym(world):
    ws, data = world
    music, _, video_pseudonym = _linked(ws, data)
    with served(ws, None) as (client, auth):
        doc = client.get(
            f"/v1/explorer/platforms/music/accounts/{music}", headers=auth["read"]
        ).json()
        summary = client.get("/v1/explorer/summary", headers=auth["read"])
    partner = next(a for a in doc["accounts"] if a["platform"] == "video")
    assert partner == {
        "platform": "video",
        "account": video_pseudonym,
        "raw_id": False,
        "query": False,
    }
    assert summary.json()["raw_ids"] == {}


def test_signal_distributions_separate_true_from_false_pairs(world):
    ws, _ = world
    with served(ws, None) as (client, auth):
        doc = client.get("/v1/explorer/signals", headers=auth["read"]).json()
    assert doc["model_version"] == "v0001"
    signals = doc["signals"]
    assert "text_cos" in signals
    for name, hist in signals.items():
        assert len(hist["true"]) == len(hist["false"]) == len(hist["edges"]) - 1, name
        assert hist["n_true"] > 0 and hist["n_false"] > hist["n_true"], name
        assert sum(hist["true"]) == pytest.approx(1.0, abs=1e-3), name
        assert sum(hist["false"]) == pytest.approx(1.0, abs=1e-3), name
    # true pairs sit higher on the text similarity than the hard negatives
    h = signals["text_cos"]
    mids = (np.asarray(h["edges"][1:]) + np.asarray(h["edges"][:-1])) / 2
    assert float(mids @ np.asarray(h["true"])) > float(mids @ np.asarray(h["false"]))


def test_summary_has_the_operating_point_and_held_out_curves(world):
    ws, data = world
    with served(ws, data) as (client, auth):
        doc = client.get("/v1/explorer/summary", headers=auth["read"]).json()
    saved = json.loads((ws.models_dir / "v0001" / "link" / "link.json").read_text())
    assert doc["model_version"] == "v0001" and doc["platforms"] == ["music", "video"]
    assert doc["raw_ids"] == {p: len(_raw_ids(data, p)) for p in ("music", "video")}
    link = doc["link"]
    assert link["threshold"] == saved["threshold"]
    assert link["asserted_links"] == saved["asserted_links"]
    held = link["heldout"]
    assert held["pairs"] > held["true_pairs"] > 0
    curve = held["pr_curve"]
    assert len(curve["threshold"]) == len(curve["precision"]) == len(curve["recall"]) > 1
    assert curve["recall"] == sorted(curve["recall"]) and curve["recall"][-1] == 1.0
    assert all(0.0 <= p <= 1.0 for p in curve["precision"])
    cal = held["calibration"]
    assert sum(cal["count"]) == held["pairs"]


def test_an_account_without_links_lists_its_candidates(world):
    ws, data = world
    linked = {
        (r[f"platform_{s}"], r[f"account_{s}"])
        for table in ("links", "known_links")
        for r in ws.store.read(table).to_pylist()
        for s in "ab"
    }
    alone = next(
        r for r in _raw_ids(data, "video") if ("video", ws.account_id("video", r)) not in linked
    )
    with served(ws, data) as (client, auth):
        doc = client.get(
            f"/v1/explorer/platforms/video/accounts/{alone}", headers=auth["read"]
        ).json()
    assert doc["person"] is None and doc["links"] == []
    assert doc["candidates"], doc
    probabilities = [c["probability"] for c in doc["candidates"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(c["platform"] == "music" and c["status"] for c in doc["candidates"])


def test_errors_are_json_with_a_message(world):
    ws, _ = world
    with served(ws, None) as (client, auth):
        missing = client.get(
            "/v1/explorer/platforms/video/accounts/nobody-here",
            headers=auth["read"],
        )
        anonymous = client.get("/v1/explorer/summary")
        writer = client.get("/v1/explorer/signals", headers=auth["write"])
    assert missing.status_code == 404
    assert missing.json()["error"] == "no account 'nobody-here' on platform 'video'"
    assert anonymous.status_code == 401 and "token" in anonymous.json()["error"]
    assert writer.status_code == 403 and "read" in writer.json()["error"]


def test_the_page_is_served_whole_from_the_package(world):
    ws, _ = world
    with served(ws, None) as (client, _):
        page = client.get("/ui")
        assets = {name: client.get(f"/ui/{name}") for name in ("explorer.js", "explorer.css")}
        other = client.get("/ui/../crossrec.toml")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for name, r in assets.items():
        assert r.status_code == 200, name
    # everything the page loads is one of its own files: nothing from another host
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(refs) == ["/ui/explorer.css", "/ui/explorer.js", "data:,"]
    for text in (page.text, *(r.text for r in assets.values())):
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text)
    assert other.status_code == 404


def test_links_and_similar_routes_carry_raw_ids_from_the_id_lists(world):
    ws, data = world
    music, video, video_pseudonym = _linked(ws, data)
    base = f"/v1/platforms/music/accounts/{music}"
    with served(ws, data) as (client, auth):
        links = client.get(base + "/links", headers=auth["read"]).json()
        similar = client.get(base + "/similar?on=video&k=5", headers=auth["read"]).json()
    partner = next(a for a in links["accounts"] if a["platform"] == "video")
    assert partner == {"platform": "video", "account": video_pseudonym, "account_raw": video}
    edge = next(e for e in links["links"] if video_pseudonym in (e["account_a"], e["account_b"]))
    side = "a" if edge["account_a"] == video_pseudonym else "b"
    assert edge[f"account_{side}_raw"] == video and edge["status"] == "asserted"
    raw_video = set(_raw_ids(data, "video"))
    assert similar["similar"]
    for s in similar["similar"]:  # every video account of the world is in the id list
        assert s["account_raw"] in raw_video
        assert ws.account_id("video", s["account_raw"]) == s["account"]
