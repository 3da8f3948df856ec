"""The ``links`` and ``similar`` routes: answered from filtered store reads and the loaded
model, with exactly the JSON ``crossrec links`` / ``crossrec similar`` print."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from crossrec.store.base import Store
from tests.test_serve_common import copy_world, serve, world_of


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return world_of(tmp_path_factory)


def _graph(store, pairs: list[tuple[str, str, str, str]]) -> None:
    """Persons of two accounts each from ``pairs`` (pseudonyms), linked both ways."""
    links, persons = [], []
    for n, (pa_, a, pb, b) in enumerate(pairs):
        for (p1, x1), (p2, x2) in (((pa_, a), (pb, b)), ((pb, b), (pa_, a))):
            links.append(
                {
                    "platform_a": p1,
                    "account_a": x1,
                    "platform_b": p2,
                    "account_b": x2,
                    "probability": 0.9 - n / 100,
                    "rank": 1,
                    "evidence": json.dumps([{"signal": "sequence", "value": 0.8}]),
                    "source": "matcher",
                    "model_version": "v0001",
                }
            )
        persons += [
            {"platform": pa_, "account": a, "person": n, "model_version": "v0001"},
            {"platform": pb, "account": b, "person": n, "model_version": "v0001"},
        ]
    store.replace_links(pa.Table.from_pylist(links), pa.Table.from_pylist(persons))


@pytest.fixture(scope="module")
def linked(world, tmp_path_factory):
    """A copy of the world with asserted links and persons between unlinked accounts."""
    from crossrec.workspace import Workspace

    root = copy_world(world, tmp_path_factory.mktemp("linked") / "ws")
    with Workspace(root) as ws:
        video = [ws.account_id("video", r) for r in world.accounts["video"][10:14]]
        music = [ws.account_id("music", r) for r in world.accounts["music"][10:14]]
        _graph(ws.store, [("video", v, "music", m) for v, m in zip(video, music, strict=True)])
    return root


def test_person_rows_filtered_equal_whole_table_reads(world, linked):
    from crossrec.workspace import Workspace

    with Workspace(linked) as ws:
        store = ws.store
        keys = [("video", ws.account_id("video", r)) for r in world.accounts["video"][8:14]]
        keys += [("music", ws.account_id("music", r)) for r in world.accounts["music"][10:12]]
        keys += [("video", "no-such-account")]
        for platform, account in keys:
            fast = store.person_rows(platform, account)
            slow = Store.person_rows(store, platform, account)  # the generic default
            for f, s in zip(fast, slow, strict=True):
                assert f.to_pylist() == s.to_pylist(), (platform, account)
        persons, links, _ = store.person_rows(*keys[2])  # a linked account
        assert persons.num_rows == 2 and links.num_rows == 2


def test_served_links_and_similar_are_what_the_commands_print(world, linked, tmp_path):
    from crossrec.link.query import person_links, similar_accounts
    from crossrec.workspace import Workspace

    raw = world.accounts["video"][8:14]
    with Workspace(linked) as ws:
        expected_links = {r: person_links(ws, "video", r) for r in raw}
        expected_similar = {r: similar_accounts(ws, "video", r, "music", 5) for r in raw}
    assert any(doc["person"] is not None for doc in expected_links.values())
    with serve_copy(world, linked, tmp_path) as s:
        for r in raw:
            base = f"/v1/platforms/video/accounts/{r}"
            got = s.client.get(base + "/links", headers=s.auth("read"))
            # the API leaves out the candidates the command lists for an unlinked account
            want = {k: v for k, v in expected_links[r].items() if k != "candidates"}
            assert got.status_code == 200 and got.json() == want
            got = s.client.get(base + "/similar?on=music&k=5", headers=s.auth("read"))
            assert got.status_code == 200 and got.json() == expected_similar[r]
            # the person's own accounts are never "similar people"
            own = {(a["platform"], a["account"]) for a in expected_links[r]["accounts"]}
            assert not own & {(x["platform"], x["account"]) for x in got.json()["similar"]}
        missing = s.client.get("/v1/platforms/video/accounts/x/similar?on=shop", headers=s.auth())
        assert missing.status_code == 404
        unknown_on = s.client.get(
            f"/v1/platforms/video/accounts/{raw[0]}/similar?on=shop", headers=s.auth()
        )
        assert unknown_on.status_code == 404 and "no platform 'shop'" in unknown_on.json()["error"]


def serve_copy(world, linked, tmp_path):
    """Serve the linked copy (``serve`` copies the world's root: point it at ours)."""
    from dataclasses import replace

    return serve(replace(world, root=linked), tmp_path / "ws")


def test_links_re_scored_online_show_at_once_on_both_sides(world, tmp_path):
    from crossrec.link.query import person_links
    from crossrec.workspace import Workspace

    root = copy_world(world, tmp_path / "ws")
    raw_v, raw_m = world.accounts["video"][20], world.accounts["music"][20]
    with Workspace(root) as ws:
        v, m = ws.account_id("video", raw_v), ws.account_id("music", raw_m)
        row = {
            "platform_a": "music",
            "account_a": m,
            "platform_b": "video",
            "account_b": v,
            "probability": 0.97,
            "rank": 1,
            "evidence": json.dumps([{"signal": "sequence", "value": 0.9}]),
            "source": "matcher",
            "model_version": "v0001",
        }
        # as the online linker writes it: no `crossrec link` run, no persons row
        ws.store.update_links([("video", v, None)], pa.Table.from_pylist([row]))
        for platform, raw, other in (
            ("video", raw_v, ("music", m)),
            ("music", raw_m, ("video", v)),
        ):
            doc = person_links(ws, platform, raw)
            accounts = {(a["platform"], a["account"]) for a in doc["accounts"]}
            assert other in accounts and (platform, raw) in accounts
            assert len(doc["links"]) == 1 and doc["links"][0]["probability"] == 0.97
        # the link goes (re-scored away): each account is alone again
        ws.store.update_links([("video", v, None)], ws.store.read("links").slice(0, 0))
        doc = person_links(ws, "music", raw_m)
        assert doc["links"] == []
        assert doc["accounts"] == [{"platform": "music", "account": raw_m, "account_raw": raw_m}]


def test_online_link_changes_merge_and_split_persons(world, tmp_path):
    from crossrec.link.online import person_of, refresh_persons
    from crossrec.workspace import Workspace

    root = copy_world(world, tmp_path / "ws")
    with Workspace(root) as ws:
        video = [ws.account_id("video", r) for r in world.accounts["video"][10:14]]
        music = [ws.account_id("music", r) for r in world.accounts["music"][10:14]]
        _graph(ws.store, [("video", v, "music", m) for v, m in zip(video, music, strict=True)])
        ws.store.con.execute("DELETE FROM known_links")  # asserted links only, in this test
        v10, v11 = ("video", video[0]), ("video", video[1])
        m10, m11 = ("music", music[0]), ("music", music[1])
        # v10 is re-scored onto m11, which leaves its link to v11 (one account per platform)
        before = person_of(ws.store, *v10) | person_of(ws.store, *m11)
        assert before == {v10, m10, v11, m11}
        row = ws.store.read("links").slice(0, 1).to_pylist()[0]
        row.update(platform_a="music", account_a=m11[1], platform_b="video", account_b=v10[1])
        ws.store.update_links(
            [(*v10, None), (*m11, "video")],
            pa.Table.from_pylist([row], ws.store.read("links").schema),
        )
        refresh_persons(ws.store, before, "v0001")
        persons = {
            (r["platform"], r["account"]): r["person"] for r in ws.store.read("persons").to_pylist()
        }
        assert persons[v10] == persons[m11]  # merged: one person
        assert m10 not in persons and v11 not in persons  # left alone: no person
        assert persons[("video", video[2])] == persons[("music", music[2])] == 2  # untouched
        assert persons[v10] in {0, 1} and persons[v10] != persons[("video", video[3])]
