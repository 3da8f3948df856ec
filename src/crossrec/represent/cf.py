"""Collaborative filtering of one platform: implicit ALS (default) or BPR behind one contract.

``CFModel`` wraps ``implicit`` 0.7 CPU models and exposes the few verbs the linker, the
recommender and the online updater use: ``fit``, ``user_factors`` / ``item_factors``,
``recommend``, ``fold_in``, ``save`` / ``load``. Training calls implicit on the caller's matrix
as it is (no copy, no conversion when it is float32 CSR), so it costs what implicit costs.

Models
------
``als``
    Implicit-feedback ALS with conjugate-gradient updates (Hu, Koren & Volinsky 2008;
    Takács, Pilászy & Tikk 2011). Matrix values are confidences ``C``. Factors have ``factors``
    columns.
``bpr``
    Bayesian Personalised Ranking (Rendle et al. 2009), which uses only the non-zero pattern.
    Following implicit, factors have ``factors + 1`` columns: the last item column is the item
    bias and the last user column is the constant 1, so ``user @ item`` is the full score.

Determinism
-----------
Factors are initialised from ``seed``. ALS solves every row independently, so it gives the
same factors with any number of threads. BPR's parallel SGD races between threads, so by
default BPR trains on one thread; pass ``num_threads`` to trade that for speed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from crossrec.config import TrainConfig
from crossrec.errors import InputError, ModelError

CFKind = Literal["als", "bpr"]
CFEngine = Literal["implicit", "spark"]
_META_FILE = "cf.json"
_FORMAT = 1


class CFModel:
    """One platform's collaborative-filtering model.

    Parameters
    ----------
    kind : {"als", "bpr"}
    factors : int
        Latent dimensions (BPR adds one bias column, see the module docstring).
    iterations : int
        ALS sweeps or BPR epochs.
    regularization : float
    learning_rate : float
        BPR only.
    seed : int
        Seeds the factor initialisation (and BPR's negative sampling).
    num_threads : int or None
        Threads for training; 0 means all cores. ``None``: all cores for ALS, one for BPR
        (deterministic).
    engine : {"implicit", "spark"}
        Where ALS is fitted: in process, or on Spark (:mod:`crossrec.represent.cf_spark`,
        ALS only); the fitted model is the same kind of object either way.
    spark_master, spark_conf
        The Spark session for ``engine="spark"`` (an active session is reused).

    Examples
    --------
    >>> model = CFModel.from_config(config.train).fit(interactions.matrix)
    >>> items, scores = model.recommend(42, k=10)            # row 42 of the matrix
    >>> vector = model.fold_in(item_indices, confidences)    # an account's new events
    >>> items, scores = model.recommend(vector, k=10, seen=item_indices)
    """

    def __init__(
        self,
        kind: CFKind = "als",
        *,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        learning_rate: float = 0.01,
        seed: int = 42,
        num_threads: int | None = None,
        engine: CFEngine = "implicit",
        spark_master: str = "local[2]",
        spark_conf: Mapping[str, str] | None = None,
    ) -> None:
        if kind not in ("als", "bpr"):
            raise InputError(f"unknown CF model {kind!r}", hint="use 'als' or 'bpr'")
        if engine not in ("implicit", "spark") or (engine == "spark" and kind != "als"):
            raise InputError(
                f"cannot fit {kind!r} with cf_engine {engine!r}",
                hint="cf_engine = 'spark' fits ALS only; use 'implicit' for BPR",
            )
        self.engine: CFEngine = engine
        self.spark_master = spark_master
        self.spark_conf = dict(spark_conf or {})
        if factors < 2 or iterations < 1 or regularization < 0 or learning_rate <= 0:
            raise InputError(
                "CF parameters out of range",
                hint="factors >= 2, iterations >= 1, regularization >= 0, learning_rate > 0",
            )
        self.kind: CFKind = kind
        self.factors = int(factors)
        self.iterations = int(iterations)
        self.regularization = float(regularization)
        self.learning_rate = float(learning_rate)
        self.seed = int(seed)
        self.num_threads = (0 if kind == "als" else 1) if num_threads is None else int(num_threads)
        self._model: Any = None
        # Items each account has seen, as CSR structure (shared with the training matrix).
        self._seen_indptr: np.ndarray | None = None
        self._seen_indices: np.ndarray | None = None
        # Accounts updated online since training: row -> seen item columns.
        self._seen_updates: dict[int, np.ndarray] = {}

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        *,
        num_threads: int | None = None,
        spark_master: str = "local[2]",
        spark_conf: Mapping[str, str] | None = None,
    ) -> CFModel:
        """A model with the ``[train]`` settings ``cf_model``, ``cf_engine``, ``factors``,
        ``cf_iterations``, ``regularization``, ``learning_rate`` and ``seed``; the Spark
        session settings (``[engine] master``, ``[spark]``) for ``cf_engine = "spark"``."""
        return cls(
            config.cf_model,
            factors=config.factors,
            iterations=config.cf_iterations,
            regularization=config.regularization,
            learning_rate=config.learning_rate,
            seed=config.seed,
            num_threads=num_threads,
            engine=config.cf_engine,
            spark_master=spark_master,
            spark_conf=spark_conf,
        )

    # -- training ----------------------------------------------------------------------------
    def fit(self, matrix: sp.csr_matrix, *, show_progress: bool = False) -> CFModel:
        """Train from scratch on a confidence matrix.

        Parameters
        ----------
        matrix : scipy.sparse.csr_matrix, shape (n_accounts, n_items)
            Confidences, float32 (other dtypes are converted by implicit, at a copy's cost).
            Rows are accounts (implicit 0.7's ``user_items`` orientation).

        Returns
        -------
        CFModel
            ``self``, fitted.
        """
        if not sp.issparse(matrix) or matrix.format != "csr":
            raise InputError(
                "CF training needs a scipy.sparse CSR matrix of shape (accounts, items)",
                hint="use build_interactions(...).matrix",
            )
        if matrix.nnz == 0:
            raise ModelError("the interaction matrix is empty", hint="ingest events first")
        if self.engine == "spark":
            return self._fit_spark(matrix)
        with _single_threaded_blas():
            model = self._new_implicit_model()
            try:
                model.fit(matrix, show_progress=show_progress)
            except Exception as exc:  # implicit raises ModelFitError / ValueError on NaNs
                raise ModelError(
                    f"{self.kind} training failed: {exc}",
                    hint="lower factors or learning_rate, or raise regularization",
                ) from exc
        self._model = model
        self._seen_indptr, self._seen_indices = matrix.indptr, matrix.indices
        self._seen_updates = {}
        return self

    def _fit_spark(self, matrix: sp.csr_matrix) -> CFModel:
        """ALS fitted on Spark; its factors held by an implicit model as :meth:`load` does."""
        from crossrec.represent.cf_spark import fit_als_spark

        users, items = fit_als_spark(
            matrix,
            factors=self.factors,
            iterations=self.iterations,
            regularization=self.regularization,
            seed=self.seed,
            master=self.spark_master,
            conf=self.spark_conf,
        )
        with _single_threaded_blas():
            model = self._new_implicit_model()
        model.user_factors, model.item_factors = users, items
        self._model = model
        self._seen_indptr, self._seen_indices = matrix.indptr, matrix.indices
        self._seen_updates = {}
        return self

    def _new_implicit_model(self) -> Any:
        # implicit warns (and runs ~10x slower) with a multi-threaded OpenBLAS.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        if self.kind == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.seed,
            )
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=self.num_threads,
            random_state=self.seed,
        )

    # -- factors -----------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self._model is not None

    @property
    def user_factors(self) -> np.ndarray:
        """Account vectors, shape (n_accounts, dim), float32."""
        return self._require().user_factors

    @property
    def item_factors(self) -> np.ndarray:
        """Item vectors, shape (n_items, dim), float32."""
        return self._require().item_factors

    @property
    def dim(self) -> int:
        """Columns of the factors: ``factors`` for ALS, ``factors + 1`` for BPR."""
        return self.factors + (1 if self.kind == "bpr" else 0)

    @property
    def n_accounts(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def _require(self) -> Any:
        if self._model is None:
            raise ModelError("the CF model is not trained", hint="call fit() or load() first")
        return self._model

    # -- use ---------------------------------------------------------------------------------
    def seen(self, account_index: int) -> np.ndarray:
        """Item columns the account had events with (training data and online updates)."""
        self._check_account(account_index)
        if account_index in self._seen_updates:
            return self._seen_updates[account_index]
        assert self._seen_indptr is not None and self._seen_indices is not None
        if account_index + 1 >= len(self._seen_indptr):
            return np.empty(0, dtype=np.int32)
        lo, hi = self._seen_indptr[account_index], self._seen_indptr[account_index + 1]
        return self._seen_indices[lo:hi]

    def recommend(
        self,
        account: int | np.ndarray,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        seen: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for an account row or an account vector.

        Parameters
        ----------
        account : int or np.ndarray of shape (dim,)
            A row of the training matrix, or a vector (e.g. from :meth:`fold_in`).
        k : int
        exclude_seen : bool
            Leave out the account's seen items: its training row (for a row index) and
            ``seen``.
        seen : np.ndarray of int, optional
            Further item columns to leave out (for a vector: the items it was folded in from).

        Returns
        -------
        items : np.ndarray, shape (k',), int64
            Item columns, best first; ``k' = min(k, items left)``. Ties go to the lower column.
        scores : np.ndarray, shape (k',), float32
            ``vector @ item_factors[items].T``.
        """
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        item_factors = self.item_factors
        if isinstance(account, (int, np.integer)):
            vector = self.user_factors[self._check_account(int(account))]
            excluded = [self.seen(int(account))] if exclude_seen else []
        else:
            vector = self._check_vector(account)
            excluded = []
        if exclude_seen and seen is not None:
            excluded.append(np.asarray(seen, dtype=np.int64))
        scores = item_factors @ vector
        allowed = np.ones(len(scores), dtype=bool)
        for cols in excluded:
            allowed[cols] = False
        candidates = np.flatnonzero(allowed)
        top = _top_k(scores[candidates], min(k, len(candidates)))
        items = candidates[top].astype(np.int64)
        return items, scores[items].astype(np.float32)

    def fold_in(self, item_indices: np.ndarray, confidences: np.ndarray) -> np.ndarray:
        """One account's vector from its events, without retraining; the model is unchanged.

        ALS: the exact least-squares user step (implicit's ``recalculate_user``), the same
        problem each ALS sweep solves approximately with conjugate gradients, so the result
        is close to the trained vector of an account with these events.

        BPR: BPR has no closed-form user step, so the vector is the implicit-ALS least-squares
        solution against the fixed BPR item factors (without their bias column)::

            x = (YᵀY + Yₛᵀ(Cₛ − I)Yₛ + λI)⁻¹ Yₛᵀ cₛ

        where ``Y`` are all item factors, ``Yₛ`` those of the account's items, ``cₛ`` their
        confidences and ``λ`` the regularisation; the bias column of the result is 1, as in
        training. It ranks items like the trained vector but its scale differs.

        Parameters
        ----------
        item_indices : np.ndarray, shape (m,), int
            Item columns of the account's events (``InteractionMatrix.encode_account``).
        confidences : np.ndarray, shape (m,), float
            Their summed confidences.

        Returns
        -------
        np.ndarray, shape (dim,), float32
            All zeros when ``m == 0``.
        """
        items = np.asarray(item_indices, dtype=np.int64)
        conf = np.asarray(confidences, dtype=np.float32)
        model = self._require()
        if items.ndim != 1 or items.shape != conf.shape:
            raise InputError("item_indices and confidences must be 1-D and of equal length")
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            raise InputError(
                f"item indices must lie in [0, {self.n_items})",
                hint="encode events with the InteractionMatrix the model was trained on",
            )
        if not np.all(np.isfinite(conf)):
            raise InputError("confidences must be finite")
        order = np.argsort(items, kind="stable")
        items, conf = items[order], conf[order]
        if self.kind == "als":
            row = sp.csr_matrix(
                (conf, items.astype(np.int32), np.array([0, len(items)], dtype=np.int32)),
                shape=(1, self.n_items),
            )
            row.sum_duplicates()
            return np.asarray(model.recalculate_user(0, row), dtype=np.float32)
        return self._bpr_fold_in(items, conf)

    def _bpr_fold_in(self, items: np.ndarray, conf: np.ndarray) -> np.ndarray:
        y = self.item_factors[:, : self.factors].astype(np.float64)
        out = np.zeros(self.dim, dtype=np.float32)
        out[self.factors] = 1.0
        if len(items) == 0:
            return out
        ys = y[items]
        c = conf.astype(np.float64)
        a = y.T @ y + (ys.T * (np.abs(c) - 1.0)) @ ys + self.regularization * np.eye(self.factors)
        b = ys.T @ np.where(c > 0, c, 0.0)
        try:
            out[: self.factors] = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            out[: self.factors] = np.linalg.lstsq(a, b, rcond=None)[0]
        return out

    def update_account(
        self, account_index: int, item_indices: np.ndarray, confidences: np.ndarray
    ) -> np.ndarray:
        """Fold in an account's events and store the vector as its row (online update).

        ``account_index == n_accounts`` appends a new account. Other accounts are untouched.

        Returns
        -------
        np.ndarray, shape (dim,), float32
            The stored vector.
        """
        model = self._require()
        if not 0 <= account_index <= self.n_accounts:
            raise InputError(
                f"account index {account_index} is outside [0, {self.n_accounts}]",
                hint="append new accounts at index n_accounts",
            )
        vector = self.fold_in(item_indices, confidences)
        if account_index == self.n_accounts:
            model.user_factors = np.vstack([model.user_factors, vector[None, :]])
        else:
            model.user_factors[account_index] = vector
        # implicit caches norms and XtX derived from the user factors.
        model._user_norms = None
        if hasattr(model, "_XtX"):
            model._XtX = None
        self._seen_updates[account_index] = np.unique(np.asarray(item_indices, dtype=np.int32))
        return vector

    def erase(self, account_indices: np.ndarray) -> None:
        """Drop the rows of these accounts (their factors and seen items), in place.

        The rows after an erased one move up, as in
        :meth:`crossrec.represent.interactions.InteractionMatrix.erase`, which gives the rows.
        Item factors are kept.

        Parameters
        ----------
        account_indices : np.ndarray, shape (e,), int
            Rows in ``[0, n_accounts)``.
        """
        model = self._require()
        rows = np.unique(np.asarray(account_indices, dtype=np.int64))
        for r in rows.tolist():
            self._check_account(r)
        if not len(rows):
            return
        keep = np.ones(self.n_accounts, dtype=bool)
        keep[rows] = False
        seen = [self.seen(u) for u in np.flatnonzero(keep).tolist()]
        model.user_factors = np.ascontiguousarray(model.user_factors[keep])
        model._user_norms = None  # implicit caches norms and XtX derived from user factors
        if hasattr(model, "_XtX"):
            model._XtX = None
        indptr = np.zeros(len(seen) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in seen], out=indptr[1:])
        self._seen_indptr = indptr
        self._seen_indices = (
            np.concatenate(seen).astype(np.int32) if seen else np.empty(0, dtype=np.int32)
        )
        self._seen_updates = {}

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``cf.json``, ``user_factors.npy``, ``item_factors.npy`` and ``seen.npz``."""
        self._require()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "user_factors.npy", np.ascontiguousarray(self.user_factors))
        np.save(path / "item_factors.npy", np.ascontiguousarray(self.item_factors))
        indptr, indices = self._seen_csr()
        np.savez(path / "seen.npz", indptr=indptr, indices=indices)
        meta = {
            "format": _FORMAT,
            "kind": self.kind,
            "factors": self.factors,
            "iterations": self.iterations,
            "regularization": self.regularization,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "n_accounts": self.n_accounts,
            "n_items": self.n_items,
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), "utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> CFModel:
        """Read a model written by :meth:`save` (no pickles)."""
        path = Path(directory)
        try:
            meta = json.loads((path / _META_FILE).read_text("utf-8"))
            users = np.load(path / "user_factors.npy", allow_pickle=False)
            items = np.load(path / "item_factors.npy", allow_pickle=False)
            with np.load(path / "seen.npz", allow_pickle=False) as z:
                indptr, indices = z["indptr"], z["indices"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"{path}: cannot read the CF model: {exc}", hint="retrain the platform's model"
            ) from None
        if meta.get("format") != _FORMAT:
            raise ModelError(f"{path}: unknown CF model format {meta.get('format')}")
        self = cls(
            meta["kind"],
            factors=meta["factors"],
            iterations=meta["iterations"],
            regularization=meta["regularization"],
            learning_rate=meta["learning_rate"],
            seed=meta["seed"],
            num_threads=meta["num_threads"],
        )
        if users.shape[1] != self.dim or items.shape[1] != self.dim:
            raise ModelError(f"{path}: factor shapes do not match {_META_FILE}")
        with _single_threaded_blas():
            model = self._new_implicit_model()
        model.user_factors, model.item_factors = users, items
        self._model = model
        self._seen_indptr, self._seen_indices = indptr, indices
        return self

    def _seen_csr(self) -> tuple[np.ndarray, np.ndarray]:
        assert self._seen_indptr is not None and self._seen_indices is not None
        if not self._seen_updates:
            return self._seen_indptr, self._seen_indices
        rows = [self.seen(u) for u in range(self.n_accounts)]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        indices = np.concatenate(rows) if rows else np.empty(0, dtype=np.int32)
        return indptr, indices.astype(np.int32)

    # -- checks ------------------------------------------------------------------------------
    def _check_account(self, account_index: int) -> int:
        if not 0 <= account_index < self.n_accounts:
            raise InputError(
                f"account index {account_index} is outside [0, {self.n_accounts})",
                hint="look the account up with InteractionMatrix.account_index",
            )
        return account_index

    def _check_vector(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.dim,):
            raise InputError(f"account vector must have shape ({self.dim},), got {v.shape}")
        return v


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first, ties to the lower position."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition may cut a tie arbitrarily: take every element tied with the k-th too.
        part = np.flatnonzero(scores >= scores[part].min())
    else:
        part = np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))
    return part[order[:k]]


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while implicit runs, as implicit requires for speed."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
