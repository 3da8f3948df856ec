"""``crossrec link``: candidates → signals → matcher → assignment → threshold → identity graph.

The matcher learns from the known links: for every account with a known partner on platform
B, its candidates on B are training pairs (the partner positive, the others hard negatives).
It is cross-fitted by person, so every known link has an out-of-fold score; the operating
point (:mod:`crossrec.link.operating`) simulates linking on all of them, estimates the share
of accounts that have a partner at all, certifies the lowest threshold whose precision reaches
``link.link_precision`` and maps pair probabilities to link probabilities. Before that, the
matcher's out-of-fold ranking of the known partners is compared with each single signal, a
plain sum of z-scored signals and the ridge-mapped CF cosine (:mod:`crossrec.link.selection`);
the best scorer is used. Accounts sharing a pseudonymised identifier are linked with
probability 1 and that evidence.

Results: the store's ``links`` (mutual-best links with probability, status — ``asserted`` at
or above the certified threshold, ``probable`` below it with a link probability of at least
0.5 — rank and evidence) and ``persons`` (connected components over asserted and known links)
tables, and ``models/<version>/link/`` (candidate scores, matcher, CF mappings, summary).
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


def run_link(
    ws: Workspace,
    *,
    progress: ProgressHook | None = None,
    precision: float | None = None,
    engine: str | None = None,
    master: str | None = None,
) -> dict[str, Any]:
    """Link the accounts of the current model's platforms; returns the summary.
    ``precision`` overrides ``link.link_precision`` for this run; ``engine`` (``local`` or
    ``spark``) and ``master`` override ``[engine]`` for the steps the engine runs (one-to-one
    assignment and the identity graph)."""
    from crossrec.engine import make_engine

    cfg = ws.config
    if engine is not None:
        cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"kind": engine})})
    runner = make_engine(cfg, master=master)
    try:
        return _run_link(ws, runner, cfg.engine.kind, progress=progress, precision=precision)
    finally:
        runner.close()


def _run_link(
    ws: Workspace,
    runner: Any,
    engine_kind: str,
    *,
    progress: ProgressHook | None = None,
    precision: float | None = None,
) -> dict[str, Any]:
    from crossrec.link.candidates import encoder_anchors, generate_candidates, pair_ranks
    from crossrec.link.context import LinkContext
    from crossrec.link.features import matcher_view, out_of_fold_cf
    from crossrec.link.graph import consistent_links, platform_conflicts
    from crossrec.link.mapping import fit_mappings
    from crossrec.link.matcher import Matcher
    from crossrec.link.operating import PROBABLE_FLOOR, Units, choose_operating_point
    from crossrec.link.selection import select_scorer
    from crossrec.link.signals import compute_signals
    from crossrec.link.unseen import cross_fitted_pairs

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
    # False for the known links the candidate generator did not find
    found = np.ones(len(a), dtype=bool)
    if len(missing):
        with step(hook, f"candidate ranks of {len(missing):,} known links not among them"):
            ma, mb = ctx.link_a[missing], ctx.link_b[missing]
            extra = pair_ranks(ctx, mappings, ma, mb)
            a, b = np.concatenate([a, ma]), np.concatenate([b, mb])
            ranks = np.concatenate([ranks, extra])
            found = np.concatenate([found, np.zeros(len(ma), dtype=bool)])
            order = np.lexsort((b, a))
            a, b, ranks, found = a[order], b[order], ranks[order], found[order]
    with step(hook, "candidate lists of the known-linked accounts with cross-fitted CF maps"):
        cross_fitted = cross_fitted_pairs(ctx, seed=cfg.train.seed)
    # False also for a known partner only the CF maps fitted on its own link find
    found_cv = found.copy()
    if cross_fitted is not None:
        key = a.astype(np.int64) * n + b
        is_known = np.isin(key, ctx.link_a.astype(np.int64) * n + ctx.link_b)
        found_cv &= ~is_known | np.isin(key, cross_fitted)
    with step(hook, f"signals of {len(a):,} candidate pairs"):
        X, names = compute_signals(ctx, mappings, a, b, ranks)
    train = training_rows(ctx, a, b)
    with step(hook, "out-of-fold CF signals for known-linked accounts"):
        X = out_of_fold_cf(ctx, a, b, X, names, seed=cfg.train.seed)
    with step(hook, "matcher inputs (signals relative to each candidate list)"):
        Xm, m_names = matcher_view(ctx, a, b, X, names, encoder_anchors(ctx))
        # signals that carry nothing here (no timestamps, no text on a platform) are left out
        used = _informative(Xm[train.pair]) if len(train.pair) else np.ones(len(m_names), bool)
    # scoring every candidate pair is the cost at scale; the batch job may use every core
    matcher = Matcher(n_threads=os.cpu_count() or 1)
    person = _known_persons(ctx)
    with step(hook, "matcher, cross-fitted by person"):
        matcher.fit(
            Xm[train.pair][:, used],
            train.y,
            train.src,
            seed=cfg.train.seed,
            feature_names=[n for n, u in zip(m_names, used, strict=True) if u],
            partners=train.dst,
            persons=person[train.src],
        )
        pair_prob = (
            matcher.pair_proba(Xm[:, used])
            if matcher.mode == "supervised"
            else matcher.predict_proba(Xm[:, used])
        )
    ident = X[:, names.index("identifiers_equal")]
    by_identifier = np.nan_to_num(ident) > 0
    target = cfg.link.link_precision if precision is None else float(precision)

    # accounts already linked (known) to one of the other side's platform are settled
    partner, code = _partner_table(ctx), ctx.platform_code
    eligible = (partner[a, code[b]] < 0) & (partner[b, code[a]] < 0)
    selection: dict[str, Any] = {}
    oof_scores = matcher.heldout_scores
    if matcher.mode == "supervised":
        with step(hook, "scorer selection on the known links (out of fold)"):
            selection, scorer, scorer_oof = select_scorer(
                ctx,
                train,
                matcher.heldout_index,
                matcher.heldout_scores,
                Xm[:, used],
                [n for n, u in zip(m_names, used, strict=True) if u],
                found_cv,
                matcher.folds,
                seed=cfg.train.seed,
            )
            if scorer is not None and scorer_oof is not None:
                matcher.set_scorer(scorer)
                pair_prob = matcher.pair_proba(Xm[:, used])
                oof_scores = scorer_oof
    with step(hook, "operating point from every known link, one-to-one assignment"):
        point = None
        if matcher.mode == "supervised":
            rows = matcher.heldout_index
            units = Units(
                train.src[rows],
                train.dst[rows],
                oof_scores,
                train.y[rows],
                # the partner when found; a negative only when the other account is unsettled
                # toward the source's platform: a settled account is never linked, here too
                found_cv[train.pair[rows]]
                & (train.y[rows] | (partner[train.dst[rows], code[train.src[rows]]] < 0)),
                matcher.folds,
            )
            point = choose_operating_point(
                units, a[eligible], b[eligible], pair_prob[eligible], code, target, len(ctx.link_a)
            )
            matcher.set_link_calibration(point.link_x, point.link_y)
            prob = matcher.link_probability(pair_prob)
            threshold = (
                None
                if point.threshold is None
                else float(matcher.link_probability(np.array([point.threshold]))[0])
            )
            reason = point.reason
        else:
            prob = pair_prob
            threshold = matcher.default_threshold
            reason = f"unsupervised: {matcher.mode_reason}; documented threshold {threshold}"
        prob = np.where(by_identifier, 1.0, prob)
        keep = np.zeros(len(a), dtype=bool)
        keep[eligible] = runner.one_to_one(
            a[eligible], b[eligible], prob[eligible], code[a[eligible]], code[b[eligible]]
        )
    above = prob >= threshold if threshold is not None else np.zeros(len(a), dtype=bool)
    asserted = keep & (by_identifier | above)
    # across three or more platforms a chain of links could give a person two accounts of
    # one platform: the weakest link of such a chain is not asserted
    chosen = np.flatnonzero(asserted)
    consistent = consistent_links(
        len(ctx), code, ctx.link_a, ctx.link_b, a[chosen], b[chosen], prob[chosen]
    )
    asserted[chosen[~consistent]] = False
    probable = keep & ~asserted & (prob >= PROBABLE_FLOOR)
    with step(hook, "identity graph, links and persons tables"):
        pair_rank = _candidate_rank(a, b, prob, ctx.platform_code)
        graph = runner.components(
            len(ctx),
            np.concatenate([a[asserted], ctx.link_a]),
            np.concatenate([b[asserted], ctx.link_b]),
            cfg.link.max_component_size,
        )
        links, persons = _tables(
            ctx,
            a,
            b,
            prob,
            pair_rank,
            asserted,
            probable,
            by_identifier,
            X,
            names,
            graph.component,
            version,
        )
        ws.store.replace_links(links, persons)
    summary: dict[str, Any] = {
        "model_version": version,
        "candidate_pairs": len(a),
        "known_links": len(ctx.link_a),
        "asserted_links": int(asserted.sum()),
        "probable_links": int(probable.sum()),
        "identifier_links": int((asserted & by_identifier).sum()),
        "persons": int(persons.num_rows and len(set(persons.column("person").to_pylist()))),
        "withheld_components": [int(c) for c in graph.withheld],
        # persons holding two accounts of one platform (one-to-one holds per platform pair,
        # so only chains across three or more platforms can produce them)
        "platform_conflicts": [
            int(c) for c in platform_conflicts(graph.component, ctx.platform_code).components
        ],
        "threshold": threshold,
        "target_precision": target,
        # estimated out of fold on every known link (see crossrec.link.operating)
        "heldout_precision": None if point is None else point.precision,
        "heldout_recall": None if point is None else point.recall,
        "reason": reason,
        "operating_point": None if point is None else point.summary(),
        "candidate_recall": candidate_recall(ctx, found, found_cv, train),
        "candidates": cands.report(),
        "selection": selection,
        "links_sha256": links_sha256(links),
        "engine": engine_kind,
        "matcher": {"mode": matcher.mode, "why": matcher.mode_reason, **matcher.metrics},
        "seconds": round(time.perf_counter() - started, 1),
    }
    _save(model_dir, a, b, prob, asserted, probable, matcher, mappings, summary)
    return summary


def _informative(X: np.ndarray) -> np.ndarray:
    """Columns with at least two distinct non-NaN values."""
    keep = np.zeros(X.shape[1], dtype=bool)
    for j in range(X.shape[1]):
        col = X[:, j]
        col = col[~np.isnan(col)]
        keep[j] = col.size > 0 and bool((col != col[0]).any())
    return keep


def _known_persons(ctx: LinkContext) -> np.ndarray:
    """(accounts,) int: one id per group of accounts joined by known links (the account's own
    row for an account without one), so that cross-fitting keeps a person in one fold."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(ctx)
    graph = sp.coo_matrix(
        (np.ones(len(ctx.link_a), dtype=np.int8), (ctx.link_a, ctx.link_b)), shape=(n, n)
    )
    _, label = connected_components(graph.tocsr(), directed=False)
    return label.astype(np.int64)


