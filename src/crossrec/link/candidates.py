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
to the smaller row), capped at ``max_candidates`` per (account, other platform), then cut where
the fused score stops adding truth: for each direction, the fused scores of the known partners
(known links) in their accounts' lists are sorted and the cut is the score below which at most
``link.candidate_cut_loss`` of them lie (0: the lowest known partner's score), so entries that
score below every known partner are dropped. The cut score is measured once per context (on
the batch's lists, or by searching the known-linked accounts on the online path) and kept,
so one account's candidates are the batch's.

The approximate indexes are measured where they are used: the batch path searches a seeded
sample of its queries exactly too, and :attr:`Candidates.recall_vs_exact` holds each space's
recall@``top_k`` against exact search.

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
    from crossrec.index import VectorIndex
    from crossrec.link.context import LinkContext
    from crossrec.link.mapping import CFMappings
    from crossrec.progress import ProgressHook
    from crossrec.represent.profiles import AccountProfiles

SPACES: tuple[str, ...] = ("sequence", "text", "cf", "values")
#: Query accounts per direction and space searched exactly too, to measure the ANN recall.
RECALL_SAMPLE = 500
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
    recall_vs_exact : dict of str to float
        Per space, recall@``top_k`` of the index against exact search on a seeded sample of
        the queries (1.0 for exact indexes); empty on the online path.
    pairs_per_account : float
        Fused-list entries per query account and other platform, after the cut.
    known_partners_kept : float or None
        Share of the known partners in their accounts' fused lists that the cut keeps (None
        without known links).
    cut_scores : dict of str to float
        The cut's fused score per direction (``"A->B"``).
    """

    a_rows: np.ndarray
    b_rows: np.ndarray
    ranks: np.ndarray
    rank_names: tuple[str, ...] = field(default=RANK_NAMES)
    recall_vs_exact: dict[str, float] = field(default_factory=dict)
    pairs_per_account: float = 0.0
    known_partners_kept: float | None = None
    cut_scores: dict[str, float] = field(default_factory=dict)

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

    def report(self) -> dict[str, object]:
        """The candidate step's figures, JSON-ready (for the link summary)."""
        return {
            "candidate_pairs": len(self),
            "pairs_per_account": round(self.pairs_per_account, 2),
            "known_partners_kept": self.known_partners_kept,
            "recall_vs_exact": dict(self.recall_vs_exact),
            "cut_scores": dict(self.cut_scores),
        }


@dataclass
class _Lists:
    """Fused lists of query rows of platform A on platform B.

    ``fused[i, j]`` is the profile row at fused rank ``j + 1`` for query ``rows[i]`` (-1 where
    the list is shorter), ``scores[i, j]`` its fused score and ``space_ranks[i, j, s]`` its
    rank in ``SPACES[s]`` (0 = absent). ``recall`` holds, per space searched approximately,
    (hits, exact neighbours) on the sampled queries.
    """

    rows: np.ndarray  # (m,) int64, sorted
    fused: np.ndarray  # (m, max_candidates) int32
    space_ranks: np.ndarray  # (m, max_candidates, len(SPACES)) uint16
    scores: np.ndarray  # (m, max_candidates) float64, 0 where empty
    recall: dict[str, tuple[int, int]] = field(default_factory=dict)

    def cut(self, min_score: float) -> None:
        """Drop the entries scoring below ``min_score`` (the tail of each list)."""
        drop = (self.scores < min_score) & (self.fused >= 0)
        self.fused[drop] = -1
        self.space_ranks[drop] = 0
        self.scores[drop] = 0.0


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
    recall: dict[str, list[int]] = {}
    kept = [0, 0]  # known partners in the lists after and before the cut
    listed = n_queries = 0
    cut_scores: dict[str, float] = {}
    for p, q in directions:
        own = queries[codes == p]
        lists = _direction_lists(ctx, mappings, p, q, own, k, cap, measure=rows is None)
        cut = _cut_score(ctx, mappings, p, q, k, cap, lists if rows is None else None)
        cut_scores[f"{ctx.platforms[p]}->{ctx.platforms[q]}"] = cut
        before = _known_partner_hits(ctx, lists, q)
        lists.cut(cut)
        after = _known_partner_hits(ctx, lists, q)
        kept[0] += after
        kept[1] += before
        listed += int((lists.fused >= 0).sum())
        n_queries += len(own)
        for space, (hits, total) in lists.recall.items():
            acc = recall.setdefault(space, [0, 0])
            acc[0] += hits
            acc[1] += total
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
            lists = _direction_lists(ctx, mappings, q, p, extra, k, cap)
            lists.cut(_cut_score(ctx, mappings, q, p, k, cap, None))
            entries.append(_entries(ctx, lists, q, p))
    n = len(ctx)
    return Candidates(
        keys // n,
        keys % n,
        _scatter_ranks(keys, entries),
        recall_vs_exact={s: round(h / max(t, 1), 4) for s, (h, t) in recall.items()},
        pairs_per_account=listed / max(n_queries, 1),
        known_partners_kept=round(kept[0] / kept[1], 4) if kept[1] else None,
        cut_scores=cut_scores,
    )


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
            lists = _direction_lists(ctx, mappings, p, q, own, k, cap)
            lists.cut(_cut_score(ctx, mappings, p, q, k, cap, None))
            entries.append(_entries(ctx, lists, p, q))
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
    *,
    measure: bool = False,
) -> _Lists:
    """Fused lists of ``queries`` (rows of platform ``p``) on platform ``q``, uncut.

    ``measure``: also search a seeded sample of the queries exactly in every space whose
    index is approximate, and keep (hits, exact neighbours) in ``recall``.
    """
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
    scores = np.zeros((m, max_candidates), np.float64)
    sampled = np.zeros(m, bool)
    if measure and m:
        rng = np.random.default_rng(_RECALL_SEED + 7919 * p + q)
        sampled[rng.choice(m, size=min(m, RECALL_SAMPLE), replace=False)] = True
    recall: dict[str, tuple[int, int]] = {}
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
                check = sampled[start : start + len(rows)][usable]
                if check.any():
                    hits, total = _exact_hits(
                        ctx, space, indexes[space], vectors[check], got[check]
                    )
                    before = recall.get(space, (0, 0))
                    recall[space] = (before[0] + hits, before[1] + total)
            lists[s] = ids
        stop = start + len(rows)
        fused[start:stop], ranks[start:stop], scores[start:stop] = _fuse(
            lists, len(rows), max_candidates
        )
    return _Lists(queries, fused, ranks, scores, recall)


