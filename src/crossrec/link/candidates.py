"""Candidate pairs: a bounded set of likely matches per account, never all pairs.

For each query account ``a`` on platform A and each other platform B, the ``top_k`` nearest
B accounts are searched in every signal space available for the pair:

- ``sequence``: the shared sequence space (``index/sequence/B``);
- ``text``: the weighted mean text vectors (``index/text/B``; accounts with text only);
- ``cf``: A's CF vector mapped into B's CF space by the linear map of :mod:`.mapping`,
  searched in an index of B's CF vectors built on first use (exact, or HNSW when large);
- ``values``: how an account's values (ratings) fall into its platform's deciles, a rating
  habit that survives a rescaled scale (accounts with values only; index built on first use
  like ``cf``). Across catalogues that share nothing (Douban Book and Music) it finds
  partners the CF map misses.

The lists are fused by reciprocal rank (Cormack et al. 2009: ``Σ_s 1 / (60 + rank_s)``, ties
to the smaller row) and cut to ``max_candidates`` per (account, other platform).

Every pair is reported once, oriented ``a_row < b_row`` (a on the platform first in sorted
order), with its ranks from both sides: ``rank_ab_<space>`` is b's rank in a's ``<space>``
list and ``rank_ab_fused`` its place in a's fused list; ``rank_ba_*`` the same from b's side
(1 = best, 0 = absent). Space ranks are kept for the accounts of the fused list, so an entry
cut by ``max_candidates`` has no rank (nothing is cut when ``max_candidates >= 4 × top_k``).
A pair is in the output when the fused list of a query account holds it: asking for all rows
gives the union of both directions, asking for a few rows (the online path) gives exactly the
batch pairs those rows found, with the same ranks.

Work and memory are bounded: queries are searched and fused in batches, a fused list is
``max_candidates`` int32 rows plus uint16 ranks per query, and the number of pairs is checked
against ``link.max_candidate_pairs`` before any search.
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
    from crossrec.represent.profiles import AccountProfiles

SPACES: tuple[str, ...] = ("sequence", "text", "cf", "values")
#: Columns of :attr:`Candidates.ranks`, in order.
RANK_NAMES: tuple[str, ...] = tuple(
    f"rank_{side}_{space}" for space in (*SPACES, "fused") for side in ("ab", "ba")
)
#: Reciprocal-rank fusion constant (the usual 60: damps the weight of the very first ranks).
RRF_K = 60
#: Query accounts per search call: bounds the (batch, top_k) result buffers.
QUERY_BATCH = 16_384


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
    """Fused lists of query rows of platform A on platform B.

    ``fused[i, j]`` is the profile row at fused rank ``j + 1`` for query ``rows[i]`` (-1 where
    the list is shorter) and ``space_ranks[i, j, s]`` its rank in ``SPACES[s]`` (0 = absent).
    """

    rows: np.ndarray  # (m,) int64, sorted
    fused: np.ndarray  # (m, max_candidates) int32
    space_ranks: np.ndarray  # (m, max_candidates, len(SPACES)) uint16


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
    k, cap = _sizes(ctx, top_k, max_candidates)
    limit = cfg.max_candidate_pairs if max_pairs is None else int(max_pairs)
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
    directions = _directions(ctx)
    task = hook.task("candidate search", total=len(directions))
    codes = ctx.platform_code[queries]
    entries = []
    found: dict[tuple[int, int], np.ndarray] = {}
    for p, q in directions:
        lists = _direction_lists(ctx, mappings, p, q, queries[codes == p], k, cap)
        entries.append(_entries(ctx, lists, p, q))
        if rows is not None:
            found[(p, q)] = np.unique(lists.fused[lists.fused >= 0]).astype(np.int64)
        del lists
        task.advance()
    task.done()
    keys = np.unique(np.concatenate([e[0] for e in entries]))
    # The ranks from the other side of pairs whose other side was not queried (online path):
    # search those accounts' lists too, exactly as a full run would.
    for (p, q), rows_found in found.items():
        extra = np.setdiff1d(rows_found, queries)
        if len(extra):
            entries.append(
                _entries(ctx, _direction_lists(ctx, mappings, q, p, extra, k, cap), q, p)
            )
    n = len(ctx)
    return Candidates(keys // n, keys % n, _scatter_ranks(keys, entries))


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

    Searches the lists of every account involved, as :func:`generate_candidates` does, so a
    pair gets the ranks it has among the candidates (zeros when it is not a candidate).
    ``ab`` columns follow the given orientation (b in a's list).

    Returns
    -------
    np.ndarray, shape (n, len(RANK_NAMES)), uint16
    """
    k, cap = _sizes(ctx, top_k, max_candidates)
    a = np.asarray(a_rows, dtype=np.int64)
    b = np.asarray(b_rows, dtype=np.int64)
    if a.shape != b.shape:
        raise InputError("a_rows and b_rows must have the same length")
    n = len(ctx)
    code_a, code_b = ctx.platform_code[a], ctx.platform_code[b]
    entries = []
    for p, q in _directions(ctx):
        sel = (code_a == p) & (code_b == q)
        own = np.unique(np.concatenate([a[sel], b[(code_b == p) & (code_a == q)]]))
        if len(own):
            entries.append(_entries(ctx, _direction_lists(ctx, mappings, p, q, own, k, cap), p, q))
    keys = np.minimum(a, b) * n + np.maximum(a, b)
    uniq, inverse = np.unique(keys, return_inverse=True)
    ranks = _scatter_ranks(uniq, entries)[inverse]
    flip = a > b  # given as (later platform, earlier platform): swap the ab and ba columns
    ranks[flip] = ranks[flip][:, _SWAP]
    return ranks


