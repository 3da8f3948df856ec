"""What nearest-neighbour search alone costs at linkage scale, with faiss called directly.

The link benchmark's reference is a bare faiss exact top-k search over the same vectors; at a
million accounts per platform that reference is itself the question. This script measures, on
this machine, for ``--vectors`` unit vectors and top ``--k``:

* exact ``IndexFlatIP`` search, timed on ``--queries`` queries and extrapolated to one query
  per vector (one space, one direction);
* HNSW (M 32, efConstruction 80 as crossrec's defaults): build, then search at several
  efSearch values, recall@k against exact search;
* IVF-Flat (``--lists`` lists, trained on 200,000 vectors): train + add, then search at
  several nprobe values, recall@k against exact search.

The vectors are clustered (``--clusters`` centres plus noise), like embeddings, so that the
approximate indexes see realistic structure; queries are noisy copies of database vectors.

    .venv/bin/python bench/search_reference.py                      # 1M vectors, ~15 min here
    .venv/bin/python bench/search_reference.py --vectors 100000 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return round(float(np.mean(hits)) / truth.shape[1], 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=20_000, help="timed queries (extrapolated)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--clusters", type=int, default=2_000)
    ap.add_argument("--lists", type=int, default=4_096)
    ap.add_argument("--threads", type=int, default=0, help="faiss threads (0: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="write bench/out/search_reference.json")
    args = ap.parse_args(argv)

    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    xb = centres[rng.integers(0, args.clusters, args.vectors)]
    xb += 0.5 * rng.standard_normal(xb.shape, dtype=np.float32)
    faiss.normalize_L2(xb)
    nq = min(args.queries, args.vectors)
    xq = xb[rng.choice(args.vectors, nq, replace=False)]
    xq = xq + 0.3 * rng.standard_normal(xq.shape, dtype=np.float32)
    faiss.normalize_L2(xq)
    scale = args.vectors / nq  # one query per vector

    def sweep(
        index: Any, name: str, values: tuple[int, ...], setter: Callable[[Any, int], None]
    ) -> list[dict[str, object]]:
        """Search all timed queries at each setting: seconds for one query per vector, and
        recall@k against exact search."""
        rows: list[dict[str, object]] = []
        for value in values:
            setter(index, value)
            t = time.perf_counter()
            _, found = index.search(xq, args.k)
            dt = time.perf_counter() - t
            rows.append(
                {
                    name: value,
                    "all_queries_s": round(dt * scale, 1),
                    "recall": _recall(found[check], truth[check]),
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
        return rows

    fig: dict[str, object] = {
        "vectors": args.vectors,
        "dim": args.dim,
        "k": args.k,
        "threads": faiss.omp_get_max_threads(),
        "timed_queries": nq,
    }

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(xb)
    t = time.perf_counter()
    _, truth = flat.search(xq, args.k)
    dt = time.perf_counter() - t
    fig["exact_timed_s"] = round(dt, 2)
    fig["exact_all_queries_s"] = round(dt * scale, 1)
    check = slice(0, min(2_000, nq))
    del flat
    print(f"exact: {dt:.1f} s for {nq:,} queries → {dt * scale:,.0f} s for all", file=sys.stderr)

    hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    t = time.perf_counter()
    hnsw.add(xb)
    fig["hnsw_build_s"] = round(time.perf_counter() - t, 1)
    print(f"hnsw build: {fig['hnsw_build_s']} s", file=sys.stderr)

    fig["hnsw_search"] = sweep(
        hnsw, "ef_search", (64, 128, 256), lambda index, ef: setattr(index.hnsw, "efSearch", ef)
    )
    del hnsw

    quantizer = faiss.IndexFlatIP(args.dim)
    ivf = faiss.IndexIVFFlat(quantizer, args.dim, args.lists, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    ivf.train(xb[rng.permutation(args.vectors)[: min(args.vectors, 200_000)]])
    ivf.add(xb)
    fig["ivf_train_add_s"] = round(time.perf_counter() - t, 1)
    print(f"ivf train + add: {fig['ivf_train_add_s']} s", file=sys.stderr)

    fig["ivf_search"] = sweep(
        ivf, "nprobe", (8, 16, 32), lambda index, nprobe: setattr(index, "nprobe", nprobe)
    )

    print(json.dumps(fig, indent=2))
    if args.json:
        out = Path(__file__).resolve().parent / "out"
        out.mkdir(exist_ok=True)
        (out / "search_reference.json").write_text(json.dumps(fig, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
