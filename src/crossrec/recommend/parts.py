"""What the recommender reads from a model version and the store, as arrays.

``RecommendParts`` holds, per platform, the interaction matrix and CF model (items are the
matrix columns: the platform's catalogue), the sequence encoder's item vectors lined up with
those columns, item popularity and item titles; across platforms, the text alignment of
catalogues, the account profiles (shared sequence space), the sequence index and every
account's linked accounts (known links at weight 1, asserted links at their probability).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from crossrec.errors import ModelError

if TYPE_CHECKING:
    from crossrec.config import RecommendConfig
    from crossrec.index import VectorIndex
    from crossrec.represent.cf import CFModel
    from crossrec.represent.interactions import InteractionMatrix
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.store.base import Store

#: A linked account: (platform, account pseudonym, weight in (0, 1]).
Linked = tuple[str, str, float]


@dataclass
class PlatformParts:
    """One platform's catalogue and models.

    Attributes
    ----------
    matrix : InteractionMatrix — accounts × catalogue confidences at training time.
    cf : CFModel — user and item factors over the same rows and columns.
    seq_items : np.ndarray, shape (n_items, d) float32 — sequence item vectors by column
        (zero rows for items the encoder does not know).
    popularity : np.ndarray, shape (n_items,) float64 — log(1 + accounts that touched it).
    item_knn : scipy.sparse.csr_matrix (n_items, n_items) or None — item-to-item similarity.
    titles : dict column -> title (items with one).
    categories : dict column -> category (items with one).
    """

    name: str
    matrix: InteractionMatrix
    cf: CFModel
    seq_items: np.ndarray
    popularity: np.ndarray
    item_knn: sp.csr_matrix | None = None
    titles: dict[int, str] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    #: (n_items,) bool — excluded by the recommend filters (category, availability)
    blocked: np.ndarray | None = None
    #: Accounts updated online since training: pseudonym -> (seen columns, confidences).
    updated: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.matrix.items)

    def row(self, account: str) -> int | None:
        """Matrix row of an account at training time, or None."""
        accounts = self.matrix.accounts
        i = int(np.searchsorted(accounts, account))
        return i if i < len(accounts) and accounts[i] == account else None

    def history(self, account: str) -> tuple[np.ndarray, np.ndarray]:
        """Columns and confidences of the account's interactions (online updates first)."""
        if account in self.updated:
            return self.updated[account]
        r = self.row(account)
        if r is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        m = self.matrix.matrix
        lo, hi = m.indptr[r], m.indptr[r + 1]
        return m.indices[lo:hi].astype(np.int32), m.data[lo:hi].astype(np.float32)

    def label(self, column: int) -> str:
        """How an item is named in reasons: its title, else its id."""
        return self.titles.get(column) or str(self.matrix.items[column])


@dataclass
class RecommendParts:
    """Everything the recommender scores with (see the module docstring)."""

    version: str
    platforms: dict[str, PlatformParts]
    profiles: AccountProfiles
    #: (platform_a, platform_b) -> (n_items_a, n_items_b) csr of text similarities.
    alignment: dict[tuple[str, str], sp.csr_matrix]
    #: (platform, account) -> its linked accounts on other platforms.
    links: dict[tuple[str, str], list[Linked]]
    seq_index: dict[str, VectorIndex]
    #: Derived structures built on first use (e.g. bridges between platforms).
    cache: dict[Any, Any] = field(default_factory=dict)

    def platform(self, name: str) -> PlatformParts:
        from crossrec.errors import NotFoundError

        try:
            return self.platforms[name]
        except KeyError:
            known = ", ".join(sorted(self.platforms)) or "none"
            raise NotFoundError(
                f"platform {name!r} is not in model {self.version} (platforms: {known})",
                hint="ingest its events and run `crossrec train`",
            ) from None

    def linked(self, platform: str, account: str) -> list[Linked]:
        return self.links.get((platform, account), [])

    @classmethod
    def load(
        cls, model_dir: Path, store: Store, config: RecommendConfig | None = None
    ) -> RecommendParts:
        """Read a model version's files and the links, item titles and filters from the
        store."""
        from crossrec.index import load_index
        from crossrec.represent.cf import CFModel
        from crossrec.represent.interactions import InteractionMatrix
        from crossrec.represent.itemknn import load_item_knn
        from crossrec.represent.profiles import AccountProfiles

        if not (model_dir / "accounts").is_dir():
            raise ModelError(f"{model_dir} holds no trained model", hint="run `crossrec train`")
        profiles = AccountProfiles.load(model_dir / "accounts")
        seq = _sequence_items(model_dir)
        items = store.read("items", columns=["platform", "item", "title", "category", "attrs"])
        titles: dict[str, dict[str, str]] = {}
        categories: dict[str, dict[str, str]] = {}
        blocked: dict[str, set[str]] = {}
        for p, it, title, category, attrs in zip(
            items.column("platform").to_pylist(),
            items.column("item").to_pylist(),
            items.column("title").to_pylist(),
            items.column("category").to_pylist(),
            items.column("attrs").to_pylist(),
            strict=True,
        ):
            if title:
                titles.setdefault(p, {})[it] = title
            if category:
                categories.setdefault(p, {})[it] = category
            if config is not None and _filtered(config, category, attrs):
                blocked.setdefault(p, set()).add(it)
        platforms: dict[str, PlatformParts] = {}
        cf_root = model_dir / "cf"
        for directory in sorted(p for p in cf_root.iterdir() if p.is_dir()):
            matrix = InteractionMatrix.load(directory)
            cf = CFModel.load(directory)
            name = matrix.platform
            by_item = {it: j for j, it in enumerate(matrix.items.tolist())}
            seq_items = np.zeros((len(matrix.items), seq[1].shape[1] if seq else 0), np.float32)
            if seq is not None:
                names, vectors, plats = seq
                for i in np.flatnonzero(plats == name):
                    j = by_item.get(str(names[i]))
                    if j is not None:
                        seq_items[j] = vectors[i]
            touched = np.diff(matrix.matrix.tocsc().indptr)
            platforms[name] = PlatformParts(
                name=name,
                matrix=matrix,
                cf=cf,
                seq_items=seq_items,
                popularity=np.log1p(touched.astype(np.float64)),
                item_knn=load_item_knn(directory),
                blocked=np.isin(matrix.items, sorted(blocked.get(name, ()))),
                titles={by_item[it]: t for it, t in titles.get(name, {}).items() if it in by_item},
                categories={
                    by_item[it]: c for it, c in categories.get(name, {}).items() if it in by_item
                },
            )
        alignment = _alignment(model_dir, platforms)
        seq_index: dict[str, VectorIndex] = {}
        for name in platforms:
            d = model_dir / "index" / "sequence" / name
            if d.is_dir():
                seq_index[name] = load_index(d)
        return cls(
            version=model_dir.name,
            platforms=platforms,
            profiles=profiles,
            alignment=alignment,
            links=read_links(store),
            seq_index=seq_index,
        )


