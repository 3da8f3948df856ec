"""Who links to whom: one-to-one assignment, the precision threshold and the identity graph."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from crossrec.errors import InputError
from crossrec.link import assign
from crossrec.link.assign import AssignMethod, one_to_one, threshold_for_precision
from crossrec.link.graph import components, platform_conflicts, raw_components


def test_components_known_answer_numbered_by_smallest_row() -> None:
    result = components(7, np.array([5, 3, 2]), np.array([3, 0, 1]), max_size=10)
    # {0, 3, 5} holds row 0 -> person 0; {1, 2} -> 1; {4} -> 2; {6} -> 3.
    assert result.component.tolist() == [0, 1, 1, 0, 2, 0, 3]
    assert result.withheld == []


@pytest.mark.parametrize("seed", range(8))
def test_components_equal_networkx_on_random_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    e = int(rng.integers(0, 2 * n))
    a, b = rng.integers(0, n, e), rng.integers(0, n, e)
    labels = raw_components(n, a, b)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(zip(a.tolist(), b.tolist(), strict=True))
    expected = sorted(sorted(c) for c in nx.connected_components(g))
    got: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        got.setdefault(label, []).append(row)
    assert sorted(got.values()) == expected
    # Ids run 0..C-1 in the order of each component's smallest row.
    smallest = [min(got[c]) for c in range(len(got))]
    assert smallest == sorted(smallest)


def test_components_over_cap_are_withheld_and_reported() -> None:
    # A chain 0-1-2-3 (4 accounts) and a pair 4-5, cap 3.
    result = components(7, np.array([0, 1, 2, 4]), np.array([1, 2, 3, 5]), max_size=3)
    assert result.component.tolist() == [-1, -1, -1, -1, 1, 1, 2]
    assert result.withheld == [0]
    assert raw_components(7, np.array([0, 1, 2, 4]), np.array([1, 2, 3, 5]))[0] == 0


def test_components_do_not_depend_on_edge_order_or_direction() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 40, 50), rng.integers(0, 40, 50)
    first = components(40, a, b, max_size=5)
    perm = rng.permutation(50)
    second = components(40, b[perm], a[perm], max_size=5)
    assert np.array_equal(first.component, second.component)
    assert first.withheld == second.withheld


def test_components_refuse_rows_outside_the_graph() -> None:
    with pytest.raises(InputError):
        components(3, np.array([0]), np.array([3]), max_size=2)
    with pytest.raises(InputError):
        components(3, np.array([0]), np.array([1]), max_size=0)


def test_platform_conflicts_finds_two_accounts_of_one_platform() -> None:
    # Person 0 chains cinema 0 - stream 1 - shop 2 - cinema 3: two cinema accounts.
    platform = np.array(["cinema", "stream", "shop", "cinema", "cinema", "stream", "cinema"])
    result = components(7, np.array([0, 1, 2, 4]), np.array([1, 2, 3, 5]), max_size=10)
    conflicts = platform_conflicts(result.component, platform)
    assert conflicts.components.tolist() == [0]
    assert conflicts.rows.tolist() == [0, 3]
    # Withheld rows (-1) are not persons and never conflict.
    capped = components(7, np.array([0, 1, 2, 4]), np.array([1, 2, 3, 5]), max_size=3)
    assert platform_conflicts(capped.component, platform).components.size == 0


# -- assignment: one account per platform per person ---------------------------------------------
# Cinema rows 0, 1, 2 against stream rows 10, 11, 12.
A = np.array([0, 0, 1, 1, 2, 2])
B = np.array([10, 11, 10, 11, 12, 11])
S = np.array([0.9, 0.8, 0.85, 0.3, 0.2, 0.5])
PA = np.array(["cinema"] * 6)
PB = np.array(["stream"] * 6)


def test_mutual_best_known_answer() -> None:
    # 0 and 10 are each other's best. 1's best is 10 (taken by 0), 2's best is 11 whose best
    # is 0, and 12's best is 2 but 2 prefers 11: only (0, 10) is mutual.
    keep = one_to_one(A, B, S, PA, PB)
    assert keep.tolist() == [True, False, False, False, False, False]


def test_hungarian_known_optimum() -> None:
    # (0,11) + (1,10) + (2,12) = 1.85 beats (0,10) + (1,11) + (2,12) = 1.4.
    keep = one_to_one(A, B, S, PA, PB, method="hungarian")
    assert keep.tolist() == [False, True, True, False, True, False]


@pytest.mark.parametrize("method", ["mutual_best", "hungarian"])
def test_assignment_ignores_pair_order_and_breaks_ties_by_row(method: AssignMethod) -> None:
    a = np.array([0, 0, 1, 1])
    b = np.array([10, 11, 10, 11])
    s = np.full(4, 0.5)  # all tied
    keep = one_to_one(a, b, s, np.zeros(4, int), np.ones(4, int), method=method)
    perm = np.array([3, 1, 2, 0])
    keep_perm = one_to_one(
        a[perm], b[perm], s[perm], np.zeros(4, int), np.ones(4, int), method=method
    )
    assert np.array_equal(keep[perm], keep_perm)
    if method == "mutual_best":  # smallest partner row wins at both ends
        assert keep.tolist() == [True, False, False, False]


def test_reversed_duplicates_keep_once_and_platforms_pair_separately() -> None:
    a = np.array([0, 10, 0, 20])
    b = np.array([10, 0, 20, 10])
    s = np.array([0.9, 0.9, 0.8, 0.7])
    pa = np.array(["cinema", "stream", "cinema", "shop"])
    pb = np.array(["stream", "cinema", "shop", "stream"])
    keep = one_to_one(a, b, s, pa, pb)
    # (0,10) once; (0,20) is cinema-shop, (20,10) shop-stream: other platform pairs, kept.
    assert keep.tolist() == [True, False, True, True]


def test_assignment_refuses_pairs_within_one_platform() -> None:
    with pytest.raises(InputError):
        one_to_one(np.array([0]), np.array([1]), np.array([0.5]), np.array(["x"]), np.array(["x"]))
    with pytest.raises(InputError):
        one_to_one(A, B, S, PA, PB, method="greedy")  # type: ignore[arg-type]


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_hungarian_equals_networkx_optimum(
    seed: int, dense: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not dense:  # force the sparse solver on every block
        monkeypatch.setattr(assign, "DENSE_CELLS", 0)
    rng = np.random.default_rng(seed)
    na, nb, e = int(rng.integers(2, 15)), int(rng.integers(2, 15)), int(rng.integers(1, 60))
    a, b = rng.integers(0, na, e), rng.integers(0, nb, e) + 100
    s = rng.random(e).round(2)
    g = nx.Graph()
    for x, y, w in zip(a.tolist(), b.tolist(), s.tolist(), strict=True):
        if not g.has_edge(x, y) or g[x][y]["weight"] < w:
            g.add_edge(x, y, weight=w)
    optimum = sum(g[x][y]["weight"] for x, y in nx.max_weight_matching(g))
    keep = one_to_one(a, b, s, np.zeros(e, int), np.ones(e, int), method="hungarian")
    assert len(set(a[keep].tolist())) == keep.sum() == len(set(b[keep].tolist()))
    assert s[keep].sum() == pytest.approx(optimum)
    mutual = one_to_one(a, b, s, np.zeros(e, int), np.ones(e, int))
    assert len(set(a[mutual].tolist())) == mutual.sum() == len(set(b[mutual].tolist()))


# -- threshold for a precision -------------------------------------------------------------------
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
LABELS = np.array([1, 1, 0, 1, 0], dtype=bool)


def test_threshold_known_answers() -> None:
    # Precision by cut: 1, 1, 2/3, 3/4, 3/5. The lowest threshold reaching 0.75 is 0.6.
    assert threshold_for_precision(SCORES, LABELS, 0.75) == (0.6, 0.75, 1.0, None)
    assert threshold_for_precision(SCORES, LABELS, 0.95) == (0.8, 1.0, pytest.approx(2 / 3), None)
    # A known link missed by the candidates still counts against recall.
    assert threshold_for_precision(SCORES, LABELS, 0.75, n_positives=4).recall == 0.75


def test_threshold_by_laplace_rule_needs_a_longer_run_of_true_links() -> None:
    # 18 true links, then one false, then 20 more true: raw precision reaches 0.95 at the
    # bottom (38/39 = 0.974); (tp + 1) / (n + 2) is 0.95 after the first 18 (19/20) and
    # 39/41 = 0.951 at the bottom, so both choose the lowest; drop two true links at the end
    # (37/39 = 0.949) and only the raw rule (36/37) still goes below the false link
    labels = np.array([1] * 18 + [0] + [1] * 20, dtype=bool)
    scores = np.linspace(1.0, 0.1, labels.size)
    assert threshold_for_precision(scores, labels, 0.95, laplace=True).threshold == scores[-1]
    labels, scores = labels[:-2], scores[:-2]
    raw = threshold_for_precision(scores, labels, 0.95)
    smoothed = threshold_for_precision(scores, labels, 0.95, laplace=True)
    assert raw.threshold == scores[-1] and raw.precision == pytest.approx(36 / 37)
    assert smoothed.threshold == scores[17] and smoothed.precision == 1.0
    # a short perfect run earns nothing: 5/5 is (5 + 1) / (5 + 2) = 0.857 < 0.95
    short = threshold_for_precision(scores[:5], labels[:5], 0.95, laplace=True)
    assert short.threshold is None


def test_threshold_cuts_only_between_distinct_scores() -> None:
    choice = threshold_for_precision(np.array([0.9, 0.9, 0.5]), np.array([1, 0, 1]), 0.6)
    # Both 0.9 pairs are predicted together: precision 1/2 < 0.6; at 0.5: 2/3 >= 0.6.
    assert choice.threshold == 0.5


def test_threshold_unreachable_says_why() -> None:
    choice = threshold_for_precision(np.array([0.9, 0.8]), np.array([0, 1]), 0.9)
    assert choice.threshold is None
    assert choice.precision == 0.5 and choice.recall == 1.0
    assert choice.reason is not None
    assert "held-out precision at best 0.500 < target 0.900" in choice.reason
    assert "too weak to assert links" in choice.reason
    empty = threshold_for_precision(np.zeros(0), np.zeros(0, bool), 0.9)
    assert empty.threshold is None and "no held-out known links" in (empty.reason or "")


def test_consistent_links_never_give_a_person_two_accounts_of_one_platform() -> None:
    from crossrec.link.graph import consistent_links

    # rows 0,1: platform A; 2: B; 3: C. Known A0-B2; links B2-C3 (0.9), A1-C3 (0.8) would
    # chain A0 and A1 into one person: the weaker link is the one left out.
    platform = np.array([0, 0, 1, 2])
    keep = consistent_links(
        4,
        platform,
        np.array([0]),
        np.array([2]),
        np.array([2, 1]),
        np.array([3, 3]),
        np.array([0.9, 0.8]),
    )
    assert keep.tolist() == [True, False]
    # the same links in the other order give the same answer
    keep = consistent_links(
        4,
        platform,
        np.array([0]),
        np.array([2]),
        np.array([1, 2]),
        np.array([3, 3]),
        np.array([0.8, 0.9]),
    )
    assert keep.tolist() == [False, True]
    # without the conflict every link keeps
    assert consistent_links(
        4,
        np.array([0, 1, 2, 3]),
        np.zeros(0, int),
        np.zeros(0, int),
        np.array([0, 1, 2]),
        np.array([1, 2, 3]),
        np.array([0.5, 0.6, 0.7]),
    ).all()
