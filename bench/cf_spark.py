"""ALS fitted on Spark against implicit's ALS: NDCG@10 on the same split, in the same run.

For each data set (Douban Book, Douban Music, MovieLens small from ../shared/data) a seeded
20 % of every account's events (accounts with at least 5) is held out; the rest builds the
confidence matrix (``build_interactions`` with the default ``[train]`` settings). Both
engines fit ALS with the same ``[train]`` settings (``CFModel`` with ``engine="implicit"``
and ``engine="spark"``, the latter on ``local[2]``), recommend 10 unseen items to every
account with held-out items, and are scored by binary NDCG@10. The ratio is spark / implicit
(target: within 5 %, i.e. >= 0.95). ``--unscaled`` adds a Spark fit with ``regParam = λ``
(no division by the mean count) to show what the mapping of settings does.

    .venv/bin/python bench/cf_spark.py
    .venv/bin/python bench/cf_spark.py --only movielens --unscaled

Figures go to stdout and to ``bench/out/cf_spark.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from crossrec.config import TrainConfig
from crossrec.evaluate.metrics import ndcg_at_k
from crossrec.represent.cf import CFModel
from crossrec.represent.interactions import InteractionMatrix, build_interactions

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out" / "cf_spark.json"
DATASETS = ("douban-book", "douban-music", "movielens")


def load(name: str) -> pa.Table:
    """One data set's events as a canonical one-platform Arrow table."""
    if name.startswith("douban"):
        from crossrec.datasets.douban import load_douban

        frame = load_douban(DATA / "douban-gadtcdr-book-music")[name.split("-")[1]].events
    else:
        from crossrec.datasets.movielens import load_movielens

        frame = load_movielens(DATA / "movielens-ml-latest-small").events
    return pa.table(
        {
            "platform": [name] * frame.height,
            "account": frame["account"].to_list(),
            "item": frame["item"].to_list(),
            "event_type": frame["event"].to_list(),
            "value": frame["value"].to_numpy(),
        }
    )


def split(events: pa.Table, seed: int) -> tuple[pa.Table, dict[str, set[str]]]:
    """Seeded 20 % of each account's events held out (accounts with >= 5 events)."""
    accounts = np.asarray(events.column("account").to_pylist(), dtype=object)
    rng = np.random.default_rng(seed)
    order = np.argsort(accounts, kind="stable")
    starts = np.r_[0, np.flatnonzero(accounts[order][1:] != accounts[order][:-1]) + 1]
    test = np.zeros(len(accounts), dtype=bool)
    for lo, hi in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        if hi - lo >= 5:
            rows = order[lo:hi]
            test[rng.choice(rows, max(1, (hi - lo) // 5), replace=False)] = True
    held: dict[str, set[str]] = {}
    items = events.column("item").to_pylist()
    for row in np.flatnonzero(test):
        held.setdefault(str(accounts[row]), set()).add(str(items[row]))
    return events.filter(pa.array(~test)), held


def ndcg(model: CFModel, inter: InteractionMatrix, held: dict[str, set[str]]) -> float:
    """Mean NDCG@10 over accounts with held-out items that the matrix knows."""
    rows = {str(a): i for i, a in enumerate(inter.accounts.tolist())}
    known = set(map(str, inter.items.tolist()))
    ranked, relevant = [], []
    items = np.asarray(inter.items.astype(str))
    for account, truth in sorted(held.items()):
        if account not in rows or not truth & known:
            continue
        top, _ = model.recommend(rows[account], k=10)
        ranked.append(np.r_[items[top], [""] * (10 - len(top))])
        relevant.append(truth)
    return ndcg_at_k(np.array(ranked, dtype=object), relevant, 10)


def fit(matrix: sp.csr_matrix, cfg: TrainConfig, engine: str) -> tuple[CFModel, float]:
    model = CFModel.from_config(cfg.model_copy(update={"cf_engine": engine}))
    t = time.perf_counter()
    model.fit(matrix)
    return model, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated data sets")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--unscaled", action="store_true", help="add Spark with regParam = λ")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from crossrec.spark_session import spark_session

    spark = spark_session("local[2]", {"spark.sql.shuffle.partitions": "4"})
    cfg = TrainConfig()
    report: dict[str, Any] = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "settings": {
            "factors": cfg.factors,
            "cf_iterations": cfg.cf_iterations,
            "regularization": cfg.regularization,
            "seed": cfg.seed,
            "split_seed": args.seed,
        },
        "results": {},
    }
    print(
        f"{'data set':<14} {'accounts':>8} {'nnz':>8} {'implicit':>9} {'spark':>9} {'ratio':>6}"
        f" {'fit s (implicit / spark)':>26}"
    )
    for name in args.only.split(","):
        train, held = split(load(name), args.seed)
        inter = build_interactions(train, cfg)
        implicit, t_i = fit(inter.matrix, cfg, "implicit")
        spark_model, t_s = fit(inter.matrix, cfg, "spark")
        a, b = ndcg(implicit, inter, held), ndcg(spark_model, inter, held)
        row: dict[str, Any] = {
            "accounts": int(inter.matrix.shape[0]),
            "items": int(inter.matrix.shape[1]),
            "nnz": int(inter.matrix.nnz),
            "ndcg10_implicit": round(a, 4),
            "ndcg10_spark": round(b, 4),
            "ratio": round(b / a, 3),
            "fit_seconds_implicit": round(t_i, 2),
            "fit_seconds_spark": round(t_s, 2),
        }
        if args.unscaled:
            from crossrec.represent import cf_spark

            mapped = cf_spark.spark_reg_param
            cf_spark.spark_reg_param = lambda m, reg: float(reg)  # type: ignore[assignment]
            try:
                unscaled, _ = fit(inter.matrix, cfg, "spark")
            finally:
                cf_spark.spark_reg_param = mapped  # type: ignore[assignment]
            row["ndcg10_spark_unscaled"] = round(ndcg(unscaled, inter, held), 4)
        report["results"][name] = row
        print(
            f"{name:<14} {row['accounts']:>8} {row['nnz']:>8} {a:>9.4f} {b:>9.4f}"
            f" {row['ratio']:>6.3f} {t_i:>12.1f} / {t_s:<10.1f}"
            + (f" unscaled {row['ndcg10_spark_unscaled']:.4f}" if args.unscaled else ""),
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
