"""Identity graph: persons are the connected components of asserted and known links.

Nodes are AccountProfiles rows (any number of platforms); an edge is a link between two
accounts. A person is a connected component. Components are numbered deterministically by
their smallest member row (the component holding row 0 is person 0, the next component in
row order is person 1, ...), so the same links always give the same person ids, whatever
order the edges come in.

Chains of links can merge many accounts into one component (a popular account that several
others link to, or a chain through a third platform). A person rarely has more than one
account per platform, so a component larger than ``max_size`` is more likely a chain of
mistakes than a person: :func:`components` withholds it (its rows get person ``-1``) and
reports it. :func:`platform_conflicts` finds components holding two accounts of the same
platform, which assignment per platform pair cannot rule out once three platforms chain.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from crossrec.errors import InputError

__all__ = [
    "Components",
    "Conflicts",
    "components",
    "consistent_links",
    "platform_conflicts",
    "raw_components",
]


class Components(NamedTuple):
    """Person id per row and the components withheld for their size.

    Attributes
    ----------
    component : (n_nodes,) int64
        Person id of each row (numbered by smallest member row, see :func:`raw_components`);
        ``-1`` for rows of withheld components. Unlinked rows are persons of their own.
    withheld : list of int
        Ids (in :func:`raw_components` numbering) of the components larger than ``max_size``,
        in increasing order. Their ids are absent from ``component``.
    """

    component: np.ndarray
    withheld: list[int]


class Conflicts(NamedTuple):
    """Components holding more than one account of one platform.

    Attributes
    ----------
    components : (c,) int64
        Ids of the conflicting components, increasing.
    rows : (r,) int64
        Rows that share their component and platform with another row, increasing.
    """

    components: np.ndarray
    rows: np.ndarray


def check_edges(
    n_nodes: int, edges_a: np.ndarray, edges_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if n_nodes < 0:
        raise InputError(f"n_nodes must be >= 0, got {n_nodes}")
    a = np.asarray(edges_a, dtype=np.int64).ravel()
    b = np.asarray(edges_b, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise InputError(f"edges_a has {a.size} rows but edges_b has {b.size}")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_nodes):
        raise InputError(f"an edge names a row outside 0..{n_nodes - 1}")
    return a, b


def raw_components(n_nodes: int, edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    """Connected component of every row, numbered by smallest member row, nothing withheld.

    Parameters
    ----------
    n_nodes : int
        Number of rows (accounts).
    edges_a, edges_b : (e,) int
        Endpoints of the links (undirected; duplicates and self-links are harmless).

    Returns
    -------
    (n_nodes,) int64
        Component id per row; ids run ``0..C-1`` in order of each component's smallest row.
    """
    a, b = check_edges(n_nodes, edges_a, edges_b)
    graph = sp.coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph.tocsr(), directed=False)
    # Rows are visited in order, so the first occurrence of a label is its smallest row;
    # renumber by that instead of trusting scipy's own order.
    _, first_row, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first_row.size, dtype=np.int64)
    rank[np.argsort(first_row, kind="stable")] = np.arange(first_row.size, dtype=np.int64)
    return rank[inverse.ravel()]


def components(n_nodes: int, edges_a: np.ndarray, edges_b: np.ndarray, max_size: int) -> Components:
    """Persons as connected components of the links, withholding components over ``max_size``.

    Parameters
    ----------
    n_nodes : int
        Number of rows (accounts over every platform).
    edges_a, edges_b : (e,) int
        Endpoints of asserted and known links.
    max_size : int
        Largest component kept as a person (>= 1).

    Returns
    -------
    Components
        ``component`` (person id per row, -1 where withheld) and ``withheld`` (ids of the
        withheld components, which the caller should report with their sizes).
    """
    if max_size < 1:
        raise InputError(f"max_size must be >= 1, got {max_size}")
    labels = raw_components(n_nodes, edges_a, edges_b)
    sizes = np.bincount(labels, minlength=0) if labels.size else np.zeros(0, np.int64)
    too_big = np.flatnonzero(sizes > max_size)
    component = labels.copy()
    if too_big.size:
        component[np.isin(labels, too_big)] = -1
    return Components(component, [int(c) for c in too_big])


def platform_conflicts(component: np.ndarray, platform: np.ndarray) -> Conflicts:
    """Components holding two or more accounts of the same platform.

    Parameters
    ----------
    component : (n,) int
        Person id per row (-1 rows are ignored), as returned by :func:`components`.
    platform : (n,) array
        Platform of each row (strings or codes).

    Returns
    -------
    Conflicts
    """
    comp = np.asarray(component, dtype=np.int64).ravel()
    plat = np.asarray(platform).ravel()
    if comp.shape != plat.shape:
        raise InputError(f"component has {comp.size} rows but platform has {plat.size}")
    rows = np.flatnonzero(comp >= 0)
    if rows.size == 0:
        return Conflicts(np.zeros(0, np.int64), np.zeros(0, np.int64))
    _, codes = np.unique(plat[rows], return_inverse=True)
    n_codes = np.int64(codes.max() + 1)
    key = comp[rows] * n_codes + codes.ravel().astype(np.int64)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    bad_rows = rows[counts[inverse.ravel()] > 1]
    return Conflicts(np.unique(comp[bad_rows]), bad_rows)


def consistent_links(
    n_nodes: int,
    platform: np.ndarray,
    known_a: np.ndarray,
    known_b: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    score: np.ndarray,
) -> np.ndarray:
    """Which of the links ``(a, b)`` can join their persons without a person holding two
    accounts of one platform.

    Known links join first; then the links in decreasing ``score`` (ties: smaller ``a``, then
    smaller ``b``), each kept only when the two persons it would join share no platform — so
    a chain across three or more platforms never gives a person two accounts of one platform,
    and the link that would is the weakest of the chain. Returns a keep mask over ``a``.
    """
    parent = np.arange(n_nodes, dtype=np.int64)
    plats: dict[int, set[int]] = {}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = int(parent[root])
        while parent[x] != root:
            parent[x], x = root, int(parent[x])
        return root

    def platforms_of(root: int) -> set[int]:
        got = plats.get(root)
        if got is None:
            got = {int(platform[root])}
            plats[root] = got
        return got

    def join(x: int, y: int, check: bool) -> bool:
        rx, ry = find(x), find(y)
        if rx == ry:
            return True
        px, py = platforms_of(rx), platforms_of(ry)
        if check and px & py:
            return False
        if rx > ry:
            rx, ry, px, py = ry, rx, py, px
        parent[ry] = rx
        plats[rx] = px | py
        plats.pop(ry, None)
        return True

    for x, y in zip(np.asarray(known_a).tolist(), np.asarray(known_b).tolist(), strict=True):
        join(int(x), int(y), check=False)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    keep = np.zeros(a.size, dtype=bool)
    for i in np.lexsort((b, a, -np.asarray(score, dtype=np.float64))).tolist():
        keep[i] = join(int(a[i]), int(b[i]), check=True)
    return keep
