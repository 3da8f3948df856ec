"""Never below its own baselines: the scorer of candidate pairs is chosen on the known links.

Every scorer is judged the same way, by the mean reciprocal rank (MRR) of each known partner
among the accounts of its platform as seen from the other account, out of fold:

* ``matcher``: the cross-fitted matcher's out-of-fold probability;
* each single signal the matcher sees (oriented so that higher means "more alike");
* ``z_sum``: the plain sum of the z-scored, oriented signals (NaN counts as 0);
* ``cf_mapping``: the cosine of the ridge-mapped CF vector (fitted on the other folds' known
  links) with *every* account of the partner's platform — the baseline ``crossrec evaluate
  link`` reports, which needs no candidates (on a seeded sample of at most
  :data:`CF_MAPPING_SAMPLE` partners: it scores every account of the platform).

The first three rank within the candidate list; a partner the candidate generator did not find
ranks behind every candidate, at the mean rank of the rest, exactly as ``evaluate link`` ranks
the accounts outside the candidates. Known links whose account has no events on one side
(no CF vector and no sequence) are left out and counted. The best candidate-list scorer is
used (the matcher on a tie); when it is not the matcher, its values are calibrated out of fold
like the matcher's and replace the matcher's probabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crossrec.link.context import LinkContext
    from crossrec.link.pipeline import Training

__all__ = ["select_scorer"]

_CHUNK = 1024
#: Known partners ranked by ``cf_mapping`` at most (a seeded sample beyond).
CF_MAPPING_SAMPLE = 2000


def _unit_ranks(
    unit: np.ndarray,
    score: np.ndarray,
    is_partner: np.ndarray,
    found: np.ndarray,
    n_target: np.ndarray,
) -> np.ndarray:
    """Rank of the partner in each unit (ties: mean rank), non-found partners behind all the
    unit's candidates at the mean rank of the rest. ``n_target`` per unit: accounts of the
    partner's platform."""
    s = np.where(np.isnan(score), -np.inf, score)
    n_units = int(unit.max()) + 1
    p_score = np.full(n_units, np.nan)
    p_found = np.zeros(n_units, dtype=bool)
    sel = is_partner
    p_score[unit[sel]] = s[sel]
    p_found[unit[sel]] = found[sel]
    others = ~is_partner
    greater = np.bincount(
        unit[others], weights=(s[others] > p_score[unit[others]]), minlength=n_units
    )
    equal = np.bincount(
        unit[others], weights=(s[others] == p_score[unit[others]]), minlength=n_units
    )
    n_cands = np.bincount(unit[others], minlength=n_units).astype(np.float64)
    in_list = 1.0 + greater + equal / 2.0
    outside = n_cands + (n_target - n_cands + 1.0) / 2.0
    return np.where(p_found, in_list, outside)


def _orient(col: np.ndarray, y: np.ndarray) -> float:
    """+1 when positives score higher on average than the other candidates, else -1."""
    ok = ~np.isnan(col)
    pos, neg = col[ok & y], col[ok & ~y]
    if pos.size == 0 or neg.size == 0:
        return 1.0
    return 1.0 if pos.mean() >= neg.mean() else -1.0


def _cf_mapping_ranks(
    ctx: LinkContext, src: np.ndarray, dst: np.ndarray, fold: np.ndarray
) -> np.ndarray:
    """Out-of-fold rank of each partner ``dst`` among every account of its platform by the
    ridge-mapped CF cosine of ``src`` (maps fitted per ordered platform pair on the known
    links of the other folds)."""
    from crossrec.link.mapping import apply_linear, ridge_map

    cf = ctx.profiles.cf.astype(np.float32)
    norms = np.linalg.norm(cf, axis=1, keepdims=True)
    unit_cf = np.divide(cf, norms, out=np.zeros_like(cf), where=norms > 0)
    code = ctx.platform_code
    ranks = np.full(src.size, np.nan)
    for k in np.unique(fold):
        test = fold == k
        for p in np.unique(code[src[test]]):
            for q in np.unique(code[dst[test]]):
                sel = np.flatnonzero(test & (code[src] == p) & (code[dst] == q))
                train = ~test & (code[src] == p) & (code[dst] == q)
                if sel.size == 0 or train.sum() < 2:
                    continue
                w = ridge_map(unit_cf[src[train]], unit_cf[dst[train]], alpha=1.0)
                targets = np.flatnonzero(code == q)
                xb = unit_cf[targets]
                pos = np.searchsorted(targets, dst[sel])
                for start in range(0, sel.size, _CHUNK):
                    part = sel[start : start + _CHUNK]
                    mapped = apply_linear(unit_cf[src[part]], w).astype(np.float32)
                    mn = np.linalg.norm(mapped, axis=1, keepdims=True)
                    mapped = np.divide(mapped, mn, out=np.zeros_like(mapped), where=mn > 0)
                    scores = mapped @ xb.T
                    true = scores[np.arange(part.size), pos[start : start + part.size]]
                    greater = (scores > true[:, None]).sum(axis=1)
                    equal = (scores == true[:, None]).sum(axis=1)
                    ranks[part] = greater + (equal + 1) / 2.0
    return ranks


