"""Identity graph: persons as connected components, size cap, platform conflicts."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from crossrec.errors import InputError
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
