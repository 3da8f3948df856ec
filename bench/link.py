"""Linkage at scale: synthetic accounts on two platforms, through the real pipeline.

Generates a synthetic world (``crossrec.datasets.synthetic``), ingests it, trains with a fast
configuration (static text encoder, few CF iterations, a capped sequence encoder), then times
``crossrec link`` end to end (candidates, signals, matcher, assignment, graph) and prints
seconds, peak RSS, candidate recall (truth pairs among the candidates) and the ratio to a bare
faiss exact top-k search over the same sequence vectors, measured in the same run.

    .venv/bin/python bench/link.py --accounts 1000000          # per platform (target scale)
    .venv/bin/python bench/link.py --accounts 5000 --json      # quick check
    .venv/bin/python bench/link.py --workspace W --json        # a trained workspace, as is

Every step of the link job is printed with its wall seconds and the process's RSS at its end
and highest during it. ``--workspace`` links a copy of an existing trained workspace instead of
a generated world (no truth file, so no candidate recall).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def space_recall(prof, ws, world: Path, k: int, sample: int = 2000) -> dict[str, float]:
    """Share of (a sample of) truth pairs whose partner is among the ``k`` nearest accounts
    of the other platform in each profile space alone (exact cosine search): how much each
    space can give the candidate generator on this world."""
    import faiss

    pairs = []
    for line in next(world.glob("truth_links.*")).read_text().splitlines()[1:]:
        pa, aa, pb, ab = line.split(",")
        ra, rb = prof.row(pa, ws.account_id(pa, aa)), prof.row(pb, ws.account_id(pb, ab))
        if ra is not None and rb is not None:
            pairs.append((ra, rb) if pa == "video" else (rb, ra))
    rng = np.random.default_rng(0)
    chosen = np.asarray(pairs)[rng.permutation(len(pairs))[:sample]]
    targets = prof.rows_of("music")
    out: dict[str, float] = {}
    for space in ("sequence", "text", "rhythm"):  # CF spaces differ per platform: no direct search
        vectors = getattr(prof, space).astype(np.float32)
        if vectors.shape[1] == 0:
            continue
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(np.ascontiguousarray(unit[targets]))
        _, ids = index.search(np.ascontiguousarray(unit[chosen[:, 0]]), k)
        hit = (targets[np.clip(ids, 0, None)] == chosen[:, 1][:, None]) & (ids >= 0)
        out[space] = round(float(hit.any(axis=1).mean()), 4)
    return out


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class StepTimes:
    """A progress hook that records each step's wall seconds and RSS (sampled every 50 ms)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, object]] = []
        self._peak = 0.0
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self._peak = max(self._peak, _rss_mib())
            time.sleep(0.05)

    def task(self, description: str, total: float | None = None) -> _Step:
        self._peak = _rss_mib()
        return _Step(self, description)

    def log(self, message: str) -> None:
        print(message, file=sys.stderr)


class _Step:
    def __init__(self, owner: StepTimes, description: str) -> None:
        self.owner, self.description, self.started = owner, description, time.perf_counter()

    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        pass

    def done(self) -> None:
        row = {
            "step": self.description,
            "seconds": round(time.perf_counter() - self.started, 1),
            "rss_end_mib": round(_rss_mib(), 1),
            "rss_peak_mib": round(max(self.owner._peak, _rss_mib()), 1),
        }
        self.owner.steps.append(row)
        print(
            f"{row['seconds']:>8} s  rss {row['rss_end_mib']:>8} MiB  "
            f"peak {row['rss_peak_mib']:>8} MiB  {row['step']}",
            file=sys.stderr,
            flush=True,
        )


def link_existing(workspace: Path, root: Path) -> dict[str, object]:
    """Time ``run_link`` on a copy of a trained workspace (the original is left as it was)."""
    from crossrec.link.pipeline import run_link
    from crossrec.workspace import Workspace

    copy = root / "ws"
    shutil.copytree(workspace, copy)
    ws = Workspace(copy)
    hook = StepTimes()
    t = time.perf_counter()
    summary = run_link(ws, progress=hook)
    figures: dict[str, object] = {
        "workspace": str(workspace),
        "link_s": round(time.perf_counter() - t, 1),
        "peak_rss_mib": round(_peak_mib(), 1),
        "candidate_pairs": summary["candidate_pairs"],
        "known_links": summary["known_links"],
        "asserted_links": summary["asserted_links"],
        "heldout_precision": summary["heldout_precision"],
        "links_sha256": _links_digest(ws),
        "steps": hook.steps,
    }
    ws.close()
    return figures


