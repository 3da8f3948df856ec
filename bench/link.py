"""Linkage at scale: synthetic accounts on two platforms, through the real pipeline.

Generates a synthetic world (``crossrec.datasets.synthetic``), ingests it and trains with a fast
configuration (static text encoder, 5 CF iterations, sequence encoder capped at 300 steps) —
kept in ``--dir`` and reused by the next run with the same ``--dir`` — then links a copy of it
with the current code: the model's vector indexes are rebuilt as ``crossrec train`` builds them
now, and ``run_link`` is timed end to end. Beside it, in the same process, the reference: faiss
``IndexIVFFlat`` (4·√N lists, nprobe 16) top-50 of every account of one platform over the
other in the sequence space, on 2 threads (train + add + search).

    .venv/bin/python bench/link.py --accounts 100000 --dir /tmp/w100k --json
    .venv/bin/python bench/link.py --accounts 100000 --dir /tmp/w100k --build-only
    .venv/bin/python bench/link.py --workspace W --json        # a trained workspace, as is

With ``--json`` stdout holds one JSON document: ``accounts``, ``link_seconds``,
``peak_rss_bytes`` (the process's highest RSS, world already built), ``candidate_pairs``,
``candidate_recall_vs_exact`` (the lowest per-space recall@top_k of the saved indexes against
exact search, on 1,000 sampled queries of the other platform), ``candidate_truth_recall``
(truth pairs among the candidates), ``reference_seconds``, ``ratio`` (``link_seconds /
reference_seconds``), each step's wall seconds and RSS (``steps``, also printed on stderr as
they end) and the build's figures.
"""

from __future__ import annotations

import argparse
import contextlib
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


def build_world(root: Path, accounts: int, events_per_account: int, seed: int) -> dict[str, object]:
    """Generate, ingest and train a synthetic world in ``root/world`` and ``root/ws``; a root
    that already holds a trained workspace is reused as it is (the build takes most of the
    time at 100,000 accounts and more)."""
    from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
    from crossrec.models import ModelRegistry
    from crossrec.train import train
    from crossrec.workspace import Workspace

    world, wsdir = root / "world", root / "ws"
    done = root / "built.json"
    if done.is_file():
        built: dict[str, object] = json.loads(done.read_text())
        if built.get("accounts") != accounts:
            raise SystemExit(f"error: {root} holds a world of {built.get('accounts')} accounts")
        return built
    figures: dict[str, object] = {"accounts": accounts, "seed": seed}
    t = time.perf_counter()
    total = 2 * accounts
    generate_synthetic(
        world,
        SyntheticConfig(
            accounts=total,
            events=total * events_per_account,
            platforms=2,
            single_fraction=0.4,
            anchor_fraction=0.3,
            seed=seed,
        ),
    )
    figures["generate_s"] = round(time.perf_counter() - t, 1)
    if wsdir.exists():
        shutil.rmtree(wsdir)
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
        ws.ingest_events(
            platform, next(folder.glob("events.*")), items=next(folder.glob("items.*"))
        )
    ws.ingest_links(next(world.glob("known_links.*")))
    figures["ingest_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    train(ws)
    figures["train_s"] = round(time.perf_counter() - t, 1)
    figures["model_version"] = ModelRegistry(ws.models_dir).path().name
    ws.close()
    done.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def rebuild_indexes(wsdir: Path) -> dict[str, object]:
    """Rebuild the trained model's vector indexes with the current index code (as ``crossrec
    train`` builds them: sequence and text per platform), and drop the ones ``crossrec link``
    builds itself (cf, values), so a workspace trained by older code is linked as new code
    would link it. Returns each index's build facts."""
    from crossrec.index import build_index
    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.train import INDEX_SPACES
    from crossrec.workspace import Workspace

    ws = Workspace(wsdir)
    cfg = ws.config
    model = ModelRegistry(ws.models_dir).path()
    ws.close()
    shutil.rmtree(model / "index", ignore_errors=True)
    profiles = AccountProfiles.load(model / "accounts")
    report: dict[str, object] = {}
    for space, attr in INDEX_SPACES.items():
        matrix = getattr(profiles, attr)
        for platform in sorted(set(profiles.platform.tolist())):
            rows = profiles.rows_of(platform)
            if space == "text":
                rows = rows[profiles.has_text[rows]]
            if matrix.shape[1] == 0 or len(rows) == 0:
                continue
            index = build_index(matrix[rows], rows.astype(np.int64), cfg.index, seed=cfg.train.seed)
            index.save(model / "index" / space / platform)
            report[f"{space}/{platform}"] = {
                k: v for k, v in index.metadata.items() if k != "nprobe_recall"
            }
    return report


def sample_recall_vs_exact(wsdir: Path, k: int, sample: int = 1000) -> dict[str, float]:
    """Recall@k against exact search of each saved index of the linked model, on a seeded
    sample of the other platform's accounts as queries (what the candidate search asks)."""
    from crossrec.index import ExactIndex, exact_top_k, load_index
    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.workspace import Workspace

    ws = Workspace(wsdir)
    model = ModelRegistry(ws.models_dir).path()
    ws.close()
    profiles = AccountProfiles.load(model / "accounts")
    platforms = sorted(set(profiles.platform.tolist()))
    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for space in ("sequence", "text"):
        hits = total = 0
        for platform in platforms:
            directory = model / "index" / space / platform
            if not directory.is_dir():
                continue
            index = load_index(directory)
            if isinstance(index, ExactIndex):
                hits, total = hits + 1, total + 1
                continue
            other = next(p for p in platforms if p != platform)
            rows = profiles.rows_of(other)
            if space == "text":
                rows = rows[profiles.has_text[rows]]
            queries = getattr(profiles, space)[rng.choice(rows, min(sample, len(rows)), False)]
            truth = index.ids[exact_top_k(getattr(profiles, space), queries, k, rows=index.ids)]
            _, found = index.search(queries, k)
            hits += sum(
                len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True)
            )
            total += truth.size
        if total:
            out[space] = round(hits / total, 4)
    return out