#: Seeds the sample of queries searched exactly to measure the ANN recall.
_RECALL_SEED = 20_250


def _exact_hits(
    ctx: LinkContext, space: str, index: VectorIndex, queries: np.ndarray, found: np.ndarray
) -> tuple[int, int]:
    """(neighbours of the exact top-k that ``found`` holds, size of the exact top-k) for
    ``queries`` against the vectors ``index`` holds (rows of the profiles' ``space``)."""
    from crossrec.index import ExactIndex, exact_top_k

    if isinstance(index, ExactIndex):
        return found.size, found.size  # exact by construction: recall 1 without the work
    ids = index.ids
    vectors = getattr(ctx.profiles, space)
    truth = ids[exact_top_k(vectors, queries, found.shape[1], rows=ids)]
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
    return hits, int(truth.size)


def _cut_score(
    ctx: LinkContext,
    mappings: CFMappings | None,
    p: int,
    q: int,
    top_k: int,
    max_candidates: int,
    lists: _Lists | None,
) -> float:
    """The fused score below which entries of platform ``p``'s lists on ``q`` are dropped.

    Known partners stand in for the unknown ones, but the spaces learnt from the known links
    rank them too well: the ``cf`` space's map is fitted on every known link, the sequence
    encoder on some (``sequence/anchors.json`` of the model). So each known partner in its
    account's (uncut) list is scored without the terms of the spaces that saw its link (a
    lower bound of what an unseen partner gets), and the cut is the score below which at most
    ``link.candidate_cut_loss`` of those scores lie (a partner found only by such spaces
    scores 0, so at loss 0 it keeps every list whole). 0 (no cut) without known partners.
    Measured once per context, from ``lists`` when they hold every known-linked account of
    ``p``, else by searching those accounts.
    """
    loss = ctx.config.link.candidate_cut_loss
    key = ("candidate_cut", p, q, top_k, max_candidates, loss)

    def make() -> float:
        partner = _partners(ctx, q)
        linked = np.flatnonzero((ctx.platform_code == p) & (partner >= 0))
        if len(linked) == 0:
            return 0.0
        source = lists
        if source is None or not np.isin(linked, source.rows).all():
            source = _direction_lists(ctx, mappings, p, q, linked, top_k, max_candidates)
        at = np.searchsorted(source.rows, linked)
        hit = source.fused[at] == partner[linked][:, None]
        if not hit.any():
            return 0.0
        which, _ = np.nonzero(hit)
        ranks = source.space_ranks[at][hit].astype(np.float64)
        terms = np.where(ranks > 0, 1.0 / (RRF_K + ranks), 0.0)
        terms[:, SPACES.index("cf")] = 0.0
        terms[encoder_anchors(ctx)[linked[which]], SPACES.index("sequence")] = 0.0
        unseen = np.sort(np.round(terms.sum(axis=1), 12))
        return float(unseen[min(int(np.floor(loss * len(unseen))), len(unseen) - 1)])

    return float(ctx.cached(key, make))


