"""Why an item is recommended: one sentence per item, from the component that put it there."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crossrec.recommend.components import Query
    from crossrec.recommend.parts import PlatformParts, RecommendParts

_VERBS = {
    "rating": "rated",
    "rate": "rated",
    "view": "watched",
    "watch": "watched",
    "play": "played",
    "listen": "played",
    "read": "read",
    "purchase": "bought",
    "buy": "bought",
    "click": "clicked",
    "like": "liked",
}


def verb(p: PlatformParts) -> str:
    """The platform's verb: its only event type's ("rated"), else "interacted with"."""
    w = p.matrix.weighting
    types = set(w.value_scales) | {t for t, x in w.event_weights.items() if x > 0}
    if len(types) == 1:
        return _VERBS.get(next(iter(types)), "interacted with")
    return "interacted with"


def explain(
    parts: RecommendParts, query: Query, component: str, column: int, *, anonymous: bool = False
) -> str:
    """The reason for recommending ``column`` of the query's platform, driven by
    ``component`` (the one that contributed most to the item's blended score)."""
    p = parts.platform(query.platform)
    here = p.name
    if component in ("own_cf", "own_items", "own_seq"):
        best = _closest_seen(p, query, column)
        if best is not None:
            return f"similar to {_q(p.label(best))}, which you {verb(p)} on {here}"
        return f"fits your history on {here}"
    if component in ("linked_seq", "linked_map", "linked_text"):
        found = _linked_item(parts, query, column, component)
        if found is not None:
            q, item = found
            return f"your linked {q.name} account {verb(q)} {_q(q.label(item))}"
        names = sorted({pl for pl, _, _ in query.linked})
        return f"fits the taste of your linked {' and '.join(names)} account"
    if component == "neighbours":
        return f"{verb(p)} by people like you on {here}"
    if anonymous:
        return f"popular on {here} (no history for this account yet)"
    return f"popular on {here}"


def _q(label: str) -> str:
    return f"“{label}”"


def _closest_seen(p: PlatformParts, query: Query, column: int) -> int | None:
    """The seen item most similar to ``column``: by item neighbours, else CF factors, else
    sequence vectors."""
    seen = np.asarray(query.seen, dtype=np.int64)
    if len(seen) == 0:
        return None
    if p.item_knn is not None:
        sims = np.asarray(p.item_knn[seen][:, column].todense()).ravel()
        if np.any(sims > 0):
            return int(seen[int(np.argmax(sims))])
    for table in (p.cf.item_factors, p.seq_items):
        if table.shape[1] == 0:
            continue
        x = table[seen]
        y = table[column]
        norms = np.linalg.norm(x, axis=1) * (np.linalg.norm(y) or 1.0)
        sims = (x @ y) / np.where(norms > 0, norms, 1.0)
        if np.any(sims):
            return int(seen[int(np.argmax(sims))])
    return int(seen[0])


def _linked_item(
    parts: RecommendParts, query: Query, column: int, component: str
) -> tuple[PlatformParts, int] | None:
    """The linked accounts' item that best explains ``column``: by text alignment for
    ``linked_text``, else by the shared sequence space (items of every platform live there),
    else their most-weighted item."""
    p = parts.platform(query.platform)
    best: tuple[float, PlatformParts, int] | None = None
    for platform, account, weight in query.linked:
        q = parts.platforms.get(platform)
        if q is None:
            continue
        cols, conf = q.history(account)
        if len(cols) == 0:
            continue
        align = parts.alignment.get((platform, p.name))
        if component == "linked_text" and align is not None:
            sims = np.asarray(align[cols][:, column].toarray()).ravel()
        elif q.seq_items.shape[1] and p.seq_items.shape[1]:
            sims = q.seq_items[cols] @ p.seq_items[column]
        else:
            sims = conf.astype(np.float64)
        i = int(np.argmax(sims))
        score = float(sims[i]) * weight
        if best is None or score > best[0]:
            best = (score, q, int(cols[i]))
    return None if best is None else (best[1], best[2])
