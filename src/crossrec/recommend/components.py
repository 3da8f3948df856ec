"""The recommender's signals: one score per catalogue item from each source of evidence.

For an account on platform P (the *query*), each component scores every item of P's
catalogue, or is absent when the account gives it nothing to work with:

- ``own_cf``: its own CF vector on P against P's item factors;
- ``own_items``: items like the ones it had on P (item-to-item BM25 neighbours);
- ``own_seq``: its own vector in the shared sequence space against P's item vectors;
- ``linked_seq``: the link-weighted mean sequence vector of the person's other accounts;
- ``linked_map``: those accounts' CF vectors mapped into P's CF user space by a ridge map learned
  from linked persons (EMCDR-style), against P's item factors;
- ``linked_text``: the items those accounts consumed, carried into P's catalogue through the
  text alignment (similar titles);
- ``linked_neighbours``: what the persons whose accounts elsewhere look most like the
  linked accounts (cosine of IDF-weighted histories on that platform) consumed on P —
  cross-domain user-kNN through the persons active on both platforms;
- ``neighbours``: what the nearest accounts of P in the shared space consumed on P;
- ``popularity``: how many accounts of P touched the item.

Scores are standardised per component (mean 0, unit spread over the catalogue) before the
blend (:mod:`crossrec.recommend.blend`) adds them with tuned weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from crossrec.recommend.parts import Linked, PlatformParts, RecommendParts

COMPONENTS: tuple[str, ...] = (
    "own_cf",
    "own_items",
    "own_seq",
    "linked_seq",
    "linked_map",
    "linked_text",
    "linked_neighbours",
    "neighbours",
    "popularity",
)
#: Accounts of P consulted by the ``neighbours`` component.
N_NEIGHBOURS = 50


@dataclass
class Query:
    """What is known about the account being served.

    ``own_cf``/``own_seq`` are None when the account has no history on the platform;
    ``seen`` are catalogue columns it already interacted with (removed from the results);
    ``linked`` its other accounts with link weights; ``exclude_rows`` profile rows that must
    not serve as its neighbours (its own, and held-out accounts during validation).
    """

    platform: str
    account: str | None = None
    own_cf: np.ndarray | None = None
    own_seq: np.ndarray | None = None
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    linked: list[Linked] = field(default_factory=list)
    exclude_rows: frozenset[int] = frozenset()

    @property
    def regime(self) -> str:
        """``warm`` (history here), ``cold`` (only linked accounts) or ``anonymous``."""
        if self.own_cf is not None or self.own_seq is not None or len(self.seen):
            return "warm"
        return "cold" if self.linked else "anonymous"


@dataclass
class Maps:
    """Ridge maps between platforms' CF user spaces: (Q, P) -> (f_Q + 1, f_P)."""

    linear: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def standardise(scores: np.ndarray) -> np.ndarray:
    """``(s - mean) / std`` over the catalogue; zeros when the scores are constant."""
    s = np.asarray(scores, dtype=np.float64)
    sd = s.std()
    if not np.isfinite(sd) or sd < 1e-12:
        return np.zeros_like(s)
    return (s - s.mean()) / sd


def linked_sequence(parts: RecommendParts, linked: list[Linked]) -> np.ndarray | None:
    """Link-weighted, unit-length mean of the linked accounts' sequence vectors."""
    prof = parts.profiles
    if prof.sequence.shape[1] == 0:
        return None
    acc = np.zeros(prof.sequence.shape[1], np.float64)
    for platform, account, weight in linked:
        row = prof.row(platform, account)
        if row is not None:
            acc += weight * prof.sequence[row]
    norm = np.linalg.norm(acc)
    return (acc / norm).astype(np.float32) if norm > 0 else None


def component_scores(
    parts: RecommendParts, query: Query, maps: Maps, *, n_neighbours: int = N_NEIGHBOURS
) -> dict[str, np.ndarray]:
    """Raw scores ``(n_items,)`` of every component that has evidence for this query."""
    p = parts.platform(query.platform)
    out: dict[str, np.ndarray] = {"popularity": p.popularity}
    if query.own_cf is not None:
        out["own_cf"] = p.cf.item_factors @ query.own_cf
    if len(query.seen) and p.item_knn is not None:
        cols, conf = p.history(query.account) if query.account is not None else (query.seen, None)
        if conf is None or len(cols) == 0:
            cols, conf = query.seen, np.ones(len(query.seen), np.float32)
        out["own_items"] = _weighted_rows(p.item_knn, np.asarray(cols), np.asarray(conf))
    if query.own_seq is not None and p.seq_items.shape[1]:
        out["own_seq"] = p.seq_items @ query.own_seq
    linked = [entry for entry in query.linked if entry[0] != query.platform]
    seq_vec = linked_sequence(parts, linked) if linked else None
    if seq_vec is not None and p.seq_items.shape[1]:
        out["linked_seq"] = p.seq_items @ seq_vec
    mapped = _linked_map(parts, p, linked, maps)
    if mapped is not None:
        out["linked_map"] = mapped
    text = _linked_text(parts, p, linked)
    if text is not None:
        out["linked_text"] = text
    bridged = _linked_neighbours(parts, p, linked, query.account, n_neighbours)
    if bridged is not None:
        out["linked_neighbours"] = bridged
    probe = query.own_seq if query.own_seq is not None else seq_vec
    if probe is not None:
        near = _neighbours(parts, p, probe, query.exclude_rows, n_neighbours)
        if near is not None:
            out["neighbours"] = near
    return out