def candidate_recall(
    ctx: LinkContext, found: np.ndarray, found_cv: np.ndarray, train: Training
) -> dict[str, Any]:
    """Share of known partners among the candidates, as generated (``as_generated``) and with
    CF maps fitted without their link (``cross_fitted``: how a partner still to be found meets
    the candidate generator), for the links the sequence encoder learnt from (``seen``), for
    the others (``unseen``: the headline figure) and for all."""
    from crossrec.link.candidates import encoder_anchors

    anchors = encoder_anchors(ctx)
    pos = train.y
    pairs = train.pair[pos]
    seen = anchors[train.src[pos]] | anchors[train.dst[pos]]

    def share(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        return {
            "links": n // 2,
            "as_generated": round(float(found[pairs][mask].mean()), 4) if n else None,
            "cross_fitted": round(float(found_cv[pairs][mask].mean()), 4) if n else None,
        }

    return {"unseen": share(~seen), "seen": share(seen), "all": share(np.ones_like(seen))}


def links_sha256(links: pa.Table) -> str:
    """SHA-256 of the links table in a canonical text form: one line per link, sorted by
    platform and account (a, then b), fields tab-separated, probability to six decimals."""
    import hashlib

    cols = ("platform_a", "account_a", "platform_b", "account_b", "probability", "status")
    data = {c: links.column(c).to_pylist() for c in cols if c in links.column_names}
    rows = sorted(zip(*(data[c] for c in cols if c in data), strict=True))
    digest = hashlib.sha256()
    for row in rows:
        fields = [f"{v:.6f}" if isinstance(v, float) else str(v) for v in row]
        digest.update(("\t".join(fields) + "\n").encode("utf-8"))
    return digest.hexdigest()


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
    probable: np.ndarray,
    by_identifier: np.ndarray,
    X: np.ndarray,
    names: list[str],
    component: np.ndarray,
    version: str,
) -> tuple[pa.Table, pa.Table]:
    from crossrec.link.signals import evidence

    idx = np.flatnonzero(asserted | probable)
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
            "status": pa.array(["asserted" if asserted[i] else "probable" for i in idx]),
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
    probable: np.ndarray,
    matcher: Any,
    mappings: Any,
    summary: dict[str, Any],
) -> None:
    tmp = model_dir / f".{LINK_DIR}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    np.savez(
        tmp / "candidates.npz",
        a_rows=a,
        b_rows=b,
        probability=prob,
        asserted=asserted,
        probable=probable,
    )
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
