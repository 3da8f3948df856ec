"""The evidence of each candidate pair, as a float32 feature matrix.

:func:`compute_signals` takes pairs ``(a_rows, b_rows)`` of profile rows on two different
platforms (oriented ``a_row < b_row``, as :mod:`.candidates` gives them) and returns one row
of features per pair, vectorised in chunks: the same code serves a batch of millions of pairs
and the candidates of one account. NaN marks a signal that does not apply to the pair.

===========================  =====================================================================
signal                       meaning
===========================  =====================================================================
``seq_cos``                  cosine in the shared sequence space
``text_cos``                 cosine of the mean text vectors (NaN when either side has no text)
``cf_linear_cos``            cosine after the linear CF map, mean of A→B (``f(cf_a)`` vs
                             ``cf_b``) and B→A; one direction when only one map exists; NaN
                             without maps
``cf_mlp_cos``               the same with the MLP maps
``aligned_overlap``          rarity-weighted share of both accounts' items that have a
                             text-aligned counterpart (similarity >= ``link.align_min_similarity``)
                             among the other's items (Dice-style, in [0, 1]); NaN without
                             alignment
``rhythm_cos``               cosine of the 168-bin weekday × hour histograms, smoothed by ±3
                             hours: clocks shifted by whole weeks leave it unchanged; NaN when
                             either side has no timestamps
``hour_cos``                 cosine of the (smoothed) 24-bin hour-of-day profiles: also unchanged
                             by clocks shifted by whole days (weekday labels lost)
``days_jaccard``             Jaccard of the sets of active UTC days; NaN without timestamps
``identifiers_equal``        count of equal pseudonymised identifiers (hashed e-mail, ...)
``rr_{ab,ba}_<space>``       reciprocal candidate rank (1/rank, 0 when not listed): ``ab`` is b
                             in a's list, ``ba`` a in b's; spaces sequence, text, cf, values
                             and fused;
                             NaN where the space does not apply or no ranks were given
``mutual_best``              1 when each is the other's first fused candidate
``log_events_{a,b}``         ``log1p`` of each side's event count (lets a matcher learn how far
                             to trust the others)
===========================  =====================================================================

:func:`evidence` names the strongest signals of one pair in words, for display.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from crossrec.errors import InputError
from crossrec.link.candidates import RANK_NAMES
from crossrec.link.kernels import pair_dot, sparse_pair_dot

if TYPE_CHECKING:
    from crossrec.link.context import LinkContext
    from crossrec.link.mapping import CFMappings

#: Columns of the signal matrix, in order.
SIGNAL_NAMES: tuple[str, ...] = (
    "seq_cos",
    "text_cos",
    "cf_linear_cos",
    "cf_mlp_cos",
    "aligned_overlap",
    "rhythm_cos",
    "hour_cos",
    "days_jaccard",
    "identifiers_equal",
    *(name.replace("rank_", "rr_") for name in RANK_NAMES),
    "mutual_best",
    "log_events_a",
    "log_events_b",
    "log_events_gap",
    "value_habit_cos",
)
#: Half-width in hours of the box filter applied to rhythms before comparing them.
RHYTHM_SMOOTH_HOURS = 3
#: Pairs per vectorised step: bounds the (pairs, dim) gathers (~200 MB at 384 dims).
PAIR_CHUNK = 65_536
#: Rarest items per account kept for the aligned-item overlap: rare items carry the evidence
#: and the cap bounds the sparse work per pair.
OVERLAP_MAX_ITEMS = 64


def compute_signals(
    ctx: LinkContext,
    mappings: CFMappings | None,
    a_rows: np.ndarray,
    b_rows: np.ndarray,
    candidate_ranks: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Signals of pairs of accounts on different platforms.

    Parameters
    ----------
    ctx : LinkContext
    mappings : CFMappings or None
        None leaves the CF signals NaN.
    a_rows, b_rows : np.ndarray, shape (n,), int
        Profile rows; ``a`` and ``b`` on different platforms. The ``_a``/``_ab`` signals
        follow this orientation, the others are symmetric.
    candidate_ranks : np.ndarray, shape (n, len(RANK_NAMES)), optional
        ``Candidates.ranks`` (or :func:`~crossrec.link.candidates.pair_ranks`) of the pairs;
        without it the rank signals are NaN.

    Returns
    -------
    X : np.ndarray, shape (n, len(SIGNAL_NAMES)), float32
    names : list of str
        ``SIGNAL_NAMES``.
    """
    a, b = _check_pairs(ctx, a_rows, b_rows)
    n = len(a)
    if candidate_ranks is not None and candidate_ranks.shape != (n, len(RANK_NAMES)):
        raise InputError(
            f"candidate_ranks must have shape ({n}, {len(RANK_NAMES)}), got {candidate_ranks.shape}"
        )
    X = np.full((n, len(SIGNAL_NAMES)), np.nan, np.float32)
    col = {name: j for j, name in enumerate(SIGNAL_NAMES)}
    for p, q, sel in _pair_chunks(ctx, a, b):
        ranks = None if candidate_ranks is None else candidate_ranks[sel]
        _chunk(ctx, mappings, p, q, a[sel], b[sel], ranks, X, sel, col)
    return X, list(SIGNAL_NAMES)


