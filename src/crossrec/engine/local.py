"""The in-process engine: the link job's steps on numpy, faiss and scipy in this process."""

from __future__ import annotations

import itertools

import numpy as np

from crossrec.engine import ivf
from crossrec.engine.base import (
    PairScorer,
    TopK,
    check_pairs,
    check_scores,
    check_topk_args,
)
from crossrec.errors import InputError
from crossrec.link.assign import one_to_one
from crossrec.link.graph import Components, components

__all__ = ["LocalEngine", "local_topk"]

DEFAULT_CHUNK_ROWS = 4096


def local_topk(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    *,
    n_lists: int,
    n_probe: int,
    seed: int,
    chunk_rows: int,
) -> TopK:
    """IVF top-k in process, step for step as the Spark engine runs it (see :mod:`.ivf`)."""
    check_topk_args(k, n_lists, n_probe)
    q = ivf.check_vectors(queries, "query vectors")
    x = ivf.check_vectors(base, "base vectors")
    if q.shape[1] != x.shape[1]:
        raise InputError(f"queries have {q.shape[1]} dims but the base has {x.shape[1]}")
    if len(q) == 0 or len(x) == 0:
        return ivf.to_matrix(*(np.zeros(0, np.int64),) * 2, np.zeros(0, np.float32), len(q), k)
    centroids = ivf.train_quantizer(x, n_lists, seed)
    with ivf.pinned_threads():
        base_list = np.concatenate(
            [
                ivf.nearest_lists(x[i : i + chunk_rows], centroids, 1)[:, 0]
                for i in range(0, len(x), chunk_rows)
            ]
        )
        probes = np.concatenate(
            [
                ivf.nearest_lists(q[i : i + chunk_rows], centroids, n_probe)
                for i in range(0, len(q), chunk_rows)
            ]
        )
        n_p = probes.shape[1]
        probe_q = np.repeat(np.arange(len(q), dtype=np.int64), n_p)
        probe_l = probes.ravel().astype(np.int64)
        chunk = ivf.list_chunks(probe_l, probe_q, chunk_rows)
        base_order = np.argsort(base_list, kind="stable")
        base_bounds = np.searchsorted(base_list[base_order], np.arange(len(centroids) + 1))
        order = np.lexsort((probe_q, chunk, probe_l))
        key = probe_l[order] * (len(q) + 1) + chunk[order]
        cuts = np.r_[0, np.flatnonzero(np.diff(key)) + 1, len(order)]
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for lo, hi in itertools.pairwise(cuts):
            members = order[lo:hi]
            lst = int(probe_l[members[0]])
            bids = base_order[base_bounds[lst] : base_bounds[lst + 1]]
            qids = probe_q[members]
            parts.append(ivf.list_topk(qids, q[qids], bids, x[bids], k))
    qid = np.concatenate([p[0] for p in parts])
    bid = np.concatenate([p[1] for p in parts])
    score = np.concatenate([p[2] for p in parts])
    return ivf.to_matrix(*ivf.merge_topk(qid, bid, score, k), len(q), k)


class LocalEngine:
    """Runs the steps in this process; ``one_to_one`` and ``components`` are the link
    package's own functions.

    Parameters
    ----------
    chunk_rows : int
        Rows per fixed chunk of ``topk`` and ``score_pairs``; give the Spark engine the same.
    """

    name = "local"

    def __init__(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise InputError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.chunk_rows = int(chunk_rows)

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
        return local_topk(
            queries,
            base,
            k,
            n_lists=n_lists,
            n_probe=n_probe,
            seed=seed,
            chunk_rows=self.chunk_rows,
        )

    def score_pairs(
        self, a: np.ndarray, b: np.ndarray, scorer: PairScorer, *, width: int | None = None
    ) -> np.ndarray:
        ra = np.asarray(a, dtype=np.int64).ravel()
        rb = np.asarray(b, dtype=np.int64).ravel()
        if ra.shape != rb.shape:
            raise InputError(f"a has {ra.size} pairs but b has {rb.size}")
        out = np.zeros((ra.size,) if width is None else (ra.size, width), np.float64)
        with ivf.pinned_threads():
            for lo in range(0, ra.size, self.chunk_rows):
                hi = min(lo + self.chunk_rows, ra.size)
                out[lo:hi] = check_scores(scorer(ra[lo:hi], rb[lo:hi]), hi - lo, width)
        return out

    def one_to_one(
        self,
        a: np.ndarray,
        b: np.ndarray,
        prob: np.ndarray,
        code_a: np.ndarray,
        code_b: np.ndarray,
    ) -> np.ndarray:
        check_pairs(a, b, prob, code_a, code_b)
        return one_to_one(a, b, prob, code_a, code_b, method="mutual_best")

    def components(self, n: int, a: np.ndarray, b: np.ndarray, max_size: int) -> Components:
        return components(n, a, b, max_size)

    def close(self) -> None:
        """Nothing to release."""
