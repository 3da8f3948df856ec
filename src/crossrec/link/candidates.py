"""Candidate pairs: a bounded set of likely matches per account, never all pairs.

For each query account ``a`` on platform A and each other platform B, the ``top_k`` nearest
B accounts are searched in every signal space available for the pair:

- ``sequence``: the shared sequence space (``index/sequence/B``);
- ``text``: the weighted mean text vectors (``index/text/B``; accounts with text only);
- ``cf``: A's CF vector mapped into B's CF space by the linear map of :mod:`.mapping`,
  searched in an index of B's CF vectors built on first use (exact, or HNSW when large).

The lists are fused by reciprocal rank (Cormack et al. 2009: ``Σ_s 1 / (60 + rank_s)``, ties
to the smaller row) and cut to ``max_candidates`` per (account, other platform).

Every pair is reported once, oriented ``a_row < b_row`` (a on the platform first in sorted
order), with its ranks from both sides: ``rank_ab_<space>`` is b's rank in a's list,
``rank_ba_<space>`` a's rank in b's list (1 = best, 0 = absent). A pair is in the output when
the fused list of a query account holds it; asking for all rows gives the union of both
directions, asking for a few rows (the online path) gives exactly the batch pairs those rows
found, with the same ranks.

Work and memory are bounded: queries go in batches, lists are int32 arrays of
``(queries, top_k)``, and the number of pairs is checked against ``link.max_candidate_pairs``
before any search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crossrec.errors import CapacityError, InputError

if TYPE_CHECKING:
    from crossrec.link.context import LinkContext
    from crossrec.link.mapping import CFMappings
    from crossrec.progress import ProgressHook

SPACES: tuple[str, ...] = ("sequence", "text", "cf")
#: Columns of :attr:`Candidates.ranks`, in order.
RANK_NAMES: tuple[str, ...] = tuple(
    f"rank_{side}_{space}" for space in (*SPACES, "fused") for side in ("ab", "ba")
)
#: Reciprocal-rank fusion constant (the usual 60: damps the weight of the very first ranks).
RRF_K = 60
#: Query accounts per search call: bounds the (batch, top_k) result buffers.
QUERY_BATCH = 16_384
#: Pairs per rank look-up step: bounds the (pairs, top_k) comparison buffer.
_LOOKUP_BATCH = 1_000_000


@dataclass
class Candidates:
    """Candidate pairs and their ranks in every space, from both sides.

    Attributes
    ----------
    a_rows, b_rows : np.ndarray, shape (n,), int64
        Profile rows, ``a_rows < b_rows`` (different platforms), sorted by (a, b), unique.
    ranks : np.ndarray, shape (n, len(RANK_NAMES)), uint16
        1-based ranks (0 = absent) in the order of :data:`RANK_NAMES`.
    """

    a_rows: np.ndarray
    b_rows: np.ndarray
    ranks: np.ndarray
    rank_names: tuple[str, ...] = field(default=RANK_NAMES)

    def __len__(self) -> int:
        return int(self.a_rows.shape[0])

    def rank(self, name: str) -> np.ndarray:
        """One rank column, shape (n,), uint16."""
        return self.ranks[:, self.rank_names.index(name)]

    def found_by(self, rows: np.ndarray) -> np.ndarray:
        """Mask of the pairs in the fused list of one of ``rows`` (shape (n,), bool)."""
        rows = np.asarray(rows, dtype=np.int64)
        side_a = np.isin(self.a_rows, rows) & (self.rank("rank_ab_fused") > 0)
        side_b = np.isin(self.b_rows, rows) & (self.rank("rank_ba_fused") > 0)
        return side_a | side_b

    def subset(self, mask: np.ndarray) -> Candidates:
        return Candidates(self.a_rows[mask], self.b_rows[mask], self.ranks[mask], self.rank_names)


@dataclass
class _Lists:
    """Top lists of query rows of platform A on platform B (int32 global rows, -1 padded)."""

    rows: np.ndarray  # (m,) int64 sorted query rows
    spaces: dict[str, np.ndarray]  # space -> (m, top_k) int32
    fused: np.ndarray  # (m, max_candidates) int32


def estimate_pairs(
    ctx: LinkContext,
    rows: np.ndarray | None = None,
    *,
    max_candidates: int | None = None,
    top_k: int | None = None,
) -> int:
    """Upper bound of the candidate pairs for these query rows (all rows by default).

    ``Σ_A |queries on A| × Σ_{B ≠ A} min(max_candidates, |B|, spaces × top_k)``.
    """
    cfg = ctx.config.link
    cap = cfg.max_candidates if max_candidates is None else max_candidates
    k = cfg.top_k if top_k is None else top_k
    queries = _query_rows(ctx, rows)
    counts = np.bincount(ctx.platform_code[queries], minlength=len(ctx.platforms))
    sizes = np.diff(ctx.starts)
    total = 0
    for p in range(len(ctx.platforms)):
        per = sum(
            min(cap, int(sizes[q]), len(SPACES) * k) for q in range(len(ctx.platforms)) if q != p
        )
        total += int(counts[p]) * per
    return total


def generate_candidates(
    ctx: LinkContext,
    mappings: CFMappings | None,
    rows: np.ndarray | None = None,
    *,
    top_k: int | None = None,
    max_candidates: int | None = None,
    max_pairs: int | None = None,
    progress: ProgressHook | None = None,
) -> Candidates:
    """Candidate pairs of the query ``rows`` (all accounts by default) on every other platform.

    Parameters
    ----------
    ctx : LinkContext
    mappings : CFMappings or None
        Linear CF maps for the ``cf`` space; without a map for (A, B) that space is skipped.
    rows : np.ndarray of int, optional
        Query profile rows; one row is the online path.
    top_k, max_candidates, max_pairs : int, optional
        Default to ``link.top_k``, ``link.max_candidates``, ``link.max_candidate_pairs``.
    progress : ProgressHook, optional

    Returns
    -------
    Candidates

    Raises
    ------
    CapacityError
        When :func:`estimate_pairs` exceeds ``max_pairs``.
    """
    from crossrec.progress import NullProgress

    cfg = ctx.config.link
    k = cfg.top_k if top_k is None else int(top_k)
    cap = cfg.max_candidates if max_candidates is None else int(max_candidates)
    limit = cfg.max_candidate_pairs if max_pairs is None else int(max_pairs)
    if k < 1 or cap < 1:
        raise InputError(f"top_k and max_candidates must be >= 1, got {k} and {cap}")
    queries = _query_rows(ctx, rows)
    estimate = estimate_pairs(ctx, queries, max_candidates=cap, top_k=k)
    if estimate > limit:
        raise CapacityError(
            f"candidate generation could produce {estimate:,} pairs ({len(queries):,} accounts "
            f"× other platforms × link.max_candidates = {cap}), above "
            f"link.max_candidate_pairs = {limit:,}",
            hint="lower link.max_candidates (or link.top_k), or raise link.max_candidate_pairs "
            "if the memory allows (about 50 bytes per pair)",
        )
    hook = progress or NullProgress()
    n_platforms = len(ctx.platforms)
    directions = [(p, q) for p in range(n_platforms) for q in range(n_platforms) if p != q]
    task = hook.task("candidate search", total=len(directions))
    codes = ctx.platform_code[queries]
    lists: dict[tuple[int, int], _Lists] = {}
    for p, q in directions:
        lists[(p, q)] = _direction_lists(ctx, mappings, p, q, queries[codes == p], k, cap)
        task.advance()
    task.done()
    # Reverse lists of the accounts found, for the ranks "from b's side" (online path only:
    # for a full run every account already has its lists).
    for p, q in directions:
        found = np.unique(lists[(p, q)].fused)
        found = found[found >= 0].astype(np.int64)
        missing = np.setdiff1d(found, lists[(q, p)].rows)
        if len(missing):
            extra = _direction_lists(ctx, mappings, q, p, missing, k, cap)
            lists[(q, p)] = _merge(lists[(q, p)], extra)
    # Pairs found by the query rows, oriented a < b.
    keys = []
    n = len(ctx)
    for lst in lists.values():
        is_query = np.isin(lst.rows, queries)
        own = np.repeat(lst.rows[is_query], lst.fused.shape[1])
        other = lst.fused[is_query].reshape(-1).astype(np.int64)
        ok = other >= 0
        own, other = own[ok], other[ok]
        keys.append(np.minimum(own, other) * n + np.maximum(own, other))
    uniq = np.unique(np.concatenate(keys)) if keys else np.empty(0, np.int64)
    a_rows, b_rows = uniq // n, uniq % n
    ranks = np.zeros((len(uniq), len(RANK_NAMES)), np.uint16)
    code_a, code_b = ctx.platform_code[a_rows], ctx.platform_code[b_rows]
    for p, q in directions:
        if p > q:
            continue
        sel = np.flatnonzero((code_a == p) & (code_b == q))
        if len(sel) == 0:
            continue
        fwd, rev = lists[(p, q)], lists[(q, p)]
        for j, name in enumerate(RANK_NAMES):
            _, side, space = name.split("_", 2)
            lst, own, other = (fwd, a_rows, b_rows) if side == "ab" else (rev, b_rows, a_rows)
            matrix = lst.fused if space == "fused" else lst.spaces.get(space)
            if matrix is not None:
                ranks[sel, j] = rank_in(matrix, lst.rows, own[sel], other[sel])
    return Candidates(a_rows, b_rows, ranks)


def pair_ranks(
    ctx: LinkContext,
    mappings: CFMappings | None,
    a_rows: np.ndarray,
    b_rows: np.ndarray,
    *,
    top_k: int | None = None,
    max_candidates: int | None = None,
) -> np.ndarray:
    """The candidate ranks of arbitrary pairs (e.g. known links used as training positives).

    Searches the lists of every account involved, as :func:`generate_candidates` does, and
    looks the pairs up: the ranks equal those of the same pair among the candidates.

    Returns
    -------
    np.ndarray, shape (n, len(RANK_NAMES)), uint16
    """
    cfg = ctx.config.link
    k = cfg.top_k if top_k is None else int(top_k)
    cap = cfg.max_candidates if max_candidates is None else int(max_candidates)
    a_rows = np.asarray(a_rows, dtype=np.int64)
    b_rows = np.asarray(b_rows, dtype=np.int64)
    ranks = np.zeros((len(a_rows), len(RANK_NAMES)), np.uint16)
    code_a, code_b = ctx.platform_code[a_rows], ctx.platform_code[b_rows]
    for p in range(len(ctx.platforms)):
        for q in range(len(ctx.platforms)):
            sel = np.flatnonzero((code_a == p) & (code_b == q))
            if p == q or len(sel) == 0:
                continue
            fwd = _direction_lists(ctx, mappings, p, q, np.unique(a_rows[sel]), k, cap)
            rev = _direction_lists(ctx, mappings, q, p, np.unique(b_rows[sel]), k, cap)
            for j, name in enumerate(RANK_NAMES):
                _, side, space = name.split("_", 2)
                lst, own, other = (fwd, a_rows, b_rows) if side == "ab" else (rev, b_rows, a_rows)
                matrix = lst.fused if space == "fused" else lst.spaces.get(space)
                if matrix is not None:
                    ranks[sel, j] = rank_in(matrix, lst.rows, own[sel], other[sel])
    return ranks


def rank_in(
    lists: np.ndarray, list_rows: np.ndarray, own: np.ndarray, other: np.ndarray
) -> np.ndarray:
    """1-based position of ``other[i]`` in the list of ``own[i]``; 0 when absent.

    Parameters
    ----------
    lists : np.ndarray, shape (m, k), int
        Row ``j`` is the list of account ``list_rows[j]``.
    list_rows : np.ndarray, shape (m,), sorted
    own, other : np.ndarray, shape (n,)

    Returns
    -------
    np.ndarray, shape (n,), uint16
    """
    out = np.zeros(len(own), np.uint16)
    if len(list_rows) == 0 or lists.shape[1] == 0:
        return out
    pos = np.minimum(np.searchsorted(list_rows, own), len(list_rows) - 1)
    has_list = list_rows[pos] == own
    for start in range(0, len(own), _LOOKUP_BATCH):
        sl = slice(start, start + _LOOKUP_BATCH)
        eq = lists[pos[sl]] == other[sl, None].astype(lists.dtype)
        found = eq.any(axis=1) & has_list[sl]
        out[sl] = np.where(found, eq.argmax(axis=1) + 1, 0)
    return out


# -- internals ---------------------------------------------------------------------------------
def _query_rows(ctx: LinkContext, rows: np.ndarray | None) -> np.ndarray:
    if rows is None:
        return np.arange(len(ctx), dtype=np.int64)
    queries = np.unique(np.asarray(rows, dtype=np.int64))
    if len(queries) and (queries[0] < 0 or queries[-1] >= len(ctx)):
        raise InputError(f"query rows must lie in [0, {len(ctx)})")
    return queries


def _direction_lists(
    ctx: LinkContext,
    mappings: CFMappings | None,
    p: int,
    q: int,
    queries: np.ndarray,
    top_k: int,
    max_candidates: int,
) -> _Lists:
    """Top lists of ``queries`` (rows of platform ``p``) on platform ``q``, fused and cut."""
    a_name, b_name = ctx.platforms[p], ctx.platforms[q]
    profiles = ctx.profiles
    spaces: dict[str, np.ndarray] = {}
    for space in SPACES:
        if space == "cf" and (mappings is None or not mappings.has(a_name, b_name)):
            continue
        index = ctx.index(space, b_name)
        if index is None or len(index) == 0:
            continue
        ids = np.full((len(queries), top_k), -1, np.int32)
        usable = profiles.has_text[queries] if space == "text" else np.ones(len(queries), bool)
        todo = np.flatnonzero(usable)
        for start in range(0, len(todo), QUERY_BATCH):
            pos = todo[start : start + QUERY_BATCH]
            rows = queries[pos]
            if space == "cf":
                assert mappings is not None
                vectors = mappings.map(a_name, b_name, profiles.cf[rows], "linear")
            else:
                vectors = getattr(profiles, space)[rows]
            _, found = index.search(vectors, top_k)
            ids[pos, : found.shape[1]] = found
        spaces[space] = ids
    return _Lists(queries, spaces, _fuse(spaces, len(queries), max_candidates))


def _fuse(spaces: dict[str, np.ndarray], m: int, max_candidates: int) -> np.ndarray:
    """Reciprocal-rank fusion of the space lists, best ``max_candidates`` per query."""
    out = np.full((m, max_candidates), -1, np.int32)
    if not spaces or m == 0:
        return out
    for start in range(0, m, QUERY_BATCH):
        stop = min(start + QUERY_BATCH, m)
        blocks = [ids[start:stop] for ids in spaces.values()]
        cand = np.concatenate(blocks, axis=1).astype(np.int64)  # (b, S*k)
        k = blocks[0].shape[1]
        rank = np.tile(np.arange(1, k + 1), len(blocks))
        query = np.broadcast_to(np.arange(stop - start)[:, None], cand.shape)
        ok = cand >= 0
        query, cand = query[ok], cand[ok]
        score = (1.0 / (RRF_K + np.broadcast_to(rank, ok.shape)[ok])).astype(np.float64)
        width = int(cand.max()) + 1 if len(cand) else 1
        uniq, inverse = np.unique(query.astype(np.int64) * width + cand, return_inverse=True)
        total = np.bincount(inverse, weights=score)
        uq, uc = uniq // width, uniq % width
        # Best score first, ties to the smaller row; then the position within each query.
        order = np.lexsort((uc, -np.round(total, 12), uq))
        uq, uc = uq[order], uc[order]
        first = np.searchsorted(uq, np.arange(stop - start))
        position = np.arange(len(uq)) - first[uq]
        keep = position < max_candidates
        out[start + uq[keep], position[keep]] = uc[keep]
    return out


def _merge(a: _Lists, b: _Lists) -> _Lists:
    """Lists of two disjoint query sets of the same direction, rows kept sorted."""
    rows = np.concatenate([a.rows, b.rows])
    order = np.argsort(rows, kind="stable")
    spaces: dict[str, np.ndarray] = {}
    for s in set(a.spaces) | set(b.spaces):
        k = next(lst.spaces[s].shape[1] for lst in (a, b) if s in lst.spaces)
        parts = [lst.spaces.get(s, np.full((len(lst.rows), k), -1, np.int32)) for lst in (a, b)]
        spaces[s] = np.concatenate(parts)[order]
    return _Lists(rows[order], spaces, np.concatenate([a.fused, b.fused])[order])
