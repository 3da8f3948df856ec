"""Lists computed ahead: every account's top items, scored many accounts at a time.

A service answering from these lists does no scoring on the request path. They are exactly
what :meth:`Recommender.recommend <crossrec.recommend.service.Recommender.recommend>` computes
for one account — the same components, standardisation, blend weights, seen-item and filter
rules, drivers and reasons — but the catalogue-wide work is done with matrix products over a
batch of accounts, and the neighbour searches go to the index in one call. An account's list
is dropped from here as soon as its events, its links or an erasure change it; it is then
computed on request again.

>>> lists = compute_lists(rec, "music", k=20)       # doctest: +SKIP
>>> lists.get(account, 10)                           # doctest: +SKIP
[Recommendation(item='m42', score=3.1, reason='…'), ...]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sp

from crossrec.recommend.components import (
    COMPONENTS,
    N_NEIGHBOURS,
    Query,
    _binary_matrix,
    _linked_map,
    _linked_neighbours,
    _linked_text,
    _matrix_rows,
    linked_sequence,
    neighbour_rows,
    standardise,
)
from crossrec.recommend.reasons import explain

if TYPE_CHECKING:
    from crossrec.recommend.parts import PlatformParts, RecommendParts
    from crossrec.recommend.service import Recommendation, Recommender

#: Catalogue-wide float64 cells per component in one batch (bounds the batch's memory).
BATCH_CELLS = 1 << 22


class Rows(NamedTuple):
    """One component's scores for some queries of a batch: ``scores[i]`` is query
    ``at[i]``'s."""

    at: np.ndarray
    scores: np.ndarray  # (len(at), n_items) float64


@dataclass
class ServedLists:
    """The top ``k`` items of every listed account of one platform.

    ``items[r]`` are catalogue columns best first (``-1`` past the end of a short list),
    ``scores[r]`` their blended scores and ``reasons[r]`` indexes into ``texts``.
    """

    platform: str
    k: int
    catalogue: np.ndarray
    rows: dict[str, int]
    items: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, account: str, k: int) -> list[Recommendation] | None:
        """The account's top ``k``, or None when it is not listed or ``k`` is beyond the
        lists' length."""
        from crossrec.recommend.service import Recommendation

        r = self.rows.get(account)
        if r is None or k > self.k:
            return None
        cols = self.items[r, :k]
        n = int(np.count_nonzero(cols >= 0))
        return [
            Recommendation(str(self.catalogue[c]), float(s), self.texts[t])
            for c, s, t in zip(
                cols[:n].tolist(),
                self.scores[r, :n].tolist(),
                self.reasons[r, :n].tolist(),
                strict=True,
            )
        ]

    def drop(self, accounts: Iterable[str]) -> None:
        for account in accounts:
            self.rows.pop(account, None)


