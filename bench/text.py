"""Item text benchmark: encoder throughput, and what a second train re-encodes (nothing).

For each encoder, embeds ``n_items`` item texts (MovieLens titles and genres, repeated with a
suffix past the catalogue's 9,742 movies) into an empty cache, then again through a fresh cache
object on the same folder, as a second ``crossrec train`` would. Reports load time, items/s on
the cold run, items encoded on the second run (must be 0) and its time, and the alignment time.

    .venv/bin/python bench/text.py --items 5000 --json
    .venv/bin/python bench/text.py --items 50000 --encoders static

``--json`` writes the figures to ``bench/out/text.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pyarrow as pa

MOVIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-ml-latest-small"
OUT_JSON = Path(__file__).resolve().parent / "out" / "text.json"


def _items(n_items: int) -> pa.Table:
    """``n_items`` items on two platforms (halves), titles + genres from MovieLens."""
    movies: list[tuple[str, str]] = []
    path = MOVIES / "movies.csv"
    if path.is_file():
        with path.open(encoding="utf-8", newline="") as fh:
            movies = [(r["title"], r["genres"]) for r in csv.DictReader(fh)]
    if not movies:  # no shared data: plain synthetic titles keep the benchmark runnable
        movies = [(f"Item number {i}", "Drama") for i in range(1000)]
    titles, genres = [], []
    for i in range(n_items):
        title, genre = movies[i % len(movies)]
        rnd = i // len(movies)
        titles.append(title if rnd == 0 else f"{title} part {rnd + 1}")
        genres.append(genre)
    half = n_items // 2
    return pa.table(
        {
            "platform": ["video"] * half + ["shop"] * (n_items - half),
            "item": [str(i) for i in range(n_items)],
            "title": titles,
            "category": genres,
        }
    )


def run(n_items: int = 5_000, encoders: tuple[str, ...] = ("minilm", "static")) -> dict[str, Any]:
    """Measure each encoder on ``n_items`` items; returns the figures as a dict."""
    from crossrec.represent.alignment import align_items
    from crossrec.represent.encoders import load_encoder
    from crossrec.represent.text import embed_items, workspace_cache

    items = _items(n_items)
    result: dict[str, Any] = {"items": n_items, "cpus": os.cpu_count(), "encoders": {}}
    for spec in encoders:
        with tempfile.TemporaryDirectory(prefix="crossrec-bench-text-") as tmp:
            t0 = time.perf_counter()
            encoder = load_encoder(spec)
            t1 = time.perf_counter()
            first = embed_items(items, encoder, workspace_cache(Path(tmp), encoder.name))
            t2 = time.perf_counter()
            second = embed_items(items, encoder, workspace_cache(Path(tmp), encoder.name))
            t3 = time.perf_counter()
            align_items(first, k=10)
            t4 = time.perf_counter()
        result["encoders"][spec] = {
            "name": encoder.name,
            "dim": encoder.dim,
            "load_s": round(t1 - t0, 2),
            "distinct_texts": first.encoded,
            "first_run_s": round(t2 - t1, 2),
            "items_per_s": round(first.encoded / max(t2 - t1, 1e-9), 1),
            "encoded_on_second_run": second.encoded,
            "second_run_s": round(t3 - t2, 3),
            "align_k10_s": round(t4 - t3, 2),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--encoders", default="minilm,static", help="comma-separated specs")
    parser.add_argument("--json", action="store_true", help=f"also write {OUT_JSON}")
    args = parser.parse_args(argv)
    result = run(args.items, tuple(s for s in args.encoders.split(",") if s))
    for spec, fig in result["encoders"].items():
        print(
            f"{spec:>12}: load {fig['load_s']:.1f} s, {fig['distinct_texts']} texts in "
            f"{fig['first_run_s']:.1f} s ({fig['items_per_s']:.0f} items/s); "
            f"encoded on second run: {fig['encoded_on_second_run']} "
            f"({fig['second_run_s']:.2f} s); align k=10: {fig['align_k10_s']:.2f} s"
        )
    if args.json:
        OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