#: The CF-map signals, the only ones that depend on the maps (see :func:`cf_signals`).
_CF_KINDS = ("linear", "mlp")
CF_MAP_SIGNALS: tuple[str, ...] = tuple(f"cf_{kind}_cos" for kind in _CF_KINDS)


def cf_signals(
    ctx: LinkContext, mappings: CFMappings, a_rows: np.ndarray, b_rows: np.ndarray
) -> np.ndarray:
    """The :data:`CF_MAP_SIGNALS` columns of :func:`compute_signals` alone, shape (n, 2),
    float32: the same values, without computing the signals that do not depend on the maps
    (what refitting the maps out of fold needs)."""
    a, b = _check_pairs(ctx, a_rows, b_rows)
    out = np.full((len(a), len(CF_MAP_SIGNALS)), np.nan, np.float32)
    for p, q, sel in _pair_chunks(ctx, a, b):
        out[sel] = _cf_block(ctx, mappings, ctx.platforms[p], ctx.platforms[q], a[sel], b[sel])
    return out


def _cf_block(
    ctx: LinkContext, mappings: CFMappings, pa_: str, pb_: str, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """(n, 2): the :data:`CF_MAP_SIGNALS` of pairs from platform ``pa_`` to ``pb_``."""
    return np.stack([_cf_cos(ctx, mappings, pa_, pb_, a, b, kind) for kind in _CF_KINDS], axis=1)


def _check_pairs(
    ctx: LinkContext, a_rows: np.ndarray, b_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a_rows, dtype=np.int64)
    b = np.asarray(b_rows, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"a_rows and b_rows must be 1-D of equal length, got {a.shape}, {b.shape}")
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= len(ctx)):
        raise InputError(f"pair rows must lie in [0, {len(ctx)})")
    if np.any(ctx.platform_code[a] == ctx.platform_code[b]):
        raise InputError("every pair must join two different platforms")
    return a, b


