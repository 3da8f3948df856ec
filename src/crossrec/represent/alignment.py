"""Cross-platform item alignment in the text space.

For every item with text, its nearest ``k`` items on every other platform by cosine similarity
(exact search, faiss ``IndexFlatIP`` over unit vectors). The alignment lets the linker compare
what two accounts consumed on different catalogues, and the recommender carry an interest from
one platform to another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from crossrec.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

    from crossrec.progress import ProgressHook
    from crossrec.represent.text import ItemTextEmbeddings

#: Similarities are compared at this many decimals, so float noise between BLAS kernels
#: never reorders items that are tied; ties then go to the smaller item id.
SIMILARITY_DECIMALS = 6
#: Extra neighbours fetched beyond k so that ties at the k-th place can be broken by item id.
_TIE_MARGIN = 8
#: Queries per faiss search call: bounds the (queries, k) result buffers.
_QUERY_BATCH = 16_384


def alignment_schema() -> pa.Schema:
    """Columns of the alignment table."""
    import pyarrow as pa

    return pa.schema(
        [
            ("platform", pa.string()),
            ("item", pa.string()),
            ("other_platform", pa.string()),
            ("other_item", pa.string()),
            ("similarity", pa.float32()),
            ("rank", pa.int32()),
        ]
    )


def align_items(
    embeddings: ItemTextEmbeddings,
    k: int = 10,
    progress: ProgressHook | None = None,
) -> pa.Table:
    """Nearest ``k`` items on every other platform, for every item with text.

    Parameters
    ----------
    embeddings : ItemTextEmbeddings
        Unit text vectors; items without text take no part.
    k : int
        Neighbours kept per item and other platform (``train.align_k``); fewer when the other
        platform has fewer items with text.
    progress : ProgressHook or None

    Returns
    -------
    pa.Table
        Columns ``platform, item, other_platform, other_item, similarity (float32, cosine
        rounded to 6 decimals), rank (int32, 1 = nearest)``; ordered by platform,
        other_platform, item, rank. Equal similarities rank by ``other_item`` (string order).
        Same inputs give the same table.
    """
    import faiss
    import pyarrow as pa

    from crossrec.progress import NullProgress

    if k < 1:
        raise InputError(f"align_k must be at least 1, got {k}")
    platforms = [p for p in embeddings.platforms() if embeddings.has_text[embeddings.rows(p)].any()]
    pairs = [(p, q) for p in platforms for q in platforms if p != q]
    task = (progress or NullProgress()).task("Aligning items across platforms", total=len(pairs))
    # Rows of each platform's items with text, in item order (embeddings are sorted by item).
    text_rows = {p: embeddings.rows(p)[embeddings.has_text[embeddings.rows(p)]] for p in platforms}
    indexes: dict[str, faiss.IndexFlatIP] = {}
    columns: dict[str, list[np.ndarray]] = {name: [] for name in alignment_schema().names}

    for p, q in pairs:
        if q not in indexes:
            indexes[q] = faiss.IndexFlatIP(embeddings.dim)
            indexes[q].add(np.ascontiguousarray(embeddings.vectors[text_rows[q]]))
        q_vectors = embeddings.vectors[text_rows[q]]
        for start in range(0, len(text_rows[p]), _QUERY_BATCH):
            queries = text_rows[p][start : start + _QUERY_BATCH]
            sims, pos = _top_k(
                indexes[q], q_vectors, np.ascontiguousarray(embeddings.vectors[queries]), k
            )
            n, kk = pos.shape
            columns["platform"].append(np.full(n * kk, p))
            columns["item"].append(np.repeat(embeddings.item[queries], kk))
            columns["other_platform"].append(np.full(n * kk, q))
            columns["other_item"].append(embeddings.item[text_rows[q]][pos].reshape(-1))
            columns["similarity"].append(sims.reshape(-1))
            columns["rank"].append(np.tile(np.arange(1, kk + 1, dtype=np.int32), n))
        task.advance()
    task.done()

    schema = alignment_schema()
    if not columns["rank"]:
        return schema.empty_table()
    return pa.table(
        {
            name: pa.array(np.concatenate(parts), type=schema.field(name).type)
            for name, parts in columns.items()
        },
        schema=schema,
    )


def _top_k(
    index: Any, base: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product with ties broken by base position.

    Parameters
    ----------
    index : faiss.IndexFlatIP
        Holds ``base`` (shape (m, dim)), rows in item order.
    queries : np.ndarray, shape (n, dim)

    Returns
    -------
    sims : np.ndarray, shape (n, min(k, m)), float32, rounded
    pos : np.ndarray, shape (n, min(k, m)), int64, rows of ``base``
    """
    m = base.shape[0]
    k = min(k, m)
    fetch = min(m, k + _TIE_MARGIN)
    raw, pos = index.search(queries, fetch)
    sims, pos = _order(raw, pos)
    if fetch < m:
        # A tie at the k-th place that reaches the end of the fetched list may hide equal items
        # with smaller ids: score those few queries against every base row.
        open_ties = np.flatnonzero(sims[:, k - 1] == sims[:, fetch - 1])
        if open_ties.size:
            full = queries[open_ties] @ base.T
            all_pos = np.broadcast_to(np.arange(m, dtype=np.int64), full.shape)
            s2, p2 = _order(full, all_pos)
            sims[open_ties, :k] = s2[:, :k]
            pos[open_ties, :k] = p2[:, :k]
    return sims[:, :k], pos[:, :k]


def _order(raw: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by rounded similarity, descending, then by position, ascending."""
    sims = np.round(raw.astype(np.float32), SIMILARITY_DECIMALS)
    order = np.lexsort((pos, -sims), axis=-1)
    return np.take_along_axis(sims, order, axis=-1), np.take_along_axis(pos, order, axis=-1)
