"""Everything the linkage signals read, loaded once per model version.

:class:`LinkContext` gathers, as arrays indexed by :class:`AccountProfiles` row number: the
account profiles, each platform's CF model and interaction matrix (whose rows are the item
sets of the accounts), item rarity, the cross-platform item alignment, the UTC days each
account was active, the pseudonymised identifiers and the known links. A platform without
text (Douban) has no alignment; a platform without timestamps has no active days; both only
make the signals that need them NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from crossrec.errors import ModelError

if TYPE_CHECKING:
    from crossrec.config import Config
    from crossrec.index import VectorIndex
    from crossrec.represent.cf import CFModel
    from crossrec.represent.interactions import InteractionMatrix
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.store.base import Store

_DAY_MICROS = 86_400 * 1_000_000


@dataclass(frozen=True)
class Alignment:
    """Text alignment of platform A's items to platform B's, as arrays.

    Attributes
    ----------
    neighbours : np.ndarray, shape (n_items_a, k), int32
        Columns of B's interaction matrix nearest to each column of A's, best first;
        -1 where there is none (item without text, or an aligned item no account touched).
    similarity : np.ndarray, shape (n_items_a, k), float32
        Their cosine similarities; 0 where ``neighbours`` is -1.
    n_items_b : int
        Columns of B's interaction matrix.
    """

    neighbours: np.ndarray
    similarity: np.ndarray
    n_items_b: int

    def matrix(self, min_similarity: float) -> sp.csr_matrix:
        """Binary (n_items_a, n_items_b) matrix of the aligned item pairs at least that close."""
        keep = (self.neighbours >= 0) & (self.similarity >= min_similarity)
        rows = np.nonzero(keep)[0]
        m = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, self.neighbours[keep])),
            shape=(self.neighbours.shape[0], self.n_items_b),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


@dataclass
class LinkContext:
    """What linkage needs, indexed by :class:`AccountProfiles` row number.

    Attributes
    ----------
    profiles : AccountProfiles
        Rows sorted by (platform, account): each platform's rows are contiguous.
    config : Config
    model_dir : Path or None
        The model version the context was loaded from.
    platforms : list of str
        Sorted; ``platform_code[r]`` indexes it.
    starts : np.ndarray, shape (P + 1,), int64
        Rows of ``platforms[p]`` are ``starts[p]:starts[p + 1]``.
    platform_code : np.ndarray, shape (n,), int32
    cf_models, interactions : dict of platform → CFModel / InteractionMatrix
    items : dict of platform → scipy.sparse.csr_matrix, shape (n_p, n_items_p), float32
        Confidence of each item for each account of the platform; row ``i`` is profile row
        ``starts[p] + i`` (empty where the account is missing from the matrix).
    idf : dict of platform → np.ndarray, shape (n_items_p,), float32
        Item rarity ``log(n_accounts / accounts_with_item)``.
    alignment : dict of (platform_a, platform_b) → Alignment
        Absent for platforms without text.
    day_indptr, days : np.ndarray
        CSR of active days: row ``r`` was active on UTC days (since 1970-01-01)
        ``days[day_indptr[r]:day_indptr[r + 1]]`` (int32, sorted). Empty without timestamps.
    identifiers : scipy.sparse.csr_matrix, shape (n, n_identifiers), float32
        1 where the account carries the identifier (kind, pseudonymised value).
    link_a, link_b : np.ndarray, shape (m,), int64
        Known links as profile rows, ``link_a < link_b``, sorted and unique.
    """

    profiles: AccountProfiles
    config: Config
    model_dir: Path | None
    platforms: list[str]
    starts: np.ndarray
    platform_code: np.ndarray
    cf_models: dict[str, CFModel]
    interactions: dict[str, InteractionMatrix]
    items: dict[str, sp.csr_matrix]
    idf: dict[str, np.ndarray]
    alignment: dict[tuple[str, str], Alignment]
    day_indptr: np.ndarray
    days: np.ndarray
    identifiers: sp.csr_matrix
    link_a: np.ndarray
    link_b: np.ndarray
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: Path, store: Store, config: Config) -> LinkContext:
        """Read a model version (``models/vNNNN``) and the store's linkage facts.

        Parameters
        ----------
        model_dir : Path
            A published model version (``ModelRegistry(ws.models_dir).path()``).
        store : Store
            Events (for active days), account identifiers and known links are read from it.
        config : Config
        """
        from crossrec.represent.cf import CFModel
        from crossrec.represent.interactions import InteractionMatrix
        from crossrec.represent.profiles import AccountProfiles

        model_dir = Path(model_dir)
        profiles = AccountProfiles.load(model_dir / "accounts")
        platforms = sorted({str(p) for p in np.unique(profiles.platform)})
        interactions = {p: InteractionMatrix.load(model_dir / "cf" / p) for p in platforms}
        cf_models = {p: CFModel.load(model_dir / "cf" / p) for p in platforms}
        ctx = cls.from_parts(
            profiles, config, interactions, cf_models=cf_models, model_dir=model_dir
        )
        ctx.alignment = _load_alignment(model_dir / "text" / "alignment.parquet", interactions)
        ctx.read_store(store)
        return ctx

    def read_store(self, store: Store) -> None:
        """Read active days (events with timestamps), identifiers and known links."""
        self.day_indptr, self.days = _active_days(self, store)
        self.identifiers = _identifiers(self, store.read("account_identifiers"))
        self.link_a, self.link_b = _known_links(self, store.read("known_links"))

    @classmethod
    def from_parts(
        cls,
        profiles: AccountProfiles,
        config: Config,
        interactions: dict[str, InteractionMatrix],
        *,
        cf_models: dict[str, CFModel] | None = None,
        model_dir: Path | None = None,
        alignment: dict[tuple[str, str], Alignment] | None = None,
        days: tuple[np.ndarray, np.ndarray] | None = None,
        identifiers: sp.csr_matrix | None = None,
        links: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> LinkContext:
        """A context from arrays already in memory (tests, synthetic benchmarks, services).

        Parameters
        ----------
        profiles : AccountProfiles
            Rows sorted by (platform, account).
        interactions : dict of platform → InteractionMatrix
            Every platform of ``profiles``.
        model_dir : Path, optional
            Where the "sequence" and "text" indexes are read; without it (or without an index
            there) they are built from the profiles on first use.
        days : (day_indptr, days), optional
        identifiers : csr_matrix (n, n_identifiers), optional
        links : (a_rows, b_rows), optional
            Known links as profile rows.

        :meth:`read_store` fills days, identifiers and known links from a store instead.
        """
        n = len(profiles)
        platforms = sorted({str(p) for p in np.unique(profiles.platform)})
        codes = np.searchsorted(np.asarray(platforms), profiles.platform).astype(np.int32)
        if len(codes) and np.any(np.diff(codes) < 0):
            raise ModelError(
                "account profiles are not sorted by platform", hint="retrain with `crossrec train`"
            )
        missing = [p for p in platforms if p not in interactions]
        if missing:
            raise ModelError(
                f"no interaction matrix for platform(s) {', '.join(missing)}",
                hint="retrain with `crossrec train`",
            )
        starts = np.searchsorted(codes, np.arange(len(platforms) + 1)).astype(np.int64)
        items: dict[str, sp.csr_matrix] = {}
        idf: dict[str, np.ndarray] = {}
        for p, platform in enumerate(platforms):
            inter = interactions[platform]
            accounts = profiles.account[starts[p] : starts[p + 1]]
            items[platform] = _rows_for(inter.matrix, inter.accounts, accounts)
            counts = np.bincount(inter.matrix.indices, minlength=inter.matrix.shape[1])
            idf[platform] = np.log(max(len(accounts), 1) / np.maximum(counts, 1)).astype(np.float32)
        day_indptr, day_values = days if days is not None else (np.zeros(n + 1, np.int64), None)
        ctx = cls(
            profiles=profiles,
            config=config,
            model_dir=model_dir,
            platforms=platforms,
            starts=starts,
            platform_code=codes,
            cf_models=dict(cf_models or {}),
            interactions=dict(interactions),
            items=items,
            idf=idf,
            alignment=dict(alignment or {}),
            day_indptr=np.asarray(day_indptr, np.int64),
            days=np.asarray(day_values if day_values is not None else [], np.int32),
            identifiers=(
                identifiers if identifiers is not None else sp.csr_matrix((n, 0), dtype=np.float32)
            ),
            link_a=np.empty(0, np.int64),
            link_b=np.empty(0, np.int64),
        )
        if links is not None:
            ctx.link_a, ctx.link_b = _canonical_links(ctx, *links)
        return ctx

    # -- lookups -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.profiles)

    def rows_of(self, platform: str) -> np.ndarray:
        """Profile rows of ``platform`` (contiguous), shape (n_p,), int64."""
        p = self.platforms.index(platform)
        return np.arange(self.starts[p], self.starts[p + 1], dtype=np.int64)

    def rows(self, platform: str, accounts: np.ndarray | list[str]) -> np.ndarray:
        """Profile rows of account pseudonyms of ``platform``; -1 where unknown.

        Returns
        -------
        np.ndarray, shape (len(accounts),), int64
        """
        if platform not in self.platforms:
            return np.full(len(accounts), -1, np.int64)
        p = self.platforms.index(platform)
        known = pa.array(self.profiles.account[self.starts[p] : self.starts[p + 1]].astype(str))
        pos = pc.index_in(pa.array(np.asarray(accounts, dtype=str)), value_set=known)
        local = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.where(local >= 0, local + self.starts[p], -1)

    def day_counts(self) -> np.ndarray:
        """Active UTC days per row, shape (n,), int64 (0 without timestamps)."""
        return np.diff(self.day_indptr)

    def index(self, space: str, platform: str) -> VectorIndex | None:
        """The vector index of a platform's accounts in ``space`` ("sequence", "text", "cf",
        "values").

        "sequence" and "text" are the indexes written by ``crossrec train``, "cf" and "values"
        the ones ``crossrec link`` saves (:meth:`save_built_indexes`); one the model version
        lacks is built from the profiles on first use (exact up to ``index.exact_max``
        accounts, HNSW above) and kept. None when the platform has no vectors in that space
        (e.g. no text, no values).
        """
        key = ("index", space, platform)
        if key not in self._cache:
            self._cache[key] = self._open_index(space, platform)
        index: VectorIndex | None = self._cache[key]
        return index

    def _open_index(self, space: str, platform: str) -> VectorIndex | None:
        from crossrec.index import build_index, load_index

        if self.model_dir is not None:
            directory = self.model_dir / "index" / space / platform
            if directory.is_dir():
                return load_index(directory)
        rows = self.rows_of(platform)
        vectors = getattr(self.profiles, space)
        if space == "text":
            rows = rows[self.profiles.has_text[rows]]
        elif space == "values":
            rows = rows[self.profiles.value_mask[rows]]
        if len(rows) == 0 or vectors.shape[1] == 0:
            return None
        index = build_index(vectors[rows], rows, self.config.index, seed=self.config.train.seed)
        self._cache.setdefault("built_indexes", set()).add((space, platform))
        return index

    def save_built_indexes(self) -> list[str]:
        """Save the indexes built from the profiles (not read from the model version) into
        the model version's ``index/<space>/<platform>/``, so that the next reader (the
        server's online linker, the next ``crossrec link``) loads them instead of building
        them again. Erasure compacts them like the others. Returns what was saved."""
        import shutil

        if self.model_dir is None:
            return []
        saved = []
        for space, platform in sorted(self._cache.get("built_indexes", set())):
            index = self._cache.get(("index", space, platform))
            final = self.model_dir / "index" / space / platform
            if index is None or final.exists():
                continue
            tmp = final.with_name(f".{platform}.tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            index.save(tmp)
            tmp.replace(final)
            saved.append(f"{space}/{platform}")
        return saved

    def cached(self, key: Any, make: Any) -> Any:
        """A value derived from the context, computed once by ``make()`` and kept."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def _rows_for(matrix: sp.csr_matrix, have: np.ndarray, want: np.ndarray) -> sp.csr_matrix:
    """Rows of ``matrix`` (accounts ``have``, sorted) in the order of ``want``; empty rows for
    accounts the matrix lacks."""
    if len(have) == len(want) and np.array_equal(have, want):
        return matrix
    if len(have) == 0:
        return sp.csr_matrix((len(want), matrix.shape[1]), dtype=np.float32)
    pos = np.minimum(np.searchsorted(have, want), len(have) - 1)
    found = have[pos] == want
    out = sp.csr_matrix(sp.diags(found.astype(np.float32)) @ matrix[pos], dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _load_alignment(
    path: Path, interactions: dict[str, InteractionMatrix]
) -> dict[tuple[str, str], Alignment]:
    import pyarrow.parquet as pq

    if not path.is_file():
        return {}
    table = pq.read_table(path)
    out: dict[tuple[str, str], Alignment] = {}
    if table.num_rows == 0:
        return out
    pairs = table.group_by(["platform", "other_platform"]).aggregate([]).to_pylist()
    for pair in pairs:
        a, b = pair["platform"], pair["other_platform"]
        if a not in interactions or b not in interactions:
            continue
        mask = pc.and_(pc.equal(table["platform"], a), pc.equal(table["other_platform"], b))
        sub = table.filter(mask)
        items_a, items_b = interactions[a].items, interactions[b].items
        col_a = _positions(sub["item"], items_a)
        col_b = _positions(sub["other_item"], items_b)
        rank = sub["rank"].to_numpy().astype(np.int64)
        sim = sub["similarity"].to_numpy().astype(np.float32)
        k = int(rank.max()) if len(rank) else 0
        ok = (col_a >= 0) & (col_b >= 0) & (rank >= 1)
        neighbours = np.full((len(items_a), k), -1, np.int32)
        similarity = np.zeros((len(items_a), k), np.float32)
        neighbours[col_a[ok], rank[ok] - 1] = col_b[ok]
        similarity[col_a[ok], rank[ok] - 1] = sim[ok]
        out[(a, b)] = Alignment(neighbours, similarity, len(items_b))
    return out


def _positions(values: pa.ChunkedArray, sorted_keys: np.ndarray) -> np.ndarray:
    """Position of each value in ``sorted_keys``; -1 where absent. Shape (n,), int64."""
    pos = pc.index_in(values, value_set=pa.array(sorted_keys.astype(str)))
    return pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _active_days(ctx: LinkContext, store: Store) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr (n+1,), days int32) of the distinct UTC days of each account's events."""
    n = len(ctx)
    row_parts: list[np.ndarray] = []
    day_parts: list[np.ndarray] = []
    for platform in ctx.platforms:
        events = store.read("events", platform=platform, columns=["account", "ts"])
        events = events.filter(pc.is_valid(events["ts"]))
        if events.num_rows == 0:
            continue
        micros = pc.cast(pc.cast(events["ts"], pa.timestamp("us", tz="UTC")), pa.int64())
        day = np.floor_divide(micros.to_numpy(zero_copy_only=False), _DAY_MICROS)
        rows = ctx.rows(platform, events["account"].to_numpy(zero_copy_only=False))
        del events, micros
        ok = rows >= 0
        rows, day = rows[ok], day[ok]
        lo = int(day.min())
        span = int(day.max()) - lo + 1
        keys = np.unique(rows * span + (day - lo))  # one entry per (row, day), sorted
        row_parts.append(keys // span)
        day_parts.append((keys % span + lo).astype(np.int32))
    if not row_parts:
        return np.zeros(n + 1, np.int64), np.empty(0, np.int32)
    rows_all = np.concatenate(row_parts)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows_all, minlength=n), out=indptr[1:])
    # Platforms are read in row order, so the concatenation is already sorted by row.
    return indptr, np.concatenate(day_parts)


