"""Training benchmark: crossrec's CF models and vector index against the libraries they wrap.

Every figure is measured next to a reference taken in the same run, on the same data, and each
measurement runs in its own spawned process so that its peak RSS is its own. The machine is
shared and noisy: read the ratios, not the absolute times.

Sections (``--only cf,index,text,sequence``; all by default):

cf
    ``CFModel.fit`` against ``implicit.cpu`` called directly with the same parameters on the
    same matrix (ALS and BPR), on the Douban book ratings (built with ``build_interactions``)
    and on a seeded synthetic 50k x 20k matrix with 1M non-zeros. Repeats alternate the order
    of the two; the ratio is median(crossrec) / median(implicit) (target <= 1.15). The factors
    of both must be bit-identical, which shows the same work was done.
index
    For 100k and 1M seeded 64-d vectors (``--quick``: 100k only; ``--index-data``: iid
    Gaussian, the worst case for a graph index, or embedding-like): exact faiss ``IndexFlatIP``
    (the reference) against crossrec's ``ExactIndex``, and ``build_index`` (HNSW above
    ``exact_max``) with its build time, its build-time recall@10, recall@10 on held-out
    queries against the exact answers, and queries/s, beside a raw faiss HNSW built with the
    same parameters (up to ``--hnsw-reference-max`` vectors, 100k by default).
text, sequence
    ``bench/text.py`` and ``bench/sequence.py`` ``run()``, when those files exist.

    .venv/bin/python bench/train.py --quick
    .venv/bin/python bench/train.py --only cf,index
    .venv/bin/python bench/train.py --only index --index-data latent \
        --out bench/out/train-latent.json

Figures go to stdout as a table and to ``bench/out/train.json``.
"""

from __future__ import annotations

import os

# implicit needs a single-threaded BLAS; it must be set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import importlib.util
import inspect
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT_JSON = Path(__file__).resolve().parent / "out" / "train.json"
DOUBAN_BOOK = (
    ROOT.parent / "shared" / "data" / "douban-gadtcdr-book-music" / "douban_book" / "ratings.dat"
)
SECTIONS = ("cf", "index", "text", "sequence")
Sink = Callable[[dict[str, Any]], None]


