"""Exact top-k inside IVF lists: the numpy/faiss code both engines run, chunk for chunk.

Searching every base vector for every query costs ``n_queries × n_base``; an inverted-file
(IVF) split cuts it to the lists a query probes. The steps, each a pure function of its
inputs so that running them in one process or on Spark gives the same numbers:

1. :func:`train_quantizer` — k-means centroids from a seeded sample of the base vectors, once,
   on the driver (faiss, one thread).
2. :func:`nearest_lists` — each base vector's list (its nearest centroid) and each query's
   ``n_probe`` nearest lists, over fixed chunks of ``chunk_rows`` rows in global id order.
3. :func:`list_topk` — for one list and one fixed chunk of the queries probing it (queries in
   id order, ``chunk_rows`` at a time), the exact top-k of the list's base vectors.
4. :func:`merge_topk` — each query's top-k over the lists it probed.

Scores are inner products in float32 (cosine when the vectors are normalised). Ties are
broken by the smaller base id at every step. BLAS results can depend on matrix shapes and
thread counts, so the chunks are fixed by ids, never by how rows happen to be partitioned, and
:func:`pinned_threads` runs every step on one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from crossrec.errors import InputError

__all__ = [
    "TopK",
    "list_chunks",
    "list_topk",
    "merge_topk",
    "nearest_lists",
    "pinned_threads",
    "to_matrix",
    "train_quantizer",
]

#: Base vectors sampled per list to train the quantizer (faiss's own guidance: 39-256).
SAMPLE_PER_LIST = 64


class TopK(NamedTuple):
    """Top-k of every query, best first.

    Attributes
    ----------
    ids : (n_queries, k) int64
        Base row ids; ``-1`` where a query found fewer than ``k`` base vectors.
    scores : (n_queries, k) float32
        Inner products; ``-inf`` where ``ids`` is ``-1``.
    """

    ids: np.ndarray
    scores: np.ndarray


@contextmanager
def pinned_threads() -> Iterator[None]:
    """One BLAS / OpenMP thread (numpy and faiss), so results do not depend on thread count."""
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def check_vectors(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as a C-contiguous finite float32 (n, d) matrix."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-D array (rows, dims), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contain NaN or infinite values", hint="clean the vectors first")
    return arr


def train_quantizer(base: np.ndarray, n_lists: int, seed: int) -> np.ndarray:
    """IVF centroids, ``(min(n_lists, n_base), d)`` float32, from a seeded sample of ``base``.

    At most :data:`SAMPLE_PER_LIST` × ``n_lists`` rows are sampled (sorted, so the sample is
    the same set in the same order for a seed); k-means runs 20 iterations on one thread.
    """
    x = check_vectors(base, "base vectors")
    if n_lists < 1:
        raise InputError(f"n_lists must be >= 1, got {n_lists}")
    n_lists = min(int(n_lists), len(x))
    if n_lists <= 1:
        return x.mean(axis=0, keepdims=True).astype(np.float32) if len(x) else x[:0]
    rng = np.random.default_rng(seed)
    take = min(len(x), SAMPLE_PER_LIST * n_lists)
    sample = x[np.sort(rng.choice(len(x), take, replace=False))] if take < len(x) else x
    import faiss

    with pinned_threads():
        kmeans = faiss.Kmeans(
            x.shape[1], n_lists, niter=20, seed=int(seed) % (2**31), verbose=False
        )
        kmeans.train(np.ascontiguousarray(sample))
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def nearest_lists(x: np.ndarray, centroids: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` lists with the highest inner product for every row, best first.

    Ties go to the smaller list number. Call it on fixed chunks of rows (the result of a row
    does not depend on the other rows of its chunk, but BLAS may, in the last bits).

    Returns
    -------
    (rows, min(n, n_lists)) int32
    """
    scores = check_vectors(x, "vectors") @ centroids.T
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, : min(int(n), centroids.shape[0])].astype(np.int32)


def list_chunks(lists: np.ndarray, ids: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Chunk number of each (list, query id) probe: its position among the list's probes in
    id order, divided by ``chunk_rows`` (what Spark computes with ``row_number()``)."""
    order = np.lexsort((ids, lists))
    sorted_lists = lists[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_lists)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    chunk = np.empty(len(order), np.int64)
    chunk[order] = (np.arange(len(order)) - first) // chunk_rows
    return chunk


def list_topk(
    query_ids: np.ndarray,
    queries: np.ndarray,
    base_ids: np.ndarray,
    base: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of one list's base vectors for one chunk of queries.

    Both sides are sorted by id first, so the result does not depend on the row order given.

    Returns
    -------
    query_id, base_id : (m,) int64
    score : (m,) float32
        Up to ``k`` rows per query, best first, ties to the smaller base id.
    """
    qo = np.argsort(query_ids, kind="stable")
    bo = np.argsort(base_ids, kind="stable")
    qids, bids = np.asarray(query_ids, np.int64)[qo], np.asarray(base_ids, np.int64)[bo]
    if len(qids) == 0 or len(bids) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    q = np.ascontiguousarray(queries[qo], dtype=np.float32)
    b = np.ascontiguousarray(base[bo], dtype=np.float32)
    scores = q @ b.T
    kk = min(int(k), len(bids))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    return (
        np.repeat(qids, kk),
        bids[top].ravel(),
        np.take_along_axis(scores, top, axis=1).ravel().astype(np.float32),
    )


def merge_topk(
    query_id: np.ndarray, base_id: np.ndarray, score: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's ``k`` best rows over its lists (score descending, then base id)."""
    order = np.lexsort((base_id, -score.astype(np.float64), query_id))
    q = query_id[order]
    starts = np.r_[0, np.flatnonzero(np.diff(q)) + 1] if len(q) else np.zeros(0, np.int64)
    first = np.repeat(starts, np.diff(np.r_[starts, len(q)]))
    keep = order[(np.arange(len(q)) - first) < k]
    keep = keep[np.lexsort((base_id[keep], -score[keep].astype(np.float64), query_id[keep]))]
    return query_id[keep], base_id[keep], score[keep]


def to_matrix(
    query_id: np.ndarray, base_id: np.ndarray, score: np.ndarray, n_queries: int, k: int
) -> TopK:
    """Rows sorted by (query, rank) as :class:`TopK` matrices padded with -1 / -inf."""
    ids = np.full((n_queries, k), -1, np.int64)
    scores = np.full((n_queries, k), -np.inf, np.float32)
    if len(query_id):
        order = np.lexsort((base_id, -score.astype(np.float64), query_id))
        q, b, s = query_id[order], base_id[order], score[order]
        starts = np.r_[0, np.flatnonzero(np.diff(q)) + 1]
        rank = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)]))
        ids[q, rank] = b
        scores[q, rank] = s
    return TopK(ids, scores)
