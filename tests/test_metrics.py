"""Linkage and recommendation metrics: hand-computed answers and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossrec.errors import InputError
from crossrec.evaluate.metrics import (
    hit_at_k,
    hits_at,
    mrr,
    ndcg_at_k,
    per_user_ranking_metrics,
    precision_recall_f1,
    rank_of_truth,
    ranks_from_pairs,
    ranks_of_truth,
    recall_at_k,
)

SCORES = [0.9, 0.5, 0.5, 0.1]


# -- rank of the truth: known answers ----------------------------------------------------------
@pytest.mark.parametrize(
    ("truth", "expected"),
    [(0, 1.0), (1, 2.5), (2, 2.5), (3, 4.0), (None, 7.5), (-1, 7.5)],
)
def test_rank_of_truth_known_answers(truth: int | None, expected: float) -> None:
    # A tie takes the mean of ranks 2 and 3; outside the 4 candidates among 10 accounts the
    # truth shares ranks 5..10, whose mean is 7.5.
    assert rank_of_truth(SCORES, truth, 10) == expected


def test_all_tied_scores_rank_like_random_order() -> None:
    assert rank_of_truth([0.3] * 4, 0, 4) == 2.5


def test_truth_outside_all_candidates_of_whole_population_is_refused() -> None:
    # With every account a candidate there is no rank left for a truth outside them.
    with pytest.raises(InputError):
        rank_of_truth(SCORES, None, 4)
    with pytest.raises(InputError):
        rank_of_truth([0.1, float("nan")], 0, 5)


def test_padded_batch_matches_single_queries() -> None:
    scores = np.array(
        [[0.9, 0.5, 0.5, 0.1], [0.2, 0.7, np.nan, np.nan], [0.4, np.nan, np.nan, np.nan]]
    )
    ranks = ranks_of_truth(scores, np.array([1, -1, 0]), np.array([10, 5, 3]))
    assert ranks.tolist() == [2.5, 4.0, 1.0]  # query 2: 2 candidates of 5 -> mean of 3..5


def test_ranks_from_pairs_known_answers() -> None:
    query = np.array([0, 0, 0, 0, 1, 1, 5])
    scores = np.array([0.9, 0.5, 0.5, 0.1, 0.3, 0.3, 0.2])
    truth = np.array([0, 1, 0, 0, 0, 0, 1], dtype=bool)
    # Query 7 has no candidates at all: mean of ranks 1..10.
    ranks = ranks_from_pairs(query, scores, truth, np.array([5, 0, 1, 7]), 10)
    assert ranks.tolist() == [1.0, 2.5, 6.5, 5.5]


def test_ranks_from_pairs_refuses_two_truths_for_one_query() -> None:
    with pytest.raises(InputError):
        ranks_from_pairs(np.array([0, 0]), np.array([0.1, 0.2]), np.array([1, 1]), np.array([0]), 5)


def test_hits_and_mrr_known_answers() -> None:
    ranks = np.array([1.0, 2.5, 7.5])
    assert hits_at(ranks, 1) == pytest.approx(1 / 3)
    assert hits_at(ranks, 2) == pytest.approx(1 / 3)  # a mean rank of 2.5 is not in the top 2
    assert hits_at(ranks, 3) == pytest.approx(2 / 3)
    assert mrr(ranks) == pytest.approx((1 + 1 / 2.5 + 1 / 7.5) / 3)
    assert math.isnan(mrr([])) and math.isnan(hits_at([], 1))


# -- rank of the truth: properties --------------------------------------------------------------
score_lists = st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=12)


@given(scores=score_lists, data=st.data())
def test_mean_tie_rank_lies_between_best_and_worst_rank(
    scores: list[float], data: st.DataObject
) -> None:
    truth = data.draw(st.integers(0, len(scores) - 1))
    s = np.array(scores)
    best = 1 + np.sum(s > s[truth])
    worst = np.sum(s >= s[truth])
    rank = rank_of_truth(s, truth, len(scores) + 3)
    assert best <= rank <= worst
    assert rank == (best + worst) / 2


@given(scores=score_lists, data=st.data(), extra=st.integers(0, 20))
def test_rank_is_invariant_to_candidate_order(
    scores: list[float], data: st.DataObject, extra: int
) -> None:
    truth = data.draw(st.integers(-1, len(scores) - 1))
    perm = np.array(data.draw(st.permutations(range(len(scores)))))
    population = len(scores) + extra + 1
    s = np.array(scores)
    moved_truth = -1 if truth < 0 else int(np.flatnonzero(perm == truth)[0])
    assert rank_of_truth(s, truth, population) == rank_of_truth(s[perm], moved_truth, population)


@settings(max_examples=50)
@given(
    n_queries=st.integers(1, 8),
    data=st.data(),
)
def test_pair_and_padded_forms_agree_with_single_queries(
    n_queries: int, data: st.DataObject
) -> None:
    rows = []
    for q in range(n_queries):
        scores = data.draw(st.lists(st.sampled_from([0.1, 0.2, 0.5, 0.9]), min_size=0, max_size=6))
        truth = data.draw(st.integers(-1, len(scores) - 1)) if scores else -1
        rows.append((q, scores, truth))
    population = 10
    expected = [rank_of_truth(s, t, population) for _, s, t in rows]
    query = np.concatenate([[q] * len(s) for q, s, _ in rows]).astype(np.int64)
    flat = np.concatenate([np.array(s, dtype=float) for _, s, _ in rows])
    is_truth = np.concatenate([np.arange(len(s)) == t for _, s, t in rows]).astype(bool)
    shuffle = (
        np.array(data.draw(st.permutations(range(query.size)))) if query.size else np.zeros(0, int)
    )
    got = ranks_from_pairs(
        query[shuffle], flat[shuffle], is_truth[shuffle], np.arange(n_queries), population
    )
    assert got.tolist() == expected
    padded = np.full((n_queries, 6), np.nan)
    for q, s, _ in rows:
        padded[q, : len(s)] = s
    truths = np.array([t for _, _, t in rows])
    assert ranks_of_truth(padded, truths, population).tolist() == expected


# -- precision / recall / F1 --------------------------------------------------------------------
def test_precision_recall_f1_known_answer() -> None:
    predicted = np.array([[1, 2], [3, 4], [5, 6], [1, 2]])  # the duplicate counts once
    truth = np.array([[2, 1], [7, 8]])  # (2, 1) is the same undirected link as (1, 2)
    scores = precision_recall_f1(predicted, truth)
    assert scores.true_positives == 1 and scores.n_predicted == 3 and scores.n_truth == 2
    assert scores.precision == pytest.approx(1 / 3)
    assert scores.recall == pytest.approx(1 / 2)
    assert scores.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_precision_recall_f1_directed_and_strings() -> None:
    pred = (np.array(["a", "c"]), np.array(["b", "d"]))
    truth = (np.array(["b", "c"]), np.array(["a", "d"]))
    assert precision_recall_f1(pred, truth).true_positives == 2
    assert precision_recall_f1(pred, truth, symmetric=False).true_positives == 1


def test_precision_is_nan_when_nothing_is_asserted() -> None:
    scores = precision_recall_f1(np.zeros((0, 2), dtype=np.int64), np.array([[1, 2]]))
    assert math.isnan(scores.precision) and scores.recall == 0.0 and math.isnan(scores.f1)
    assert precision_recall_f1(np.array([[1, 2]]), np.array([[3, 4]])).f1 == 0.0


# -- recommendation metrics ---------------------------------------------------------------------
def test_ndcg_recall_hit_known_answers() -> None:
    ranked = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 9, 9, 9]])
    relevant = [{2, 4}, {10}, set()]
    # User 0: hits at positions 2 and 4: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3).
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    per_user = per_user_ranking_metrics(ranked, relevant, 4)
    assert per_user.ndcg[0] == pytest.approx(dcg / idcg)  # 0.6509...
    assert per_user.ndcg[0] == pytest.approx(0.650921, abs=1e-6)
    assert per_user.recall[:2].tolist() == [1.0, 0.0]
    assert np.isnan(per_user.recall[2])  # no relevant items: left out of the means
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx((dcg / idcg + 0.0) / 2)
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert hit_at_k(ranked, relevant, 1) == 0.0
    assert hit_at_k(ranked, relevant, 2) == 0.5


def test_repeated_items_count_once_and_short_lists() -> None:
    ranked = np.array([[7, 7, 7]])
    assert recall_at_k(ranked, [{7, 8}], 3) == 0.5
    # k beyond the list: scored on what the list holds, ideal DCG still uses min(k, |rel|).
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranked, [{7, 8}], 10) == pytest.approx(1 / ideal)
    assert ndcg_at_k([["a", "b"]], [["b"]], 2) == pytest.approx(1 / math.log2(3))


@settings(max_examples=60)
@given(data=st.data())
def test_recommendation_metrics_are_bounded_and_monotone(data: st.DataObject) -> None:
    n_users = data.draw(st.integers(1, 5))
    ranked = np.array(
        [data.draw(st.lists(st.integers(0, 9), min_size=5, max_size=5)) for _ in range(n_users)]
    )
    relevant = [data.draw(st.sets(st.integers(0, 9), max_size=4)) for _ in range(n_users)]
    previous = None
    for k in range(1, 6):
        m = per_user_ranking_metrics(ranked, relevant, k)
        for values in m:
            kept = values[~np.isnan(values)]
            assert ((kept >= 0) & (kept <= 1 + 1e-12)).all()
        if previous is not None:
            has = ~np.isnan(m.recall)
            assert (m.recall[has] >= previous.recall[has]).all()
            assert (m.hit[has] >= previous.hit[has]).all()
        previous = m
