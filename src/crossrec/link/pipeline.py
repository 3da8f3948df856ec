"""``crossrec link``: candidates → signals → matcher → assignment → threshold → identity graph.

The matcher learns from the known links: for every account with a known partner on platform
B, its candidates on B are training pairs (the partner positive, the others hard negatives).
Probabilities are calibrated on held-out accounts, and the threshold that reaches the target
precision (``link.link_precision``) on held-out known links after assignment is the operating
point. When no threshold reaches it, nothing is asserted and the summary says why. Accounts
sharing a pseudonymised identifier are linked with probability 1 and that evidence.

Results: the store's ``links`` (asserted links with probability, rank and evidence) and
``persons`` (connected components over asserted and known links) tables, and
``models/<version>/link/`` (candidate scores, matcher, CF mappings, summary).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from crossrec.models import ModelRegistry
from crossrec.progress import NullProgress, ProgressHook, step

if TYPE_CHECKING:
    from crossrec.link.context import LinkContext
    from crossrec.workspace import Workspace

LINK_DIR = "link"
#: Fewest held-out links the operating threshold must assert for its precision to count.
MIN_HELDOUT_LINKS = 10


@dataclass
class Training:
    """Directed training rows: source account, candidate, label."""

    src: np.ndarray
    dst: np.ndarray
    pair: np.ndarray  # row into the candidate arrays
    y: np.ndarray


def _partner_table(ctx: LinkContext) -> np.ndarray:
    """(accounts, platforms) int64: each account's known partner's row on each platform, -1
    where it has none."""
    table = np.full((len(ctx), len(ctx.platforms)), -1, dtype=np.int64)
    code = ctx.platform_code
    table[ctx.link_a, code[ctx.link_b]] = ctx.link_b
    table[ctx.link_b, code[ctx.link_a]] = ctx.link_a
    return table


def training_rows(ctx: LinkContext, a: np.ndarray, b: np.ndarray) -> Training:
    """Candidate pairs seen from each side whose source has a known partner there."""
    partner = _partner_table(ctx)
    src_l, dst_l, pair_l, y_l = [], [], [], []
    code = ctx.platform_code
    for side_src, side_dst in ((a, b), (b, a)):
        lookup = partner[side_src, code[side_dst]]
        sel = np.flatnonzero(lookup >= 0)
        src_l.append(side_src[sel])
        dst_l.append(side_dst[sel])
        pair_l.append(sel)
        y_l.append(lookup[sel] == side_dst[sel])
    return Training(
        np.concatenate(src_l), np.concatenate(dst_l), np.concatenate(pair_l), np.concatenate(y_l)
    )


def run_link(ws: Workspace, *, progress: ProgressHook | None = None) -> dict[str, Any]:
    """Link the accounts of the current model's platforms; returns the summary."""
    from crossrec.link.assign import one_to_one
    from crossrec.link.candidates import generate_candidates, pair_ranks
    from crossrec.link.context import LinkContext
    from crossrec.link.features import matcher_view, out_of_fold_cf
    from crossrec.link.graph import components, platform_conflicts
    from crossrec.link.mapping import fit_mappings
    from crossrec.link.matcher import Matcher
    from crossrec.link.signals import compute_signals

    hook = progress or NullProgress()
    started = time.perf_counter()
    cfg = ws.config
    registry = ModelRegistry(ws.models_dir)
    model_dir = registry.path()
    version = model_dir.name
    with step(hook, "loading model and store"):
        ctx = LinkContext.load(model_dir, ws.store, cfg)
    with step(hook, "CF space mappings from known links"):
        mappings = fit_mappings(ctx, (ctx.link_a, ctx.link_b), seed=cfg.train.seed)
    cands = generate_candidates(ctx, mappings, progress=hook)
    ctx.save_built_indexes()  # the CF indexes: the online linker loads them, never builds
    a, b, ranks = cands.a_rows, cands.b_rows, cands.ranks
    # known links missing from the candidates still teach the matcher
    n = len(ctx)
    missing = np.flatnonzero(~np.isin(ctx.link_a * n + ctx.link_b, a * n + b))
    if len(missing):
        with step(hook, f"candidate ranks of {len(missing):,} known links not among them"):
            ma, mb = ctx.link_a[missing], ctx.link_b[missing]
            extra = pair_ranks(ctx, mappings, ma, mb)
            a, b = np.concatenate([a, ma]), np.concatenate([b, mb])
            ranks = np.concatenate([ranks, extra])
            order = np.lexsort((b, a))
            a, b, ranks = a[order], b[order], ranks[order]
    with step(hook, f"signals of {len(a):,} candidate pairs"):
        X, names = compute_signals(ctx, mappings, a, b, ranks)
    train = training_rows(ctx, a, b)
    with step(hook, "out-of-fold CF signals for known-linked accounts"):
        X = out_of_fold_cf(ctx, a, b, X, names, seed=cfg.train.seed)
    with step(hook, "matcher inputs (signals relative to each candidate list)"):
        Xm, m_names = matcher_view(ctx, a, b, X, names, _anchor_rows(ctx, model_dir))
        # signals that carry nothing here (no timestamps, no text on a platform) are left out
        used = _informative(Xm[train.pair]) if len(train.pair) else np.ones(len(m_names), bool)
    # scoring every candidate pair is the cost at scale; the batch job may use every core
    matcher = Matcher(n_threads=os.cpu_count() or 1)
    with step(hook, "matcher"):
        matcher.fit(
            Xm[train.pair][:, used],
            train.y,
            train.src,
            seed=cfg.train.seed,
            feature_names=[n for n, u in zip(m_names, used, strict=True) if u],
            partners=train.dst,
        )
        prob = matcher.predict_proba(Xm[:, used])
    ident = X[:, names.index("identifiers_equal")]
    by_identifier = np.nan_to_num(ident) > 0
    prob = np.where(by_identifier, 1.0, prob)

    with step(hook, "one-to-one assignment and the operating threshold"):
        # accounts already linked (known) to one of the other side's platform are settled
        partner, code = _partner_table(ctx), ctx.platform_code
        eligible = (partner[a, code[b]] < 0) & (partner[b, code[a]] < 0)
        keep = np.zeros(len(a), dtype=bool)
        keep[eligible] = one_to_one(
            a[eligible], b[eligible], prob[eligible], code[a[eligible]], code[b[eligible]]
        )
        choice, reason = _choose_threshold(
            matcher, train, a, b, prob, eligible, ctx, cfg.link.link_precision, cfg.train.seed
        )
    threshold = choice.threshold if choice is not None else None
    asserted = keep & (by_identifier | (prob >= threshold if threshold is not None else False))
    with step(hook, "identity graph, links and persons tables"):
        pair_rank = _candidate_rank(a, b, prob, ctx.platform_code)
        graph = components(
            len(ctx),
            np.concatenate([a[asserted], ctx.link_a]),
            np.concatenate([b[asserted], ctx.link_b]),
            cfg.link.max_component_size,
        )
        links, persons = _tables(
            ctx, a, b, prob, pair_rank, asserted, by_identifier, X, names, graph.component, version
        )
        ws.store.replace_links(links, persons)
    summary: dict[str, Any] = {
        "model_version": version,
        "candidate_pairs": len(a),
        "known_links": len(ctx.link_a),
        "asserted_links": int(asserted.sum()),
        "identifier_links": int((asserted & by_identifier).sum()),
        "persons": int(persons.num_rows and len(set(persons.column("person").to_pylist()))),
        "withheld_components": [int(c) for c in graph.withheld],
        # persons holding two accounts of one platform (one-to-one holds per platform pair,
        # so only chains across three or more platforms can produce them)
        "platform_conflicts": [
            int(c) for c in platform_conflicts(graph.component, ctx.platform_code).components
        ],
        "threshold": threshold,
        "target_precision": cfg.link.link_precision,
        "heldout_precision": None if choice is None else choice.precision,
        "heldout_recall": None if choice is None else choice.recall,
        "reason": reason,
        "matcher": {"mode": matcher.mode, "why": matcher.mode_reason, **matcher.metrics},
        "seconds": round(time.perf_counter() - started, 1),
    }
    _save(model_dir, a, b, prob, asserted, matcher, mappings, summary)
    return summary


