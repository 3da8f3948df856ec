"""Per-pair cost of the link job's pair stages: signals and matcher inputs, in µs per pair.

Loads the current model of a trained workspace, takes pairs the way the link job gives them
(each account of the first platform with ``--per-account`` accounts of the second, drawn with a
seed, sorted by account) and times :func:`crossrec.link.signals.compute_signals` and
:func:`crossrec.link.features.matcher_view` on them (best of ``--repeat`` runs; the first call,
which compiles the kernels, is not timed). Run it with another checkout's ``src`` first on
``PYTHONPATH`` to time that code on the same pairs; ``--out`` saves the matrices so two runs
can be compared value by value.

    .venv/bin/python bench/pair_costs.py --workspace W --json
    PYTHONPATH=/tmp/old/src .venv/bin/python bench/pair_costs.py --workspace W --out old.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--per-account", type=int, default=50)
    ap.add_argument("--max-pairs", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="save the matrices (.npz)")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = ap.parse_args(argv)

    import crossrec
    from crossrec.link.context import LinkContext
    from crossrec.link.features import matcher_view
    from crossrec.link.mapping import fit_mappings
    from crossrec.link.signals import compute_signals
    from crossrec.models import ModelRegistry
    from crossrec.workspace import Workspace

    ws = Workspace(args.workspace)
    ctx = LinkContext.load(ModelRegistry(ws.models_dir).path(), ws.store, ws.config)
    maps = fit_mappings(ctx, (ctx.link_a, ctx.link_b), seed=0, mlp=False)
    rng = np.random.default_rng(args.seed)
    first, second = ctx.rows_of(ctx.platforms[0]), ctx.rows_of(ctx.platforms[1])
    queries = np.sort(rng.choice(first, min(len(first), args.max_pairs // args.per_account), False))
    a = np.repeat(queries, args.per_account)
    b = rng.choice(second, len(a))
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    ranks = rng.integers(0, 51, size=(len(a), 10)).astype(np.uint16)
    anchors = np.zeros(len(ctx), bool)
    anchors[ctx.link_a[::2]] = True
    anchors[ctx.link_b[::2]] = True

    def timed(fn):  # type: ignore[no-untyped-def]
        fn()  # warm: compiles kernels, fills per-context caches
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t)
        return best, result

    sig_s, (X, names) = timed(lambda: compute_signals(ctx, maps, a, b, ranks))
    view_s, (Xm, m_names) = timed(lambda: matcher_view(ctx, a, b, X, names, anchors))
    figures = {
        "crossrec": str(Path(crossrec.__file__).parent),
        "pairs": len(a),
        "accounts": len(ctx),
        "signals_us_per_pair": round(sig_s / len(a) * 1e6, 3),
        "matcher_view_us_per_pair": round(view_s / len(a) * 1e6, 3),
    }
    if args.out is not None:
        np.savez(args.out, X=X, Xm=Xm, names=np.array(names), m_names=np.array(m_names))
    ws.close()
    print(json.dumps(figures, indent=2) if args.json else figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
