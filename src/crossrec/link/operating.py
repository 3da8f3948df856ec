"""The operating point: which threshold asserts links at the target precision, from *all*
known links, and what a link's probability means.

Every known link has an out-of-fold matcher score (the matcher is cross-fitted by person). Its
source account is one **unit**: an account with a known partner on another platform, looking
for it among its candidates. Linking is simulated twice on the units, each time competing in
one-to-one assignment with every unsettled pair of the population, as at linking time:

* run A, *partner present*: the unit's candidate list as it is (a partner the candidate
  generator did not find is left out, so a missed partner counts as missed);
* run B, *partner absent*: the same list without the partner, as for an account whose person
  is on one platform only.

Among the accounts still to be linked a share ``π`` has a partner its candidates can find and
``1 - π`` has none. ``π`` is estimated from the data, not assumed: the best candidate score of
each unsettled account is a draw from ``π·F_A + (1 - π)·F_B``, where ``F_A`` and ``F_B`` are
the best-score distributions of the units in runs A and B (histograms on shared quantile bins),
and ``π`` is fitted by expectation-maximisation — the two-component mixture Fellegi–Sunter
models and Splink fit over comparison vectors, here with components learnt from the known links.

At a threshold ``t`` the expected precision of the asserted links is then
``π·TP_A(t) / (π·(TP_A(t) + FP_A(t)) + (1 - π)·FP_B(t))`` (counts of units whose kept pair
scores at least ``t``), and the recall ``TP_A(t) / units``. A threshold is *certified* when
Laplace's rule, ``(p·n + 1) / (n + 2)`` with ``n`` the links run A asserts at ``t``, reaches the
target: with few known links nothing is certified and the summary says how many would be
needed. The same weighted samples (run A's kept pairs with weight ``π`` and their truth, run
B's with weight ``1 - π`` and label false) fit an isotonic map from pair probability to
**link probability**; its reliability and Brier score are measured out of fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossrec.link.assign import one_to_one

__all__ = ["MIN_LINKS_CERTIFIED", "OperatingPoint", "Units", "choose_operating_point"]

#: Fewest links (run A, at the threshold) a certified precision may rest on.
MIN_LINKS_CERTIFIED = 10
#: Link probability from which a mutual-best pair below the threshold is ``probable``.
PROBABLE_FLOOR = 0.5
_BINS = 20
_RELIABILITY_BINS = 10


@dataclass
class Units:
    """Training rows of the known-linked accounts, as the operating point needs them.

    Attributes
    ----------
    src, dst : (n,) int
        Source account and candidate of each directed training row.
    score : (n,) float
        Out-of-fold pair probability of each row.
    label : (n,) bool
        True for the known partner.
    found : (n,) bool
        Rows that take part in the simulation: False for a known partner the candidate
        generator did not find (added only to teach the matcher) and for a candidate that is
        itself settled toward the source's platform (it has a known partner there, so it is
        never linked, as at linking time).
    fold : (n,) int
        Cross-fitting fold of each row's person.
    """

    src: np.ndarray
    dst: np.ndarray
    score: np.ndarray
    label: np.ndarray
    found: np.ndarray
    fold: np.ndarray


@dataclass
class OperatingPoint:
    """The chosen threshold (pair-probability units) and the figures behind it."""

    threshold: float | None
    precision: float | None
    recall: float | None
    reason: str | None
    partner_share: float
    units: int
    certified_on_links: float
    known_links_needed: int | None
    link_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    link_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reliability: dict[str, list[Any]] = field(default_factory=dict)
    brier: float | None = None
    calibration_error: float | None = None
    curve: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures for the link summary."""
        return {
            "partner_share": round(self.partner_share, 4),
            "units": self.units,
            "certified_on_links": round(self.certified_on_links, 1),
            "known_links_needed": self.known_links_needed,
            "brier": None if self.brier is None else round(self.brier, 5),
            "calibration_error": None
            if self.calibration_error is None
            else round(self.calibration_error, 5),
            "reliability": self.reliability,
            "curve": self.curve,
        }


def _unit_keys(src: np.ndarray, dst: np.ndarray, code: np.ndarray) -> np.ndarray:
    n_plat = np.int64(int(code.max()) + 1)
    return src.astype(np.int64) * n_plat + code[dst]