def _anchor_rows(ctx: LinkContext, model_dir: Path) -> np.ndarray:
    """Profile rows of the known links the sequence encoder was trained on. Models without the
    record count every known link as seen."""
    from crossrec.train import ANCHORS_FILE

    seen = np.zeros(len(ctx), dtype=bool)
    path = model_dir / "sequence" / ANCHORS_FILE
    if not path.is_file():
        seen[ctx.link_a] = True
        seen[ctx.link_b] = True
        return seen
    for side_a, side_b in json.loads(path.read_text(encoding="utf-8")):
        for platform, account in (side_a, side_b):
            row = ctx.profiles.row(platform, account)
            if row is not None:
                seen[row] = True
    return seen


def _informative(X: np.ndarray) -> np.ndarray:
    """Columns with at least two distinct non-NaN values."""
    keep = np.zeros(X.shape[1], dtype=bool)
    for j in range(X.shape[1]):
        col = X[:, j]
        col = col[~np.isnan(col)]
        keep[j] = col.size > 0 and bool((col != col[0]).any())
    return keep


def _choose_threshold(
    matcher: Any,
    train: Training,
    a: np.ndarray,
    b: np.ndarray,
    prob: np.ndarray,
    eligible: np.ndarray,
    ctx: LinkContext,
    target: float,
    seed: int,
) -> tuple[Any, str | None]:
    from crossrec.link.assign import ThresholdChoice, one_to_one, threshold_for_precision

    if matcher.mode != "supervised":
        t = matcher.default_threshold
        reason = f"unsupervised: {matcher.mode_reason}; documented threshold {t}"
        return ThresholdChoice(t, float("nan"), float("nan"), reason), reason
    idx = matcher.heldout_index
    if idx.size == 0:
        return None, "no held-out known links to choose a threshold on"
    # Held-out known-linked accounts compete with every unsettled pair, as at linking time.
    # Every one of them has its partner among the candidates, while many accounts of the
    # population have none (people on one platform only): to count the false links such
    # accounts draw, half of the held-out accounts (seeded) lose their true partner.
    scores, labels = matcher.heldout_scores, matcher.heldout_labels
    groups = matcher.heldout_groups
    uniq = np.unique(groups)
    orphan = np.random.default_rng(seed).permutation(len(uniq)) < len(uniq) // 2
    orphaned = np.isin(groups, uniq[orphan])
    stay = ~(orphaned & labels)
    idx, scores, labels, groups = idx[stay], scores[stay], labels[stay], groups[stay]
    src, dst = train.src[idx], train.dst[idx]
    pool_a = np.concatenate([src, a[eligible]])
    pool_b = np.concatenate([dst, b[eligible]])
    pool_s = np.concatenate([scores, prob[eligible]])
    codes = ctx.platform_code
    kept = one_to_one(pool_a, pool_b, pool_s, codes[pool_a], codes[pool_b])[: len(idx)]
    n_pos = len(np.unique(groups[labels]))
    # a precision measured on a handful of links says little: ask for MIN_HELDOUT_LINKS, and
    # judge each threshold by its precision under a uniform prior (see threshold_for_precision)
    choice = threshold_for_precision(
        scores[kept],
        labels[kept],
        target,
        n_positives=n_pos,
        min_predicted=MIN_HELDOUT_LINKS,
        laplace=True,
    )
    if choice.threshold is None:
        return None, choice.reason
    return choice, None