_FALSE = {"false", "0", "no", "n", "off"}


def _filtered(config: RecommendConfig, category: str | None, attrs: str | None) -> bool:
    """Whether the recommend filters exclude an item (category, availability attribute)."""
    if category and category in config.exclude_categories:
        return True
    key = config.availability_attribute
    if key and attrs:
        try:
            value = json.loads(attrs).get(key)
        except (ValueError, AttributeError):
            return False
        return value is not None and str(value).strip().lower() in _FALSE
    return False


def read_links(store: Store, *, known_only: bool = False) -> dict[tuple[str, str], list[Linked]]:
    """Every account's linked accounts, both directions; known links weigh 1, asserted links
    their probability. An account linked twice to the same account keeps the larger weight."""
    best: dict[tuple[str, str], dict[tuple[str, str], float]] = {}

    def add(pa_: str, a: str, pb: str, b: str, w: float) -> None:
        if pa_ == pb:
            return
        for x, y in (((pa_, a), (pb, b)), ((pb, b), (pa_, a))):
            slot = best.setdefault(x, {})
            slot[y] = max(slot.get(y, 0.0), w)

    for r in store.read("known_links").to_pylist():
        add(r["platform_a"], r["account_a"], r["platform_b"], r["account_b"], 1.0)
    if not known_only:
        for r in store.read("links").to_pylist():
            if (r.get("status") or "asserted") != "asserted":
                continue  # a probable link is not the same person yet
            prob = r.get("probability")
            if prob is not None and prob > 0:
                add(r["platform_a"], r["account_a"], r["platform_b"], r["account_b"], float(prob))
    return {k: sorted((p, a, w) for (p, a), w in v.items()) for k, v in sorted(best.items())}


def _sequence_items(model_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    directory = model_dir / "sequence"
    if not directory.is_dir():
        return None
    from crossrec.represent.sequence import SequenceEncoder

    vectors = SequenceEncoder.load(directory).item_vectors()
    return vectors.items.astype(str), vectors.vectors, vectors.platforms.astype(str)


def _alignment(
    model_dir: Path, platforms: dict[str, PlatformParts]
) -> dict[tuple[str, str], sp.csr_matrix]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = model_dir / "text" / "alignment.parquet"
    if not path.is_file():
        return {}
    table = pq.read_table(path)
    out: dict[tuple[str, str], sp.csr_matrix] = {}
    pairs = {
        (r["platform"], r["other_platform"])
        for r in table.select(["platform", "other_platform"]).to_pylist()
    }
    for a, b in sorted(pairs):
        if a not in platforms or b not in platforms:
            continue
        mask = pc.and_(pc.equal(table["platform"], a), pc.equal(table["other_platform"], b))
        sub = table.filter(mask)
        items_a, items_b = platforms[a].matrix.items, platforms[b].matrix.items
        col_a = _positions(np.asarray(sub["item"].to_pylist(), dtype=str), items_a)
        col_b = _positions(np.asarray(sub["other_item"].to_pylist(), dtype=str), items_b)
        sim = sub["similarity"].to_numpy().astype(np.float32)
        ok = (col_a >= 0) & (col_b >= 0) & (sim > 0)
        m = sp.csr_matrix(
            (sim[ok], (col_a[ok], col_b[ok])), shape=(len(items_a), len(items_b)), dtype=np.float32
        )
        m.sum_duplicates()
        out[(a, b)] = m
    return out


def _positions(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.full(len(values), -1, np.int64)
    pos = np.searchsorted(sorted_keys, values)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == values, pos, -1).astype(np.int64)
