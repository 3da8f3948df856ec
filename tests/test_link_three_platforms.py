"""crossrec link end to end on three platforms: every platform pair linked, never below the
baselines, and no person holding two accounts of one platform."""

from __future__ import annotations

import pytest

from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
from crossrec.evaluate.link_eval import evaluate_link
from crossrec.link.pipeline import links_sha256, run_link
from crossrec.train import train
from tests.worlds import WORLD_KEY

PLATFORMS = ("video", "music", "books")


@pytest.fixture(scope="module")
def linked3(tmp_path_factory):
    from crossrec.config import PrivacyConfig
    from crossrec.workspace import Workspace

    world = tmp_path_factory.mktemp("world3")
    generate_synthetic(
        world,
        SyntheticConfig(
            accounts=300, events=9000, platforms=3, anchor_fraction=0.5, format="csv", seed=11
        ),
    )
    root = tmp_path_factory.mktemp("ws3") / "ws"
    root.mkdir()
    key = root / PrivacyConfig().key_file
    key.write_text(WORLD_KEY + "\n")
    key.chmod(0o600)
    Workspace.init(root).close()
    cfg = root / "crossrec.toml"
    text = cfg.read_text().replace('encoder = "minilm"', 'encoder = "static"')
    cfg.write_text(text.replace("epochs = 20", "epochs = 2"))
    ws = Workspace(root)
    for platform in PLATFORMS:
        ws.ingest_events(
            platform, world / platform / "events.csv", items=world / platform / "items.csv"
        )
    ws.ingest_links(world / "known_links.csv")
    train(ws)
    summary = run_link(ws, precision=0.8)
    yield ws, world, summary
    ws.close()


def test_three_platforms_link_end_to_end(linked3):
    ws, _, summary = linked3
    assert summary["matcher"]["mode"] == "supervised"
    links = ws.store.read("links").to_pylist()
    pairs = {tuple(sorted((r["platform_a"], r["platform_b"]))) for r in links}
    assert len(pairs) >= 2  # links between more than one pair of platforms
    # no person holds two accounts of one platform
    persons = ws.store.read("persons").to_pylist()
    assert len({(p["person"], p["platform"]) for p in persons}) == len(persons)
    assert summary["platform_conflicts"] == []
    assert summary["links_sha256"] == links_sha256(ws.store.read("links"))


def test_three_platforms_rank_above_every_baseline(linked3):
    ws, world, _ = linked3
    doc = evaluate_link(ws, world / "truth_links.csv")
    best = max(b["mrr"] for b in doc["baselines"].values())
    assert doc["mrr"] >= best
    if doc["n_predicted"]:
        assert doc["precision"] >= 0.8
