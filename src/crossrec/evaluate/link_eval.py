"""``crossrec evaluate link``: the linker against a truth file, beside its baselines.

The population is every account that is not in a known link. For each truth pair (a on A,
b on B), b is ranked among the population accounts of B by the score for a: the linker's
calibrated probabilities over its candidates (accounts outside the candidates rank below all
of them; ties take the mean rank), and for each baseline its score over the whole population.
Precision, recall and F1 compare the links asserted within the population with the truth.

Baselines, computed in the same run: ``random`` (seeded random scores), ``text_mean``
(cosine of the accounts' mean item text vectors, when text exists) and ``cf_mapping`` (a
ridge map between the two platforms' ALS spaces learned from the known links). A baseline
asserts the mutual best pairs of its scores.

Each run also saves ``reports/evaluation/link.json`` (atomically) for ``crossrec report``:
the returned document plus ``details`` computed over the linker's candidate pairs within the
population, where a pair the truth does not hold counts as false (as precision does): the
probabilities of the true pairs and of a seeded sample of false ones, the precision-recall
curve of the links asserted at each threshold (after one-to-one assignment) and calibration
bins (mean predicted probability against the observed share of true pairs).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrec.errors import InputError
from crossrec.evaluate.metrics import hits_at, mrr, precision_recall_f1, ranks_from_pairs

if TYPE_CHECKING:
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.workspace import Workspace

KEYS = ("hits@1", "hits@10", "mrr", "precision", "recall", "f1", "n_truth", "n_predicted")
#: Where each evaluation is saved for ``crossrec report``, relative to ``reports/``.
LINK_EVAL_FILE = Path("evaluation") / "link.json"
#: False candidate pairs whose probabilities are saved (a seeded sample).
FALSE_SAMPLE = 5_000
#: Most points saved of the precision-recall curve.
PR_POINTS = 200
CALIBRATION_BINS = 10
_CHUNK = 2048


@dataclass
class Truth:
    a: np.ndarray  # profile rows
    b: np.ndarray


def read_truth(ws: Workspace, profiles: AccountProfiles, path: Path) -> Truth:
    """Truth pairs of raw ids → profile rows (every account must be known)."""
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={
                    c: "string" for c in ("platform_a", "account_a", "platform_b", "account_b")
                }
            ),
        )
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: cannot read the truth file: {str(exc).splitlines()[0]}"
        ) from None
    missing = {"platform_a", "account_a", "platform_b", "account_b"} - set(table.column_names)
    if missing:
        raise InputError(
            f"{path}: missing columns {sorted(missing)}",
            hint="the truth file has platform_a,account_a,platform_b,account_b",
        )
    a_rows, b_rows, unknown = [], [], []
    for i, r in enumerate(table.to_pylist(), start=2):
        ra = profiles.row(r["platform_a"], ws.account_id(r["platform_a"], r["account_a"]))
        rb = profiles.row(r["platform_b"], ws.account_id(r["platform_b"], r["account_b"]))
        if ra is None or rb is None:
            unknown.append(i)
            continue
        a_rows.append(ra)
        b_rows.append(rb)
    if unknown:
        raise InputError(
            f"{path}: {len(unknown)} truth pairs name accounts the model does not know "
            f"(first at line {unknown[0]})",
            hint="check the platform names and ids, or retrain after ingesting them",
        )
    if not a_rows:
        raise InputError(f"{path}: the truth file holds no pairs")
    return Truth(np.array(a_rows, dtype=np.int64), np.array(b_rows, dtype=np.int64))


def _summary(
    ranks: np.ndarray, predicted: tuple[np.ndarray, np.ndarray], truth: Truth
) -> dict[str, Any]:
    scores = precision_recall_f1(predicted, (truth.a, truth.b))
    doc: dict[str, Any] = {
        "hits@1": hits_at(ranks, 1),
        "hits@10": hits_at(ranks, 10),
        "mrr": mrr(ranks),
        "precision": scores.precision,
        "recall": scores.recall,
        "f1": scores.f1,
        "n_truth": len(truth.a),
        "n_predicted": scores.n_predicted,
    }
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in doc.items()}


def system_ranks(
    cand_a: np.ndarray,
    cand_b: np.ndarray,
    prob: np.ndarray,
    truth: Truth,
    platform_code: np.ndarray,
    in_population: np.ndarray,
    n_population: np.ndarray,
) -> np.ndarray:
    """Rank of each truth b among a's candidates on b's platform (undirected pairs)."""
    src = np.concatenate([cand_a, cand_b])
    dst = np.concatenate([cand_b, cand_a])
    p = np.concatenate([prob, prob]).astype(np.float64)
    keep = in_population[dst]
    src, dst, p = src[keep], dst[keep], p[keep]
    n_plat = int(platform_code.max()) + 1
    key = src * n_plat + platform_code[dst]
    order = np.argsort(key, kind="stable")
    key, dst, p = key[order], dst[order], p[order]
    tkey = truth.a * n_plat + platform_code[truth.b]
    lo = np.searchsorted(key, tkey, side="left")
    hi = np.searchsorted(key, tkey, side="right")
    lengths = hi - lo
    idx = np.repeat(lo - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(lengths.sum())
    query = np.repeat(np.arange(len(truth.a)), lengths)
    is_truth = dst[idx] == truth.b[query]
    return ranks_from_pairs(
        query, p[idx], is_truth, np.arange(len(truth.a)), n_population[platform_code[truth.b]]
    )


def baseline_metrics(
    vectors: np.ndarray,
    truth: Truth,
    platform_code: np.ndarray,
    in_population: np.ndarray,
    *,
    query_vectors: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of a scorer that is the cosine of ``query_vectors[a]`` (default ``vectors``)
    with ``vectors[b]`` over the whole population of b's platform."""
    ranks, predicted = baseline_parts(
        vectors, truth, platform_code, in_population, query_vectors=query_vectors
    )
    return _summary(ranks, predicted, truth)