def _identifiers(ctx: LinkContext, table: pa.Table) -> sp.csr_matrix:
    n = len(ctx)
    if table.num_rows == 0:
        return sp.csr_matrix((n, 0), dtype=np.float32)
    key = pc.binary_join_element_wise(table["kind"], table["value"], "\x1f")
    codes = pc.dictionary_encode(key).combine_chunks()
    code = codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    platform = table["platform"].to_numpy(zero_copy_only=False).astype(str)
    account = table["account"].to_numpy(zero_copy_only=False).astype(str)
    rows = np.full(len(code), -1, np.int64)
    for p in np.unique(platform):
        mask = platform == p
        rows[mask] = ctx.rows(str(p), account[mask])
    ok = rows >= 0
    m = sp.csr_matrix(
        (np.ones(int(ok.sum()), np.float32), (rows[ok], code[ok])),
        shape=(n, len(codes.dictionary)),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _known_links(ctx: LinkContext, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    if table.num_rows == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    sides = []
    for side in ("a", "b"):
        platform = table[f"platform_{side}"].to_numpy(zero_copy_only=False).astype(str)
        account = table[f"account_{side}"].to_numpy(zero_copy_only=False).astype(str)
        rows = np.full(len(platform), -1, np.int64)
        for p in np.unique(platform):
            mask = platform == p
            rows[mask] = ctx.rows(str(p), account[mask])
        sides.append(rows)
    return _canonical_links(ctx, sides[0], sides[1])


def _canonical_links(
    ctx: LinkContext, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Known links as rows ``a < b`` on different platforms, sorted and unique."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ok = (a >= 0) & (b >= 0)
    a, b = a[ok], b[ok]
    ok = ctx.platform_code[a] != ctx.platform_code[b]
    lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
    keys = np.unique(lo * len(ctx) + hi)
    return keys // len(ctx), keys % len(ctx)
