"""Known links met the way unknown ones will be: candidate lists from cross-fitted CF maps.

The candidate generator's ``cf`` space maps one platform's CF vectors into another's with a
ridge map fitted on the known links, so on those very links it finds partners it would not
find for a person still to be linked (on a Douban sample 39 % of known partners were among
the candidates against 8 % of the true pairs still to find). Here the known links are dealt
into the same folds as the out-of-fold CF signals (:data:`crossrec.link.features.OOF_FOLDS`),
and the candidate lists of each fold's accounts are generated again with maps fitted on the
other folds only. A known partner counts as *found* when these lists hold it; the operating
point, the scorer selection and the candidate recall of the link summary use that.

The sequence encoder also learns from known links (a seeded half of them, the ``anchors``);
the summary reports candidate recall separately for links it saw and links it did not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from crossrec.link.features import OOF_FOLDS

if TYPE_CHECKING:
    from crossrec.link.context import LinkContext

__all__ = ["cross_fitted_pairs"]


def cross_fitted_pairs(ctx: LinkContext, *, seed: int) -> np.ndarray | None:
    """Sorted keys ``a * n + b`` (``a < b``) of the pairs the known-linked accounts' own
    candidate lists hold when the CF maps are fitted without their fold; None when there are
    too few known links to cross-fit (every list is then taken as generated)."""
    from crossrec.link.candidates import generate_candidates
    from crossrec.link.mapping import fit_mappings

    n_links = len(ctx.link_a)
    if n_links < 2 * OOF_FOLDS:
        return None
    n = np.int64(len(ctx))
    # the same folds as crossrec.link.features.out_of_fold_cf
    fold = np.random.default_rng(seed).permutation(n_links) % OOF_FOLDS
    keys: list[np.ndarray] = []
    for k in range(OOF_FOLDS):
        inside = fold == k
        rows = np.unique(np.concatenate([ctx.link_a[inside], ctx.link_b[inside]]))
        maps = fit_mappings(ctx, (ctx.link_a[~inside], ctx.link_b[~inside]), seed=seed, mlp=False)
        cands = generate_candidates(ctx, maps, rows)
        keys.append(cands.a_rows.astype(np.int64) * n + cands.b_rows)
    return np.unique(np.concatenate(keys))
