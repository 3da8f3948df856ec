"""The end-to-end demo: from nothing to a populated, trained, linked workspace.

It builds a two-platform split of MovieLens (or, when the data folder is missing, a small
synthetic world), ingests both platforms with their items and the known links, trains the
representations, links the accounts, evaluates the links against the held-back truth beside
the baselines, and returns a summary with the figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from crossrec.progress import NullProgress, ProgressHook
from crossrec.workspace import Workspace

PLATFORMS = ("cinema", "stream")


def target_platform(data: Path) -> str:
    """The platform whose interactions are partly held out to evaluate recommendation: the
    second platform of the split (its events are what the other platform's behaviour
    predicts)."""
    import json

    for name in ("split.json", "synthetic.json"):
        if (data / name).is_file():
            summary = json.loads((data / name).read_text("utf-8"))
            return str(summary["platforms"][1]["name"])
    return sorted(p.name for p in data.iterdir() if p.is_dir())[1]


def build_demo_data(out: Path, *, seed: int = 42, progress: ProgressHook | None = None) -> str:
    """Write the demo's platform files into ``out``; returns the source's name.

    The second platform's interactions are split by :func:`crossrec.datasets.holdout.
    build_holdout` into what is ingested and two recommendation tests: ``test_cold.csv``
    (accounts new to it, known through a linked account) and ``test_warm.csv``.
    """
    import shutil

    from crossrec.datasets.holdout import build_holdout

    staging = out.parent / f".{out.name}-split"
    if staging.exists():
        shutil.rmtree(staging)
    source = _build_platforms(staging, seed=seed, progress=progress)
    target = target_platform(staging)
    build_holdout(staging, out, target, cold_fraction=1 / 3, warm_fraction=0.2, seed=seed)
    shutil.rmtree(staging)
    return source


def _build_platforms(out: Path, *, seed: int, progress: ProgressHook | None) -> str:
    from crossrec.datasets.movielens import default_path, load_movielens
    from crossrec.datasets.split import SplitConfig, build_split

    if (default_path() / "ratings.csv").is_file():
        config = SplitConfig(
            platforms=2,
            names=PLATFORMS,
            mode="random",
            single_fraction=0.4,
            anchor_fraction=0.45,  # a third of them become the cold-start test
            perturb_titles=True,
            rescale_values=True,
            clock=("keep", "drop"),
            seed=seed,
        )
        build_split(load_movielens(), out, config, progress=progress)
        return "MovieLens ml-latest-small, split into two platforms"
    from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic

    generate_synthetic(
        out,
        SyntheticConfig(accounts=2_000, events=60_000, platforms=2, format="csv", seed=seed),
        progress=progress,
    )
    return "synthetic (MovieLens folder not found)"


def _find(folder: Path, stem: str) -> Path | None:
    for ext in ("csv", "parquet", "jsonl"):
        path = folder / f"{stem}.{ext}"
        if path.is_file():
            return path
    return None


def run_demo(
    workspace: Path, *, seed: int = 42, progress: ProgressHook | None = None
) -> dict[str, Any]:
    """Run the demo into ``workspace`` (created if needed) and return its summary."""
    hook = progress or NullProgress()
    started = time.perf_counter()
    ws = Workspace.init(workspace)  # default settings: what a new workspace gets
    try:
        data = ws.root / "demo-data"
        if not (data / "known_links.csv").is_file():
            source = build_demo_data(data, seed=seed, progress=hook)
        else:
            source = "existing demo-data folder"
        ingests = []
        for folder in sorted(p for p in data.iterdir() if p.is_dir()):
            events = _find(folder, "events")
            if events is None:
                continue
            items = _find(folder, "items")
            for s in ws.ingest_events(folder.name, events, items=items, progress=hook):
                ingests.append(s.as_dict())
        links = _find(data, "known_links")
        if links is not None:
            ingests.append(ws.ingest_links(links, progress=hook).as_dict())
        from crossrec.train import train

        model = train(ws, progress=hook)
        summary: dict[str, Any] = {
            "workspace": str(ws.root),
            "source": source,
            "ingest": ingests,
            "stats": ws.stats(),
            "model": {
                "version": model["version"],
                "seconds": model["seconds"],
                "text_items": model["metrics"].get("text", {}).get("items_with_text", 0),
                "sequence_epochs": len(model["metrics"]["sequence"].get("epochs", [])),
            },
        }
        from crossrec.evaluate.link_eval import evaluate_link
        from crossrec.link.pipeline import run_link

        link = run_link(ws, progress=hook)
        summary["link"] = {
            k: link[k] for k in ("asserted_links", "threshold", "heldout_precision", "reason")
        }
        truth = data / "truth_links.csv"
        if truth.is_file():
            summary["link_evaluation"] = evaluate_link(ws, truth)
        summary["recommend_evaluation"] = _evaluate_recommend(ws, data)
        summary["report"] = str(ws.report())
        summary["seconds"] = round(time.perf_counter() - started, 1)
        return summary
    finally:
        ws.close()


def _evaluate_recommend(ws: Workspace, data: Path) -> dict[str, Any]:
    """Cold-start and warm recommendation figures on the held-out files that exist."""
    from crossrec.evaluate.rec_eval import evaluate_recommend
    from crossrec.recommend.service import Recommender

    rec = Recommender.load(ws)
    out: dict[str, Any] = {}
    target = target_platform(data)
    for name, label in (("test_cold", "cold start"), ("test_warm", "warm")):
        path = data / target / f"{name}.csv"
        if path.is_file():
            out[label] = evaluate_recommend(ws, target, path, k=10, label=label, rec=rec)
    return out