# -- internals ---------------------------------------------------------------------------------
#: Column permutation that swaps every ``rank_ab_*`` with its ``rank_ba_*``.
_SWAP = np.arange(len(RANK_NAMES)) ^ 1


def _sizes(ctx: LinkContext, top_k: int | None, max_candidates: int | None) -> tuple[int, int]:
    cfg = ctx.config.link
    k = cfg.top_k if top_k is None else int(top_k)
    cap = cfg.max_candidates if max_candidates is None else int(max_candidates)
    if k < 1 or cap < 1:
        raise InputError(f"top_k and max_candidates must be >= 1, got {k} and {cap}")
    if k > 65_535 or cap > 65_535:
        raise InputError("top_k and max_candidates must be below 65536")
    return k, cap


def _directions(ctx: LinkContext) -> list[tuple[int, int]]:
    n = len(ctx.platforms)
    return [(p, q) for p in range(n) for q in range(n) if p != q]


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
    """Fused lists of ``queries`` (rows of platform ``p``) on platform ``q``."""
    a_name, b_name = ctx.platforms[p], ctx.platforms[q]
    profiles = ctx.profiles
    indexes = {}
    for space in SPACES:
        if space == "cf" and (mappings is None or not mappings.has(a_name, b_name)):
            continue
        index = ctx.index(space, b_name)
        if index is not None and len(index):
            indexes[space] = index
    m = len(queries)
    fused = np.full((m, max_candidates), -1, np.int32)
    ranks = np.zeros((m, max_candidates, len(SPACES)), np.uint16)
    for start in range(0, m, QUERY_BATCH):
        rows = queries[start : start + QUERY_BATCH]
        lists: dict[int, np.ndarray] = {}
        for s, space in enumerate(SPACES):
            if space not in indexes:
                continue
            ids = np.full((len(rows), top_k), -1, np.int64)
            usable = _usable(profiles, space, rows)
            if usable.any():
                if space == "cf":
                    assert mappings is not None
                    vectors = mappings.map(a_name, b_name, profiles.cf[rows[usable]], "linear")
                else:
                    vectors = getattr(profiles, space)[rows[usable]]
                _, got = indexes[space].search(vectors, top_k)
                ids[np.flatnonzero(usable)[:, None], np.arange(got.shape[1])] = got
            lists[s] = ids
        stop = start + len(rows)
        fused[start:stop], ranks[start:stop] = _fuse(lists, len(rows), max_candidates)
    return _Lists(queries, fused, ranks)


