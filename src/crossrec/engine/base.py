"""The engine seam: the batch link job's heavy steps behind one small interface.

An :class:`Engine` runs four steps on numpy arrays and returns numpy arrays, so the link job
reads the same whichever engine it holds:

``topk``
    Exact top-k inside IVF lists (:mod:`crossrec.engine.ivf`): candidate search.
``score_pairs``
    A picklable function of the pair rows (signals, a fitted matcher's probabilities) applied
    over fixed chunks of pairs.
``one_to_one``
    Mutual-best assignment per platform pair, equal to :func:`crossrec.link.assign.one_to_one`.
``components``
    Persons as size-capped connected components, equal to :func:`crossrec.link.graph.components`.

:class:`~crossrec.engine.local.LocalEngine` runs them in process;
:class:`~crossrec.engine.spark.SparkEngine` on a Spark session. Both run the same numpy/faiss
code over the same chunks, so they return equal arrays (tested on both by
``tests/test_engine_steps.py``). The argument checks live here, once, for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from crossrec.engine.ivf import TopK
from crossrec.errors import InputError
from crossrec.link.graph import Components

__all__ = ["Engine", "PairScorer", "TopK", "check_edges", "check_pairs", "check_scores"]

#: ``f(a_rows, b_rows) -> scores`` over one chunk of pairs: ``(m,)`` or ``(m, width)`` floats.
#: It must be picklable (a module-level function, or an object such as a fitted matcher with
#: a ``__call__``): Spark ships it to the workers once, as a broadcast.
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@runtime_checkable
class Engine(Protocol):
    """Where the heavy steps of the batch link job run (see the module docstring)."""

    #: ``"local"`` or ``"spark"``.
    name: str
    #: Rows per fixed chunk of the chunked steps.
    chunk_rows: int

    def topk(
        self,
        queries: np.ndarray,
        base: np.ndarray,
        k: int,
        *,
        n_lists: int,
        n_probe: int,
        seed: int,
    ) -> TopK:
        """Top-``k`` base rows of every query by inner product, within its ``n_probe`` lists.

        Parameters
        ----------
        queries : (n_q, d) float32
        base : (n_b, d) float32
            Row ``i`` is base id ``i``.
        k : int
        n_lists : int
            IVF lists (capped at ``n_b``); the quantizer is trained on the driver with ``seed``.
        n_probe : int
            Lists searched per query; ``n_probe >= n_lists`` is exact search.

        Returns
        -------
        TopK
            ``(n_q, k)`` ids (``-1`` padded) and float32 scores, best first, ties to the
            smaller id.
        """
        ...

    def score_pairs(
        self, a: np.ndarray, b: np.ndarray, scorer: PairScorer, *, width: int | None = None
    ) -> np.ndarray:
        """``scorer`` over fixed chunks of the pairs ``(a[i], b[i])``, in pair order.

        Returns
        -------
        (n,) float64, or (n, width) float64 when ``width`` is given.
        """
        ...

    def one_to_one(
        self,
        a: np.ndarray,
        b: np.ndarray,
        prob: np.ndarray,
        code_a: np.ndarray,
        code_b: np.ndarray,
    ) -> np.ndarray:
        """Keep mask of mutual-best pairs, as :func:`crossrec.link.assign.one_to_one`."""
        ...

    def components(self, n: int, a: np.ndarray, b: np.ndarray, max_size: int) -> Components:
        """Persons of ``n`` rows linked by edges ``(a, b)``, as
        :func:`crossrec.link.graph.components`."""
        ...

    def close(self) -> None:
        """Release what the engine holds (its work folder; never a session it was given)."""
        ...


def check_topk_args(k: int, n_lists: int, n_probe: int) -> None:
    for name, value in (("k", k), ("n_lists", n_lists), ("n_probe", n_probe)):
        if int(value) < 1:
            raise InputError(f"{name} must be >= 1, got {value}")


def check_scores(out: np.ndarray, m: int, width: int | None) -> np.ndarray:
    """A scorer's output for ``m`` pairs, checked against the promised shape."""
    arr = np.asarray(out, dtype=np.float64)
    want = (m,) if width is None else (m, width)
    if arr.shape != want:
        raise InputError(
            f"the pair scorer returned shape {arr.shape} for {m} pairs, expected {want}",
            hint="return one score per pair, or pass width= for several columns",
        )
    return arr


def check_pairs(
    a: np.ndarray,
    b: np.ndarray,
    prob: np.ndarray,
    code_a: np.ndarray,
    code_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Int64 rows, float64 scores and int64 platform codes, checked by the very code
    :func:`crossrec.link.assign.one_to_one` checks them with."""
    from crossrec.link.assign import prepare_pairs

    return prepare_pairs(a, b, prob, code_a, code_b)


def check_edges(
    n: int, a: np.ndarray, b: np.ndarray, max_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Int64 edge endpoints within ``0..n-1``, checked as
    :func:`crossrec.link.graph.components` checks them."""
    from crossrec.link.graph import check_edges as check_graph_edges

    if max_size < 1:
        raise InputError(f"max_size must be >= 1, got {max_size}")
    return check_graph_edges(n, a, b)


def components_from_roots(root: np.ndarray, max_size: int) -> Components:
    """Persons from each row's smallest connected row (``root``): ids in order of the roots,
    components over ``max_size`` withheld (-1), as :func:`crossrec.link.graph.components`."""
    _, first, inverse = np.unique(root, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size, dtype=np.int64)
    labels = rank[inverse.ravel()]
    sizes = np.bincount(labels) if labels.size else np.zeros(0, np.int64)
    too_big = np.flatnonzero(sizes > max_size)
    component = labels.copy()
    if too_big.size:
        component[np.isin(labels, too_big)] = -1
    return Components(component, [int(c) for c in too_big])
