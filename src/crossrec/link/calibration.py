"""The matcher's models without a fitted-object format: L2 logistic regression with median
imputation and missing indicators, and the calibration of raw scores (isotonic regression or
Platt scaling, chosen out of fold with folds by source account).

Everything here is plain arrays and floats, so :mod:`crossrec.link.matcher` saves it as JSON
and ``.npz`` (no pickles).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

#: With at least this many held-out positives isotonic calibration is used without a vote.
ISOTONIC_MIN_POSITIVES = 500
#: Share of the raw score's sigmoid kept in isotonic output, so that pairs never tie.
_ISO_TIEBREAK = 1e-6


def fit_logistic(X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """Median imputation + missing indicators + standardisation + L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression

    X64 = X.astype(np.float64)
    missing = np.isnan(X64)
    # An all-missing column has no median: fill it with 0 (its indicator carries the signal).
    median = np.nanmedian(np.where(missing.all(axis=0), 0.0, X64), axis=0)
    params: dict[str, Any] = {"median": median, "indicator": np.flatnonzero(missing.any(axis=0))}
    Z = logistic_design(params, X64)
    params["mean"] = Z.mean(axis=0)
    params["scale"] = np.where(Z.std(axis=0) > 0, Z.std(axis=0), 1.0)
    Z = (Z - params["mean"]) / params["scale"]
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(Z, y)
    params["coef"], params["intercept"] = clf.coef_.ravel(), float(clf.intercept_[0])
    return params


def logistic_design(params: dict[str, Any], X: np.ndarray) -> np.ndarray:
    X64 = np.asarray(X, dtype=np.float64)
    missing = np.isnan(X64)
    filled = np.where(missing, params["median"], X64)
    return np.hstack([filled, missing[:, params["indicator"]].astype(np.float64)])


def logistic_decision(params: dict[str, Any], X: np.ndarray) -> np.ndarray:
    Z = (logistic_design(params, X) - params["mean"]) / params["scale"]
    return np.asarray(Z @ params["coef"] + params["intercept"], dtype=np.float64)


def logistic_json(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}


def logistic_from_json(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: np.asarray(v, dtype=np.float64) for k, v in data.items() if k != "intercept"
    }
    out["indicator"] = np.asarray(data["indicator"], dtype=np.int64)
    out["intercept"] = float(data["intercept"])
    return out


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        raw, y.astype(np.float64)
    )
    return {"method": "isotonic", "iso_x": iso.X_thresholds_, "iso_y": iso.y_thresholds_}


def fit_platt(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():  # one class: a constant probability
        p = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        return {"method": "platt", "platt": [0.0, float(np.log(p / (1 - p)))]}
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return {"method": "platt", "platt": [float(lr.coef_[0, 0]), float(lr.intercept_[0])]}


def calibrate(cal: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    if cal["method"] == "platt":
        a, b = cal["platt"]
        return np.asarray(expit(a * raw + b), dtype=np.float64)
    p = np.interp(raw, cal["iso_x"], cal["iso_y"])
    return np.asarray((1.0 - _ISO_TIEBREAK) * p + _ISO_TIEBREAK * expit(raw), dtype=np.float64)


def fit_calibration(
    raw: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Choose and fit the calibrator; also return out-of-fold calibrated held-out scores."""
    fold = group_folds(groups, y, seed)
    n_folds = int(fold.max()) + 1
    oof: dict[str, np.ndarray] = {}
    losses: dict[str, float] = {}
    for name, fitter in (("isotonic", fit_isotonic), ("platt", fit_platt)):
        pred = np.empty(raw.size)
        for f in range(n_folds):
            test = fold == f
            train = ~test if n_folds > 1 else test  # a single fold can only score itself
            pred[test] = calibrate(fitter(raw[train], y[train]), raw[test])
        oof[name] = pred
        p = np.clip(pred, 1e-6, 1 - 1e-6)
        losses[name] = float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))
    if int(y.sum()) >= ISOTONIC_MIN_POSITIVES:
        method = "isotonic"
    else:
        method = min(losses, key=lambda k: (losses[k], k != "platt"))
    fitter = fit_isotonic if method == "isotonic" else fit_platt
    cal = fitter(raw, y)
    cal["log_loss"] = losses
    return cal, oof[method]


def group_folds(groups: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Fold per pair (up to 5 folds), whole groups per fold, positive groups spread evenly."""
    uniq, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    has_pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=uniq.size) > 0
    n_folds = max(1, min(5, int(has_pos.sum())))
    rng = np.random.default_rng(seed + 1)
    group_fold = np.zeros(uniq.size, dtype=np.int64)
    for members in (np.flatnonzero(has_pos), np.flatnonzero(~has_pos)):
        group_fold[rng.permutation(members)] = np.arange(members.size) % n_folds
    return group_fold[inverse]