# -- child processes ----------------------------------------------------------------------------
def _peak_mib() -> float:
    """Peak RSS of this process image in MiB.

    ``VmHWM`` belongs to the process's own memory map; ``ru_maxrss`` would also count the
    parent's RSS at fork time, because Linux carries it across ``exec``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh spawned process; its result gets the process's peak RSS."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_child_entry, fn, args).result()


def _child_entry(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> dict[str, Any]:
    result = fn(*args)
    result["peak_mib"] = round(_peak_mib(), 1)
    return result


# -- CF -----------------------------------------------------------------------------------------
def _load_matrix(path: str) -> Any:
    import scipy.sparse as sp

    with np.load(path, allow_pickle=False) as z:
        return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))


def _save_matrix(path: Path, m: Any) -> None:
    np.savez(path, data=m.data, indices=m.indices, indptr=m.indptr, shape=np.array(m.shape))


def _fit_child(path: str, impl: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    # Both sides import everything before the clock starts: only training is timed.
    import implicit.cpu.als
    import implicit.cpu.bpr

    from crossrec.represent.cf import CFModel

    matrix = _load_matrix(path)
    if impl == "crossrec":
        model: Any = CFModel(
            kind,
            factors=params["factors"],
            iterations=params["iterations"],
            regularization=params["regularization"],
            learning_rate=params["learning_rate"],
            seed=params["seed"],
            num_threads=params["num_threads"],
        )
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(matrix)
    else:
        if kind == "als":
            model = implicit.cpu.als.AlternatingLeastSquares(
                factors=params["factors"],
                regularization=params["regularization"],
                iterations=params["iterations"],
                num_threads=params["num_threads"],
                random_state=params["seed"],
            )
        else:
            model = implicit.cpu.bpr.BayesianPersonalizedRanking(
                factors=params["factors"],
                learning_rate=params["learning_rate"],
                regularization=params["regularization"],
                iterations=params["iterations"],
                num_threads=params["num_threads"],
                random_state=params["seed"],
            )
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(matrix, show_progress=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    digest = float(np.float64(model.user_factors.sum()) + np.float64(model.item_factors.sum()))
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "digest": digest}


def _douban_matrix() -> tuple[Any, float]:
    import pyarrow as pa

    from crossrec.config import TrainConfig
    from crossrec.represent.interactions import build_interactions

    raw = np.loadtxt(DOUBAN_BOOK, dtype=np.int64)
    table = pa.table(
        {
            "platform": ["book"] * len(raw),
            "account": raw[:, 0].astype(str),
            "item": raw[:, 1].astype(str),
            "event_type": ["rating"] * len(raw),
            "value": raw[:, 2].astype(np.float64),
        }
    )
    start = time.perf_counter()
    matrix = build_interactions(table, TrainConfig()).matrix
    return matrix, time.perf_counter() - start


def _synthetic_matrix(rows: int, cols: int, nnz: int, seed: int) -> Any:
    """Seeded sparse matrix with exactly ``nnz`` entries; item popularity follows a power law."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < nnz:
        r = rng.integers(0, rows, size=nnz)
        c = np.minimum((cols * rng.random(nnz) ** 2).astype(np.int64), cols - 1)
        keys = np.unique(np.concatenate([keys, r * cols + c]))
    keys = np.sort(rng.permutation(keys)[:nnz])
    data = (1.0 + 3.0 * rng.random(nnz)).astype(np.float32)
    m = sp.csr_matrix((data, (keys // cols, keys % cols)), shape=(rows, cols))
    m.sort_indices()
    return m


def bench_cf(args: argparse.Namespace, tmp: Path, sink: Sink) -> None:
    from crossrec.config import TrainConfig

    cfg = TrainConfig()
    matrices: list[tuple[str, Any, dict[str, Any]]] = []
    if DOUBAN_BOOK.exists():
        m, build_s = _douban_matrix()
        matrices.append(("douban-book", m, {"build_interactions_s": round(build_s, 3)}))
    else:
        print(f"  (skipping Douban: {DOUBAN_BOOK} not found)", file=sys.stderr)
    rows, cols, nnz = args.synthetic
    matrices.append(
        (f"synthetic-{rows // 1000}kx{cols // 1000}k", _synthetic_matrix(rows, cols, nnz, 7), {})
    )
    for name, matrix, extra in matrices:
        path = tmp / f"{name}.npz"
        _save_matrix(path, matrix)
        for kind in args.cf_kinds:
            params = {
                "factors": args.factors,
                "iterations": args.iterations,
                "regularization": cfg.regularization,
                "learning_rate": cfg.learning_rate,
                "seed": cfg.seed,
                # What CFModel picks by default: all cores for ALS, one (deterministic) for BPR.
                "num_threads": 0 if kind == "als" else 1,
            }
            runs: dict[str, list[dict[str, Any]]] = {"crossrec": [], "implicit": []}
            for rep in range(args.repeats):
                order = ("implicit", "crossrec") if rep % 2 == 0 else ("crossrec", "implicit")
                for impl in order:
                    runs[impl].append(_in_child(_fit_child, str(path), impl, kind, params))
            ours = statistics.median(r["seconds"] for r in runs["crossrec"])
            ref = statistics.median(r["seconds"] for r in runs["implicit"])
            # CPU time (all threads) moves less than wall time when other jobs share the cores.
            ours_cpu = statistics.median(r["cpu_seconds"] for r in runs["crossrec"])
            ref_cpu = statistics.median(r["cpu_seconds"] for r in runs["implicit"])
            same = {r["digest"] for r in runs["crossrec"] + runs["implicit"]}
            result = {
                "section": "cf",
                "case": f"{kind} {name}",
                "shape": list(matrix.shape),
                "nnz": int(matrix.nnz),
                **{k: v for k, v in params.items() if k != "learning_rate" or kind == "bpr"},
                "repeats": args.repeats,
                "crossrec_s": round(ours, 3),
                "implicit_s": round(ref, 3),
                "ratio": round(ours / ref, 3),
                "crossrec_cpu_s": round(ours_cpu, 3),
                "implicit_cpu_s": round(ref_cpu, 3),
                "cpu_ratio": round(ours_cpu / ref_cpu, 3),
                "target": "<= 1.15",
                "crossrec_runs_s": [round(r["seconds"], 3) for r in runs["crossrec"]],
                "implicit_runs_s": [round(r["seconds"], 3) for r in runs["implicit"]],
                "identical_factors": len(same) == 1,
                "crossrec_peak_mib": max(r["peak_mib"] for r in runs["crossrec"]),
                "implicit_peak_mib": max(r["peak_mib"] for r in runs["implicit"]),
                **extra,
            }
            sink(result)
            _print_row(
                f"cf {kind} {name}",
                f"{ours:.2f} s",
                f"{ref:.2f} s",
                result["ratio"],
                f"cpu ratio {result['cpu_ratio']}; peak {result['crossrec_peak_mib']:.0f}"
                f"/{result['implicit_peak_mib']:.0f} MiB; identical={result['identical_factors']}",
            )


# -- index --------------------------------------------------------------------------------------
def _vectors(n: int, dim: int, seed: int, data: str) -> np.ndarray:
    """Seeded vectors: ``gaussian`` (iid, the hardest case for a graph index) or ``latent``.

    ``latent`` maps 16-d Gaussian points linearly to ``dim`` dimensions and adds noise (0.3
    per coordinate): like learned embeddings, whose intrinsic dimension is far below their
    width. The map is the same for every ``seed``, so queries and vectors share it.
    """
    rng = np.random.default_rng(seed)
    if data == "gaussian":
        return rng.standard_normal((n, dim)).astype(np.float32)
    latent = np.random.default_rng(12345).standard_normal((16, dim))
    noise = 0.3 * rng.standard_normal((n, dim))
    return (rng.standard_normal((n, 16)) @ latent + noise).astype(np.float32)


def _exact_child(n: int, dim: int, data: str, queries: int, truth_path: str) -> dict[str, Any]:
    import faiss

    from crossrec.index import ExactIndex

    x = _vectors(n, dim, 1, data)
    q = _vectors(queries, dim, 2, data)
    start = time.perf_counter()
    xn = x.copy()
    faiss.normalize_L2(xn)
    flat = faiss.IndexFlatIP(dim)
    flat.add(xn)
    raw_build = time.perf_counter() - start
    qn = q.copy()
    faiss.normalize_L2(qn)
    start = time.perf_counter()
    _, truth = flat.search(qn, 10)
    raw_search = time.perf_counter() - start
    np.save(truth_path, truth)
    del flat, xn
    start = time.perf_counter()
    ours = ExactIndex(dim).build(x, np.arange(n))
    our_build = time.perf_counter() - start
    start = time.perf_counter()
    _, found = ours.search(q, 10)
    our_search = time.perf_counter() - start
    return {
        "faiss_flat_build_s": raw_build,
        "faiss_flat_qps": queries / raw_search,
        "exact_build_s": our_build,
        "exact_qps": queries / our_search,
        "exact_matches_faiss": bool(np.array_equal(found, truth)),
        "exact_agreement": float(np.mean(found == truth)),
    }


def _hnsw_child(
    n: int,
    dim: int,
    data: str,
    queries: int,
    truth_path: str,
    config: dict[str, Any],
    impl: str,
) -> dict[str, Any]:
    import faiss

    from crossrec.config import IndexConfig
    from crossrec.index import build_index

    cfg = IndexConfig(**config)
    x = _vectors(n, dim, 1, data)
    q = _vectors(queries, dim, 2, data)
    truth = np.load(truth_path, allow_pickle=False)
    if impl == "crossrec":
        start = time.perf_counter()
        index = build_index(x, np.arange(n), cfg, seed=0)
        total = time.perf_counter() - start
        start = time.perf_counter()
        _, found = index.search(q, 10)
        search = time.perf_counter() - start
        meta = index.metadata
        out = {
            "kind": meta["kind"],
            "build_s": meta["build_seconds"],
            "build_cpu_s": meta["build_cpu_seconds"],
            "build_with_recall_s": total,
            "build_recall_at_10": meta["recall_at_10"],
        }
    else:
        # Raw faiss with the same parameters and the same single-threaded insertion.
        start, cpu = time.perf_counter(), time.process_time()
        xn = x.copy()
        faiss.normalize_L2(xn)
        raw = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        raw.hnsw.efConstruction = cfg.ef_construction
        raw.hnsw.efSearch = cfg.ef_search
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        raw.add(xn)
        faiss.omp_set_num_threads(threads)
        out = {"build_s": time.perf_counter() - start, "build_cpu_s": time.process_time() - cpu}
        qn = q.copy()
        faiss.normalize_L2(qn)
        start = time.perf_counter()
        _, found = raw.search(qn, 10)
        search = time.perf_counter() - start
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True))
    out["qps"] = queries / search
    out["heldout_recall_at_10"] = hits / truth.size
    return out


def bench_index(args: argparse.Namespace, tmp: Path, sink: Sink) -> None:
    from crossrec.config import IndexConfig

    config = IndexConfig().model_dump()
    for n in args.index_sizes:
        truth = str(tmp / f"truth-{n}.npy")
        shape = (n, args.dim, args.index_data, args.queries, truth)
        exact = _in_child(_exact_child, *shape)
        ours = _in_child(_hnsw_child, *shape, config, "crossrec")
        # Below exact_max build_index picks the exact index: no HNSW to compare with then.
        ref = (
            _in_child(_hnsw_child, *shape, config, "faiss")
            if ours["kind"] == "hnsw" and n <= args.hnsw_reference_max
            else None
        )
        result: dict[str, Any] = {
            "section": "index",
            "case": f"{n} x {args.dim} {args.index_data}",
            "data": args.index_data,
            "vectors": n,
            "dim": args.dim,
            "queries": args.queries,
            "k": 10,
            "config": config,
            "exact": exact,
            "ann": ours,
            "faiss_hnsw": ref,
            "ann_vs_exact_qps": round(ours["qps"] / exact["faiss_flat_qps"], 2),
        }
        sink(result)
        label = f"index {n // 1000}k {args.index_data}"
        _print_row(
            f"{label} exact search",
            f"{exact['exact_qps']:.0f} q/s",
            f"{exact['faiss_flat_qps']:.0f} q/s",
            round(exact["faiss_flat_qps"] / exact["exact_qps"], 3),
            f"time ours/faiss; same answers={exact['exact_matches_faiss']}",
        )
        if ref is not None:
            _print_row(
                f"{label} {ours['kind']} build",
                f"{ours['build_s']:.1f} s",
                f"{ref['build_s']:.1f} s",
                round(ours["build_s"] / ref["build_s"], 3),
                f"cpu ratio {ours['build_cpu_s'] / ref['build_cpu_s']:.3f};"
                f" with recall check {ours['build_with_recall_s']:.1f} s",
            )
            _print_row(
                f"{label} {ours['kind']} search",
                f"{ours['qps']:.0f} q/s",
                f"{ref['qps']:.0f} q/s",
                round(ref["qps"] / ours["qps"], 3),
                "time ours/faiss",
            )
        _print_row(
            f"{label} {ours['kind']} vs exact",
            f"{ours['qps']:.0f} q/s",
            f"{exact['faiss_flat_qps']:.0f} q/s",
            result["ann_vs_exact_qps"],
            f"speed-up; recall@10 build-time {ours['build_recall_at_10']},"
            f" held-out {ours['heldout_recall_at_10']:.4f}; peak {ours['peak_mib']:.0f} MiB",
        )


# -- optional sections --------------------------------------------------------------------------
def bench_optional(name: str, args: argparse.Namespace, sink: Sink) -> None:
    path = Path(__file__).resolve().parent / f"{name}.py"
    if not path.exists():
        print(f"  ({name}: bench/{name}.py not present, skipped)")
        return
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.run
    kwargs = {"quick": args.quick} if "quick" in inspect.signature(run).parameters else {}
    start = time.perf_counter()
    result = run(**kwargs)
    seconds = time.perf_counter() - start
    print(f"  {name}: {json.dumps(result, default=str)[:400]}")
    sink({"section": name, "seconds": round(seconds, 2), "result": result})


# -- output -------------------------------------------------------------------------------------
def _print_row(case: str, ours: str, ref: str, ratio: float, note: str = "") -> None:
    print(f"{case:<34} {ours:>14} {ref:>14} {ratio:>7}  {note}", flush=True)


def _write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str), "utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--quick", action="store_true", help="index: 100k vectors only")
    parser.add_argument("--repeats", type=int, default=3, help="CF fits per implementation")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--cf-kinds", default="als,bpr")
    parser.add_argument(
        "--synthetic",
        type=int,
        nargs=3,
        default=[50_000, 20_000, 1_000_000],
        metavar=("ROWS", "COLS", "NNZ"),
    )
    parser.add_argument("--index-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument(
        "--index-data",
        choices=("gaussian", "latent"),
        default="gaussian",
        help="iid Gaussian vectors (worst case) or embedding-like ones (16-d latent + noise)",
    )
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument(
        "--hnsw-reference-max",
        type=int,
        default=100_000,
        help="build the raw faiss HNSW reference only up to this many vectors (it doubles"
        " the build time); 0 skips it",
    )
    parser.add_argument("--out", type=Path, default=OUT_JSON)
    args = parser.parse_args(argv)
    args.cf_kinds = [k for k in args.cf_kinds.split(",") if k]
    if args.index_sizes is None:
        args.index_sizes = [100_000] if args.quick else [100_000, 1_000_000]
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")

    import faiss
    import implicit

    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_start": os.getloadavg(),
            "implicit": implicit.__version__,
            "faiss": faiss.__version__,
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        },
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "results": [],
    }

    def sink(result: dict[str, Any]) -> None:
        # Written after every case, so a long run that is stopped keeps what it measured.
        report["results"].append(result)
        _write(report, args.out)

    print(f"{'case':<34} {'crossrec':>14} {'reference':>14} {'ratio':>7}  note")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crossrec-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for section in sections:
            if section == "cf":
                bench_cf(args, tmp, sink)
            elif section == "index":
                bench_index(args, tmp, sink)
            else:
                bench_optional(section, args, sink)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["machine"]["load_avg_end"] = os.getloadavg()
    _write(report, args.out)
    print(f"wrote {args.out} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
