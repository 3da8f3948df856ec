"""Why an item is recommended: one sentence per item, from the component that put it there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    parts: RecommendParts,
    query: Query,
    drivers: list[str],
    columns: list[int],
    *,
    anonymous: bool = False,
) -> list[str]:
    """The reason for each recommended column of the query's platform, driven by the
    component that contributed most to its blended score (``drivers[i]`` for ``columns[i]``).
    What the reasons look up (similar seen items, the linked accounts' items) is computed once
    for all columns."""
    p = parts.platform(query.platform)
    here = p.name
    own = [
        c for c, d in zip(columns, drivers, strict=True) if d in ("own_cf", "own_items", "own_seq")
    ]
    closest = _closest_seen(parts, p, query, own) if own else {}
    linked_cols = [
        c
        for c, d in zip(columns, drivers, strict=True)
        if d in ("linked_seq", "linked_map", "linked_text")
    ]
    by_text = _linked_items(parts, query, linked_cols, text=True) if linked_cols else {}
    by_space = _linked_items(parts, query, linked_cols, text=False) if linked_cols else {}
    out = []
    for column, component in zip(columns, drivers, strict=True):
        if component in ("own_cf", "own_items", "own_seq"):
            best = closest.get(column)
            if best is not None:
                out.append(f"similar to {_q(p.label(best))}, which you {verb(p)} on {here}")
            else:
                out.append(f"fits your history on {here}")
        elif component in ("linked_seq", "linked_map", "linked_text"):
            found = (by_text if component == "linked_text" else by_space).get(column)
            if found is None:
                found = by_space.get(column) or by_text.get(column)
            if found is not None:
                q, item = found
                out.append(f"your linked {q.name} account {verb(q)} {_q(q.label(item))}")
            else:
                names = sorted({pl for pl, _, _ in query.linked})
                out.append(f"fits the taste of your linked {' and '.join(names)} account")
        elif component == "linked_neighbours":
            names = sorted({pl for pl, _, _ in query.linked})
            out.append(
                f"{verb(p)} on {here} by people whose {' and '.join(names)} history is like yours"
            )
        elif component == "neighbours":
            out.append(f"{verb(p)} by people like you on {here}")
        elif anonymous:
            out.append(f"popular on {here} (no history for this account yet)")
        else:
            out.append(f"popular on {here}")
    return out


def _q(label: str) -> str:
    return f"“{label}”"


def _closest_seen(
    parts: RecommendParts, p: PlatformParts, query: Query, columns: list[int]
) -> dict[int, int]:
    """For each column, the seen item most similar to it: by item neighbours, else CF
    factors, else sequence vectors."""
    seen = np.asarray(query.seen, dtype=np.int64)
    if len(seen) == 0:
        return {}
    cols = np.asarray(columns, dtype=np.int64)
    sims = np.zeros((len(seen), len(cols)))
    if p.item_knn is not None:
        csc = _csc(parts, p)
        where = np.full(p.n_items, -1, np.int64)  # catalogue column -> its row in ``seen``
        where[seen] = np.arange(len(seen))
        for j, c in enumerate(cols.tolist()):
            lo, hi = csc.indptr[c], csc.indptr[c + 1]
            at = where[csc.indices[lo:hi]]
            hit = at >= 0
            sims[at[hit], j] = csc.data[lo:hi][hit]
    out: dict[int, int] = {}
    todo = [j for j in range(len(cols)) if not np.any(sims[:, j] > 0)]
    for table in (p.cf.item_factors, p.seq_items):
        if not todo or table.shape[1] == 0:
            continue
        x = table[seen]
        y = table[cols[todo]]
        norms = np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1))
        cos = (x @ y.T) / np.where(norms > 0, norms, 1.0)
        for k, j in enumerate(todo):
            if np.any(cos[:, k]):
                sims[:, j] = cos[:, k]
        todo = [j for j in todo if not np.any(sims[:, j])]
    for j, c in enumerate(cols.tolist()):
        out[c] = int(seen[int(np.argmax(sims[:, j]))]) if np.any(sims[:, j]) else int(seen[0])
    return out


def _csc(parts: RecommendParts, p: PlatformParts) -> Any:
    """The item neighbours by column (who has this item among its neighbours); cached."""
    key = ("item_knn_csc", p.name, id(p.item_knn))
    if key not in parts.cache:
        parts.cache[key] = p.item_knn.tocsc()  # type: ignore[union-attr]
    return parts.cache[key]


def _linked_items(
    parts: RecommendParts, query: Query, columns: list[int], *, text: bool
) -> dict[int, tuple[PlatformParts, int]]:
    """For each column, the linked accounts' item that best explains it: by text alignment
    (``text``) or by the shared sequence space (items of every platform live there), else
    their most-weighted item."""
    p = parts.platform(query.platform)
    cols = np.asarray(columns, dtype=np.int64)
    best: dict[int, tuple[float, PlatformParts, int]] = {}
    for platform, account, weight in query.linked:
        q = parts.platforms.get(platform)
        if q is None:
            continue
        mine, conf = q.history(account)
        if len(mine) == 0:
            continue
        align = parts.alignment.get((platform, p.name))
        if text:
            if align is None:
                continue
            sims = np.asarray(align[mine][:, cols].todense())
        elif q.seq_items.shape[1] and p.seq_items.shape[1]:
            sims = q.seq_items[mine] @ p.seq_items[cols].T
        else:
            sims = np.repeat(conf.astype(np.float64)[:, None], len(cols), axis=1)
        for j, c in enumerate(cols.tolist()):
            i = int(np.argmax(sims[:, j]))
            score = float(sims[i, j]) * weight
            if text and score <= 0:
                continue
            if c not in best or score > best[c][0]:
                best[c] = (score, q, int(mine[i]))
    return {c: (q, item) for c, (_, q, item) in best.items()}