def _candidate_rank(a: np.ndarray, b: np.ndarray, prob: np.ndarray, code: np.ndarray) -> np.ndarray:
    """1-based rank of b among a's candidates on b's platform, by probability."""
    n_plat = int(code.max()) + 1
    key = a * n_plat + code[b]
    order = np.lexsort((b, -prob, key))
    ranks = np.empty(len(a), dtype=np.int32)
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    ranks[order] = np.arange(len(order)) - group_start + 1
    return ranks


def _tables(
    ctx: LinkContext,
    a: np.ndarray,
    b: np.ndarray,
    prob: np.ndarray,
    rank: np.ndarray,
    asserted: np.ndarray,
    by_identifier: np.ndarray,
    X: np.ndarray,
    names: list[str],
    component: np.ndarray,
    version: str,
) -> tuple[pa.Table, pa.Table]:
    from crossrec.link.signals import evidence

    idx = np.flatnonzero(asserted)
    profiles = ctx.profiles
    ev = [
        json.dumps(
            [
                {
                    "signal": "identifiers_equal",
                    "value": 1.0,
                    "text": "they share a pseudonymised identifier",
                }
            ]
            if by_identifier[i]
            else evidence(names, X[i]),
            sort_keys=True,
        )
        for i in idx
    ]
    links = pa.table(
        {
            "platform_a": pa.array(profiles.platform[a[idx]].astype(str)),
            "account_a": pa.array(profiles.account[a[idx]].astype(str)),
            "platform_b": pa.array(profiles.platform[b[idx]].astype(str)),
            "account_b": pa.array(profiles.account[b[idx]].astype(str)),
            "probability": pa.array(np.round(prob[idx], 6), pa.float64()),
            "rank": pa.array(rank[idx], pa.int32()),
            "evidence": pa.array(ev, pa.string()),
            "source": pa.array(["identifier" if by_identifier[i] else "matcher" for i in idx]),
            "model_version": pa.array([version] * len(idx), pa.string()),
        }
    )
    sizes = np.bincount(component[component >= 0]) if (component >= 0).any() else np.zeros(0)
    linked = np.flatnonzero(
        (component >= 0) & (sizes[np.maximum(component, 0)] > 1)
        if sizes.size
        else np.zeros(0, dtype=bool)
    )
    persons = pa.table(
        {
            "platform": pa.array(profiles.platform[linked].astype(str)),
            "account": pa.array(profiles.account[linked].astype(str)),
            "person": pa.array(component[linked], pa.int64()),
            "model_version": pa.array([version] * len(linked), pa.string()),
        }
    )
    return links, persons


def _save(
    model_dir: Path,
    a: np.ndarray,
    b: np.ndarray,
    prob: np.ndarray,
    asserted: np.ndarray,
    matcher: Any,
    mappings: Any,
    summary: dict[str, Any],
) -> None:
    tmp = model_dir / f".{LINK_DIR}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    np.savez(tmp / "candidates.npz", a_rows=a, b_rows=b, probability=prob, asserted=asserted)
    matcher.save(tmp / "matcher")
    if mappings is not None:
        mappings.save(tmp / "mappings")
    (tmp / "link.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    final = model_dir / LINK_DIR
    if final.exists():
        old = model_dir / f".{LINK_DIR}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