def _kept_per_unit(
    keys: np.ndarray,
    kept: np.ndarray,
    score: np.ndarray,
    label: np.ndarray,
    unit_index: dict[int, int],
    n_units: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Score (NaN: nothing kept) and truth of each unit's kept row."""
    s = np.full(n_units, np.nan)
    t = np.zeros(n_units, dtype=bool)
    for i in np.flatnonzero(kept):
        u = unit_index[int(keys[i])]
        if np.isnan(s[u]) or score[i] > s[u]:
            s[u], t[u] = score[i], bool(label[i])
    return s, t


def _best_per_group(keys: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys and the highest score of each."""
    if keys.size == 0:
        return keys, score
    order = np.lexsort((-score, keys))
    first = np.r_[True, keys[order][1:] != keys[order][:-1]]
    return keys[order][first], score[order][first]


def estimate_partner_share(
    best_population: np.ndarray, best_present: np.ndarray, best_absent: np.ndarray
) -> float:
    """EM estimate of the share of unsettled accounts whose partner their candidates hold.

    The component densities are histograms of the units' best scores in runs A and B over
    shared quantile bins (add-half smoothing); only the mixing weight is fitted.
    """
    pop = best_population[~np.isnan(best_population)]
    a = best_present[~np.isnan(best_present)]
    b = best_absent[~np.isnan(best_absent)]
    if pop.size == 0 or a.size == 0 or b.size == 0:
        return 0.5
    edges = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, _BINS + 1)))
    if edges.size < 3:
        return 0.5
    inner = edges[1:-1]

    def density(x: np.ndarray) -> np.ndarray:
        h = np.bincount(np.searchsorted(inner, x, side="right"), minlength=inner.size + 1)
        return (h + 0.5) / (h.sum() + 0.5 * h.size)

    fa, fb = density(a), density(b)
    cell = np.searchsorted(inner, pop, side="right")
    la, lb = fa[cell], fb[cell]
    pi = 0.5
    for _ in range(500):
        r = pi * la / (pi * la + (1 - pi) * lb)
        new = float(r.mean())
        if abs(new - pi) < 1e-7:
            pi = new
            break
        pi = new
    return float(np.clip(pi, 0.0, 1.0))


def choose_operating_point(
    units: Units,
    pop_a: np.ndarray,
    pop_b: np.ndarray,
    pop_score: np.ndarray,
    code: np.ndarray,
    target: float,
    n_known_links: int,
) -> OperatingPoint:
    """Simulate linking on the known links (runs A and B), estimate the partner share, and
    choose the lowest certified threshold; fit the link-probability map.

    Parameters
    ----------
    units : Units
        The training rows with their out-of-fold scores.
    pop_a, pop_b, pop_score : (m,) arrays
        Unsettled candidate pairs of the population and their pair probabilities.
    code : (accounts,) int
        Platform code of every profile row.
    target : float
        Wanted precision of asserted links.
    n_known_links : int
        Known links in the store (to say how many more would certify the target).
    """
    found = units.found
    src, dst, score, label = units.src, units.dst, units.score, units.label
    keys = _unit_keys(src, dst, code)
    uniq = np.unique(keys)
    unit_index = {int(k): i for i, k in enumerate(uniq)}
    n_units = uniq.size
    unit_fold = np.zeros(n_units, dtype=np.int64)
    unit_fold[[unit_index[int(k)] for k in keys]] = units.fold

    n_nodes = np.int64(code.size)

    def run(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pa_ = np.concatenate([src[rows], pop_a])
        pb_ = np.concatenate([dst[rows], pop_b])
        ps_ = np.concatenate([score[rows], pop_score])
        # a pair between two known-linked accounts is a row of each: assign it once, and
        # let both of its units see the outcome
        pair_key = np.minimum(pa_, pb_).astype(np.int64) * n_nodes + np.maximum(pa_, pb_)
        _, first, inverse = np.unique(pair_key, return_index=True, return_inverse=True)
        kept_unique = one_to_one(
            pa_[first], pb_[first], ps_[first], code[pa_[first]], code[pb_[first]]
        )
        kept = kept_unique[inverse.ravel()][: rows.size]
        return _kept_per_unit(keys[rows], kept, score[rows], label[rows], unit_index, n_units)

    rows_a = np.flatnonzero(found)
    rows_b = np.flatnonzero(found & ~label)
    a_score, a_true = run(rows_a)
    b_score, _ = run(rows_b)

    # partner share from the best score of every unsettled account towards each platform
    pop_keys = np.concatenate([_unit_keys(pop_a, pop_b, code), _unit_keys(pop_b, pop_a, code)])
    _, pop_best = _best_per_group(pop_keys, np.concatenate([pop_score, pop_score]))
    _, sa = _best_per_group(keys[rows_a], score[rows_a])
    _, sb = _best_per_group(keys[rows_b], score[rows_b])
    pi = estimate_partner_share(pop_best, sa, sb)

    point = _threshold(a_score, a_true, b_score, pi, target, n_units, n_known_links)
    _fit_link_map(point, a_score, a_true, b_score, pi, unit_fold)
    return point


def _threshold(
    a_score: np.ndarray,
    a_true: np.ndarray,
    b_score: np.ndarray,
    pi: float,
    target: float,
    n_units: int,
    n_known_links: int,
) -> OperatingPoint:
    a_has = ~np.isnan(a_score)
    b_has = ~np.isnan(b_score)
    cuts = np.unique(np.concatenate([a_score[a_has], b_score[b_has]]))[::-1]
    empty = OperatingPoint(None, None, None, "", pi, n_units, 0.0, None)
    if cuts.size == 0 or n_units == 0:
        empty.reason = "no known link has candidates to simulate linking on: assert nothing"
        return empty
    sa, ta, sb = a_score[a_has], a_true[a_has], b_score[b_has]

    def at_least(values: np.ndarray) -> np.ndarray:
        """How many of ``values`` are >= each cut."""
        ordered = np.sort(values)
        return (ordered.size - np.searchsorted(ordered, cuts, side="left")).astype(np.float64)

    tp, fa, fb = at_least(sa[ta]), at_least(sa[~ta]), at_least(sb)
    pred = pi * (tp + fa) + (1 - pi) * fb
    precision = np.divide(pi * tp, pred, out=np.zeros_like(pred), where=pred > 0)
    recall = tp / n_units
    links = (tp + fa) / 2.0  # run A sees every asserted link from both of its accounts
    judged = (precision * links + 1.0) / (links + 2.0)
    ok = np.flatnonzero((judged >= target - 1e-12) & (links >= MIN_LINKS_CERTIFIED))
    step = max(1, cuts.size // 200)
    curve = {
        "threshold": [float(x) for x in cuts[::step]],
        "precision": [round(float(x), 6) for x in precision[::step]],
        "recall": [round(float(x), 6) for x in recall[::step]],
    }
    if ok.size:
        i = int(ok[-1])  # the lowest threshold (cuts descend) that is certified
        return OperatingPoint(
            float(cuts[i]),
            float(precision[i]),
            float(recall[i]),
            None,
            pi,
            n_units,
            float(links[i]),
            None,
            curve=curve,
        )
    # report the best estimate resting on enough links (on any link when none has enough)
    usable = links >= MIN_LINKS_CERTIFIED
    if not usable.any():
        usable = links >= 1
    if not usable.any():
        empty.reason = "no simulated link on the known links: assert nothing"
        empty.curve = curve
        return empty
    best = int(np.flatnonzero(usable)[np.argmax(judged[usable])])
    p, n = float(precision[best]), float(links[best])
    needed: int | None = None
    if p > target:
        n_need = max((2 * target - 1) / (p - target), MIN_LINKS_CERTIFIED)
        needed = math.ceil(n_known_links * n_need / max(n, 1.0))
        more = f"about {needed} known links with the same quality would certify it"
    else:
        more = "more known links would not certify it: the estimate itself is below the target"
    reason = (
        f"estimated precision {p:.3f} on {n:.0f} simulated links (Laplace {judged[best]:.3f}) "
        f"is below target {target:.3f} at every threshold; {more}; mutual-best pairs are "
        "written as 'probable'"
    )
    return OperatingPoint(None, p, float(recall[best]), reason, pi, n_units, n, needed, curve=curve)


def _fit_link_map(
    point: OperatingPoint,
    a_score: np.ndarray,
    a_true: np.ndarray,
    b_score: np.ndarray,
    pi: float,
    unit_fold: np.ndarray,
) -> None:
    """Weighted isotonic map pair probability → link probability, and its out-of-fold
    reliability and Brier score."""
    from sklearn.isotonic import IsotonicRegression

    a_has, b_has = ~np.isnan(a_score), ~np.isnan(b_score)
    x = np.concatenate([a_score[a_has], b_score[b_has]])
    y = np.concatenate([a_true[a_has], np.zeros(int(b_has.sum()), bool)]).astype(np.float64)
    w = np.concatenate([np.full(int(a_has.sum()), pi), np.full(int(b_has.sum()), 1 - pi)])
    f = np.concatenate([unit_fold[a_has], unit_fold[b_has]])
    if x.size < 2 or w.sum() <= 0 or y.min() == y.max():
        return

    def iso(xs: np.ndarray, ys: np.ndarray, ws: np.ndarray) -> IsotonicRegression:
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            xs, ys, sample_weight=ws
        )

    model = iso(x, y, w)
    point.link_x, point.link_y = model.X_thresholds_, model.y_thresholds_
    pred = np.full(x.size, np.nan)
    for k in np.unique(f):
        test = f == k
        train = ~test
        if train.sum() >= 2 and y[train].min() != y[train].max():
            pred[test] = iso(x[train], y[train], w[train]).predict(x[test])
    ok = ~np.isnan(pred)
    if not ok.any():
        return
    p, yy, ww = pred[ok], y[ok], w[ok]
    point.brier = float(np.average((p - yy) ** 2, weights=ww))
    edges = np.linspace(0, 1, _RELIABILITY_BINS + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, _RELIABILITY_BINS - 1)
    weight = np.bincount(bins, weights=ww, minlength=_RELIABILITY_BINS)
    mean_p = np.bincount(bins, weights=ww * p, minlength=_RELIABILITY_BINS)
    mean_y = np.bincount(bins, weights=ww * yy, minlength=_RELIABILITY_BINS)
    nz = weight > 0
    point.calibration_error = float(np.abs(mean_p[nz] - mean_y[nz]).sum() / weight.sum())
    point.reliability = {
        "lower": [round(float(v), 3) for v in edges[:-1]],
        "upper": [round(float(v), 3) for v in edges[1:]],
        "weight": [round(float(v), 3) for v in weight],
        "mean_predicted": [
            round(float(m / c), 6) if c > 0 else None for m, c in zip(mean_p, weight, strict=True)
        ],
        "observed": [
            round(float(m / c), 6) if c > 0 else None for m, c in zip(mean_y, weight, strict=True)
        ],
    }
