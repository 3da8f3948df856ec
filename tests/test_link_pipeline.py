"""crossrec link end to end on a small synthetic world: links, evidence, graph, evaluation."""

from __future__ import annotations

import json

import pytest

from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
from crossrec.errors import NotFoundError
from crossrec.evaluate.link_eval import KEYS, evaluate_link
from crossrec.link.pipeline import run_link
from crossrec.link.query import person_links, similar_accounts
from crossrec.train import train


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    from crossrec.workspace import Workspace

    world = tmp_path_factory.mktemp("world")
    generate_synthetic(
        world, SyntheticConfig(accounts=300, events=8000, platforms=2, format="csv", seed=3)
    )
    root = tmp_path_factory.mktemp("ws") / "ws"
    Workspace.init(root).close()
    cfg = root / "crossrec.toml"
    text = cfg.read_text().replace('encoder = "minilm"', 'encoder = "static"')
    text = text.replace("epochs = 20", "epochs = 2").replace(
        "cf_iterations = 15", "cf_iterations = 5"
    )
    cfg.write_text(text)
    ws = Workspace(root)
    for platform in ("video", "music"):
        ws.ingest_events(
            platform, world / platform / "events.csv", items=world / platform / "items.csv"
        )
    ws.ingest_links(world / "known_links.csv")
    train(ws)
    summary = run_link(ws)
    yield ws, world, summary
    ws.close()


def test_link_writes_links_with_status_evidence_and_a_digest(linked):
    from crossrec.link.pipeline import links_sha256

    ws, _, summary = linked
    assert summary["candidate_pairs"] > 0
    assert summary["matcher"]["mode"] == "supervised"
    links = ws.store.read("links").to_pylist()
    statuses = [row["status"] for row in links]
    assert statuses.count("asserted") == summary["asserted_links"]
    assert statuses.count("probable") == summary["probable_links"]
    assert len(links) == summary["asserted_links"] + summary["probable_links"] > 0
    for row in links:
        assert 0.0 <= row["probability"] <= 1.0
        assert row["platform_a"] != row["platform_b"]
        evidence = json.loads(row["evidence"])
        assert evidence and all("signal" in e for e in evidence)
        assert row["model_version"] == summary["model_version"]
        if row["status"] == "probable":  # more likely than not, below the threshold
            assert row["probability"] >= 0.5
            assert summary["threshold"] is None or row["probability"] < summary["threshold"]
    assert summary["links_sha256"] == links_sha256(ws.store.read("links"))
    # at most one account per platform per person; probable links join no one
    persons = ws.store.read("persons").to_pylist()
    seen = {(p["person"], p["platform"]) for p in persons}
    assert len(seen) == len(persons)
    probable = {(r["platform_a"], r["account_a"]) for r in links if r["status"] == "probable"}
    in_persons = {(p["platform"], p["account"]) for p in persons}
    known = ws.store.read("known_links").to_pylist()
    known_ends = {(r["platform_a"], r["account_a"]) for r in known}
    assert not (probable - known_ends) & in_persons


def test_link_summary_explains_the_operating_point_and_the_scorer(linked):
    _, _, summary = linked
    op = summary["operating_point"]
    assert 0.0 <= op["partner_share"] <= 1.0
    assert op["units"] == 2 * summary["known_links"]  # each known link seen from both ends
    assert op["brier"] is not None and 0.0 <= op["brier"] <= 1.0
    if summary["threshold"] is None:  # too few known links: the summary says how many more
        assert op["known_links_needed"] is None or op["known_links_needed"] > 0
        assert "below target" in summary["reason"]
    selection = summary["selection"]
    assert selection["chosen"] in selection["mrr"]
    assert selection["mrr"][selection["chosen"]] == max(selection["mrr"].values())
    assert {"matcher", "z_sum"} <= set(selection["mrr"])
    assert summary["candidate_recall"]["all"]["links"] == summary["known_links"]


def test_link_is_deterministic(linked):
    ws, _, _ = linked
    before = ws.store.read("links", order_by=["platform_a", "account_a"]).to_pylist()
    run_link(ws)
    after = ws.store.read("links", order_by=["platform_a", "account_a"]).to_pylist()
    assert before == after


def test_evaluate_link_reports_exact_keys_and_beats_random(linked):
    ws, world, _ = linked
    doc = evaluate_link(ws, world / "truth_links.csv")
    assert set(doc) == {*KEYS, "baselines"}
    assert set(doc["baselines"]) == {"random", "text_mean", "cf_mapping"}
    for b in doc["baselines"].values():
        assert set(b) == set(KEYS)
    assert doc["n_truth"] > 0
    # never below its own baselines
    assert doc["mrr"] >= max(b["mrr"] for b in doc["baselines"].values())


def test_links_and_similar_queries(linked):
    ws, world, _ = linked
    import csv

    with open(world / "known_links.csv") as fh:
        row = next(csv.DictReader(fh))
    doc = person_links(ws, row["platform_a"], row["account_a"])
    platforms = {a["platform"] for a in doc["accounts"]}
    assert platforms == {row["platform_a"], row["platform_b"]}
    assert any(e["source"].startswith("known") for e in doc["links"])
    sim = similar_accounts(ws, row["platform_a"], row["account_a"], on=row["platform_b"], k=5)
    assert len(sim["similar"]) == 5
    partners = {a["account"] for a in doc["accounts"]}
    assert not partners & {s["account"] for s in sim["similar"]}
    with pytest.raises(NotFoundError):
        person_links(ws, "video", "no-such-account")
