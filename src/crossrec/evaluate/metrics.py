"""Linkage and recommendation metrics on arrays, for one query or many at once.

Linkage: the rank of the true account
--------------------------------------
For a query account, the linker scores a short list of candidates on another platform; the
true account may or may not be among them. :func:`rank_of_truth` turns that into a 1-based
rank over the whole population of accounts on that platform, with two rules that keep the
numbers honest:

* **Ties take the mean rank of the tied group**, never the best: scores ``[0.9, 0.5, 0.5,
  0.1]`` with the truth at a 0.5 give rank 2.5. A scorer that gives every candidate the same
  score therefore gets the rank of a random order, not rank 1.
* **Accounts outside the candidates rank below all candidates** and share the remaining
  ranks: with ``m`` candidates among ``n`` accounts, a truth outside the candidates gets the
  mean of ranks ``m+1 .. n``, that is ``(m + 1 + n) / 2``.

Ranks are floats (a mean of tied ranks can be fractional). :func:`hits_at` counts ranks
``<= k``, so a truth tied with others across the cut-off counts by its mean rank.
:func:`ranks_of_truth` (padded candidate matrix) and :func:`ranks_from_pairs` (flat candidate
pairs, as the linker produces them) rank many queries at once without Python loops.

Recommendation: ranked lists against relevant sets
--------------------------------------------------
``ranked`` is a ``(n_users, L)`` array of item ids, best first; ``relevant[u]`` is the set of
items user ``u`` truly interacted with. Relevance is binary. A repeated item in a ranked list
counts once (at its first position). Users without relevant items are left out of the means
(their per-user values are NaN).

* ``Recall@k`` = (relevant items in the top k) / (number of relevant items).
* ``NDCG@k`` = DCG / IDCG with ``DCG = sum_i hit_i / log2(i + 1)`` over positions
  ``i = 1..k`` and IDCG the DCG of ``min(k, |relevant|)`` hits at the top.
* ``HR@k`` (hit rate) = 1 if any relevant item is in the top k.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from crossrec.errors import InputError

__all__ = [
    "LinkScores",
    "RankingMetrics",
    "hit_at_k",
    "hits_at",
    "mrr",
    "ndcg_at_k",
    "per_user_ranking_metrics",
    "precision_recall_f1",
    "rank_of_truth",
    "ranks_from_pairs",
    "ranks_of_truth",
    "recall_at_k",
]


# -- linkage: ranks -----------------------------------------------------------------------------
def rank_of_truth(
    candidate_scores: Sequence[float] | np.ndarray,
    true_in_candidates: int | None,
    n_population: int,
) -> float:
    """1-based rank of the true account among the whole population (mean rank for ties).

    Parameters
    ----------
    candidate_scores : (m,) float
        Scores of the query's candidates (higher is better); no NaN.
    true_in_candidates : int or None
        Position of the true account in ``candidate_scores``; ``None`` or a negative number
        when the true account is not among the candidates.
    n_population : int
        Number of accounts the truth could be (candidates included), ``>= m`` (``> m`` when
        the truth is outside the candidates).

    Returns
    -------
    float
        ``#(scores > s) + (#(scores == s) + 1) / 2`` for a truth with score ``s``; for a
        truth outside the candidates ``(m + 1 + n_population) / 2``.

    Examples
    --------
    >>> rank_of_truth([0.9, 0.5, 0.5, 0.1], 1, 10)
    2.5
    >>> rank_of_truth([0.9, 0.5, 0.5, 0.1], None, 10)
    7.5
    """
    scores = np.asarray(candidate_scores, dtype=np.float64).reshape(1, -1)
    truth = -1 if true_in_candidates is None else int(true_in_candidates)
    if truth >= scores.shape[1]:
        raise InputError(
            f"true_in_candidates={truth} is outside the {scores.shape[1]} candidates; "
            "pass None when the truth is not a candidate"
        )
    if np.isnan(scores).any():
        raise InputError("candidate scores contain NaN; score every candidate")
    return float(ranks_of_truth(scores, np.array([truth]), n_population)[0])


def ranks_of_truth(
    scores: np.ndarray,
    truth: np.ndarray,
    n_population: int | np.ndarray,
) -> np.ndarray:
    """Ranks of the truth for many queries whose candidates form a padded matrix.

    Parameters
    ----------
    scores : (q, k) float
        Candidate scores per query, NaN where a query has fewer than ``k`` candidates.
    truth : (q,) int
        Column of the true account in each row, ``-1`` when it is not a candidate.
    n_population : int or (q,) int
        Accounts the truth could be, per query or for all.

    Returns
    -------
    (q,) float64
        Rank of the truth per query (see :func:`rank_of_truth`).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise InputError(f"scores must be a (queries, candidates) matrix, got shape {scores.shape}")
    truth = np.asarray(truth, dtype=np.int64).ravel()
    q = scores.shape[0]
    if truth.shape[0] != q:
        raise InputError(f"truth has {truth.shape[0]} entries for {q} queries")
    if (truth >= scores.shape[1]).any():
        raise InputError("truth column outside the candidate matrix; use -1 for 'not a candidate'")
    population = np.broadcast_to(np.asarray(n_population, dtype=np.int64), (q,))
    n_cand = np.sum(~np.isnan(scores), axis=1)
    inside = truth >= 0
    rows = np.arange(q)
    picked = scores[rows, np.maximum(truth, 0)] if scores.shape[1] else np.full(q, np.nan)
    s_true = np.where(inside, picked, np.nan)
    if np.isnan(s_true[inside]).any():
        raise InputError("the truth's score is NaN: NaN marks padding, score every candidate")
    if (population < n_cand).any() or (population[~inside] <= n_cand[~inside]).any():
        raise InputError(
            "n_population must count every candidate (and the truth when it is not a candidate)"
        )
    # NaN compares False, so padding never counts as greater or equal.
    greater = np.sum(scores > s_true[:, None], axis=1)
    equal = np.sum(scores == s_true[:, None], axis=1)
    return np.where(
        inside,
        greater + (equal + 1) / 2.0,
        (n_cand + 1 + population) / 2.0,
    ).astype(np.float64)