def _links_digest(ws) -> str:
    """sha256 of the links table's rows in key order: equal digests, equal tables."""
    import hashlib

    rows = ws.store.read("links").sort_by(
        [(c, "ascending") for c in ("platform_a", "account_a", "platform_b", "account_b")]
    )
    return hashlib.sha256(repr(rows.to_pylist()).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1_000_000, help="accounts per platform")
    ap.add_argument("--events-per-account", type=int, default=20)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true", help="write bench/out/link.json")
    ap.add_argument(
        "--workspace", type=Path, default=None, help="link a copy of this trained workspace"
    )
    args = ap.parse_args(argv)
    if args.workspace is not None:
        root = args.dir or Path(tempfile.mkdtemp(prefix="crossrec-bench-link-"))
        figures = link_existing(args.workspace, root)
        _report(figures, args.json)
        if not args.keep:
            shutil.rmtree(root / "ws", ignore_errors=True)
        return 0

    from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
    from crossrec.link.pipeline import run_link
    from crossrec.train import train
    from crossrec.workspace import Workspace

    root = args.dir or Path(tempfile.mkdtemp(prefix="crossrec-bench-link-"))
    world, wsdir = root / "world", root / "ws"
    figures: dict[str, object] = {"accounts_per_platform": args.accounts}
    t = time.perf_counter()
    total = 2 * args.accounts
    generate_synthetic(
        world,
        SyntheticConfig(
            accounts=total,
            events=total * args.events_per_account,
            platforms=2,
            single_fraction=0.4,
            anchor_fraction=0.3,
            seed=args.seed,
        ),
    )
    figures["generate_s"] = round(time.perf_counter() - t, 1)
    ws = Workspace.init(wsdir)
    cfg = wsdir / "crossrec.toml"
    text = cfg.read_text().replace('encoder = "minilm"', 'encoder = "static"')
    text = text.replace("cf_iterations = 15", "cf_iterations = 5")
    text = text.replace("# max_steps = 20000", "max_steps = 300")  # ~5 min here
    cfg.write_text(text)
    ws.close()
    ws = Workspace(wsdir)
    t = time.perf_counter()
    for platform in ("video", "music"):
        folder = world / platform
        events = next(folder.glob("events.*"))
        items = next(folder.glob("items.*"))
        ws.ingest_events(platform, events, items=items)
    ws.ingest_links(next(world.glob("known_links.*")))
    figures["ingest_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    train(ws)
    figures["train_s"] = round(time.perf_counter() - t, 1)

    before = _peak_mib()
    hook = StepTimes()
    t = time.perf_counter()
    summary = run_link(ws, progress=hook)
    link_s = time.perf_counter() - t
    figures["link_s"] = round(link_s, 1)
    figures["peak_rss_mib"] = round(max(before, _peak_mib()), 1)
    figures["candidate_pairs"] = summary["candidate_pairs"]
    figures["asserted_links"] = summary["asserted_links"]
    figures["links_sha256"] = _links_digest(ws)
    figures["steps"] = hook.steps

    # candidate recall of the truth pairs, and the bare faiss reference
    import faiss

    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles

    model = ModelRegistry(ws.models_dir).path()
    prof = AccountProfiles.load(model / "accounts")
    cands = np.load(model / "link" / "candidates.npz", allow_pickle=False)
    have = set(zip(cands["a_rows"].tolist(), cands["b_rows"].tolist(), strict=True))
    truth = [
        line.split(",") for line in next(world.glob("truth_links.*")).read_text().splitlines()[1:]
    ]
    found = total_truth = 0
    for pa, aa, pb, ab in truth:
        ra = prof.row(pa, ws.account_id(pa, aa))
        rb = prof.row(pb, ws.account_id(pb, ab))
        if ra is None or rb is None:
            continue
        total_truth += 1
        found += (min(ra, rb), max(ra, rb)) in have
    figures["candidate_recall"] = round(found / max(total_truth, 1), 4)
    figures["truth_in_top_k_by_space"] = space_recall(prof, ws, world, ws.config.link.top_k)
    rows_a, rows_b = prof.rows_of("video"), prof.rows_of("music")
    index = faiss.IndexFlatIP(prof.sequence.shape[1])
    index.add(np.ascontiguousarray(prof.sequence[rows_b]))
    t = time.perf_counter()
    index.search(np.ascontiguousarray(prof.sequence[rows_a]), ws.config.link.top_k)
    figures["faiss_exact_topk_s"] = round(time.perf_counter() - t, 2)
    figures["ratio_link_to_faiss"] = round(
        float(figures["link_s"]) / max(float(figures["faiss_exact_topk_s"]), 1e-9),
        1,  # type: ignore[arg-type]
    )
    ws.close()
    _report(figures, args.json)
    if not args.keep and args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _report(figures: dict[str, object], as_json: bool) -> None:
    for k, v in figures.items():
        if k != "steps":
            print(f"{k:>24}: {v}")
    if as_json:
        out = Path(__file__).resolve().parent / "out"
        out.mkdir(exist_ok=True)
        (out / "link.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