def encoder_anchors(ctx: LinkContext) -> np.ndarray:
    """(n,) bool: accounts whose known link the sequence encoder was trained on (every
    known-linked account when the model does not record them)."""

    def make() -> np.ndarray:
        import json

        from crossrec.train import ANCHORS_FILE

        seen = np.zeros(len(ctx), dtype=bool)
        path = None if ctx.model_dir is None else ctx.model_dir / "sequence" / ANCHORS_FILE
        if path is None or not path.is_file():
            seen[ctx.link_a] = True
            seen[ctx.link_b] = True
            return seen
        for side_a, side_b in json.loads(path.read_text(encoding="utf-8")):
            for platform, account in (side_a, side_b):
                row = ctx.profiles.row(platform, account)
                if row is not None:
                    seen[row] = True
        return seen

    result: np.ndarray = ctx.cached("encoder_anchors", make)
    return result


def _partners(ctx: LinkContext, q: int) -> np.ndarray:
    """(n,) int64: each account's known partner's row on platform ``q`` (-1 for none)."""

    def make() -> np.ndarray:
        out = np.full(len(ctx), -1, np.int64)
        code = ctx.platform_code
        on_b = code[ctx.link_b] == q
        out[ctx.link_a[on_b]] = ctx.link_b[on_b]
        on_a = code[ctx.link_a] == q
        out[ctx.link_b[on_a]] = ctx.link_a[on_a]
        return out

    result: np.ndarray = ctx.cached(("known_partner_on", q), make)
    return result


def _known_partner_hits(ctx: LinkContext, lists: _Lists, q: int) -> int:
    """How many of the lists' accounts hold their known partner on ``q`` in their list."""
    partner = _partners(ctx, q)[lists.rows]
    return int((lists.fused == partner[:, None]).any(axis=1)[partner >= 0].sum())


def _usable(profiles: AccountProfiles, space: str, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` have a vector in ``space`` (text and values are optional)."""
    if space == "text":
        return np.asarray(profiles.has_text[rows], bool)
    if space == "values":
        return profiles.value_mask[rows]
    return np.ones(len(rows), bool)


def _fuse(
    lists: dict[int, np.ndarray], m: int, max_candidates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of one batch of space lists.

    Parameters
    ----------
    lists : dict of space position → np.ndarray, shape (m, k), int64 rows (-1 = none)

    Returns
    -------
    fused : np.ndarray, shape (m, max_candidates), int32
    ranks : np.ndarray, shape (m, max_candidates, len(SPACES)), uint16
    scores : np.ndarray, shape (m, max_candidates), float64 (0 where empty)
    """
    fused = np.full((m, max_candidates), -1, np.int32)
    ranks = np.zeros((m, max_candidates, len(SPACES)), np.uint16)
    scores = np.zeros((m, max_candidates), np.float64)
    parts = [
        (s, np.nonzero(ids >= 0), ids) for s, ids in lists.items()
    ]  # (space, (query, position), ids)
    query = np.concatenate([qp[0] for _, qp, _ in parts]) if parts else np.empty(0, np.int64)
    if len(query) == 0:
        return fused, ranks, scores
    cand = np.concatenate([ids[qp] for _, qp, ids in parts])
    rank = np.concatenate([qp[1] + 1 for _, qp, _ in parts])
    space = np.concatenate([np.full(len(qp[0]), s) for s, qp, _ in parts])
    width = int(cand.max()) + 1
    uniq, inverse = np.unique(query.astype(np.int64) * width + cand, return_inverse=True)
    # rounded so that equal sums of different terms compare equal (ties, and the cut)
    score = np.round(np.bincount(inverse, weights=1.0 / (RRF_K + rank)), 12)
    per_space = np.zeros((len(uniq), len(SPACES)), np.uint16)
    per_space[inverse, space] = rank
    uq, uc = uniq // width, uniq % width
    # Best score first, ties to the smaller row; then the position within each query.
    order = np.lexsort((uc, -score, uq))
    first = np.searchsorted(uq[order], np.arange(m))
    position = np.arange(len(order)) - first[uq[order]]
    keep = order[position < max_candidates]
    pos = position[position < max_candidates]
    fused[uq[keep], pos] = uc[keep]
    ranks[uq[keep], pos] = per_space[keep]
    scores[uq[keep], pos] = score[keep]
    return fused, ranks, scores


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