def ranks_from_pairs(
    query: np.ndarray,
    scores: np.ndarray,
    is_truth: np.ndarray,
    queries: np.ndarray,
    n_population: int | np.ndarray,
) -> np.ndarray:
    """Ranks of the truth for many queries from flat candidate pairs (the linker's output).

    Parameters
    ----------
    query : (n,) int
        Query id (e.g. source account row) of each candidate pair.
    scores : (n,) float
        Score of each pair; no NaN.
    is_truth : (n,) bool
        Whether the pair's candidate is the query's true account (at most one per query).
    queries : (q,) int
        The queries to rank, each with exactly one true account; a query with no true pair
        among the candidates (or no candidates at all) ranks below all of its candidates.
    n_population : int or (q,) int
        Accounts the truth could be, for all queries or per entry of ``queries``.

    Returns
    -------
    (q,) float64
        Rank of the truth per entry of ``queries``, in that order.
    """
    query = np.asarray(query, dtype=np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_truth = np.asarray(is_truth, dtype=bool).ravel()
    queries = np.asarray(queries, dtype=np.int64).ravel()
    if not (query.shape == scores.shape == is_truth.shape):
        raise InputError("query, scores and is_truth must have the same length")
    if np.isnan(scores).any():
        raise InputError("scores contain NaN; score every candidate pair")
    population = np.broadcast_to(np.asarray(n_population, dtype=np.int64), queries.shape)
    if np.unique(query[is_truth]).size != int(is_truth.sum()):
        raise InputError("a query has more than one true candidate; each query has one truth")
    # Dense score levels make (query, score) one sortable int64 key: query-major, score-minor.
    levels, level = np.unique(scores, return_inverse=True)
    stride = np.int64(levels.size + 1)
    qid, qpos = np.unique(query, return_inverse=True)
    keys = np.sort(qpos.astype(np.int64) * stride + level)

    pos = np.searchsorted(qid, queries)
    pos_c = np.minimum(pos, max(qid.size - 1, 0))
    known = qid[pos_c] == queries if qid.size else np.zeros(queries.size, dtype=bool)
    group_lo = np.searchsorted(keys, pos_c.astype(np.int64) * stride, side="left")
    group_hi = np.searchsorted(keys, pos_c.astype(np.int64) * stride + stride - 1, side="right")
    n_cand = np.where(known, group_hi - group_lo, 0)

    # The truth's dense score level per query, or -1 when the truth is not a candidate.
    truth_level = np.full(queries.size, -1, dtype=np.int64)
    if qid.size:
        t_q = qpos[is_truth]
        t_level = np.full(qid.size, -1, dtype=np.int64)
        t_level[t_q] = level[is_truth]
        truth_level = np.where(known, t_level[pos_c], -1)
    inside = truth_level >= 0
    key_true = pos_c.astype(np.int64) * stride + np.maximum(truth_level, 0)
    lo = np.searchsorted(keys, key_true, side="left")
    hi = np.searchsorted(keys, key_true, side="right")
    greater = group_hi - hi
    equal = hi - lo
    if (population < n_cand).any() or (population[~inside] <= n_cand[~inside]).any():
        raise InputError(
            "n_population must count every candidate (and the truth when it is not a candidate)"
        )
    return np.where(
        inside,
        greater + (equal + 1) / 2.0,
        (n_cand + 1 + population) / 2.0,
    ).astype(np.float64)


def hits_at(ranks: np.ndarray | Sequence[float], k: float) -> float:
    """Fraction of queries whose truth ranks at or above ``k`` (Hits@k); NaN for no queries."""
    r = np.asarray(ranks, dtype=np.float64)
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return float(np.mean(r <= k)) if r.size else float("nan")


def mrr(ranks: np.ndarray | Sequence[float]) -> float:
    """Mean reciprocal rank ``mean(1 / rank)``; NaN for no queries."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size and (r < 1).any():
        raise InputError("ranks are 1-based: every rank must be >= 1")
    return float(np.mean(1.0 / r)) if r.size else float("nan")


# -- linkage: asserted pairs --------------------------------------------------------------------
class LinkScores(NamedTuple):
    """Precision, recall and F1 of asserted links against true links.

    ``precision`` is NaN when nothing was asserted, ``recall`` NaN when there is no truth,
    and ``f1`` NaN when either is NaN; the counts say which.
    """

    precision: float
    recall: float
    f1: float
    true_positives: int
    n_predicted: int
    n_truth: int


def _pair_columns(pairs: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(pairs, tuple) and len(pairs) == 2:
        a, b = np.asarray(pairs[0]).ravel(), np.asarray(pairs[1]).ravel()
    else:
        arr = np.asarray(pairs)
        if arr.size == 0:
            arr = arr.reshape(0, 2)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise InputError(f"pairs must be an (n, 2) array or (a, b) arrays, got {arr.shape}")
        a, b = arr[:, 0], arr[:, 1]
    if a.shape != b.shape:
        raise InputError("the two sides of the pairs have different lengths")
    return a, b


def precision_recall_f1(
    predicted_pairs: Any, truth_pairs: Any, *, symmetric: bool = True
) -> LinkScores:
    """Compare asserted links with true links as sets of pairs.

    Parameters
    ----------
    predicted_pairs, truth_pairs : (n, 2) array or tuple of two (n,) arrays
        Pairs of account ids (ints or strings). Duplicates count once.
    symmetric : bool
        When True (links are undirected) ``(x, y)`` and ``(y, x)`` are the same pair.

    Returns
    -------
    LinkScores
    """
    pa, pb = _pair_columns(predicted_pairs)
    ta, tb = _pair_columns(truth_pairs)
    if symmetric:
        pa, pb = np.where(pa <= pb, pa, pb), np.where(pa <= pb, pb, pa)
        ta, tb = np.where(ta <= tb, ta, tb), np.where(ta <= tb, tb, ta)
    values = np.concatenate([pa, pb, ta, tb])
    _, codes = np.unique(values, return_inverse=True) if values.size else (None, values)
    codes = np.asarray(codes, dtype=np.int64)
    u = np.int64(codes.max() + 1) if codes.size else np.int64(1)
    n_p, n_t = pa.size, ta.size
    pred = np.unique(codes[:n_p] * u + codes[n_p : 2 * n_p])
    true = np.unique(codes[2 * n_p : 2 * n_p + n_t] * u + codes[2 * n_p + n_t :])
    tp = int(np.intersect1d(pred, true, assume_unique=True).size)
    precision = tp / pred.size if pred.size else float("nan")
    recall = tp / true.size if true.size else float("nan")
    if np.isnan(precision) or np.isnan(recall):
        f1 = float("nan")
    else:
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return LinkScores(
        float(precision), float(recall), float(f1), tp, int(pred.size), int(true.size)
    )


# -- recommendation -----------------------------------------------------------------------------
class RankingMetrics(NamedTuple):
    """Per-user Recall@k, NDCG@k and HR@k, each ``(n_users,)`` float64, NaN for users without
    relevant items."""

    recall: np.ndarray
    ndcg: np.ndarray
    hit: np.ndarray


def _hit_matrix(
    ranked: np.ndarray | Sequence[Sequence[Any]], relevant: Sequence[Iterable[Any]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``hits (u, k') bool`` (first occurrences of relevant items in the top k) and
    ``n_relevant (u,) int`` (distinct relevant items per user)."""
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    top = np.asarray(ranked)
    if top.ndim == 1 and top.size == 0:
        top = top.reshape(0, 0)
    if top.ndim != 2:
        raise InputError(f"ranked must be an (n_users, L) array, got shape {top.shape}")
    n_users = top.shape[0]
    if len(relevant) != n_users:
        raise InputError(f"relevant has {len(relevant)} entries for {n_users} ranked lists")
    top = top[:, :k]
    rel_lists = [np.asarray(list(r)).ravel() for r in relevant]
    lens = np.fromiter((r.size for r in rel_lists), dtype=np.int64, count=n_users)
    rel_users = np.repeat(np.arange(n_users, dtype=np.int64), lens)
    rel_items = np.concatenate(rel_lists) if n_users and lens.sum() else np.empty(0, top.dtype)
    try:
        values = np.concatenate([top.ravel(), rel_items])
    except (TypeError, np.exceptions.DTypePromotionError):
        # Mixed id kinds (e.g. ints ranked, strings relevant): compare as Python objects.
        values = np.concatenate([top.ravel().astype(object), rel_items.astype(object)])
    _, codes = np.unique(values, return_inverse=True) if values.size else (None, values)
    codes = np.asarray(codes, dtype=np.int64)
    u = np.int64(codes.max() + 1) if codes.size else np.int64(1)
    top_key = np.repeat(np.arange(n_users, dtype=np.int64), top.shape[1]) * u + codes[: top.size]
    rel_key = np.unique(rel_users * u + codes[top.size :])
    n_relevant = (
        np.bincount(rel_key // u, minlength=n_users)
        if rel_key.size
        else np.zeros(n_users, np.int64)
    )
    first = np.zeros(top_key.size, dtype=bool)
    first[np.unique(top_key, return_index=True)[1]] = True
    hits = (np.isin(top_key, rel_key) & first).reshape(top.shape)
    return hits, n_relevant


def per_user_ranking_metrics(
    ranked: np.ndarray | Sequence[Sequence[Any]], relevant: Sequence[Iterable[Any]], k: int
) -> RankingMetrics:
    """Recall@k, NDCG@k and HR@k for every user.

    Parameters
    ----------
    ranked : (n_users, L) array
        Recommended item ids per user, best first (pad short lists with an id that is never
        relevant, e.g. -1).
    relevant : sequence of n_users iterables
        The relevant item ids of each user.
    k : int
        Cut-off; lists shorter than ``k`` are scored on what they hold.

    Returns
    -------
    RankingMetrics
    """
    hits, n_rel = _hit_matrix(ranked, relevant, k)
    has = n_rel > 0
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = hits.astype(np.float64) @ discounts[: hits.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_rel, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(has, n_hits / n_rel, np.nan)
        ndcg = np.where(has, dcg / ideal, np.nan)
    hit = np.where(has, (n_hits > 0).astype(np.float64), np.nan)
    return RankingMetrics(recall, ndcg, hit)


def _mean_over_users(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def recall_at_k(
    ranked: np.ndarray | Sequence[Sequence[Any]], relevant: Sequence[Iterable[Any]], k: int
) -> float:
    """Mean Recall@k over users with relevant items (see the module docstring)."""
    return _mean_over_users(per_user_ranking_metrics(ranked, relevant, k).recall)


def ndcg_at_k(
    ranked: np.ndarray | Sequence[Sequence[Any]], relevant: Sequence[Iterable[Any]], k: int
) -> float:
    """Mean binary NDCG@k over users with relevant items (see the module docstring)."""
    return _mean_over_users(per_user_ranking_metrics(ranked, relevant, k).ndcg)


def hit_at_k(
    ranked: np.ndarray | Sequence[Sequence[Any]], relevant: Sequence[Iterable[Any]], k: int
) -> float:
    """Mean HR@k (a relevant item in the top k) over users with relevant items."""
    return _mean_over_users(per_user_ranking_metrics(ranked, relevant, k).hit)