def baseline_parts(
    vectors: np.ndarray,
    truth: Truth,
    platform_code: np.ndarray,
    in_population: np.ndarray,
    *,
    query_vectors: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Ranks of the truth pairs and the mutual-best pairs of a cosine scorer."""
    q_vecs = vectors if query_vectors is None else query_vectors
    ranks = np.empty(len(truth.a), dtype=np.float64)
    pred_a: list[np.ndarray] = []
    pred_b: list[np.ndarray] = []
    for code in np.unique(platform_code[truth.b]):
        pop_b = np.flatnonzero(in_population & (platform_code == code))
        sel = np.flatnonzero(platform_code[truth.b] == code)
        xb = _unit(vectors[pop_b])
        for start in range(0, len(sel), _CHUNK):
            s = sel[start : start + _CHUNK]
            scores = _unit(q_vecs[truth.a[s]]) @ xb.T
            col = np.searchsorted(pop_b, truth.b[s])  # the truth is in the population
            true = scores[np.arange(len(s)), col]
            greater = (scores > true[:, None]).sum(axis=1)
            equal = (scores == true[:, None]).sum(axis=1)
            ranks[s] = greater + (equal + 1) / 2.0  # the truth is in the population: equal ≥ 1
        for a_code in np.unique(platform_code[truth.a[sel]]):
            pop_a = np.flatnonzero(in_population & (platform_code == a_code))
            ma, mb = _mutual_best(_unit(q_vecs[pop_a]), xb)
            pred_a.append(pop_a[ma])
            pred_b.append(pop_b[mb])
    predicted = (
        (np.concatenate(pred_a), np.concatenate(pred_b))
        if pred_a
        else (np.empty(0, np.int64), np.empty(0, np.int64))
    )
    return ranks, predicted


def _mutual_best(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best_b = np.empty(len(xa), dtype=np.int64)
    col_best = np.full(len(xb), -np.inf)
    col_arg = np.zeros(len(xb), dtype=np.int64)
    for start in range(0, len(xa), _CHUNK):
        s = xa[start : start + _CHUNK] @ xb.T
        best_b[start : start + len(s)] = np.argmax(s, axis=1)
        cmax = s.max(axis=0)
        better = cmax > col_best
        col_best[better] = cmax[better]
        col_arg[better] = np.argmax(s, axis=0)[better] + start
    a_idx = np.arange(len(xa))
    mutual = col_arg[best_b] == a_idx
    return a_idx[mutual], best_b[mutual]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def evaluate_link(ws: Workspace, truth_path: Path, *, seed: int | None = None) -> dict[str, Any]:
    """Metrics of the current model's links against ``truth_path``, with baselines."""
    from crossrec.link.context import LinkContext
    from crossrec.link.mapping import apply_linear, ridge_map
    from crossrec.link.pipeline import LINK_DIR
    from crossrec.models import ModelRegistry

    model_dir = ModelRegistry(ws.models_dir).path()
    link_dir = model_dir / LINK_DIR
    if not (link_dir / "candidates.npz").is_file():
        from crossrec.errors import ModelError

        raise ModelError(
            f"model {model_dir.name} has no linkage results", hint="run `crossrec link` first"
        )
    seed = ws.config.train.seed if seed is None else seed
    ctx = LinkContext.load(model_dir, ws.store, ws.config)
    profiles = ctx.profiles
    truth = read_truth(ws, profiles, Path(truth_path))
    code = ctx.platform_code.astype(np.int64)
    in_pop = np.ones(len(profiles), dtype=bool)
    in_pop[ctx.link_a] = False
    in_pop[ctx.link_b] = False
    n_pop = np.bincount(code[in_pop], minlength=len(ctx.platforms)).astype(np.int64)
    cands = np.load(link_dir / "candidates.npz", allow_pickle=False)
    ranks = system_ranks(
        cands["a_rows"], cands["b_rows"], cands["probability"], truth, code, in_pop, n_pop
    )
    asserted = cands["asserted"] & in_pop[cands["a_rows"]] & in_pop[cands["b_rows"]]
    doc = _summary(ranks, (cands["a_rows"][asserted], cands["b_rows"][asserted]), truth)

    baselines: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    baselines["random"] = baseline_metrics(
        rng.standard_normal((len(profiles), 32)).astype(np.float32), truth, code, in_pop
    )
    if profiles.has_text.any():
        baselines["text_mean"] = baseline_metrics(profiles.text, truth, code, in_pop)
    baselines["cf_mapping"] = _cf_mapping_baseline(
        ctx, truth, code, in_pop, ridge_map, apply_linear
    )
    doc["baselines"] = baselines

    keep = in_pop[cands["a_rows"]] & in_pop[cands["b_rows"]]
    details = link_details(
        cands["a_rows"][keep],
        cands["b_rows"][keep],
        cands["probability"][keep],
        truth,
        code,
        seed=seed,
    )
    summary_path = link_dir / "link.json"
    threshold = None
    if summary_path.is_file():
        threshold = json.loads(summary_path.read_text(encoding="utf-8")).get("threshold")
    details.update(
        model_version=model_dir.name,
        truth_file=str(Path(truth_path).resolve()),
        evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        threshold=threshold,
    )
    save_link_evaluation(ws.reports_dir / LINK_EVAL_FILE, {**doc, "details": details})
    return doc


def link_details(
    a: np.ndarray,
    b: np.ndarray,
    prob: np.ndarray,
    truth: Truth,
    platform_code: np.ndarray,
    *,
    seed: int,
) -> dict[str, Any]:
    """Score distributions, precision-recall curve and calibration of candidate pairs.

    Parameters
    ----------
    a, b : (n,) int
        Profile rows of the candidate pairs (within the population, each pair once).
    prob : (n,) float
        The matcher's calibrated probability of each pair.
    truth : Truth
        The true pairs; every other candidate pair counts as false.
    platform_code : (accounts,) int
        Platform code of every profile row (for the one-to-one assignment).
    seed : int
        Seeds the sample of false pairs.

    Returns
    -------
    dict
        ``true_scores`` (probabilities of the true pairs among the candidates),
        ``false_scores`` (a sample of at most :data:`FALSE_SAMPLE` false pairs, ascending),
        ``n_true_candidates``, ``n_false_candidates``, ``n_truth`` (distinct true pairs),
        ``pr_curve`` (``threshold``, ``precision``, ``recall`` lists, thresholds descending)
        and ``calibration`` (``lower``, ``upper``, ``count``, ``mean_predicted``,
        ``observed`` per bin; null where a bin is empty).
    """
    from crossrec.link.assign import one_to_one

    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    p = np.asarray(prob, dtype=np.float64)
    n = np.int64(max(int(platform_code.shape[0]), 1))
    truth_keys = np.unique(np.minimum(truth.a, truth.b) * n + np.maximum(truth.a, truth.b))
    is_true = np.isin(np.minimum(a, b) * n + np.maximum(a, b), truth_keys)
    false_p = p[~is_true]
    if false_p.size > FALSE_SAMPLE:
        rng = np.random.default_rng(seed)
        false_p = false_p[rng.choice(false_p.size, FALSE_SAMPLE, replace=False)]
    kept = (
        one_to_one(a, b, p, platform_code[a], platform_code[b])
        if a.size
        else np.zeros(0, dtype=bool)
    )
    return {
        "true_scores": _rounded(np.sort(p[is_true])),
        "false_scores": _rounded(np.sort(false_p)),
        "n_true_candidates": int(is_true.sum()),
        "n_false_candidates": int((~is_true).sum()),
        "n_truth": len(truth_keys),
        "pr_curve": _pr_curve(p[kept], is_true[kept], len(truth_keys)),
        "calibration": _calibration(p, is_true),
    }


def _rounded(x: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in x]


def _pr_curve(p: np.ndarray, is_true: np.ndarray, n_truth: int) -> dict[str, list[float]]:
    """Precision and recall of the pairs with probability >= each distinct threshold."""
    order = np.argsort(-p, kind="stable")
    p, is_true = p[order], is_true[order]
    tp = np.cumsum(is_true)
    # the last pair of each run of equal probabilities closes that threshold
    ends = np.flatnonzero(np.r_[p[1:] != p[:-1], True]) if p.size else np.zeros(0, np.int64)
    if ends.size > PR_POINTS:
        pick = np.unique(np.linspace(0, ends.size - 1, PR_POINTS).round().astype(np.int64))
        ends = ends[pick]
    return {
        # unrounded: probabilities a hair below 1 are distinct thresholds
        "threshold": [float(v) for v in p[ends]],
        "precision": _rounded(tp[ends] / (ends + 1)),
        "recall": _rounded(tp[ends] / n_truth) if n_truth else [],
    }


def _calibration(p: np.ndarray, is_true: np.ndarray) -> dict[str, list[Any]]:
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, CALIBRATION_BINS - 1)
    count = np.bincount(bins, minlength=CALIBRATION_BINS)
    sum_p = np.bincount(bins, weights=p, minlength=CALIBRATION_BINS)
    sum_t = np.bincount(bins, weights=is_true.astype(np.float64), minlength=CALIBRATION_BINS)

    def share(sums: np.ndarray) -> list[float | None]:
        return [round(float(s / c), 6) if c else None for s, c in zip(sums, count, strict=True)]

    return {
        "lower": _rounded(edges[:-1]),
        "upper": _rounded(edges[1:]),
        "count": [int(c) for c in count],
        "mean_predicted": share(sum_p),
        "observed": share(sum_t),
    }