def select_scorer(
    ctx: LinkContext,
    train: Training,
    rows: np.ndarray,
    oof: np.ndarray,
    X: np.ndarray,
    names: list[str],
    found: np.ndarray,
    fold: np.ndarray,
    *,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any] | None, np.ndarray | None]:
    """Compare the scorers on the known links; returns ``(selection, scorer, oof)``: the
    figures, and when a plain scorer beats the classifier its specification (for
    :meth:`crossrec.link.matcher.Matcher.set_scorer`) and its out-of-fold calibrated scores
    on ``rows`` (None and None when the classifier wins).

    ``rows`` are the training rows the matcher kept (positions into ``train``), ``oof`` their
    out-of-fold matcher probabilities and ``fold`` their folds; ``X`` and ``names`` the
    matcher's input for every candidate pair; ``found`` is False for known links the
    candidate generator did not find.
    """
    from crossrec.link.calibration import fit_calibration
    from crossrec.link.matcher import scorer_values

    code = ctx.platform_code
    src, dst, pair, y = train.src[rows], train.dst[rows], train.pair[rows], train.y[rows]
    has_cf = np.linalg.norm(ctx.profiles.cf, axis=1) > 0
    n_plat = int(code.max()) + 1
    uniq, unit = np.unique(src.astype(np.int64) * n_plat + code[dst], return_inverse=True)
    unit = unit.ravel()
    # a known link whose account has no events on one side is left out (nothing finds it)
    partner_ok = np.zeros(uniq.size, dtype=bool)
    partner_ok[unit[y]] = has_cf[src[y]] & has_cf[dst[y]]
    keep_unit = partner_ok[unit]
    left_out = int((~partner_ok).sum())
    src, dst, pair, y, unit, f, s_m = (x[keep_unit] for x in (src, dst, pair, y, unit, fold, oof))
    if not y.any():
        return {"chosen": "matcher", "why": "no known link with events on both sides"}, None, None
    unit = np.unique(unit, return_inverse=True)[1].ravel()
    n_target = np.bincount(code, minlength=n_plat).astype(np.float64)
    n_target_unit = np.zeros(int(unit.max()) + 1)
    n_target_unit[unit[y]] = n_target[code[dst[y]]]
    fnd = found[pair]

    def mrr(score: np.ndarray) -> float:
        ranks = _unit_ranks(unit, score, y, fnd, n_target_unit)
        return float(np.mean(1.0 / ranks))

    results: dict[str, float] = {"matcher": mrr(s_m)}
    Xt = X[pair].astype(np.float64)
    signs = {name: _orient(Xt[:, j], y) for j, name in enumerate(names)}

    def spec_of(name: str, cols: list[int]) -> dict[str, Any]:
        """A plain scorer over ``cols``: oriented z-scores on the training rows, summed."""
        center, scale = [], []
        for j in cols:
            col = Xt[:, j]
            ok = ~np.isnan(col)
            std = float(col[ok].std()) if ok.sum() > 1 else 0.0
            center.append(float(col[ok].mean()) if ok.any() else 0.0)
            scale.append(std if std > 0 else 1.0)
        return {
            "name": name,
            "columns": cols,
            "sign": [signs[names[j]] for j in cols],
            "center": center,
            "scale": scale,
            "missing": 0.0,
        }

    for j, name in enumerate(names):
        results[f"signal:{name}"] = mrr(signs[name] * Xt[:, j])  # NaN ranks last
    results["z_sum"] = mrr(scorer_values(spec_of("z_sum", list(range(len(names)))), Xt))
    positives = np.flatnonzero(y)
    if positives.size > CF_MAPPING_SAMPLE:  # it scores the whole platform: a seeded sample
        rng = np.random.default_rng(seed)
        positives = np.sort(rng.choice(positives, CF_MAPPING_SAMPLE, replace=False))
    cf_ranks = _cf_mapping_ranks(ctx, src[positives], dst[positives], f[positives])
    ok = ~np.isnan(cf_ranks)
    cf_mrr = float(np.mean(1.0 / cf_ranks[ok])) if ok.any() else None

    best = max(results, key=lambda k: (results[k], k == "matcher"))
    selection: dict[str, Any] = {
        "mrr": {k: round(v, 4) for k, v in results.items()},
        "cf_mapping_mrr": None if cf_mrr is None else round(cf_mrr, 4),
        "chosen": best,
        "units": int(unit.max()) + 1,
        "left_out_no_events": left_out,
    }
    if cf_mrr is not None and cf_mrr > results[best]:
        selection["note"] = (
            "cf_mapping ranks the known partners better over the whole population than any "
            "scorer within the candidates: the candidate lists miss partners it finds"
        )
    if best == "matcher":
        return selection, None, None
    # another scorer wins: its values, calibrated out of fold, replace the classifier's
    cols = list(range(len(names))) if best == "z_sum" else [names.index(best.split(":", 1)[1])]
    spec = spec_of(best, cols)
    if best != "z_sum":
        spec["missing"] = float(np.nanmin(scorer_values({**spec, "missing": 0.0}, X)) - 1.0)
    train_values = scorer_values(spec, Xt)
    cal, oof_cal = fit_calibration(train_values, y, f, seed)
    spec["calibration"] = cal
    all_oof = np.zeros(rows.size)
    all_oof[keep_unit] = oof_cal
    return selection, spec, all_oof