def reference_search(wsdir: Path, k: int = 50, nprobe: int = 16, threads: int = 2) -> dict:
    """The issue's reference: faiss ``IndexIVFFlat`` (4·√N lists, nprobe 16), top-50 of every
    account of one platform over the other in the sequence space, on 2 threads."""
    import faiss

    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.workspace import Workspace

    ws = Workspace(wsdir)
    model = ModelRegistry(ws.models_dir).path()
    ws.close()
    prof = AccountProfiles.load(model / "accounts")
    platforms = sorted(set(prof.platform.tolist()))
    base = np.ascontiguousarray(prof.sequence[prof.rows_of(platforms[1])], dtype=np.float32)
    queries = np.ascontiguousarray(prof.sequence[prof.rows_of(platforms[0])], dtype=np.float32)
    faiss.normalize_L2(base)
    faiss.normalize_L2(queries)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        t = time.perf_counter()
        lists = max(1, round(4 * np.sqrt(len(base))))
        quantizer = faiss.IndexFlatIP(base.shape[1])
        ivf = faiss.IndexIVFFlat(quantizer, base.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
        ivf.train(base)
        ivf.add(base)
        build_s = time.perf_counter() - t
        ivf.nprobe = nprobe
        t = time.perf_counter()
        ivf.search(queries, k)
        search_s = time.perf_counter() - t
    finally:
        faiss.omp_set_num_threads(before)
    return {
        "lists": lists,
        "nprobe": nprobe,
        "k": k,
        "threads": threads,
        "queries": len(queries),
        "vectors": len(base),
        "build_seconds": round(build_s, 2),
        "search_seconds": round(search_s, 2),
        "seconds": round(build_s + search_s, 2),
    }


def link_world(root: Path) -> dict[str, object]:
    """Link a copy of the built world's workspace with the current code; every figure of the
    issue's benchmark plus each step's time and memory."""
    from crossrec.link.pipeline import run_link
    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.workspace import Workspace

    world, run = root / "world", root / "run"
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(root / "ws", run)
    t = time.perf_counter()
    indexes = rebuild_indexes(run)
    index_s = time.perf_counter() - t
    ws = Workspace(run)
    k = ws.config.link.top_k
    hook = StepTimes()
    rss_before = _peak_mib()
    t = time.perf_counter()
    summary = run_link(ws, progress=hook)
    link_s = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    figures: dict[str, object] = {
        "link_seconds": round(link_s, 1),
        "peak_rss_bytes": int(peak),
        "peak_rss_before_link_bytes": int(rss_before * 1024 * 1024),
        "candidate_pairs": summary["candidate_pairs"],
        "asserted_links": summary["asserted_links"],
        "heldout_precision": summary.get("heldout_precision"),
        "links_sha256": _links_digest(ws),
        "index_build_seconds": round(index_s, 1),
        "indexes": indexes,
        "steps": hook.steps,
    }
    for key in ("candidates", "recall_vs_exact"):
        if key in summary:
            figures[f"summary_{key}"] = summary[key]
    model = ModelRegistry(ws.models_dir).path()
    prof = AccountProfiles.load(model / "accounts")
    cands = np.load(model / "link" / "candidates.npz", allow_pickle=False)
    n = len(prof.platform)
    have = np.sort(cands["a_rows"].astype(np.int64) * n + cands["b_rows"])
    keys = []
    for line in next(world.glob("truth_links.*")).read_text().splitlines()[1:]:
        pa, aa, pb, ab = line.split(",")
        ra, rb = prof.row(pa, ws.account_id(pa, aa)), prof.row(pb, ws.account_id(pb, ab))
        if ra is not None and rb is not None:
            keys.append(min(ra, rb) * n + max(ra, rb))
    pos = np.searchsorted(have, keys)
    found = (pos < len(have)) & (have[np.minimum(pos, len(have) - 1)] == keys)
    figures["candidate_truth_recall"] = round(float(found.mean()) if len(keys) else 0.0, 4)
    ws.close()
    by_space = sample_recall_vs_exact(run, k)
    figures["candidate_recall_vs_exact"] = min(by_space.values()) if by_space else 1.0
    figures["candidate_recall_vs_exact_by_space"] = by_space
    reference = reference_search(run)
    figures["reference_seconds"] = reference["seconds"]
    figures["reference"] = reference
    figures["ratio"] = round(link_s / max(reference["seconds"], 1e-9), 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1_000_000, help="accounts per platform")
    ap.add_argument("--events-per-account", type=int, default=20)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--dir", type=Path, default=None, help="keep the built world here and reuse it next time"
    )
    ap.add_argument("--build-only", action="store_true", help="build the world, do not link")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ap.add_argument(
        "--workspace", type=Path, default=None, help="link a copy of this trained workspace"
    )
    args = ap.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # stdout holds the result only
        figures = _run(args)
    _report(figures, args.json)
    return 0


def _run(args: argparse.Namespace) -> dict[str, object]:
    if args.workspace is not None:
        root = args.dir or Path(tempfile.mkdtemp(prefix="crossrec-bench-link-"))
        figures = link_existing(args.workspace, root)
        shutil.rmtree(root / "ws", ignore_errors=True)
        return figures
    root = args.dir or Path(tempfile.mkdtemp(prefix="crossrec-bench-link-"))
    built = build_world(root, args.accounts, args.events_per_account, args.seed)
    if args.build_only:
        return {"accounts": args.accounts, "build": built}
    figures = {"accounts": args.accounts, **link_world(root), "build": built}
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return figures


def _report(figures: dict[str, object], as_json: bool) -> None:
    """With ``as_json``: one JSON document on stdout (and bench/out/link.json); else lines."""
    if as_json:
        text = json.dumps(figures, indent=2)
        out = Path(__file__).resolve().parent / "out"
        out.mkdir(exist_ok=True)
        (out / "link.json").write_text(text + "\n")
        print(text)
        return
    for k, v in figures.items():
        if k != "steps":
            print(f"{k:>28}: {v}")


if __name__ == "__main__":
    sys.exit(main())
