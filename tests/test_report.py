"""crossrec report: the page and the linkage evaluation file it reads.

The real-data workspace is a few hundred MovieLens ratings split into two platforms,
ingested, trained fast, linked and evaluated; the page must hold every section's figures and
reference nothing outside itself. A workspace without evaluations must still render, with
the commands that produce the missing sections.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from crossrec.evaluate.link_eval import KEYS, LINK_EVAL_FILE, Truth, link_details
from crossrec.report.build import account_map, parse_recommend_evaluation
from tests.conftest import MOVIELENS, write

IMG = re.compile(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)'")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fast_config(root: Path) -> None:
    cfg = root / "crossrec.toml"
    text = cfg.read_text().replace('encoder = "minilm"', 'encoder = "static"')
    text = text.replace("epochs = 20", "epochs = 2").replace(
        "cf_iterations = 15", "cf_iterations = 5"
    )
    cfg.write_text(text)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A MovieLens workspace: 80 users x 8 ratings split into two platforms, trained, linked
    and evaluated, plus a recommendation evaluation file at k=5."""
    if not (MOVIELENS / "ratings.csv").is_file():
        pytest.skip("MovieLens data folder not found")
    import polars as pl

    from crossrec.datasets.canonical import Dataset
    from crossrec.datasets.movielens import load_movielens
    from crossrec.datasets.split import SplitConfig, build_split
    from crossrec.evaluate.link_eval import evaluate_link
    from crossrec.link.pipeline import run_link
    from crossrec.train import train
    from crossrec.workspace import Workspace

    full = load_movielens(MOVIELENS)
    users = full.events["account"].unique(maintain_order=True)[:80]
    events = (
        full.events.filter(pl.col("account").is_in(users.implode()))
        .group_by("account", maintain_order=True)
        .head(8)
        .select(full.events.columns)
    )
    items = full.items.filter(pl.col("item").is_in(events["item"].unique().implode()))
    data = tmp_path_factory.mktemp("split")
    config = SplitConfig(names=("cinema", "stream"), single_fraction=0.3, anchor_fraction=0.5)
    build_split(Dataset("ml-tiny", events, items), data, config)

    root = tmp_path_factory.mktemp("ws") / "ws"
    Workspace.init(root).close()
    _fast_config(root)
    ws = Workspace(root)
    for platform in ("cinema", "stream"):
        ws.ingest_events(
            platform, data / platform / "events.csv", items=data / platform / "items.csv"
        )
    ws.ingest_links(data / "known_links.csv")
    train(ws)
    run_link(ws)
    doc = evaluate_link(ws, data / "truth_links.csv")
    recommend = {
        "platform": "stream",
        "k": 5,
        "recall@5": 0.21,
        "ndcg@5": 0.14,
        "hit@5": 0.4,
        "n_accounts": 40,
        "baselines": {
            "popularity": {"recall@5": 0.1, "ndcg@5": 0.07, "hit@5": 0.3},
            "als": {"recall@5": 0.15, "ndcg@5": 0.1, "hit@5": None},
        },
        "label": "cold start",
    }
    write(ws.reports_dir / "evaluation" / "recommend-stream-cold.json", json.dumps(recommend))
    yield ws, doc
    ws.close()


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMG.findall(page)]


def _has_reliability(ws) -> bool:
    """Whether the link summary holds out-of-fold reliability bins (a supervised link)."""
    from crossrec.models import ModelRegistry

    summary = json.loads((ModelRegistry(ws.models_dir).path() / "link" / "link.json").read_text())
    return bool((summary.get("operating_point") or {}).get("reliability"))


def test_report_holds_every_section_offline(evaluated):
    ws, doc = evaluated
    before = set(ws.reports_dir.rglob("*"))
    path = ws.report()
    assert path.parent == ws.reports_dir
    assert re.fullmatch(r"report-\d{8}T\d{6}Z\.html", path.name)
    assert set(ws.reports_dir.rglob("*")) - before == {path}  # one file, nothing beside it
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    # overview 1, linkage 3 (scores, PR, calibration), recommendation 1, map 1, model 2, and
    # the operating point's out-of-fold reliability of link probabilities 1
    images = _images(page)
    reliability = _has_reliability(ws)
    assert page.count("<img") == len(images) == 8 + reliability
    assert all(img.startswith(PNG_MAGIC) for img in images)
    assert "Operating point" in page and "accounts with a partner" in page
    assert ("alt='link probabilities, out of fold'" in page) == reliability
    for alt in ("score distributions", "PR curve", "calibration", "account map"):
        assert f"alt='{alt}'" in page
    assert "cold start" in page and "recall@5" in page and "popularity" in page
    # the metrics table holds the printed numbers, crossrec and every baseline
    assert f"{doc['mrr']:.3f}" in page
    for name in doc["baselines"]:
        assert f"<td>{name}</td>" in page
    assert "cinema ↔ stream" in page
    assert "No linkage evaluation yet" not in page and "No trained model" not in page


def test_link_evaluation_file_holds_printed_metrics_and_plot_data(evaluated):
    ws, doc = evaluated
    saved = json.loads((ws.reports_dir / LINK_EVAL_FILE).read_text())
    assert {k: saved[k] for k in (*KEYS, "baselines")} == json.loads(json.dumps(doc))
    assert set(saved) == {*KEYS, "baselines", "details"}
    d = saved["details"]
    assert d["model_version"] == "v0001"
    assert len(d["true_scores"]) == d["n_true_candidates"] <= d["n_truth"] == doc["n_truth"]
    assert len(d["false_scores"]) == min(d["n_false_candidates"], 5_000)
    assert all(0.0 <= s <= 1.0 for s in d["true_scores"] + d["false_scores"])
    pr = d["pr_curve"]
    assert np.all(np.diff(pr["threshold"]) <= 0) and np.all(np.diff(pr["recall"]) >= 0)
    assert all(0.0 <= v <= 1.0 for v in pr["precision"] + pr["recall"])
    cal = d["calibration"]
    assert sum(cal["count"]) == d["n_true_candidates"] + d["n_false_candidates"]
    # the linker ranks true pairs far above false ones on this data
    assert np.mean(d["true_scores"]) > np.mean(d["false_scores"])