def _pair_chunks(
    ctx: LinkContext, a: np.ndarray, b: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(platform of a, platform of b, positions) in chunks of at most ``PAIR_CHUNK`` pairs."""
    n_plat = len(ctx.platforms)
    group_key = ctx.platform_code[a].astype(np.int64) * n_plat + ctx.platform_code[b]
    for key in np.unique(group_key):
        p, q = divmod(int(key), n_plat)
        idx = np.flatnonzero(group_key == key)
        for start in range(0, len(idx), PAIR_CHUNK):
            yield p, q, idx[start : start + PAIR_CHUNK]


def _chunk(
    ctx: LinkContext,
    mappings: CFMappings | None,
    p: int,
    q: int,
    a: np.ndarray,
    b: np.ndarray,
    ranks: np.ndarray | None,
    X: np.ndarray,
    sel: np.ndarray,
    col: dict[str, int],
) -> None:
    prof = ctx.profiles
    pa_, pb_ = ctx.platforms[p], ctx.platforms[q]
    X[sel, col["seq_cos"]] = _space_cos(ctx, "sequence", a, b)
    if prof.text.shape[1]:
        both = prof.has_text[a] & prof.has_text[b]
        X[sel, col["text_cos"]] = np.where(both, _space_cos(ctx, "text", a, b), np.nan)
    if mappings is not None:
        X[sel[:, None], [col[name] for name in CF_MAP_SIGNALS]] = _cf_block(
            ctx, mappings, pa_, pb_, a, b
        )
    X[sel, col["aligned_overlap"]] = _aligned_overlap(ctx, p, q, a, b)
    _rhythm(ctx, a, b, X, sel, col)
    X[sel, col["days_jaccard"]] = _days_jaccard(ctx, a, b)
    ident = ctx.identifiers
    if ident.shape[1]:
        X[sel, col["identifiers_equal"]] = sparse_pair_dot(ident, a, ident, b)
    else:
        X[sel, col["identifiers_equal"]] = 0.0
    if ranks is not None:
        _rank_signals(ctx, mappings, pa_, pb_, a, b, ranks, X, sel, col)
    X[sel, col["log_events_a"]] = np.log1p(prof.events[a].astype(np.float32))
    X[sel, col["log_events_b"]] = np.log1p(prof.events[b].astype(np.float32))
    # one person's accounts tend to be about as active as each other
    X[sel, col["log_events_gap"]] = np.abs(
        X[sel, col["log_events_a"]] - X[sel, col["log_events_b"]]
    )
    # how a person rates (share of their values in each decile of the platform's values)
    both = prof.value_mask[a] & prof.value_mask[b]
    if both.any():
        X[sel, col["value_habit_cos"]] = np.where(both, _pair_cos(ctx, "values", a, b), np.nan)


# -- similarity helpers ------------------------------------------------------------------------
def _pair_cos(ctx: LinkContext, space: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of rows ``a`` and ``b`` of a profile space (0 where a row is zero), read in
    place by :func:`~crossrec.link.kernels.pair_dot`; row norms computed once per context."""
    x = getattr(ctx.profiles, space)
    norm = ctx.cached(("norms", space), lambda: np.linalg.norm(x, axis=1))
    num = pair_dot(x, a, x, b)
    den = norm[a] * norm[b]
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _inverse_norms(ctx: LinkContext, space: str) -> np.ndarray:
    """1 / ‖row‖ of a profile space (0 for zero rows), computed once per context."""

    def make() -> np.ndarray:
        x = getattr(ctx.profiles, space)
        norms = np.empty(len(x), np.float32)
        for start in range(0, len(x), PAIR_CHUNK):  # bounded temporaries at 384 dims
            norms[start : start + PAIR_CHUNK] = np.linalg.norm(
                x[start : start + PAIR_CHUNK], axis=1
            )
        return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

    result: np.ndarray = ctx.cached(("inverse_norms", space), make)
    return result


def _space_cos(ctx: LinkContext, space: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of rows ``a`` and ``b`` of a profile space (0 where a row is zero)."""
    x = getattr(ctx.profiles, space)
    inv = _inverse_norms(ctx, space)
    return pair_dot(x, a, x, b) * inv[a] * inv[b]


def _cf_cos(
    ctx: LinkContext,
    mappings: CFMappings,
    pa_: str,
    pb_: str,
    a: np.ndarray,
    b: np.ndarray,
    kind: str,
) -> np.ndarray:
    cf = ctx.profiles.cf
    inv_norm = _inverse_norms(ctx, "cf")
    parts = []
    for src, dst, s_rows, d_rows in ((pa_, pb_, a, b), (pb_, pa_, b, a)):
        if mappings.has(src, dst, kind):  # type: ignore[arg-type]
            uniq, inv = np.unique(s_rows, return_inverse=True)
            mapped = _unit(mappings.map(src, dst, cf[uniq], kind))  # type: ignore[arg-type]
            parts.append(pair_dot(mapped, inv, cf, d_rows) * inv_norm[d_rows])
    if not parts:
        return np.full(len(a), np.nan, np.float32)
    return np.mean(parts, axis=0).astype(np.float32)


# -- aligned items -----------------------------------------------------------------------------
def _overlap_items(ctx: LinkContext, platform: str) -> sp.csr_matrix:
    """(n_p, n_items_p) CSR: idf of each account's ``OVERLAP_MAX_ITEMS`` rarest items."""

    def make() -> sp.csr_matrix:
        m = ctx.items[platform].tocsr()
        idf = ctx.idf[platform]
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        weight = idf[m.indices]
        # Rarest first, ties to the smaller column; then the position within each row.
        order = np.lexsort((m.indices, -weight, rows))
        position = np.arange(len(order)) - m.indptr[rows[order]]
        keep = order[position < OVERLAP_MAX_ITEMS]
        out = sp.csr_matrix(
            (weight[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float32
        )
        out.sort_indices()
        return out

    result: sp.csr_matrix = ctx.cached(("overlap_items", platform), make)
    return result


def _align_matrix(ctx: LinkContext, src: str, dst: str) -> sp.csr_matrix | None:
    if (src, dst) not in ctx.alignment:
        return None
    threshold = ctx.config.link.align_min_similarity
    result: sp.csr_matrix = ctx.cached(
        ("align", src, dst, threshold), lambda: ctx.alignment[(src, dst)].matrix(threshold)
    )
    return result


def _aligned_overlap(ctx: LinkContext, p: int, q: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa_, pb_ = ctx.platforms[p], ctx.platforms[q]
    align_ab, align_ba = _align_matrix(ctx, pa_, pb_), _align_matrix(ctx, pb_, pa_)
    if align_ab is None and align_ba is None:
        return np.full(len(a), np.nan, np.float32)
    matched = np.zeros(len(a))
    total = np.zeros(len(a))
    # The other side's items that some item of this side is aligned to, both ways round.
    for align, src_platform, src_rows, dst_platform, dst_rows in (
        (align_ab, pa_, a - ctx.starts[p], pb_, b - ctx.starts[q]),
        (align_ba, pb_, b - ctx.starts[q], pa_, a - ctx.starts[p]),
    ):
        if align is None:
            continue
        uniq, inv = np.unique(src_rows, return_inverse=True)
        reach = (_binary(_overlap_items(ctx, src_platform)[uniq]) @ align).tocsr()
        reach.data[:] = 1.0
        dst_items = _overlap_items(ctx, dst_platform)
        matched += sparse_pair_dot(reach, inv, dst_items, dst_rows)
        total += _overlap_totals(ctx, dst_platform)[dst_rows]
    out = np.divide(matched, total, out=np.full(len(a), np.nan), where=total > 0)
    return out.astype(np.float32)


def _overlap_totals(ctx: LinkContext, platform: str) -> np.ndarray:
    """(n_p,) float64: each account's summed :func:`_overlap_items` weights."""
    result: np.ndarray = ctx.cached(
        ("overlap_totals", platform),
        lambda: np.asarray(_overlap_items(ctx, platform).sum(axis=1), dtype=np.float64).ravel(),
    )
    return result


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    out = m.copy()
    out.data[:] = 1.0
    return out


# -- time --------------------------------------------------------------------------------------
def _rhythm(
    ctx: LinkContext,
    a: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    sel: np.ndarray,
    col: dict[str, int],
) -> None:
    has = ctx.profiles.has_rhythm
    both = has[a] & has[b]
    if not both.any():
        return
    a, b = a[both], b[both]
    inv, hours, inv_h = _rhythm_norms(ctx)
    rhythm = ctx.profiles.rhythm
    # (S r_a)·(S r_b) = (SᵀS r_a)·r_b: smooth twice the side with fewer distinct accounts
    # (the query side of candidate pairs) instead of both sides of every pair.
    one, other = (a, b) if len(np.unique(a)) <= len(np.unique(b)) else (b, a)
    uniq, back = np.unique(one, return_inverse=True)
    twice = _smooth(_smooth(rhythm[uniq]))
    week = pair_dot(twice, back, rhythm, other) * inv[a] * inv[b]
    day = pair_dot(hours, a, hours, b) * inv_h[a] * inv_h[b]
    for name, values in (("rhythm_cos", week), ("hour_cos", day)):
        out = np.full(len(both), np.nan, np.float32)
        out[both] = values
        X[sel, col[name]] = out


def _smooth(rhythm: np.ndarray) -> np.ndarray:
    """Circular box filter of ±``RHYTHM_SMOOTH_HOURS`` over the 168 hours of the week.

    Events of one person land in neighbouring hours on two platforms (sessions straddle
    the hour, clocks are jittered): on MovieLens split in two, smoothing by ±3 hours lifts
    the MRR of ``rhythm_cos`` from 0.86 to 0.96 with exact clocks and from 0.33 to 0.66 with
    clocks shifted by whole weeks plus up to 3 hours of jitter.
    """
    h = RHYTHM_SMOOTH_HOURS
    padded = np.concatenate([rhythm[:, -h - 1 :], rhythm, rhythm[:, :h]], axis=1)
    total = np.cumsum(padded, axis=1, dtype=np.float32)
    return total[:, 2 * h + 1 :] - total[:, : -2 * h - 1]


def _rhythm_norms(ctx: LinkContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1 / norm of the smoothed rhythms (n,), the smoothed hour-of-day profiles (n, 24) and
    1 / their norms (n,), computed once per context."""

    def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rhythm = ctx.profiles.rhythm
        n = len(rhythm)
        inv = np.zeros(n, np.float32)
        hours = np.zeros((n, 24), np.float32)
        for start in range(0, n, PAIR_CHUNK):
            smooth = _smooth(rhythm[start : start + PAIR_CHUNK])
            inv[start : start + PAIR_CHUNK] = np.einsum("ij,ij->i", smooth, smooth)
            hours[start : start + PAIR_CHUNK] = smooth.reshape(-1, 7, 24).sum(axis=1)
        inv = np.divide(1.0, np.sqrt(inv), out=np.zeros_like(inv), where=inv > 0)
        inv_h = np.einsum("ij,ij->i", hours, hours)
        inv_h = np.divide(1.0, np.sqrt(inv_h), out=np.zeros_like(inv_h), where=inv_h > 0)
        return inv, hours, inv_h

    result: tuple[np.ndarray, np.ndarray, np.ndarray] = ctx.cached("rhythm_norms", make)
    return result


def _day_matrix(ctx: LinkContext) -> sp.csr_matrix:
    """(n, span) binary CSR of active days, column = day − first day."""

    def make() -> sp.csr_matrix:
        days = ctx.days
        lo = int(days.min()) if len(days) else 0
        span = int(days.max()) - lo + 1 if len(days) else 1
        return sp.csr_matrix(
            (np.ones(len(days), np.float32), (days - lo).astype(np.int64), ctx.day_indptr),
            shape=(len(ctx), span),
        )

    result: sp.csr_matrix = ctx.cached("day_matrix", make)
    return result


def _days_jaccard(ctx: LinkContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    counts = ctx.day_counts()
    ca, cb = counts[a], counts[b]
    both = (ca > 0) & (cb > 0)
    out = np.full(len(a), np.nan, np.float32)
    if not both.any():
        return out
    days = _day_matrix(ctx)
    inter = sparse_pair_dot(days, a[both], days, b[both])
    out[both] = inter / (ca[both] + cb[both] - inter)
    return out


# -- ranks -------------------------------------------------------------------------------------
def _rank_signals(
    ctx: LinkContext,
    mappings: CFMappings | None,
    pa_: str,
    pb_: str,
    a: np.ndarray,
    b: np.ndarray,
    ranks: np.ndarray,
    X: np.ndarray,
    sel: np.ndarray,
    col: dict[str, int],
) -> None:
    prof = ctx.profiles
    r = ranks.astype(np.float32)
    rr = np.divide(1.0, r, out=np.zeros_like(r), where=r > 0)
    text_ok = prof.has_text[a] & prof.has_text[b]
    values_ok = prof.value_mask[a] & prof.value_mask[b]
    for j, name in enumerate(RANK_NAMES):
        _, side, space = name.split("_", 2)
        src, dst = (pa_, pb_) if side == "ab" else (pb_, pa_)
        values = rr[:, j]
        if space == "text":
            values = np.where(text_ok, values, np.nan)
        elif space == "values":
            values = np.where(values_ok, values, np.nan)
        elif space == "cf" and (mappings is None or not mappings.has(src, dst)):
            values = np.full(len(a), np.nan, np.float32)
        X[sel, col[name.replace("rank_", "rr_")]] = values
    fused_ab = ranks[:, RANK_NAMES.index("rank_ab_fused")]
    fused_ba = ranks[:, RANK_NAMES.index("rank_ba_fused")]
    X[sel, col["mutual_best"]] = ((fused_ab == 1) & (fused_ba == 1)).astype(np.float32)


# -- evidence ----------------------------------------------------------------------------------
_PHRASES: dict[str, str] = {
    "identifiers_equal": "{n} equal pseudonymised identifier(s)",
    "mutual_best": "each is the other's best candidate",
    "seq_cos": "similar histories in the shared sequence space (cosine {v:.2f})",
    "text_cos": "similar tastes by item text (cosine {v:.2f})",
    "cf_linear_cos": "co-consumption profiles match through the learned map (cosine {v:.2f})",
    "cf_mlp_cos": "co-consumption profiles match through the learned MLP map (cosine {v:.2f})",
    "aligned_overlap": "{p:.0%} of their rarity-weighted items correspond across catalogues",
    "rhythm_cos": "same weekly activity rhythm (similarity {v:.2f})",
    "hour_cos": "active at the same hours of the day (similarity {v:.2f})",
    "days_jaccard": "active on the same days (Jaccard {v:.2f})",
    "value_habit_cos": "rate alike: same spread of high and low ratings (similarity {v:.2f})",
    "rr_ab_fused": "the other account is candidate #{r} for the first",
    "rr_ba_fused": "the first account is candidate #{r} for the other",
}
#: How strongly each signal speaks for a match per unit of value, for ranking the evidence.
_WEIGHT: dict[str, float] = {"identifiers_equal": 10.0, "mutual_best": 1.5}


def evidence(names: list[str], x_row: np.ndarray, top: int = 3) -> list[dict[str, Any]]:
    """The strongest signals of one pair, in words.

    Parameters
    ----------
    names : list of str
        Column names (``SIGNAL_NAMES``).
    x_row : np.ndarray, shape (len(names),)
        One row of :func:`compute_signals`.
    top : int
        How many to return.

    Returns
    -------
    list of dict
        ``{"signal": name, "value": float, "text": phrase}``, strongest first. Only signals
        that speak for a match are named (positive values; NaN and size signals never).
    """
    scored = []
    for name, value in zip(names, np.asarray(x_row, dtype=np.float64).tolist(), strict=True):
        if name not in _PHRASES or not math.isfinite(value) or value <= 0:
            continue
        strength = value * _WEIGHT.get(name, 1.0)
        rank = round(1.0 / value) if name.startswith("rr_") else 0
        text = _PHRASES[name].format(v=value, p=value, n=int(value), r=rank)
        scored.append((-strength, name, {"signal": name, "value": value, "text": text}))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [item for _, _, item in scored[:top]]
