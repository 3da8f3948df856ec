"""The matcher's view of the signals: clean of leakage, relative to each account's candidates.

The sequence encoder and the CF maps are fitted on the known links, so on those very pairs
their similarities are far higher than on unseen pairs of one person (seq_cos 0.65 on known
links against 0.05 on true unseen pairs on MovieLens). A matcher trained on such rows learns
to trust them and fails on everything else. So:

* the sequence encoder is trained on half of the known links (``anchors``): on pairs touching
  those, the sequence signals are unknown (NaN) to the matcher, which learns them from the
  other half; rank fusions built with CF maps of every link are left out;
* the CF-map signals of training rows are computed out of fold: with maps fitted on the other
  folds of the known links;
* each key signal is also given relative to the account's other candidates (a z-score within
  the candidate list of each side), which is what separates one person from a crowd of
  similar-looking accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from crossrec.link.signals import CF_MAP_SIGNALS

if TYPE_CHECKING:
    from crossrec.link.context import LinkContext

#: Signals the matcher never sees: CF ranks and the rank fusions use CF maps fitted on every
#: known link.
LEAKY = frozenset({"rr_ab_cf", "rr_ba_cf", "rr_ab_fused", "rr_ba_fused", "mutual_best"})
#: Sequence-space signals: unknown (NaN) on pairs touching a link the encoder was trained on.
SEQUENCE = ("seq_cos", "rr_ab_sequence", "rr_ba_sequence")
#: Signals also given relative to each side's candidate list.
RELATIVE = (
    "seq_cos",
    "text_cos",
    "cf_linear_cos",
    "cf_mlp_cos",
    "value_habit_cos",
    "log_events_gap",
    "rhythm_cos",
    "hour_cos",
    "aligned_overlap",
)
OOF_FOLDS = 4


def _group_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Each key's group id in ``[0, n_groups)`` (groups in key order), and ``n_groups``."""
    keys = np.asarray(keys)
    if len(keys) and np.all(keys[1:] >= keys[:-1]):  # sorted already: no sort needed
        starts = np.empty(len(keys), bool)
        starts[0] = True
        np.not_equal(keys[1:], keys[:-1], out=starts[1:])
        return np.cumsum(starts) - 1, int(starts.sum())
    uniq, inv = np.unique(keys, return_inverse=True)
    return inv, len(uniq)


def _z_in_groups(inv: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """z-score of each value within its group (NaN stays NaN; a lone value gets 0); groups as
    ids from :func:`_group_ids`, found once per candidate list and shared by every signal."""
    from crossrec.link.kernels import group_z

    return group_z(inv, n_groups, values)


def _list_groups(ctx: LinkContext, a: np.ndarray, b: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Group ids of a's candidate list on b's platform and of b's on a's platform."""
    n_plat = len(ctx.platforms)
    return [
        _group_ids(own.astype(np.int64) * n_plat + ctx.platform_code[other])
        for own, other in ((a, b), (b, a))
    ]


def _fill_relative(
    groups: list[tuple[np.ndarray, int]],
    column: Callable[[str], np.ndarray],
    names: list[str],
    out: np.ndarray,
    first: int,
) -> list[str]:
    """Write the (higher, lower) z-scores of each RELATIVE signal into ``out[:, first:]``."""
    out_names = []
    j = first
    for name in RELATIVE:
        if name not in names:
            continue
        v = column(name)
        za, zb = (_z_in_groups(inv, n, v) for inv, n in groups)
        # a gap is better when small: flip its sign so higher always means "more alike"
        if name == "log_events_gap":
            za, zb = -za, -zb
        out[:, j] = np.fmax(za, zb)
        out[:, j + 1] = np.fmin(za, zb)
        j += 2
        out_names += [f"z_hi_{name}", f"z_lo_{name}"]
    return out_names


def relative_features(
    ctx: LinkContext, a: np.ndarray, b: np.ndarray, X: np.ndarray, names: list[str]
) -> tuple[np.ndarray, list[str]]:
    """For each RELATIVE signal, the pair's z-score within a's candidates on b's platform and
    within b's candidates on a's platform, as (higher, lower) so the result is symmetric."""
    width = 2 * sum(name in names for name in RELATIVE)
    out = np.empty((len(a), width), np.float32)
    if not width:
        return out, []
    groups = _list_groups(ctx, a, b)
    rel_names = _fill_relative(groups, lambda n: X[:, names.index(n)], names, out, 0)
    return out, rel_names


def matcher_view(
    ctx: LinkContext,
    a: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    names: list[str],
    anchors: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The matcher's input: clean signals plus their relative forms. ``anchors`` (n,) bool
    marks the profile rows of links the sequence encoder was trained on.

    Written column by column into one array (``X`` is neither copied nor changed), so the
    memory it adds is its result."""
    seen = anchors[a] | anchors[b] if anchors is not None and anchors.any() else None

    def column(name: str) -> np.ndarray:
        v = X[:, names.index(name)]
        if seen is not None and name in SEQUENCE:
            return np.where(seen, np.float32(np.nan), v)
        return v

    keep = [n for n in names if n not in LEAKY]
    width = 2 * sum(name in names for name in RELATIVE)
    out = np.empty((len(a), len(keep) + width), np.float32)
    for j, name in enumerate(keep):
        out[:, j] = column(name)
    rel_names = (
        _fill_relative(_list_groups(ctx, a, b), column, names, out, len(keep)) if width else []
    )
    return out, keep + rel_names


def out_of_fold_cf(
    ctx: LinkContext,
    a: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    names: list[str],
    *,
    seed: int,
) -> np.ndarray:
    """A copy of ``X`` whose CF-map signals on pairs touching a known-linked account come from
    maps fitted without that account's link (``OOF_FOLDS`` folds of the known links)."""
    from crossrec.link.mapping import fit_mappings
    from crossrec.link.signals import cf_signals

    X = X.copy()
    n_links = len(ctx.link_a)
    if n_links < 2 * OOF_FOLDS or not all(n in names for n in CF_MAP_SIGNALS):
        return X
    fold = np.random.default_rng(seed).permutation(n_links) % OOF_FOLDS
    row_fold = np.full(len(ctx), -1, dtype=np.int64)
    row_fold[ctx.link_a] = fold
    row_fold[ctx.link_b] = fold
    pair_fold = np.maximum(row_fold[a], row_fold[b])
    cols = np.array([names.index(n) for n in CF_MAP_SIGNALS], dtype=np.int64)
    for k in range(OOF_FOLDS):
        sel = np.flatnonzero(pair_fold == k)
        if sel.size == 0:
            continue
        others = fold != k
        maps = fit_mappings(ctx, (ctx.link_a[others], ctx.link_b[others]), seed=seed)
        X[np.ix_(sel, cols)] = cf_signals(ctx, maps, a[sel], b[sel])
    return X
