"""Matcher: calibrated probability that a candidate pair is one person, from its signals.

Supervised mode (enough known links)
------------------------------------
Training pairs are the known links (positives) and the other candidates of the same source
accounts (hard negatives: accounts the candidate generator found plausible). ``groups`` names
the source account of each pair and ``persons`` the person it belongs to (default: the source
account). The matcher is **cross-fitted**: the persons are dealt into ``n_folds`` seeded folds,
and every training pair is scored by a classifier fitted without its fold, so *every* known
link has an out-of-fold score (never one scored by a model that saw its person). The final
classifier is fitted on all pairs.

* Classifier: scikit-learn ``HistGradientBoostingClassifier`` (``kind="hgb"``, handles NaN
  signals natively) or logistic regression (``kind="logistic"``: NaN replaced by the training
  median plus a missing-indicator column, then standardised).
* Calibration on the out-of-fold raw scores: isotonic regression or Platt scaling on the raw
  log-odds (the final classifier's raw scores go through the same map, as scikit-learn's
  ``CalibratedClassifierCV(ensemble=False)`` does). With at least ``ISOTONIC_MIN_POSITIVES``
  positives isotonic is used; otherwise the one with the lower log-loss, measured out of fold
  (the same folds).
  Isotonic output keeps a ``1e-6`` share of the raw score's sigmoid so that the order of
  pairs stays strict (plateaus would tie candidates and blur ranks).
* ``heldout_scores`` are out-of-fold calibrated probabilities of every training pair (never
  scored by a classifier or a calibrator that saw its fold), with ``heldout_labels``,
  ``heldout_groups`` and ``heldout_index`` (positions in the ``X`` given to
  :meth:`Matcher.fit`): the input of the operating-point choice (:mod:`crossrec.link.operating`).
* A second, optional map (:meth:`Matcher.set_link_calibration`) turns the pair probability into
  the probability that the pair, *once it survives one-to-one assignment*, is a true link among
  the accounts still to be linked; :meth:`predict_proba` applies both.

Unsupervised mode (fewer than ``min_links`` known links)
--------------------------------------------------------
Each signal is turned into its percentile among the training candidates (NaN-aware: a pair is
scored on the signals it has; a pair with none scores 0), the percentiles are averaged, and the
average is mapped to its own percentile among the training candidates. The score is therefore
"the share of candidate pairs this pair beats" and assumes every signal grows with the chance
of a match. ``default_threshold`` is ``UNSUPERVISED_THRESHOLD`` (0.99: a pair must beat 99% of
candidate pairs, and then still survive one-to-one assignment). ``mode_reason`` says why.

Persistence without pickles
---------------------------
:meth:`Matcher.save` writes ``matcher.json`` (parameters, logistic coefficients, Platt
coefficients, metrics) and ``matcher.npz`` (the training matrix, labels, groups, the held-out
split, the held-out raw scores, isotonic and percentile arrays). Gradient boosting has no
portable weight format, so :meth:`Matcher.load` refits the final classifier deterministically on
the stored training rows (at most ``max_train_rows``; seconds) and raises ``ModelError`` unless
the refit reproduces the stored raw scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crossrec.errors import InputError, ModelError
from crossrec.link.calibration import (
    _ISO_TIEBREAK,
    ISOTONIC_MIN_POSITIVES,
    calibrate,
    fit_calibration,
    fit_logistic,
    logistic_decision,
    logistic_from_json,
    logistic_json,
)

__all__ = [
    "ISOTONIC_MIN_POSITIVES",
    "MIN_LINKS",
    "UNSUPERVISED_THRESHOLD",
    "Matcher",
    "MatcherKind",
]

MatcherKind = Literal["hgb", "logistic"]
MIN_LINKS = 10
UNSUPERVISED_THRESHOLD = 0.99
_GRID = 1001  # quantile points per signal in unsupervised mode
_CHUNK = 1_000_000
_JSON = "matcher.json"
_NPZ = "matcher.npz"
_FORMAT = 2
#: Folds of the cross-fitting (fewer when fewer persons hold known links).
N_FOLDS = 5
_HGB_PARAMS: dict[str, Any] = {
    "max_iter": 100,  # ~10 signals need few trees; prediction cost grows with each tree
    "learning_rate": 0.15,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "early_stopping": False,  # no random validation split: the refit on load must be exact
}


class Matcher:
    """Scores candidate pairs with a calibrated match probability.

    Parameters
    ----------
    kind : {"hgb", "logistic"}
        Classifier for supervised mode.
    min_links : int
        Fewer known links than this (among the training pairs) means unsupervised mode.
    max_train_rows : int
        Training pairs beyond this are subsampled by whole source accounts (seeded), which
        bounds training, the saved file and the refit on load.
    n_threads : int
        OpenMP threads for gradient-boosting prediction (fitting always uses one). Prediction
        is the cost at scale (on 2 busy cores ~17 s per million pairs on one thread); raise it
        on an idle many-core machine.

    Attributes
    ----------
    mode : {"supervised", "unsupervised"} or None
        None until fitted.
    mode_reason : str
    feature_names : list of str
    default_threshold : float or None
        The unsupervised threshold; None in supervised mode (choose one with
        ``threshold_for_precision`` on the held-out scores).
    heldout_index, heldout_scores, heldout_labels, heldout_groups : (h,) arrays
        Held-out pairs (empty in unsupervised mode), see the module docstring.
    metrics : dict
        JSON-ready facts: rows, positives, held-out AUC and log-loss, calibration method.
    """

    def __init__(
        self,
        kind: MatcherKind = "hgb",
        *,
        min_links: int = MIN_LINKS,
        max_train_rows: int = 100_000,
        n_threads: int = 1,
    ) -> None:
        if kind not in ("hgb", "logistic"):
            raise InputError(f"unknown matcher kind {kind!r}; use 'hgb' or 'logistic'")
        if min_links < 2 or max_train_rows < 100 or n_threads < 1:
            raise InputError("min_links must be >= 2, max_train_rows >= 100, n_threads >= 1")
        self.kind: MatcherKind = kind
        self.min_links = int(min_links)
        self.max_train_rows = int(max_train_rows)
        self.n_threads = int(n_threads)
        self.mode: Literal["supervised", "unsupervised"] | None = None
        self.mode_reason = ""
        self.seed = 0
        self.feature_names: list[str] = []
        self.default_threshold: float | None = None
        self.metrics: dict[str, Any] = {}
        self.heldout_index = np.zeros(0, np.int64)
        self.heldout_scores = np.zeros(0, np.float64)
        self.heldout_labels = np.zeros(0, bool)
        self.heldout_groups = np.zeros(0, np.int64)
        self._model: Any = None  # sklearn HGB, or the logistic parameter dict
        self._calibration: dict[str, Any] = {}
        self._link: dict[str, np.ndarray] = {}
        self._scorer: dict[str, Any] = {}
        self._arrays: dict[str, np.ndarray] = {}

    # -- fitting ---------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray,
        *,
        seed: int,
        n_folds: int = N_FOLDS,
        feature_names: list[str] | None = None,
        partners: np.ndarray | None = None,
        persons: np.ndarray | None = None,
    ) -> Matcher:
        """Train on candidate pairs labelled by known links, cross-fitted by person.

        Parameters
        ----------
        X : (n, F) float
            Signals per candidate pair, NaN where a signal does not apply.
        y : (n,) bool
            True for known links, False for the other candidates of their source accounts.
        groups : (n,) int
            Source account row of each pair (pairs of one source are capped together).
        seed : int
            Seeds the folds, the subsample and the classifier.
        n_folds : int
            Folds of the cross-fitting (2 to 10); fewer when fewer persons hold a known link.
        feature_names : list of str, optional
            Names of the F signals (reported by :meth:`feature_importance`).
        partners : (n,) int, optional
            The candidate account row of each pair; kept so that :meth:`erase` can drop every
            pair of an erased account, not only those it is the source of.
        persons : (n,) int, optional
            The person of each pair's source (one id for all accounts joined by known links);
            a fold holds whole persons, so no model scores a pair of a person it learnt from.
            Defaults to ``groups``.

        Returns
        -------
        Matcher
            ``self``.
        """
        X, y, groups = _check_training(X, y, groups)
        if not 2 <= n_folds <= 10:
            raise InputError(f"n_folds must be in [2, 10], got {n_folds}")
        n_features = X.shape[1]
        names = (
            list(feature_names)
            if feature_names is not None
            else [f"f{j}" for j in range(n_features)]
        )
        if len(names) != n_features:
            raise InputError(f"{len(names)} feature names for {n_features} columns")
        person = groups if persons is None else np.asarray(persons, dtype=np.int64).ravel()
        if person.size != groups.size:
            raise InputError(f"persons has {person.size} entries for {groups.size} pairs")
        self.seed, self.feature_names = int(seed), names
        rng = np.random.default_rng(seed)
        rows = _cap_rows(groups, self.max_train_rows, rng)
        X, y, groups, person = X[rows], y[rows], groups[rows], person[rows]
        fold = _person_folds(person, y, n_folds, rng)
        n_pos = int(y.sum())
        reason = _unsupervised_reason(n_pos, y, fold, self.min_links)
        self._arrays = {"X": X, "y": y, "groups": groups, "fold": fold, "rows": rows}
        if partners is not None:
            self._arrays["partners"] = np.asarray(partners, dtype=np.int64).ravel()[rows]
        self._link = {}
        self._scorer = {}
        if reason:
            self._fit_unsupervised(X, reason)
        else:
            self._fit_supervised(X, y, groups, fold)
        return self

    def _fit_unsupervised(self, X: np.ndarray, reason: str) -> None:
        self.mode, self.mode_reason = "unsupervised", reason
        self.default_threshold = UNSUPERVISED_THRESHOLD
        self._model = None
        self._calibration = {}
        grid = np.full((X.shape[1], _GRID), np.nan)
        qs = np.linspace(0.0, 1.0, _GRID)
        for j in range(X.shape[1]):
            col = X[:, j][~np.isnan(X[:, j])]
            if col.size:
                grid[j] = np.quantile(col.astype(np.float64), qs)
        self._arrays["grid"] = grid
        combined = _mean_percentile(X, grid)
        combined = combined[~np.isnan(combined)]
        self._arrays["combined_grid"] = (
            np.quantile(combined, qs) if combined.size else np.zeros(_GRID)
        )
        for name in ("heldout_index", "heldout_scores", "heldout_labels", "heldout_groups"):
            setattr(self, name, getattr(self, name)[:0])
        self.metrics = {"mode": "unsupervised", "rows": int(X.shape[0])}

    def _fit_supervised(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, fold: np.ndarray
    ) -> None:
        from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

        self.mode = "supervised"
        self.mode_reason = f"{int(y.sum())} known links (>= {self.min_links}): trained classifier"
        self.default_threshold = None
        n_folds = int(fold.max()) + 1
        oof_raw = np.empty(X.shape[0], dtype=np.float64)
        for f in range(n_folds):
            test = fold == f
            if not test.any():
                continue
            model = _fit_classifier(self.kind, X[~test], y[~test], self.seed)
            oof_raw[test] = _decision(self.kind, model, X[test], self.n_threads)
        self._calibration, oof = fit_calibration(oof_raw, y, fold, self.seed)
        self._model = _fit_classifier(self.kind, X, y, self.seed)
        self._arrays["oof_raw"] = oof_raw
        self._arrays["final_raw"] = self._raw(X)
        self.heldout_index = self._arrays["rows"].copy()
        self.heldout_scores = oof
        self.heldout_labels = y.copy()
        self.heldout_groups = groups.copy()
        two_classes = 0 < int(y.sum()) < y.size
        self.metrics = {
            "mode": "supervised",
            "kind": self.kind,
            "rows": int(X.shape[0]),
            "positives": int(y.sum()),
            "folds": n_folds,
            "oof_auc": float(roc_auc_score(y, oof_raw)) if two_classes else None,
            "oof_log_loss": float(log_loss(y, np.clip(oof, 1e-6, 1 - 1e-6), labels=[0, 1])),
            "oof_brier": float(brier_score_loss(y, oof)),
            "calibration": self._calibration["method"],
            "calibration_log_loss": self._calibration["log_loss"],
        }

    @property
    def folds(self) -> np.ndarray:
        """Cross-fitting fold of each training pair (aligned with ``heldout_index``)."""
        return self._arrays.get("fold", np.zeros(0, np.int64))

    def set_link_calibration(self, x: np.ndarray, y: np.ndarray) -> None:
        """Map pair probabilities to link probabilities: ``y`` at the increasing pair
        probabilities ``x`` (an isotonic fit), interpolated; :meth:`predict_proba` applies it
        after the pair calibration. Empty arrays remove the map."""
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.size != y.size or (x.size and (np.diff(x) < 0).any()):
            raise InputError("link calibration needs increasing x and one y per x")
        self._link = {"x": x, "y": y} if x.size else {}

    def link_probability(self, pair_probability: np.ndarray) -> np.ndarray:
        """The link probability of pair probabilities (identity without a link map). A
        ``1e-6`` share of the pair probability keeps the order of pairs strict."""
        p = np.asarray(pair_probability, dtype=np.float64)
        if not self._link:
            return p
        mapped = np.interp(p, self._link["x"], self._link["y"])
        return np.asarray((1.0 - _ISO_TIEBREAK) * mapped + _ISO_TIEBREAK * p, dtype=np.float64)

    # -- scoring ---------------------------------------------------------------------------------
    def _raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated log-odds of the final classifier, (n,) float64."""
        return _decision(self.kind, self._model, X, self.n_threads)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated match probability of each pair: the pair probability, then the link
        map when one is set (:meth:`set_link_calibration`).

        Parameters
        ----------
        X : (n, F) float
            Signals in the training column order, NaN where missing.

        Returns
        -------
        (n,) float64
            In [0, 1]. In unsupervised mode: the share of training candidate pairs this pair's
            combined score beats (see the module docstring).
        """
        if self.mode is None:
            raise ModelError("the matcher is not fitted; call fit() or Matcher.load()")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise InputError(
                f"X must have {len(self.feature_names)} signal columns "
                f"({', '.join(self.feature_names)}), got shape {X.shape}"
            )
        if self.mode == "unsupervised":
            combined = _mean_percentile(X, self._arrays["grid"])
            # A pair with no signal at all has no evidence of a match: score 0.
            return np.where(
                np.isnan(combined), 0.0, _percentile(combined, self._arrays["combined_grid"])
            )
        return self.link_probability(self.pair_proba(X))

    def pair_proba(self, X: np.ndarray) -> np.ndarray:
        """Pair probability (supervised mode): the final classifier through the calibration
        fitted on the out-of-fold scores, without the link map."""
        if self.mode != "supervised":
            raise ModelError("pair probabilities exist in supervised mode only")
        X = np.asarray(X, dtype=np.float32)
        if self._scorer:
            return calibrate(self._scorer["calibration"], scorer_values(self._scorer, X))
        return calibrate(self._calibration, self._raw(X))

    def set_scorer(self, spec: dict[str, Any] | None) -> None:
        """Score pairs with a plain scorer instead of the classifier (when it ranked the
        known partners better out of fold): ``spec`` as made by
        :func:`crossrec.link.selection.select_scorer`, or None for the classifier."""
        self._scorer = dict(spec) if spec else {}

    @property
    def scorer(self) -> str:
        """``matcher`` (the classifier), or the plain scorer chosen in its place."""
        return str(self._scorer.get("name", "matcher"))

    def feature_importance(self, *, n_repeats: int = 5) -> dict[str, float]:
        """How much each signal matters, as a dict ``name -> importance``.

        Supervised: permutation importance out of sample (a classifier fitted without the
        first fold, measured on it), the mean drop of ROC AUC when the signal's column is
        shuffled (seeded; NaN when that fold lacks a class). Unsupervised: the combined
        score weighs every signal that has values equally, so each gets
        ``1 / (signals with values)`` and empty ones 0.
        """
        if self.mode is None:
            raise ModelError("the matcher is not fitted; call fit() or Matcher.load()")
        if self.mode == "unsupervised":
            present = ~np.isnan(self._arrays["grid"][:, 0])
            weight = 1.0 / max(int(present.sum()), 1)
            return {
                n: (weight if p else 0.0) for n, p in zip(self.feature_names, present, strict=True)
            }
        from sklearn.metrics import roc_auc_score

        # measured out of sample: a classifier fitted without the first fold, on that fold
        fold = self._arrays["fold"]
        test = fold == 0
        X, y = self._arrays["X"][test], self._arrays["y"][test]
        if not 0 < int(y.sum()) < y.size:
            return {n: float("nan") for n in self.feature_names}
        model = _fit_classifier(
            self.kind, self._arrays["X"][~test], self._arrays["y"][~test], self.seed
        )

        def raw(m: np.ndarray) -> np.ndarray:
            return _decision(self.kind, model, m, self.n_threads)

        base = roc_auc_score(y, raw(X))
        rng = np.random.default_rng(self.seed)
        result: dict[str, float] = {}
        for j, name in enumerate(self.feature_names):
            drops = []
            for _ in range(n_repeats):
                shuffled = X.copy()
                shuffled[:, j] = shuffled[rng.permutation(X.shape[0]), j]
                drops.append(base - roc_auc_score(y, raw(shuffled)))
            result[name] = float(np.mean(drops))
        return result

    # -- erasure ---------------------------------------------------------------------------------
    def erase(self, rows: np.ndarray, *, relabel: np.ndarray | None = None) -> int:
        """Forget the training pairs of erased accounts and refit on the rest (same seed,
        same held-out split), so neither the saved pairs nor the classifier keep them.

        Parameters
        ----------
        rows : (e,) int
            Account rows (the ``groups`` / ``partners`` numbering) to forget. A matcher saved
            without ``partners`` can only drop the pairs these accounts are the source of.
        relabel : (m,) int, optional
            New row of each old row (-1 for erased ones), when the account rows moved up.

        Returns
        -------
        int
            Training pairs removed.
        """
        if self.mode is None:
            raise ModelError("the matcher is not fitted; call fit() or Matcher.load()")
        arrays = self._arrays
        gone = np.isin(arrays["groups"], rows)
        if "partners" in arrays:
            gone |= np.isin(arrays["partners"], rows)
        keep = ~gone
        for key in ("X", "y", "groups", "fold", "rows", "partners"):
            if key in arrays:
                arrays[key] = arrays[key][keep]
        if relabel is not None:
            relabel = np.asarray(relabel, dtype=np.int64)
            for key in ("groups", "partners"):
                if key in arrays and arrays[key].size:
                    arrays[key] = relabel[arrays[key]]
        X, y, groups, fold = arrays["X"], arrays["y"], arrays["groups"], arrays["fold"]
        reason = _unsupervised_reason(int(y.sum()), y, fold, self.min_links)
        for key in ("oof_raw", "final_raw"):
            arrays.pop(key, None)
        if reason:
            self._fit_unsupervised(X, reason)
        else:
            self._fit_supervised(X, y, groups, fold)
        return int(gone.sum())

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``matcher.json`` and ``matcher.npz`` into ``directory`` (created if needed)."""
        if self.mode is None:
            raise ModelError("the matcher is not fitted; nothing to save")
        import sklearn

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        calibration = {k: v for k, v in self._calibration.items() if k not in ("iso_x", "iso_y")}
        meta = {
            "format": _FORMAT,
            "kind": self.kind,
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "seed": self.seed,
            "min_links": self.min_links,
            "max_train_rows": self.max_train_rows,
            "feature_names": self.feature_names,
            "default_threshold": self.default_threshold,
            "hgb_params": _HGB_PARAMS,
            "logistic": logistic_json(self._model)
            if self.kind == "logistic" and self._model
            else None,
            "calibration": calibration,
            "link_calibration": {k: v.tolist() for k, v in self._link.items()},
            "scorer": _jsonable(self._scorer),
            "metrics": self.metrics,
            "sklearn_version": sklearn.__version__,
        }
        arrays = dict(self._arrays)
        arrays.update(
            heldout_scores=self.heldout_scores,
            heldout_groups=self.heldout_groups,
            iso_x=self._calibration.get("iso_x", np.zeros(0)),
            iso_y=self._calibration.get("iso_y", np.zeros(0)),
        )
        np.savez(path / _NPZ, **arrays)  # type: ignore[arg-type]
        (path / _JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path, *, n_threads: int = 1) -> Matcher:
        """Read a matcher written by :meth:`save` (refitting gradient boosting, checked)."""
        path = Path(directory)
        if not (path / _JSON).is_file() or not (path / _NPZ).is_file():
            raise ModelError(
                f"no matcher in {path}: expected {_JSON} and {_NPZ}; run `crossrec link`"
            )
        meta = json.loads((path / _JSON).read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ModelError(
                f"{path / _JSON} has format {meta.get('format')}, expected {_FORMAT}; relink"
            )
        with np.load(path / _NPZ, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        m = cls(
            meta["kind"],
            min_links=meta["min_links"],
            max_train_rows=meta["max_train_rows"],
            n_threads=n_threads,
        )
        m.mode, m.mode_reason, m.seed = meta["mode"], meta["mode_reason"], meta["seed"]
        m.feature_names, m.default_threshold = meta["feature_names"], meta["default_threshold"]
        m.metrics = meta["metrics"]
        m._arrays = {k: arrays[k] for k in ("X", "y", "groups", "fold", "rows")}
        if "partners" in arrays:
            m._arrays["partners"] = arrays["partners"]
        link = meta.get("link_calibration") or {}
        m._link = {k: np.asarray(v, dtype=np.float64) for k, v in link.items()}
        scorer = meta.get("scorer") or {}
        if scorer:
            cal = dict(scorer["calibration"])
            for key in ("iso_x", "iso_y"):
                if key in cal:
                    cal[key] = np.asarray(cal[key], dtype=np.float64)
            m._scorer = dict(scorer, calibration=cal)
        if m.mode == "unsupervised":
            m._arrays.update(grid=arrays["grid"], combined_grid=arrays["combined_grid"])
            return m
        m._calibration = dict(meta["calibration"], iso_x=arrays["iso_x"], iso_y=arrays["iso_y"])
        if m.kind == "hgb":
            m._model = _fit_classifier("hgb", m._arrays["X"], m._arrays["y"], m.seed)
        else:
            m._model = logistic_from_json(meta["logistic"])
        raw = m._raw(m._arrays["X"])
        if not np.allclose(raw, arrays["final_raw"], rtol=0.0, atol=1e-9):
            raise ModelError(
                f"the matcher in {path} does not reproduce its held-out scores "
                f"(saved with scikit-learn {meta.get('sklearn_version')}); "
                "retrain it with `crossrec link`"
            )
        m._arrays["final_raw"] = raw
        m._arrays["oof_raw"] = arrays["oof_raw"]
        m.heldout_index = m._arrays["rows"].copy()
        m.heldout_scores = arrays["heldout_scores"]
        m.heldout_labels = m._arrays["y"].copy()
        m.heldout_groups = arrays["heldout_groups"]
        return m


def scorer_values(spec: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """Values of a plain scorer: the sum over its columns of ``sign * (x - center) / scale``,
    a missing value counting ``missing`` (0 for a z-sum, below every value for one signal)."""
    out = np.zeros(X.shape[0], dtype=np.float64)
    for j, sign, center, scale in zip(
        spec["columns"], spec["sign"], spec["center"], spec["scale"], strict=True
    ):
        col = X[:, j].astype(np.float64)
        z = sign * (col - center) / scale
        out += np.where(np.isnan(col), spec["missing"], z)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- training helpers ---------------------------------------------------------------------------
def _check_training(X: Any, y: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(bool).ravel()
    groups = np.asarray(groups, dtype=np.int64).ravel()
    if X.ndim != 2 or X.shape[1] == 0:
        raise InputError(f"X must be an (n_pairs, n_signals) matrix, got shape {X.shape}")
    if X.shape[0] == 0:
        raise ModelError("no candidate pairs to train the matcher on; generate candidates first")
    if not (X.shape[0] == y.size == groups.size):
        raise InputError(f"X has {X.shape[0]} rows, y {y.size}, groups {groups.size}: one per pair")
    if np.isinf(X).any():
        raise InputError("X contains infinite values; use NaN for missing signals")
    return X, y, groups


def _cap_rows(groups: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Row positions to train on: all, or whole random groups up to ``cap`` rows."""
    if groups.size <= cap:
        return np.arange(groups.size)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(uniq.size)
    chosen = order[np.cumsum(counts[order]) <= cap]
    return np.flatnonzero(np.isin(inverse.ravel(), chosen))


def _person_folds(
    persons: np.ndarray, y: np.ndarray, n_folds: int, rng: np.random.Generator
) -> np.ndarray:
    """Fold of each pair: whole persons per fold, persons with a positive dealt evenly, at most
    one fold per person holding a positive (at least two folds whenever two persons do)."""
    uniq, inverse = np.unique(persons, return_inverse=True)
    inverse = inverse.ravel()
    has_pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=uniq.size) > 0
    k = max(1, min(n_folds, int(has_pos.sum())))
    person_fold = np.zeros(uniq.size, dtype=np.int64)
    for members in (np.flatnonzero(has_pos), np.flatnonzero(~has_pos)):
        person_fold[rng.permutation(members)] = np.arange(members.size) % k
    return person_fold[inverse]


def _unsupervised_reason(n_pos: int, y: np.ndarray, fold: np.ndarray, min_links: int) -> str:
    if n_pos < min_links:
        return (
            f"only {n_pos} known links among the candidate pairs (< {min_links}): "
            "unsupervised combined score"
        )
    if int(fold.max()) < 1 or any(
        not y[fold != f].any() or y[fold != f].all() for f in range(int(fold.max()) + 1)
    ):
        return "known links of too few persons to cross-fit: unsupervised combined score"
    if not (~y).any():
        return (
            "no hard negatives (known links have no other candidates): unsupervised combined score"
        )
    return ""


def _threads(n: int) -> Any:
    """Run scikit-learn's OpenMP code on ``n`` threads.

    Fitting always uses one: at matcher sizes (thousands of rows) OpenMP threads cost more
    than they give, on a busy machine their spin-waiting makes fitting tens of times slower,
    and one thread makes the refit on load independent of the machine's thread count.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="openmp")


def _decision(kind: str, model: Any, X: np.ndarray, n_threads: int) -> np.ndarray:
    """Uncalibrated log-odds of a fitted classifier, (n,) float64, in chunks."""
    out = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], _CHUNK):
        chunk = X[start : start + _CHUNK]
        if kind == "hgb":
            with _threads(n_threads):
                out[start : start + _CHUNK] = model.decision_function(chunk)
        else:
            out[start : start + _CHUNK] = logistic_decision(model, chunk)
    return out


def _fit_classifier(kind: str, X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(**_HGB_PARAMS, random_state=seed)
        with _threads(1):
            return model.fit(X, y)
    return fit_logistic(X, y, seed)


# -- unsupervised -------------------------------------------------------------------------------
def _percentile(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mid-rank share of the training distribution (given by its quantile grid) below ``values``.

    A run of equal grid points (a common value) maps to the middle of its run, so e.g. a
    signal that is 0 for 90% of candidates gives 0 the percentile 0.45; between distinct
    points the share is interpolated linearly, outside them it is clipped.
    """
    position = np.linspace(0.0, 1.0, grid.size)
    points, first, count = np.unique(grid, return_index=True, return_counts=True)
    middle = (position[first] + position[first + count - 1]) / 2.0
    return np.interp(values, points, middle)


def _mean_percentile(X: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean over available signals of each signal's percentile; NaN where none is available."""
    total = np.zeros(X.shape[0])
    count = np.zeros(X.shape[0])
    for j in range(X.shape[1]):
        if np.isnan(grid[j, 0]):
            continue
        col = X[:, j].astype(np.float64)
        have = ~np.isnan(col)
        total[have] += _percentile(col[have], grid[j])
        count[have] += 1
    return np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)