def compute_lists(
    rec: Recommender,
    platform: str,
    *,
    k: int,
    accounts: list[str] | None = None,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ServedLists | None:
    """Top ``k`` lists for ``accounts`` of ``platform`` (default: every account with
    history there at training time, except those changed online since). None when ``stop``
    said so before the end. ``progress(n)`` is called after each batch with the accounts
    done so far."""
    p = rec.parts.platform(platform)
    if accounts is None:
        accounts = [a for a in p.matrix.accounts.tolist() if a not in p.updated]
    n_items = max(p.n_items, 1)
    size = max(1, min(1024, BATCH_CELLS // n_items))
    texts: dict[str, int] = {}
    rows: dict[str, int] = {}
    items = np.full((len(accounts), k), -1, np.int32)
    scores = np.zeros((len(accounts), k), np.float64)
    reasons = np.zeros((len(accounts), k), np.int32)
    for start in range(0, len(accounts), size):
        if stop is not None and stop():
            return None
        chunk = accounts[start : start + size]
        # no lock held: an account changed from here on is dropped when the lists are
        # published (Recommender.precompute), so requests never wait on a batch
        queries = [rec.query(platform, a) for a in chunk]
        for i, (cols, vals, why) in enumerate(top_many(rec, p, queries, k)):
            r = start + i
            rows[chunk[i]] = r
            items[r, : len(cols)] = cols
            scores[r, : len(cols)] = vals
            reasons[r, : len(cols)] = [texts.setdefault(t, len(texts)) for t in why]
        if progress is not None:
            progress(start + len(chunk))
    return ServedLists(
        platform, k, p.matrix.items, rows, items, scores, reasons, list(texts.keys())
    )


def top_many(
    rec: Recommender, p: PlatformParts, queries: list[Query], k: int
) -> list[tuple[list[int], list[float], list[str]]]:
    """Each query's top ``k`` (columns, scores, reasons), as ``Recommender.recommend``
    without an item filter."""
    parts = rec.parts
    comps = batch_components(parts, p, queries, rec)
    z_pop = standardise(p.popularity)
    total = np.zeros((len(queries), p.n_items), np.float64)
    # per query, the weight of each component it has evidence for (0 for the rest)
    weight = np.zeros((len(COMPONENTS), len(queries)), np.float64)
    has = np.zeros((len(COMPONENTS), len(queries)), bool)
    for j, name in enumerate(COMPONENTS):
        if name == "popularity":
            has[j] = True
        elif name in comps:
            has[j, comps[name].at] = True
    for i, q in enumerate(queries):
        w = rec.weights.of(q.platform, q.regime)
        for j, name in enumerate(COMPONENTS):
            if has[j, i]:
                weight[j, i] = max(w.get(name, 0.0), 0.0)
        if not weight[:, i].any():  # nothing weighted has evidence: popularity alone
            weight[COMPONENTS.index("popularity"), i] = 1.0
    # each component's weighted, standardised scores (what it adds to the total)
    z: dict[str, Rows] = {}
    for j, name in enumerate(COMPONENTS):
        if name == "popularity":
            z[name] = Rows(np.arange(len(queries)), z_pop[None, :])
            total += weight[j][:, None] * z_pop[None, :]
        elif name in comps:
            scores = _standardise_rows(comps[name].scores)
            scores *= weight[j, comps[name].at][:, None]
            rows = z[name] = Rows(comps[name].at, scores)
            if len(rows.at) == len(queries):
                total += rows.scores
            else:
                total[rows.at] += rows.scores
    # seen and filtered items can never be recommended
    lens = [len(q.seen) for q in queries]
    if sum(lens):
        seen_rows = np.repeat(np.arange(len(queries)), lens)
        total[seen_rows, np.concatenate([q.seen for q in queries])] = -np.inf
    if p.blocked is not None and p.blocked.any():
        total[:, p.blocked] = -np.inf
    out: list[tuple[list[int], list[float], list[str]]] = []
    for i, (q, top) in enumerate(zip(queries, top_rows(total, k), strict=True)):
        if len(top) == 0:
            out.append(([], [], []))
            continue
        contrib = np.full((len(COMPONENTS), len(top)), -np.inf)
        for j, name in enumerate(COMPONENTS):
            if weight[j, i] > 0:
                rows = z[name]
                if name == "popularity":
                    contrib[j] = weight[j, i] * rows.scores[0, top]
                else:
                    contrib[j] = rows.scores[int(np.searchsorted(rows.at, i)), top]
        drivers = [COMPONENTS[int(d)] for d in np.argmax(contrib, axis=0)]
        cols = top.tolist()
        why = explain(parts, q, drivers, cols, anonymous=q.regime == "anonymous")
        out.append((cols, total[i, top].tolist(), why))
    return out


def top_rows(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """The ``k`` best columns of each row of ``scores``, best first, ties broken by the lower
    column; ``-inf`` marks a column that may not be chosen."""
    n = scores.shape[1]
    m = min(k, n)
    if m == 0:
        return [np.zeros(0, np.int64) for _ in range(len(scores))]
    part = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    out = []
    for row, chosen in zip(scores, part, strict=True):
        kth = row[chosen].min()
        cand = np.flatnonzero(row >= kth) if kth > -np.inf else np.flatnonzero(row > -np.inf)
        out.append(cand[np.lexsort((cand, -row[cand]))][:m])
    return out


def _standardise_rows(m: np.ndarray) -> np.ndarray:
    """:func:`standardise` of every row (in place when ``m`` is float64)."""
    m = np.asarray(m, dtype=np.float64)
    mean = m.mean(axis=1, keepdims=True)
    sd = m.std(axis=1, keepdims=True)
    ok = np.isfinite(sd) & (sd >= 1e-12)
    m -= mean
    m /= np.where(ok, sd, 1.0)
    m[~ok.ravel()] = 0.0
    return m


def batch_components(
    parts: RecommendParts, p: PlatformParts, queries: list[Query], rec: Recommender
) -> dict[str, Rows]:
    """Raw component scores of a batch of queries on platform ``p`` (every component but
    popularity), as :func:`~crossrec.recommend.components.component_scores` gives them."""
    out: dict[str, Rows] = {}
    n = p.n_items
    at = [i for i, q in enumerate(queries) if q.own_cf is not None]
    if at:
        vecs = np.stack([queries[i].own_cf for i in at])  # type: ignore[misc]
        out["own_cf"] = Rows(np.asarray(at), vecs @ p.cf.item_factors.T)
    at = [i for i, q in enumerate(queries) if len(q.seen)]
    if at and p.item_knn is not None:
        indptr, indices, data = [0], [], []
        for i in at:
            q = queries[i]
            cols, conf = p.history(q.account) if q.account is not None else (q.seen, None)
            if conf is None or len(cols) == 0:
                cols, conf = q.seen, np.ones(len(q.seen), np.float32)
            indices.append(np.asarray(cols, np.int64))
            data.append(np.asarray(conf, np.float64))
            indptr.append(indptr[-1] + len(cols))
        x = sp.csr_matrix(
            (np.concatenate(data), np.concatenate(indices), np.asarray(indptr)),
            shape=(len(at), n),
        )
        out["own_items"] = Rows(np.asarray(at), (x @ _f64(parts, p, "item_knn")).toarray())
    if p.seq_items.shape[1]:
        at = [i for i, q in enumerate(queries) if q.own_seq is not None]
        if at:
            vecs = np.stack([queries[i].own_seq for i in at])  # type: ignore[misc]
            out["own_seq"] = Rows(np.asarray(at), vecs @ p.seq_items.T)
    linked_rows: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    probes: list[np.ndarray | None] = []
    for i, q in enumerate(queries):
        linked = [entry for entry in q.linked if entry[0] != q.platform]
        seq_vec = linked_sequence(parts, linked) if linked else None
        probes.append(q.own_seq if q.own_seq is not None else seq_vec)
        if not linked:
            continue
        found = {
            "linked_seq": p.seq_items @ seq_vec
            if seq_vec is not None and p.seq_items.shape[1]
            else None,
            "linked_map": _linked_map(parts, p, linked, rec.maps),
            "linked_text": _linked_text(parts, p, linked),
            "linked_neighbours": _linked_neighbours(parts, p, linked, q.account, N_NEIGHBOURS),
        }
        for name, vec in found.items():
            if vec is not None:
                slot = linked_rows.setdefault(name, ([], []))
                slot[0].append(i)
                slot[1].append(np.asarray(vec, np.float64))
    for name, (where, found_vecs) in linked_rows.items():
        out[name] = Rows(np.asarray(where), np.stack(found_vecs))
    near = _batch_neighbours(parts, p, queries, probes)
    if near is not None:
        out["neighbours"] = near
    return {name: out[name] for name in COMPONENTS if name in out}


def _batch_neighbours(
    parts: RecommendParts, p: PlatformParts, queries: list[Query], probes: list[np.ndarray | None]
) -> Rows | None:
    """What each query's nearest accounts of P in the shared space consumed on P."""
    index = parts.seq_index.get(p.name)
    if index is None or len(index) == 0:
        return None
    to_matrix = _matrix_rows(parts, p)
    found: dict[int, tuple[list[int], list[float]]] = {}
    # one search per number of excluded rows (the searched depth depends on it)
    by_depth: dict[int, list[int]] = {}
    for i, probe in enumerate(probes):
        if probe is not None:
            by_depth.setdefault(N_NEIGHBOURS + len(queries[i].exclude_rows) + 1, []).append(i)
    for depth, at in by_depth.items():
        probe_matrix = np.stack([probes[i] for i in at]).astype(np.float32)  # type: ignore[misc]
        scores, ids = index.search(probe_matrix, depth)
        for i, srow, irow in zip(at, scores.tolist(), ids.tolist(), strict=True):
            rows, weights = neighbour_rows(
                srow, irow, queries[i].exclude_rows, to_matrix, N_NEIGHBOURS
            )
            if rows:
                found[i] = (rows, weights)
    if not found:
        return None
    at_sorted = sorted(found)
    indptr = np.cumsum([0, *[len(found[i][0]) for i in at_sorted]])
    w = sp.csr_matrix(
        (
            np.concatenate([np.asarray(found[i][1], np.float64) for i in at_sorted]),
            np.concatenate([np.asarray(found[i][0], np.int64) for i in at_sorted]),
            indptr,
        ),
        shape=(len(at_sorted), p.matrix.matrix.shape[0]),
    )
    return Rows(np.asarray(at_sorted), (w @ _f64(parts, p, "binary")).toarray())


def _f64(parts: RecommendParts, p: PlatformParts, what: str) -> sp.csr_matrix:
    """A float64 copy of P's item neighbours (``item_knn``) or binary interaction matrix
    (``binary``); cached."""
    source = _binary_matrix(parts, p) if what == "binary" else p.item_knn
    key = (what + "_f64", p.name, id(source))
    found = parts.cache.get(key)
    if found is None:
        found = sp.csr_matrix(source, dtype=np.float64)
        parts.cache[key] = found
    return found