def test_report_output_option_and_cli_json(ws, tmp_path):
    from typer.testing import CliRunner

    from crossrec.cli import app

    target = tmp_path / "out" / "r.html"
    result = CliRunner().invoke(
        app, ["report", "--workspace", str(ws.root), "--output", str(target), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"path": str(target.resolve())}
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # a folder as --output gets the default name inside it
    assert ws.report(tmp_path / "out").parent == (tmp_path / "out").resolve()


def test_account_map_is_seeded_and_bounded(evaluated):
    ws, _ = evaluated
    folder = ws.models_dir / "v0001" / "accounts"
    one = account_map(folder, "v0001", seed=7, sample=50)
    two = account_map(folder, "v0001", seed=7, sample=50)
    assert one.xy.shape == (50, 2) and one.n_accounts > 50
    np.testing.assert_array_equal(one.xy, two.xy)
    np.testing.assert_array_equal(one.platform, two.platform)
    assert set(one.platform.tolist()) == {"cinema", "stream"}


def test_report_without_data_or_evaluations_says_what_to_run(ws):
    page = ws.report().read_text(encoding="utf-8")
    for hint in (
        "crossrec ingest",
        "crossrec evaluate link",
        "crossrec evaluate recommend",
        "crossrec train",
    ):
        assert f"<code>{hint}" in page
    assert "<img" not in page
    assert "http://" not in page and "https://" not in page


def test_report_with_data_only_shows_overview(ws):
    events = write(
        ws.root / "e.csv",
        "account,item,event,value,timestamp\n"
        "u1,i1,view,,1700000000\nu1,i2,view,,1700000100\nu2,i1,view,,1700003600\n"
        "u3,i2,view,,not-a-time\n",
    )
    ws.ingest_events("shop", events)
    page = ws.report().read_text(encoding="utf-8")
    assert page.count("<img") == 1  # events per account; no model, no evaluations
    assert "<td>shop</td><td>2</td><td>2</td><td>3</td>" in page
    assert "2023-11-14 22:13 UTC" in page and "2023-11-14 23:13 UTC" in page
    assert re.search(r"<td>shop</td>(<td>[^<]*</td>){8}<td>1</td>", page)  # quarantined
    assert "<code>crossrec train</code>" in page


def test_broken_evaluation_files_become_notes(ws):
    folder = ws.reports_dir / "evaluation"
    write(folder / "recommend-shop.json", "{not json")
    write(folder / "recommend-video.json", json.dumps({"platform": "video", "k": 10}))
    write(folder / "link.json", "[]")
    page = ws.report().read_text(encoding="utf-8")
    assert "recommend-shop.json cannot be read" in page
    assert "recommend-video.json: holds no metric@k values" in page
    assert "link.json is not a linkage evaluation" in page


def test_unusable_plot_data_costs_only_its_section(ws):
    doc = {k: 0.5 for k in KEYS} | {"baselines": {}, "details": {"pr_curve": {"recall": "x"}}}
    write(ws.reports_dir / LINK_EVAL_FILE, json.dumps(doc))
    page = ws.report().read_text(encoding="utf-8")
    assert "Linkage evaluation</h2><p class='note'>This section cannot be drawn" in page
    assert "<code>crossrec evaluate link</code> again" in page
    assert "<h2>5. Model</h2>" in page


def test_recommend_evaluation_any_k():
    ev = parse_recommend_evaluation(
        {"platform": "music", "recall@20": 0.5, "ndcg@20": 0.25, "k": 20, "extra": "x"},
        "recommend-music.json",
    )
    assert ev.metrics == ["recall@20", "ndcg@20"]
    assert ev.methods == {"crossrec": {"recall@20": 0.5, "ndcg@20": 0.25}}
    assert ev.k == 20 and ev.label is None


def test_link_details_known_answer():
    # rows 0, 1 on platform 0; rows 2, 3 on platform 1; truth pairs (0, 2) and (1, 3)
    a = np.array([0, 0, 1, 1])
    b = np.array([2, 3, 2, 3])
    prob = np.array([0.9, 0.4, 0.1, 0.8])
    d = link_details(
        a, b, prob, Truth(np.array([2, 1]), np.array([0, 3])), np.array([0, 0, 1, 1]), seed=0
    )
    assert d["true_scores"] == [0.8, 0.9] and d["false_scores"] == [0.1, 0.4]
    assert (d["n_true_candidates"], d["n_false_candidates"], d["n_truth"]) == (2, 2, 2)
    # one-to-one keeps (0, 2) and (1, 3): both true
    assert d["pr_curve"] == {"threshold": [0.9, 0.8], "precision": [1.0, 1.0], "recall": [0.5, 1.0]}
    cal = d["calibration"]
    assert cal["count"] == [0, 1, 0, 0, 1, 0, 0, 0, 1, 1]
    assert cal["observed"] == [None, 0.0, None, None, 0.0, None, None, None, 1.0, 1.0]
    assert cal["mean_predicted"][8] == 0.8
