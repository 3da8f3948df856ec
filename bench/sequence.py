"""Sequence encoder benchmark: seconds per epoch, peak memory, online latency, next-item hits.

Datasets: ``douban`` (Douban Book + Music ratings, 2 platforms, ~165k events, file order, no
text) and ``synthetic`` (seeded power-law items on three platforms with timestamps, ``--events``
rows). Training runs at most ``--epochs`` epochs (early stopping may end it sooner); the time
to a full run is projected from the measured seconds per epoch.

    .venv/bin/python bench/sequence.py --dataset douban --epochs 5
    .venv/bin/python bench/sequence.py --dataset synthetic --events 2000000 --epochs 2 --json

``--json`` writes the figures to ``bench/out/sequence.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

DOUBAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "douban-gadtcdr-book-music"
OUT_JSON = Path(__file__).resolve().parent / "out" / "sequence.json"
MB = 1024 * 1024


def douban_events() -> pa.Table:
    """Douban Book and Music ratings as platforms ``book`` and ``music`` (file order)."""
    parts = []
    for platform in ("book", "music"):
        t = pcsv.read_csv(
            DOUBAN / f"douban_{platform}" / "ratings.dat",
            read_options=pcsv.ReadOptions(column_names=["account", "item", "value"]),
            parse_options=pcsv.ParseOptions(delimiter="\t"),
            convert_options=pcsv.ConvertOptions(
                column_types={"account": pa.string(), "item": pa.string(), "value": pa.float64()}
            ),
        )
        parts.append(t.append_column("platform", pa.array([platform] * t.num_rows)))
    events = pa.concat_tables(parts)
    return events.append_column("seq", pa.array(np.arange(events.num_rows), pa.int64()))


def synthetic_events(n_events: int, *, platforms: int = 3, seed: int = 0) -> pa.Table:
    """``n_events`` seeded events: ~40 per account (geometric lengths), Zipf item popularity
    within 50 taste clusters per platform (an account draws 70% of its items from its cluster),
    timestamps increasing per account."""
    rng = np.random.default_rng(seed)
    n_items, clusters = 20_000, 50
    lengths = rng.geometric(1 / 40, size=n_events // 20 + 10)
    lengths = lengths[np.cumsum(lengths) <= n_events]
    lengths = np.append(lengths, n_events - lengths.sum())
    lengths = lengths[lengths > 0]
    n_acc = len(lengths)
    acc = np.repeat(np.arange(n_acc), lengths)
    acc_platform = np.arange(n_acc) % platforms
    acc_cluster = rng.integers(clusters, size=n_acc)
    # Item rank within a cluster ~ Zipf(1.1); items of a cluster are interleaved over the ids.
    rank = np.minimum(rng.zipf(1.1, size=n_events) - 1, n_items // clusters - 1)
    own = rng.random(n_events) < 0.7
    cluster = np.where(own, acc_cluster[acc], rng.integers(clusters, size=n_events))
    local = rank * clusters + cluster
    plat = acc_platform[acc]
    gaps = rng.exponential(3600.0, size=n_events)
    start = rng.uniform(0, 365 * 86400.0, size=n_acc)
    ts = (
        start[acc]
        + np.cumsum(gaps)
        - np.repeat(np.cumsum(gaps)[np.cumsum(lengths) - lengths], lengths)
    )
    names = [f"p{p}" for p in range(platforms)]
    return pa.table(
        {
            "platform": pa.array(names).take(pa.array(plat)),
            "account": pa.array([f"a{i:08d}" for i in range(n_acc)]).take(pa.array(acc)),
            "item": pa.array([f"i{i:06d}" for i in range(n_items)]).take(pa.array(local)),
            "event_type": pa.array(["view"]).take(pa.array(np.zeros(n_events, np.int64))),
            "ts": pa.array((1.6e15 + ts * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
            "seq": pa.array(np.arange(n_events), pa.int64()),
        }
    )


class _PeakRSS:
    """Samples this process's resident memory every 50 ms; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _leave_last_out(events: pa.Table, accounts: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """Remove the newest event (highest ``seq``; both datasets log in time order) of
    ``accounts`` random accounts with 3+ events: ``(train events, removed events)``."""
    last = events.group_by(["platform", "account"]).aggregate([("seq", "max"), ("seq", "count")])
    last = last.filter(pc.greater_equal(last["seq_count"], 3)).sort_by("seq_max")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(last.num_rows, min(accounts, last.num_rows), replace=False))
    held = pc.is_in(events["seq"], value_set=last["seq_max"].take(pa.array(pick)))
    return events.filter(pc.invert(held)), events.filter(held)


def _next_item_hits(enc: Any, train: pa.Table, removed: pa.Table, k: int = 10) -> dict[str, float]:
    """Hit@k of the removed last items from the accounts' vectors, and of the platform's most
    popular items (a sanity figure, not an evaluation)."""
    keys = enc.encode_all()
    row = {(p, a): i for i, (p, a) in enumerate(zip(keys.platforms, keys.accounts, strict=True))}
    counts = train.group_by(["platform", "item"]).aggregate([("item", "count")]).to_pylist()
    popular: dict[str, set[str]] = {}
    for platform in set(keys.platforms.tolist()):
        mine = sorted((-c["item_count"], c["item"]) for c in counts if c["platform"] == platform)
        popular[platform] = {it for _, it in mine[:k]}
    model = pop = 0
    tables = {p: enc.item_vectors(p) for p in popular}
    for r in removed.select(["platform", "account", "item"]).to_pylist():
        items = tables[r["platform"]]
        v = keys.vectors[row[(r["platform"], r["account"])]]
        model += r["item"] in set(items.items[np.argsort(-(items.vectors @ v))[:k]].tolist())
        pop += r["item"] in popular[r["platform"]]
    n = max(removed.num_rows, 1)
    return {f"hit_at_{k}": model / n, f"popularity_hit_at_{k}": pop / n}


def run(
    dataset: str = "douban",
    *,
    n_events: int = 2_000_000,
    epochs: int | None = None,
    threads: int = 2,
    seed: int = 42,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train once and return the figures (seconds per epoch, peak RSS, latency, hits).

    ``overrides`` replaces fields of the default ``SequenceConfig`` (e.g. learning_rate)."""
    import torch

    from crossrec.config import SequenceConfig
    from crossrec.represent.sequence import SequenceEncoder

    t = time.perf_counter()
    events = douban_events() if dataset == "douban" else synthetic_events(n_events, seed=seed)
    events, removed = _leave_last_out(events, 500, seed)
    load_s = time.perf_counter() - t
    base = SequenceConfig()
    update = {"epochs": epochs or base.epochs, "max_seconds": 3600.0, **(overrides or {})}
    config = SequenceConfig.model_validate({**base.model_dump(), **update})
    rss_before = psutil.Process().memory_info().rss
    with _PeakRSS() as peak:
        t, cpu = time.perf_counter(), time.process_time()
        enc = SequenceEncoder.fit(events, config, seed=seed, threads=threads)
        fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - cpu
    hist = enc.history
    per_epoch = [e["seconds"] for e in hist["epochs"]]
    spe = float(np.mean(per_epoch))
    torch.set_num_threads(1)
    some = enc.encode_all()
    lat = []
    for i in range(min(200, len(some.accounts))):
        platform = str(some.platforms[i])
        items = enc.item_vectors(platform).items[:50].tolist()
        t = time.perf_counter()
        enc.encode_account(platform, items)
        lat.append(time.perf_counter() - t)
    return {
        "dataset": dataset,
        "events": hist["events"],
        "accounts": hist["accounts"],
        "items": hist["items"],
        "train_windows": hist["train_windows"],
        "threads": threads,
        "config": config.model_dump(),
        "load_seconds": round(load_s, 2),
        "epochs_run": len(per_epoch),
        "stopped": hist["stopped"],
        "best_epoch": hist["best_epoch"],
        "seconds_per_epoch": round(spe, 2),
        "epoch_seconds": per_epoch,
        "fit_seconds": round(fit_s, 2),
        "setup_seconds": round(fit_s - sum(per_epoch), 2),
        # On a shared machine wall time overstates the work; CPU seconds (all threads) of the
        # fit, and per epoch in the same ratio, are what an idle machine would spend.
        "fit_cpu_seconds": round(fit_cpu, 2),
        "cpu_seconds_per_epoch": round(spe * fit_cpu / fit_s, 2),
        "load_average": os.getloadavg()[0],
        "projected_seconds_default_epochs": round(fit_s - sum(per_epoch) + spe * base.epochs, 1),
        "valid_loss": [e["valid_loss"] for e in hist["epochs"]],
        "rss_before_mb": round(rss_before / MB, 1),
        "peak_rss_fit_mb": round(peak.peak / MB, 1),
        "max_rss_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "encode_account_ms_median": round(1000 * float(np.median(lat)), 2),
        **_next_item_hits(enc, events, removed),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("douban", "synthetic", "both"), default="douban")
    ap.add_argument("--events", type=int, default=2_000_000, help="synthetic events")
    ap.add_argument("--epochs", type=int, default=None, help="epoch cap (default: config)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a [train.sequence] setting, e.g. --set learning_rate=0.005",
    )
    ap.add_argument("--json", action="store_true", help=f"write {OUT_JSON}")
    args = ap.parse_args(argv)
    names = ("douban", "synthetic") if args.dataset == "both" else (args.dataset,)
    results = []
    for name in names:
        r = run(
            name,
            n_events=args.events,
            epochs=args.epochs,
            threads=args.threads,
            seed=args.seed,
            overrides=dict(kv.split("=", 1) for kv in args.set),
        )
        results.append(r)
        print(
            f"{name}: {r['events']:,} events, {r['accounts']:,} accounts, {r['items']:,} items; "
            f"{r['epochs_run']} epochs at {r['seconds_per_epoch']} s/epoch "
            f"({r['threads']} threads), "
            f"({r['cpu_seconds_per_epoch']} CPU s/epoch, load {r['load_average']:.1f}), "
            f"fit {r['fit_seconds']} s, projected {r['projected_seconds_default_epochs']} s for "
            f"the default epochs; peak RSS {r['peak_rss_fit_mb']} MB; encode_account "
            f"{r['encode_account_ms_median']} ms; hit@10 {r['hit_at_10']:.3f} "
            f"(popularity {r['popularity_hit_at_10']:.3f})",
            flush=True,
        )
    if args.json:
        OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