def _linked_map(
    parts: RecommendParts, p: PlatformParts, linked: list[Linked], maps: Maps
) -> np.ndarray | None:
    from crossrec.link.mapping import apply_linear

    total = np.zeros(p.cf.dim, np.float64)
    weight = 0.0
    for platform, account, w in linked:
        W = maps.linear.get((platform, p.name))
        q = parts.platforms.get(platform)
        if W is None or q is None:
            continue
        row = q.row(account)
        if row is None:
            continue
        total += w * apply_linear(q.cf.user_factors[row][None, :], W)[0]
        weight += w
    if weight == 0:
        return None
    return np.asarray(p.cf.item_factors @ (total / weight).astype(np.float32))


def _linked_text(
    parts: RecommendParts, p: PlatformParts, linked: list[Linked]
) -> np.ndarray | None:
    total: np.ndarray | None = None
    for platform, account, w in linked:
        align = parts.alignment.get((platform, p.name))
        q = parts.platforms.get(platform)
        if align is None or q is None:
            continue
        cols, conf = q.history(account)
        if len(cols) == 0:
            continue
        vec = _weighted_rows(align, cols, conf / conf.sum())
        total = w * vec if total is None else total + w * vec
    if total is None or not np.any(total):
        return None
    return total


@dataclass
class Bridges:
    """Accounts of Q linked to an account of P with history on P: their IDF-weighted,
    unit-length binary histories on Q ``(n_bridges, n_items_Q)``, the P account of each and
    its binary history on P ``(n_bridges, n_items_P)``."""

    q_rows: sp.csr_matrix
    idf: np.ndarray
    p_accounts: np.ndarray
    p_rows: sp.csr_matrix


def bridges(parts: RecommendParts, q_name: str, p_name: str) -> Bridges | None:
    """The (cached) bridges from Q to P; None when no person is on both with history."""
    key = ("bridges", q_name, p_name)
    if key in parts.cache:
        return parts.cache[key]
    q, p = parts.platforms[q_name], parts.platforms[p_name]
    q_idx: list[int] = []
    p_idx: list[int] = []
    p_acc: list[str] = []
    # a snapshot: the service changes links online while other threads score
    for (platform, account), linked in list(parts.links.items()):
        if platform != q_name:
            continue
        rq = q.row(account)
        if rq is None:
            continue
        for other, b, _ in linked:
            rp = p.row(b) if other == p_name else None
            if rp is not None:
                q_idx.append(rq)
                p_idx.append(rp)
                p_acc.append(b)
    result = None
    if q_idx:
        xq = q.matrix.matrix
        idf = np.log((1.0 + xq.shape[0]) / (1.0 + np.diff(xq.tocsc().indptr))).astype(np.float32)
        rows = _binary(xq[np.asarray(q_idx)]) @ sp.diags(idf)
        result = Bridges(
            _unit_rows(sp.csr_matrix(rows)),
            idf,
            np.asarray(p_acc),
            _binary(p.matrix.matrix[np.asarray(p_idx)]),
        )
    parts.cache[key] = result
    return result


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float32, copy=True)
    out.data[:] = 1.0
    return out


def _unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ m)


def _linked_neighbours(
    parts: RecommendParts,
    p: PlatformParts,
    linked: list[Linked],
    account: str | None,
    n: int,
) -> np.ndarray | None:
    total: np.ndarray | None = None
    for platform, other, weight in linked:
        q = parts.platforms.get(platform)
        if q is None:
            continue
        br = bridges(parts, platform, p.name)
        cols, _ = q.history(other)
        if br is None or len(cols) == 0:
            continue
        vec = np.zeros(len(br.idf), np.float32)
        vec[cols] = br.idf[cols]
        norm = np.linalg.norm(vec)
        if norm == 0:
            continue
        sims = br.q_rows @ (vec / norm)
        sims[br.p_accounts == account] = -np.inf  # never the account's own history on P
        m = min(n, len(sims))
        top = np.argpartition(-sims, m - 1)[:m]
        top = top[sims[top] > 0]
        if len(top) == 0:
            continue
        scores = _weighted_rows(br.p_rows, top, sims[top]) * weight
        total = scores if total is None else total + scores
    return total


