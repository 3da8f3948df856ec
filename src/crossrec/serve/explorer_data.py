"""What the link explorer page shows beside the account routes, computed from the model.

* **Signal distributions**: how each linkage signal is spread among true and false pairs, from
  the matcher's own training rows (``models/<version>/link/matcher/matcher.npz``: a known
  link's pair is true, the other candidates of the same account are false). A link's evidence
  is shown against them ("higher than 96 % of false pairs").
* **Link summary**: the operating point of ``models/<version>/link/link.json`` (threshold,
  target and held-out precision, counts), the precision-recall curve and calibration of the
  matcher's held-out pairs (out-of-fold probabilities of known-linked accounts never trained
  on), and, when ``crossrec evaluate link`` ran on this version, its curves against the truth.
* **Weekly rhythm**: an account's events by day of week and hour of day (UTC) from the store.

Everything is read from files a model version already holds; nothing is trained here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrec.errors import ModelError

if TYPE_CHECKING:
    from crossrec.store.base import Store

#: Bins of a signal's histogram, between the 0.5th and 99.5th percentile of its values.
HIST_BINS = 24
#: Most points of a curve sent to the page (a curve is thinned evenly beyond it).
CURVE_POINTS = 200
CALIBRATION_BINS = 10
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MATCHER = Path("link") / "matcher"


@dataclass
class SignalStats:
    """One signal's values among the matcher's true and false training pairs (sorted)."""

    true: np.ndarray
    false: np.ndarray
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def share_below(self, value: float) -> tuple[float | None, float | None]:
        """Shares of true and of false pairs whose value is lower than ``value``."""

        def share(sorted_values: np.ndarray) -> float | None:
            if sorted_values.size == 0:
                return None
            return round(float(np.searchsorted(sorted_values, value)) / sorted_values.size, 4)

        return share(self.true), share(self.false)

    def as_dict(self) -> dict[str, Any]:
        def shares(values: np.ndarray) -> list[float]:
            if values.size == 0:
                return [0.0] * (len(self.edges) - 1)
            counts, _ = np.histogram(np.clip(values, self.edges[0], self.edges[-1]), self.edges)
            return [round(float(c) / values.size, 5) for c in counts]

        return {
            "edges": [round(float(e), 6) for e in self.edges],
            "true": shares(self.true),
            "false": shares(self.false),
            "n_true": int(self.true.size),
            "n_false": int(self.false.size),
        }


@dataclass
class Distributions:
    """Every signal's :class:`SignalStats` of one model version."""

    version: str
    signals: dict[str, SignalStats]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "source": (
                "the matcher's training pairs: each known link is a true pair, the other "
                "candidates of the same account are false pairs"
            ),
            "signals": {name: s.as_dict() for name, s in sorted(self.signals.items())},
        }


def _matcher_arrays(model_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    directory = model_dir / _MATCHER
    meta_path, npz_path = directory / "matcher.json", directory / "matcher.npz"
    if not meta_path.is_file() or not npz_path.is_file():
        raise ModelError(
            f"model {model_dir.name} has no linkage matcher", hint="run `crossrec link`"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    with np.load(npz_path, allow_pickle=False) as npz:
        wanted = ("X", "y", "heldout", "heldout_scores")
        arrays = {k: npz[k] for k in wanted if k in npz.files}
    return meta, arrays


def signal_distributions(model_dir: Path) -> Distributions:
    """The distributions of the raw signals the matcher was trained on (its relative z-score
    inputs are left out: the evidence names raw signals). Raises ModelError without a
    matcher."""
    from crossrec.link.signals import SIGNAL_NAMES

    meta, arrays = _matcher_arrays(model_dir)
    names: list[str] = list(meta.get("feature_names") or [])
    X, y = arrays.get("X"), arrays.get("y")
    out: dict[str, SignalStats] = {}
    if X is None or y is None or X.ndim != 2 or X.shape[1] != len(names):
        return Distributions(model_dir.name, out)
    y = y.astype(bool)
    for j, name in enumerate(names):
        if name not in SIGNAL_NAMES:
            continue
        col = X[:, j].astype(np.float64)
        ok = np.isfinite(col)
        if not ok.any():
            continue
        pooled = col[ok]
        lo, hi = np.percentile(pooled, [0.5, 99.5])
        if not hi > lo:
            lo, hi = float(pooled.min()), float(pooled.max())
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        out[name] = SignalStats(
            true=np.sort(col[ok & y]),
            false=np.sort(col[ok & ~y]),
            edges=np.linspace(lo, hi, HIST_BINS + 1),
        )
    return Distributions(model_dir.name, out)


def _thin(n: int) -> np.ndarray:
    """At most CURVE_POINTS indexes spread evenly over ``range(n)``, the last one kept."""
    if n <= CURVE_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, CURVE_POINTS).round().astype(np.int64))


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Precision and recall of the pairs at or above each threshold (thresholds descending)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    n_true = int(y.sum())
    if s.size == 0 or n_true == 0:
        return {"threshold": [], "precision": [], "recall": []}
    tp = np.cumsum(y)
    # one point per distinct score: its last position
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    keep = last[_thin(last.size)]
    return {
        "threshold": [round(float(v), 6) for v in s[keep]],
        "precision": [round(float(v), 6) for v in tp[keep] / (keep + 1)],
        "recall": [round(float(v), 6) for v in tp[keep] / n_true],
    }


