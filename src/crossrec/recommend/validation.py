"""Tuning the blend on validation accounts drawn from the training data.

Per platform P, two validation sets are built (seeded), never from a test file:

- **warm**: accounts with at least ``MIN_WARM`` interactions on P; a random 20 % of each one's
  items is held out, CF on P is refitted without them and the sequence vector is re-encoded
  from the rest, so no held-out item leaks into the components scored;
- **cold**: accounts of P known-linked to an account elsewhere (preferring links the sequence
  encoder was not trained to pull together); the P account's whole history is the target and
  its own vectors are ignored, as for an account new to P. The EMCDR maps are learned out of
  fold (two folds), so a validation person never teaches its own map.

Weights are then tuned by :func:`crossrec.recommend.blend.tune` (a step must beat the current
weights by more than half a standard error of the per-account differences) and saved as
``blend.json``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from crossrec.recommend.blend import DEFAULT_WEIGHTS, BlendWeights, Example, make_example, tune
from crossrec.recommend.components import COMPONENTS, Maps, Query, component_scores, fit_maps

if TYPE_CHECKING:
    from crossrec.config import TrainConfig
    from crossrec.progress import ProgressHook
    from crossrec.recommend.parts import RecommendParts
    from crossrec.represent.sequence import SequenceEncoder

#: Where coordinate ascent starts. Behaviour on another platform is often weak evidence for a
#: new platform (disjoint catalogues): cold-start tuning starts from popularity alone and adds
#: a component only where validation shows a gain beyond noise.
TUNING_START: dict[str, dict[str, float]] = {"cold": {"popularity": 1.0}}
#: Validation accounts per platform and regime.
MAX_VALIDATION = 600
MIN_WARM = 5
HOLDOUT = 0.2


def tune_blend(
    parts: RecommendParts,
    events: pa.Table,
    config: TrainConfig,
    *,
    encoder: SequenceEncoder | None,
    anchors: set[tuple[str, str]],
    out: Path,
    progress: ProgressHook,
) -> dict[str, Any]:
    """Tune and save the blend weights of every platform; returns the validation figures."""
    rng = np.random.default_rng([config.seed, 0xB1E])
    weights = BlendWeights()
    task = progress.task("recommender blend (validation)", total=2 * len(parts.platforms))
    full_maps = fit_maps(parts)
    for name in sorted(parts.platforms):
        figures: dict[str, Any] = {}
        warm = _warm_examples(parts, name, events, config, encoder, full_maps, rng)
        task.advance()
        cold = _cold_examples(parts, name, anchors, rng)
        task.advance()
        for regime, examples in (("warm", warm), ("cold", cold)):
            if len(examples) < 20:
                figures[regime] = {"accounts": len(examples), "note": "too few; defaults kept"}
                continue
            tuned, start, best = tune(examples, TUNING_START.get(regime, DEFAULT_WEIGHTS[regime]))
            weights.weights.setdefault(name, {})[regime] = tuned
            figures[regime] = {
                "accounts": len(examples),
                "ndcg@10_default": round(float(start), 5),
                "ndcg@10_tuned": round(float(best), 5),
                "ndcg@10_single": _singles(examples),
                "weights": tuned,
            }
        weights.validation[name] = figures
    task.done()
    weights.save(out)
    return weights.validation


def _singles(examples: list[Example]) -> dict[str, float]:
    from crossrec.recommend.blend import ndcg

    out: dict[str, float] = {}
    for i, c in enumerate(COMPONENTS):
        if any(np.any(ex.z[i]) for ex in examples):
            w = np.zeros(len(COMPONENTS))
            w[i] = 1.0
            out[c] = round(float(ndcg(examples, w)), 5)
    return out


def _warm_examples(
    parts: RecommendParts,
    name: str,
    events: pa.Table,
    config: TrainConfig,
    encoder: SequenceEncoder | None,
    maps: Maps,
    rng: np.random.Generator,
) -> list[Example]:
    from crossrec.represent.cf import CFModel
    from crossrec.represent.itemknn import fit_item_knn

    p = parts.platforms[name]
    m = p.matrix.matrix.tocsr()
    counts = np.diff(m.indptr)
    eligible = np.flatnonzero(counts >= MIN_WARM)
    if len(eligible) == 0:
        return []
    rows = np.sort(rng.choice(eligible, min(MAX_VALIDATION, len(eligible)), replace=False))
    held: dict[int, np.ndarray] = {}
    keep = np.ones(m.nnz, bool)
    for r in rows.tolist():
        lo, hi = m.indptr[r], m.indptr[r + 1]
        n_out = max(1, round(HOLDOUT * (hi - lo)))
        out_pos = lo + rng.choice(hi - lo, n_out, replace=False)
        keep[out_pos] = False
        held[r] = m.indices[out_pos].copy()
    coo = m.tocoo()
    m_train = sp.csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=m.shape, dtype=np.float32
    )
    cf = CFModel.from_config(config).fit(m_train)
    matrix = dataclasses.replace(p.matrix, matrix=m_train)
    touched = np.diff(m_train.tocsc().indptr)
    refit = dataclasses.replace(
        p,
        matrix=matrix,
        cf=cf,
        popularity=np.log1p(touched.astype(np.float64)),
        item_knn=fit_item_knn(m_train) if p.item_knn is not None else None,
        updated={},
    )
    vparts = dataclasses.replace(parts, platforms={**parts.platforms, name: refit}, cache={})
    orders = _item_orders(events, name, p.matrix.accounts[rows])
    examples: list[Example] = []
    for r in rows.tolist():
        account = str(p.matrix.accounts[r])
        seen = m_train.indices[m_train.indptr[r] : m_train.indptr[r + 1]]
        own_seq = None
        if encoder is not None and p.seq_items.shape[1]:
            held_items = set(p.matrix.items[held[r]].tolist())
            kept = [it for it in orders.get(account, []) if it not in held_items]
            if kept:
                own_seq = encoder.encode_account(name, kept)
        prow = parts.profiles.row(name, account)
        query = Query(
            platform=name,
            account=account,
            own_cf=cf.user_factors[r],
            own_seq=own_seq,
            seen=seen.astype(np.int64),
            linked=parts.linked(name, account),
            exclude_rows=frozenset({prow} if prow is not None else ()),
        )
        ex = make_example(component_scores(vparts, query, maps), held[r], query.seen)
        if ex is not None:
            examples.append(ex)
    return examples


def _cold_examples(
    parts: RecommendParts, name: str, anchors: set[tuple[str, str]], rng: np.random.Generator
) -> list[Example]:
    p = parts.platforms[name]
    chosen: list[str] = []
    fallback: list[str] = []
    for (platform, account), linked in parts.links.items():
        if platform != name or p.row(account) is None:
            continue
        usable = [
            (q, b) for q, b, _ in linked if q in parts.platforms and parts.platforms[q].row(b)
        ]
        if not usable:
            continue
        if (platform, account) in anchors:
            fallback.append(account)
        else:
            chosen.append(account)
    pool = chosen if len(chosen) >= 40 else chosen + fallback
    if not pool:
        return []
    picked = sorted(rng.choice(np.asarray(pool), min(MAX_VALIDATION, len(pool)), replace=False))
    folds = [picked[0::2], picked[1::2]]
    examples: list[Example] = []
    for fold in folds:
        skip = frozenset((name, a) for a in fold)
        maps = fit_maps(parts, skip=skip)
        for account in fold:
            cols, _ = p.history(account)
            prow = parts.profiles.row(name, account)
            query = Query(
                platform=name,
                account=account,
                linked=parts.linked(name, account),
                exclude_rows=frozenset({prow} if prow is not None else ()),
            )
            ex = make_example(component_scores(parts, query, maps), cols, np.zeros(0, np.int64))
            if ex is not None:
                examples.append(ex)
    return examples


def _item_orders(events: pa.Table, platform: str, accounts: np.ndarray) -> dict[str, list[str]]:
    """Each account's items on ``platform`` in event order (events come sorted by seq)."""
    mask = pc.and_(
        pc.equal(events.column("platform"), platform),
        pc.is_in(events.column("account"), value_set=pa.array(accounts.astype(str).tolist())),
    )
    sub = events.filter(mask).select(["account", "item"])
    out: dict[str, list[str]] = {}
    for a, it in zip(
        sub.column("account").to_pylist(), sub.column("item").to_pylist(), strict=True
    ):
        out.setdefault(a, []).append(it)
    return out