def _usable(profiles: AccountProfiles, space: str, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` have a vector in ``space`` (text and values are optional)."""
    if space == "text":
        return np.asarray(profiles.has_text[rows], bool)
    if space == "values":
        return profiles.value_mask[rows]
    return np.ones(len(rows), bool)


def _fuse(
    lists: dict[int, np.ndarray], m: int, max_candidates: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of one batch of space lists.

    Parameters
    ----------
    lists : dict of space position → np.ndarray, shape (m, k), int64 rows (-1 = none)

    Returns
    -------
    fused : np.ndarray, shape (m, max_candidates), int32
    ranks : np.ndarray, shape (m, max_candidates, len(SPACES)), uint16
    """
    fused = np.full((m, max_candidates), -1, np.int32)
    ranks = np.zeros((m, max_candidates, len(SPACES)), np.uint16)
    parts = [
        (s, np.nonzero(ids >= 0), ids) for s, ids in lists.items()
    ]  # (space, (query, position), ids)
    query = np.concatenate([qp[0] for _, qp, _ in parts]) if parts else np.empty(0, np.int64)
    if len(query) == 0:
        return fused, ranks
    cand = np.concatenate([ids[qp] for _, qp, ids in parts])
    rank = np.concatenate([qp[1] + 1 for _, qp, _ in parts])
    space = np.concatenate([np.full(len(qp[0]), s) for s, qp, _ in parts])
    width = int(cand.max()) + 1
    uniq, inverse = np.unique(query.astype(np.int64) * width + cand, return_inverse=True)
    score = np.bincount(inverse, weights=1.0 / (RRF_K + rank))
    per_space = np.zeros((len(uniq), len(SPACES)), np.uint16)
    per_space[inverse, space] = rank
    uq, uc = uniq // width, uniq % width
    # Best score first, ties to the smaller row; then the position within each query.
    order = np.lexsort((uc, -np.round(score, 12), uq))
    first = np.searchsorted(uq[order], np.arange(m))
    position = np.arange(len(order)) - first[uq[order]]
    keep = order[position < max_candidates]
    pos = position[position < max_candidates]
    fused[uq[keep], pos] = uc[keep]
    ranks[uq[keep], pos] = per_space[keep]
    return fused, ranks


def _entries(
    ctx: LinkContext, lists: _Lists, p: int, q: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lists as one entry per listed pair.

    Returns
    -------
    keys : (e,) int64, ``min(row) × n + max(row)``
    side : int, 0 when the query is the pair's ``a`` (its platform sorts first), else 1
    fused_rank : (e,) uint16
    space_ranks : (e, len(SPACES)) uint16
    """
    c = lists.fused.shape[1]
    ok = lists.fused >= 0
    own = np.broadcast_to(lists.rows[:, None], ok.shape)[ok]
    other = lists.fused[ok].astype(np.int64)
    fused_rank = np.broadcast_to(np.arange(1, c + 1, dtype=np.uint16), ok.shape)[ok]
    n = len(ctx)
    keys = np.minimum(own, other) * n + np.maximum(own, other)
    return keys, np.array(0 if p < q else 1), fused_rank, lists.space_ranks[ok]


def _scatter_ranks(
    keys: np.ndarray, entries: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """(len(keys), len(RANK_NAMES)) uint16 ranks of the sorted pair ``keys`` from ``entries``."""
    out = np.zeros((len(keys), len(RANK_NAMES)), np.uint16)
    if len(keys) == 0:
        return out
    fused_col = 2 * len(SPACES)
    for e_keys, side, fused_rank, space_ranks in entries:
        idx = np.minimum(np.searchsorted(keys, e_keys), len(keys) - 1)
        hit = keys[idx] == e_keys
        idx = idx[hit]
        out[idx, fused_col + int(side)] = fused_rank[hit]
        for s in range(len(SPACES)):
            out[idx, 2 * s + int(side)] = space_ranks[hit, s]
    return out