def save_link_evaluation(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as JSON to ``path`` atomically (readers see the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _cf_mapping_baseline(
    ctx: Any,
    truth: Truth,
    code: np.ndarray,
    in_pop: np.ndarray,
    ridge_map: Any,
    apply_linear: Any,
) -> dict[str, Any]:
    """Ridge map between per-platform ALS spaces learned from the known links, per ordered
    platform pair of the truth."""
    profiles = ctx.profiles
    ranks = np.empty(len(truth.a), dtype=np.float64)
    pred_a: list[np.ndarray] = []
    pred_b: list[np.ndarray] = []
    pairs = sorted({(int(x), int(y)) for x, y in zip(code[truth.a], code[truth.b], strict=True)})
    for pa_code, pb_code in pairs:
        sel = np.flatnonzero((code[truth.a] == pa_code) & (code[truth.b] == pb_code))
        la, lb = ctx.link_a, ctx.link_b
        fwd = (code[la] == pa_code) & (code[lb] == pb_code)
        bwd = (code[la] == pb_code) & (code[lb] == pa_code)
        src = np.concatenate([la[fwd], lb[bwd]])
        dst = np.concatenate([lb[fwd], la[bwd]])
        mapped = np.zeros((len(profiles), profiles.cf.shape[1]), dtype=np.float32)
        if len(src) >= 2:  # with fewer anchors the map is undefined: all scores tie
            w = ridge_map(profiles.cf[src], profiles.cf[dst], alpha=1.0)
            rows_a = np.flatnonzero(code == pa_code)
            mapped[rows_a] = apply_linear(profiles.cf[rows_a], w)
        r, (pa_rows, pb_rows) = baseline_parts(
            profiles.cf, Truth(truth.a[sel], truth.b[sel]), code, in_pop, query_vectors=mapped
        )
        ranks[sel] = r
        pred_a.append(pa_rows)
        pred_b.append(pb_rows)
    return _summary(ranks, (np.concatenate(pred_a), np.concatenate(pred_b)), truth)