def _neighbours(
    parts: RecommendParts,
    p: PlatformParts,
    probe: np.ndarray,
    exclude: frozenset[int],
    n: int,
) -> np.ndarray | None:
    index = parts.seq_index.get(p.name)
    if index is None or len(index) == 0:
        return None
    scores, ids = index.search(probe[None, :].astype(np.float32), n + len(exclude) + 1)
    rows, weights = neighbour_rows(
        scores[0].tolist(), ids[0].tolist(), exclude, _matrix_rows(parts, p), n
    )
    if not rows:
        return None
    return _weighted_rows(_binary_matrix(parts, p), np.asarray(rows), np.asarray(weights))


def neighbour_rows(
    scores: list[float], ids: list[int], exclude: frozenset[int], to_matrix: np.ndarray, n: int
) -> tuple[list[int], list[float]]:
    """The first ``n`` found profile rows with a positive score that are not excluded and
    have history on the platform: their matrix rows and scores."""
    rows: list[int] = []
    weights: list[float] = []
    for s, i in zip(scores, ids, strict=True):
        if i < 0 or i in exclude or len(rows) >= n or s <= 0:
            continue
        r = int(to_matrix[i]) if i < len(to_matrix) else -1
        if r >= 0:
            rows.append(r)
            weights.append(float(s))
    return rows, weights


def _weighted_rows(m: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ m[rows]`` as a dense ``(n_cols,)`` vector, without slicing ``m``."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = m.indptr[rows], m.indptr[rows + 1]
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(m.shape[1], np.float64)
    # positions of every stored entry of the chosen rows, row after row
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    pos = offsets + np.arange(total)
    w = np.repeat(np.asarray(weights, np.float64), lens) * m.data[pos]
    return np.bincount(m.indices[pos], weights=w, minlength=m.shape[1]).astype(np.float64)


def _matrix_rows(parts: RecommendParts, p: PlatformParts) -> np.ndarray:
    """Profile row -> row of P's interaction matrix (-1 where the account has none); cached."""
    key = ("matrix_rows", p.name, id(p.matrix))
    found = parts.cache.get(key)
    if found is None:
        prof = parts.profiles
        found = np.full(len(prof), -1, np.int64)
        mine = np.flatnonzero(prof.platform == p.name)
        accounts = p.matrix.accounts
        pos = np.searchsorted(accounts, prof.account[mine])
        pos = np.minimum(pos, max(len(accounts) - 1, 0))
        ok = (accounts[pos] == prof.account[mine]) if len(accounts) else np.zeros(len(mine), bool)
        found[mine[ok]] = pos[ok]
        parts.cache[key] = found
    return found


def _binary_matrix(parts: RecommendParts, p: PlatformParts) -> sp.csr_matrix:
    """P's interaction matrix with every stored entry set to 1; cached."""
    key = ("binary", p.name, id(p.matrix))
    found = parts.cache.get(key)
    if found is None:
        found = _binary(p.matrix.matrix)
        parts.cache[key] = found
    return found


def fit_maps(parts: RecommendParts, *, alpha: float = 1.0, skip: frozenset = frozenset()) -> Maps:
    """Ridge maps between every ordered pair of platforms, learned on known or asserted links
    whose two accounts both have CF vectors (``skip``: (platform, account) pairs left out, for
    out-of-fold validation)."""
    from crossrec.link.mapping import ridge_map

    pairs: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for (pa_, a), others in parts.links.items():
        if (pa_, a) in skip:
            continue
        ra = parts.platforms[pa_].row(a) if pa_ in parts.platforms else None
        if ra is None:
            continue
        for pb, b, w in others:
            if w < 1.0 or pb not in parts.platforms or (pb, b) in skip:
                continue  # maps learn from known links only (weight 1)
            rb = parts.platforms[pb].row(b)
            if rb is None:
                continue
            xs, ys = pairs.setdefault((pa_, pb), ([], []))
            xs.append(ra)
            ys.append(rb)
    maps = Maps()
    for (qa, qb), (xs, ys) in sorted(pairs.items()):
        fa = parts.platforms[qa].cf.dim
        if len(xs) < max(10, fa // 4):
            continue  # too few linked persons to learn a map
        x = parts.platforms[qa].cf.user_factors[np.asarray(xs)]
        y = parts.platforms[qb].cf.user_factors[np.asarray(ys)]
        maps.linear[(qa, qb)] = ridge_map(x, y, alpha)
    return maps
