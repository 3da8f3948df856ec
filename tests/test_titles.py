"""Recommended items carry the catalogue's title and category: ``crossrec recommend`` (table
and JSON) and the HTTP recommendations endpoint; null where the catalogue has none."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from crossrec.recommend import Recommender
from crossrec.workspace import Workspace
from tests.test_serve_common import World, copy_world, serve, world_of

RECS = "/v1/platforms/{p}/accounts/{a}/recommendations"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world_of(tmp_path_factory)


def catalogue(world: World, platform: str) -> dict[str, tuple[str | None, str | None]]:
    """item -> (title, category) as the ingested items file holds them."""
    with (world.root.parent / "data" / platform / "items.csv").open() as fh:
        return {r["item"]: (r["title"] or None, r["category"] or None) for r in csv.DictReader(fh)}


def test_recommend_json_and_table_show_titles_and_categories(world, tmp_path):
    root = copy_world(world, tmp_path / "ws")
    account = world.accounts["music"][2]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossrec",
            "recommend",
            "-w",
            str(root),
            "--platform",
            "music",
            "--account",
            account,
            "-k",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)["items"]
    assert len(items) == 5
    known = catalogue(world, "music")
    for item in items:
        assert {"item", "score", "reason", "title", "category"} <= set(item)
        assert (item["title"], item["category"]) == known[item["item"]]
        assert item["title"]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossrec",
            "recommend",
            "-w",
            str(root),
            "--platform",
            "music",
            "--account",
            account,
            "-k",
            "5",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "title" in r.stdout and "category" in r.stdout
    assert items[0]["title"].split()[0] in r.stdout


def test_items_without_a_title_or_category_show_null(world, tmp_path):
    root = copy_world(world, tmp_path / "ws")
    account = world.accounts["video"][1]
    with Workspace(root) as ws:
        first = ws.recommend("video", account, 3)["items"]
        bare = first[0]["item"]
        ws.store.con.execute(
            "UPDATE items SET title = NULL, category = NULL WHERE platform = 'video' AND item = ?",
            [bare],
        )
        rec = Recommender.load(ws)
        items = ws.recommend("video", account, 3)["items"]
        assert rec.describe("video", "no-such-item") == {"title": None, "category": None}
    assert [i["item"] for i in items] == [i["item"] for i in first]
    assert (items[0]["title"], items[0]["category"]) == (None, None)
    assert all(i["title"] for i in items[1:])


def test_http_recommendations_carry_title_and_category(world, tmp_path):
    known = catalogue(world, "video")
    with serve(world, tmp_path / "ws") as s:
        for account in (world.accounts["video"][3], "never-seen-account"):
            r = s.client.get(
                RECS.format(p="video", a=account), params={"k": 4}, headers=s.auth("read")
            )
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            assert len(items) == 4
            for item in items:
                assert set(item) == {"item", "score", "reason", "title", "category"}
                assert (item["title"], item["category"]) == known[item["item"]]


def test_openapi_documents_title_and_category():
    from crossrec.cli.serve import openapi_document

    schema = openapi_document()["components"]["schemas"]["RecommendedItem"]
    assert {"title", "category"} <= set(schema["properties"])
    assert set(schema["required"]) == {"item", "score", "reason"}