def calibration(scores: np.ndarray, labels: np.ndarray) -> dict[str, list[Any]]:
    """Mean predicted probability, observed share of true pairs and count per tenth of [0, 1]."""
    idx = np.clip((scores * CALIBRATION_BINS).astype(np.int64), 0, CALIBRATION_BINS - 1)
    count = np.bincount(idx, minlength=CALIBRATION_BINS)
    total = np.bincount(idx, weights=scores, minlength=CALIBRATION_BINS)
    true = np.bincount(idx, weights=labels.astype(np.float64), minlength=CALIBRATION_BINS)

    def share(sums: np.ndarray) -> list[float | None]:
        return [round(float(v / c), 6) if c else None for v, c in zip(sums, count, strict=True)]

    return {
        "mean_predicted": share(total),
        "observed": share(true),
        "count": [int(c) for c in count],
    }


def link_summary(model_dir: Path, reports_dir: Path) -> dict[str, Any]:
    """The linkage of model version ``model_dir`` as the page's summary shows it."""
    from crossrec.link.pipeline import LINK_DIR

    path = model_dir / LINK_DIR / "link.json"
    doc: dict[str, Any] = {"model_version": model_dir.name, "linked": path.is_file()}
    if not path.is_file():
        doc["note"] = f"model {model_dir.name} has not linked accounts yet: run `crossrec link`"
        return doc
    summary = json.loads(path.read_text(encoding="utf-8"))
    for key in (
        "threshold",
        "target_precision",
        "heldout_precision",
        "heldout_recall",
        "asserted_links",
        "known_links",
        "identifier_links",
        "persons",
        "candidate_pairs",
        "reason",
    ):
        doc[key] = _plain(summary.get(key))
    matcher = summary.get("matcher") or {}
    doc["matcher"] = {k: _plain(v) for k, v in matcher.items() if not isinstance(v, dict | list)}
    doc["heldout"] = None
    try:
        _, arrays = _matcher_arrays(model_dir)
    except ModelError:
        arrays = {}
    if {"y", "heldout_scores"} <= set(arrays):
        labels = arrays["y"].astype(bool)
        if "heldout" in arrays:  # matchers with one held-out share; later ones score every
            labels = labels[arrays["heldout"].astype(bool)]  # training pair out of fold
        scores = np.asarray(arrays["heldout_scores"], dtype=np.float64)
        if scores.size and scores.size == labels.size:
            doc["heldout"] = {
                "pairs": int(scores.size),
                "true_pairs": int(labels.sum()),
                "pr_curve": pr_curve(scores, labels),
                "calibration": calibration(scores, labels),
            }
    doc["truth"] = _truth_evaluation(reports_dir, model_dir.name)
    return doc


def _truth_evaluation(reports_dir: Path, version: str) -> dict[str, Any] | None:
    """``crossrec evaluate link``'s figures when they were computed on ``version``."""
    from crossrec.evaluate.link_eval import KEYS, LINK_EVAL_FILE

    path = reports_dir / LINK_EVAL_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    details = doc.get("details") or {} if isinstance(doc, dict) else {}
    if details.get("model_version") != version:
        return None
    return {
        "metrics": {k: _plain(doc.get(k)) for k in KEYS},
        "pr_curve": details.get("pr_curve") or {},
        "calibration": details.get("calibration") or {},
        "evaluated_at": details.get("evaluated_at"),
    }


def _plain(v: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def weekly_rhythm(store: Store, platform: str, account: str) -> dict[str, Any] | None:
    """The account's events per day of week (Monday first) and hour of day, UTC; None when
    its events carry no timestamps."""
    import pyarrow.compute as pc

    ts = store.account_events(platform, account, columns=["ts"]).column("ts")
    ts = pc.drop_null(ts)
    if len(ts) == 0:
        return None
    dow = np.asarray(pc.day_of_week(ts).to_numpy(zero_copy_only=False), dtype=np.int64)
    hour = np.asarray(pc.hour(ts).to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = np.zeros((7, 24), dtype=np.int64)
    np.add.at(counts, (dow, hour), 1)
    return {"days": list(DAYS), "counts": counts.tolist(), "events": len(ts)}
