"""Vector index behind one interface: exact search (the reference) and faiss HNSW (approximate).

Both indexes score by cosine similarity: vectors and queries are L2-normalised and compared by
inner product (a zero vector scores 0 against everything). Ids are any 1-D array of integers
or strings (account pseudonyms, item ids); the index keeps its own map from ids to faiss
positions, so ``remove`` and ``upsert`` work for both kinds of index.

Removal marks positions as deleted and searches skip them through a faiss id selector; when
more than half of the positions are deleted the index is rebuilt from the live vectors
(``compact``). HNSW cannot delete graph nodes, so this is how it supports online updates.

The approximate index is measured, not trusted: :func:`build_index` computes recall@10 against
exact search on a seeded sample of held-out queries and keeps it in
``metadata["recall_at_10"]``.

faiss is imported inside the functions that use it, so ``import crossrec.index`` is cheap.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from crossrec.config import IndexConfig
from crossrec.errors import InputError, ModelError, NotFoundError

_FORMAT = 1
_META_FILE = "index.json"
_FAISS_FILE = "index.faiss"
#: Rebuild from the live vectors when this fraction of positions is deleted.
_COMPACT_AT = 0.5


class VectorIndex(ABC):
    """Cosine-similarity search over vectors with ids; exact and approximate share it.

    Subclasses provide the faiss index (``_new_faiss``) and its search parameters
    (``_search_params``); adding, removing, searching and saving are shared.

    Attributes
    ----------
    dim : int
        Vector dimension.
    metadata : dict
        JSON-serialisable facts about the index (kind, parameters, ``recall_at_10``).
    """

    kind: ClassVar[str]

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise InputError(f"vector dimension must be >= 1, got {dim}")
        self.dim = int(dim)
        self.metadata: dict[str, Any] = {}
        self._faiss: Any = self._new_faiss()
        self._ids: np.ndarray = np.empty(0, dtype=np.int64)  # faiss position -> id
        self._live: np.ndarray = np.empty(0, dtype=bool)  # faiss position -> not deleted
        # Live id -> faiss position; built on first need (a bulk build never needs it).
        self._position: dict[Any, int] | None = None
        self._n_live = 0

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _new_faiss(self) -> Any:
        """An empty faiss index of dimension ``self.dim`` with inner-product metric."""

    @abstractmethod
    def _search_params(self, selector: Any) -> Any:
        """faiss ``SearchParameters`` (``selector`` may be None)."""

    # -- size --------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of live (not removed) vectors."""
        return self._n_live

    def __contains__(self, id_: object) -> bool:
        return _key(id_) in self._positions()

    def _positions(self) -> dict[Any, int]:
        if self._position is None:
            live = np.flatnonzero(self._live)
            self._position = dict(zip(self._ids[live].tolist(), live.tolist(), strict=True))
        return self._position

    @property
    def ids(self) -> np.ndarray:
        """Live ids in insertion order, shape (len(self),)."""
        return self._ids[self._live]

    # -- writes ------------------------------------------------------------------------------
    def build(self, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """Replace the contents with ``vectors`` (n, dim) and their ``ids`` (n,)."""
        self._reset()
        return self.add(vectors, ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """Add new vectors.

        Parameters
        ----------
        vectors : np.ndarray, shape (n, dim)
        ids : np.ndarray, shape (n,), int or str
            Not yet in the index (use :meth:`upsert` to replace vectors).

        Returns
        -------
        VectorIndex
            ``self``.
        """
        return self._add(self._check_vectors(vectors, "vectors"), _check_ids(ids, len(vectors)))

    def _add(self, x: np.ndarray, new_ids: np.ndarray) -> VectorIndex:
        """Add normalised vectors ``x`` under checked, mutually unique ``new_ids``."""
        start = len(self._ids)
        if start and len(new_ids):
            if new_ids.dtype.kind != self._ids.dtype.kind:
                raise InputError(
                    f"ids are {_kind_name(new_ids)} but the index holds {_kind_name(self._ids)} ids"
                )
            positions = self._positions()
            present = [i for i in new_ids.tolist() if i in positions]
            if present:
                raise InputError(
                    f"{len(present)} id(s) already in the index, e.g. {present[0]!r}",
                    hint="use upsert() to replace their vectors",
                )
        with self._add_threads():
            self._faiss.add(x)
        self._ids = np.concatenate([self._ids, new_ids]) if start else new_ids.copy()
        self._live = np.concatenate([self._live, np.ones(len(x), dtype=bool)])
        self._n_live += len(new_ids)
        if self._position is not None:
            self._position.update(zip(new_ids.tolist(), range(start, start + len(x)), strict=True))
        return self

    def remove(self, ids: np.ndarray, *, missing_ok: bool = False) -> int:
        """Remove vectors by id; returns how many were removed.

        Raises :class:`NotFoundError` for an id that is not in the index unless
        ``missing_ok``.
        """
        keys = [_key(i) for i in np.atleast_1d(np.asarray(ids)).tolist()]
        positions = self._positions()
        missing = [k for k in keys if k not in positions]
        if missing and not missing_ok:
            raise NotFoundError(
                f"{len(missing)} id(s) not in the index, e.g. {missing[0]!r}",
                hint="pass missing_ok=True to ignore ids that are absent",
            )
        removed = 0
        for k in keys:
            pos = positions.pop(k, None)
            if pos is not None:
                self._live[pos] = False
                removed += 1
        self._n_live -= removed
        if removed and (len(self._live) - len(self)) > _COMPACT_AT * len(self._live):
            self.compact()
        return removed

    def upsert(self, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """Add vectors, replacing those of ids already present."""
        x = self._check_vectors(vectors, "vectors")
        new_ids = _check_ids(ids, len(x))
        self.remove(new_ids, missing_ok=True)
        return self._add(x, new_ids)

    def compact(self) -> None:
        """Rebuild the faiss index from the live vectors, dropping removed positions."""
        live = np.flatnonzero(self._live)
        vectors = self._faiss.reconstruct_n(0, len(self._ids))[live] if len(live) else None
        ids = self._ids[live]
        self._reset()
        if vectors is not None:
            self._add(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def erase(self, ids: np.ndarray, *, relabel: np.ndarray | None = None) -> int:
        """Remove vectors for good: unlike :meth:`remove`, the index is always compacted, so
        neither the faiss structure nor a saved file keeps them. Absent ids are ignored.

        Parameters
        ----------
        ids : np.ndarray, shape (e,)
        relabel : np.ndarray, shape (m,), int, optional
            For integer ids: the new id of each old id (``relabel[old]``), e.g. the row map of
            :meth:`crossrec.represent.profiles.AccountProfiles.erase` when the ids are profile
            rows that moved up.

        Returns
        -------
        int
            Vectors removed.
        """
        removed = self.remove(ids, missing_ok=True)
        if len(self._live) > len(self):  # remove() may have compacted already
            self.compact()
        if relabel is not None and len(self._ids):
            if self._ids.dtype.kind not in "iu":
                raise InputError("relabel applies to integer ids only")
            new = np.asarray(relabel, dtype=np.int64)[self._ids]
            if (new < 0).any():
                raise InputError("relabel maps a live id to a negative id; erase it instead")
            self._ids, self._position = new, None
        return removed

    def _reset(self) -> None:
        self._faiss = self._new_faiss()
        self._ids = np.empty(0, dtype=np.int64)
        self._live = np.empty(0, dtype=bool)
        self._position = None
        self._n_live = 0

    @contextmanager
    def _add_threads(self) -> Any:
        """Threads used while adding; HNSW overrides it to build deterministically."""
        yield

    # -- search ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar live vectors of each query.

        Parameters
        ----------
        queries : np.ndarray, shape (n, dim) or (dim,)
        k : int
            At least 1. Capped at ``len(self)``.

        Returns
        -------
        scores : np.ndarray, shape (n, k'), float32
            Cosine similarities, best first; ``k' = min(k, len(self))``.
        ids : np.ndarray, shape (n, k'), the ids' dtype
            Where an approximate index finds fewer than ``k'`` vectors, the rest are ``-1``
            (integer ids) or ``""`` (string ids) with score ``-inf``.
        """
        faiss = _import_faiss()

        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        q = self._check_vectors(np.atleast_2d(queries), "queries")
        kk = min(int(k), len(self))
        if kk == 0 or len(q) == 0:
            return np.empty((len(q), kk), np.float32), np.empty((len(q), kk), self._ids.dtype)
        selector, bitmap = None, None
        if len(self) < len(self._live):
            bitmap = np.packbits(self._live, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(self._live), faiss.swig_ptr(bitmap))
        scores, positions = self._faiss.search(q, kk, params=self._search_params(selector))
        del bitmap  # faiss read it through a raw pointer; keep it alive until here
        found = positions >= 0
        out_ids = np.full(
            positions.shape, -1 if self._ids.dtype.kind in "iu" else "", self._ids.dtype
        )
        out_ids[found] = self._ids[positions[found]]
        scores = np.where(found, scores, -np.inf).astype(np.float32)
        return scores, out_ids

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``index.faiss`` (faiss binary), ``ids.npy``, ``live.npy`` and ``index.json``."""
        faiss = _import_faiss()

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._faiss, str(path / _FAISS_FILE))
        np.save(path / "ids.npy", self._ids)
        np.save(path / "live.npy", self._live)
        meta = {
            "format": _FORMAT,
            "kind": self.kind,
            "dim": self.dim,
            "count": len(self),
            **self._params(),
            "metadata": self.metadata,
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), "utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> VectorIndex:
        """Read an index written by :meth:`save`; ``VectorIndex.load`` accepts either kind."""
        index = load_index(directory)
        if not isinstance(index, cls):
            raise ModelError(
                f"{directory}: holds a {index.kind} index, not {cls.kind}",
                hint="load it with VectorIndex.load or load_index",
            )
        return index

    def _params(self) -> dict[str, Any]:
        return {}

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"{what} must have shape (n, {self.dim}), got {x.shape}")
        if x.dtype.kind not in "fiu":
            raise InputError(f"{what} must be numeric, got dtype {x.dtype}")
        x = np.array(x, dtype=np.float32, order="C", copy=True)
        if not np.all(np.isfinite(x)):
            raise InputError(f"{what} contain NaN or infinite values")
        # faiss's own normalisation (zero rows stay zero), so that ExactIndex gives exactly
        # what IndexFlatIP gives on faiss-normalised vectors, near-ties included.
        _import_faiss().normalize_L2(x)
        return x


class ExactIndex(VectorIndex):
    """Exact cosine search (faiss ``IndexFlatIP``): the reference ANN indexes are measured by."""

    kind = "exact"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.metadata = {"kind": self.kind, "recall_at_10": 1.0}

    def _new_faiss(self) -> Any:
        faiss = _import_faiss()

        return faiss.IndexFlatIP(self.dim)

    def _search_params(self, selector: Any) -> Any:
        faiss = _import_faiss()

        return None if selector is None else faiss.SearchParameters(sel=selector)


class HNSWIndex(VectorIndex):
    """Approximate cosine search with a faiss HNSW graph (``IndexHNSWFlat``, inner product).

    Parameters
    ----------
    dim : int
    m : int
        Graph neighbours per node (``hnsw_m``).
    ef_construction, ef_search : int
        Candidate list sizes while building and searching; larger is slower and more exact.
    build_threads : int
        Threads used to insert vectors. One (default) gives the same graph for the same
        vectors in the same order; more is faster but the graph depends on thread timing.
        Searches always use every core.
    """

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        *,
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        build_threads: int = 1,
    ) -> None:
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        self.build_threads = int(build_threads)
        super().__init__(dim)
        self.metadata = {"kind": self.kind, "recall_at_10": None}

    @classmethod
    def from_config(cls, dim: int, config: IndexConfig, *, build_threads: int = 1) -> HNSWIndex:
        return cls(
            dim,
            m=config.hnsw_m,
            ef_construction=config.ef_construction,
            ef_search=config.ef_search,
            build_threads=build_threads,
        )

    def _new_faiss(self) -> Any:
        faiss = _import_faiss()

        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _search_params(self, selector: Any) -> Any:
        faiss = _import_faiss()

        # Parameters passed to search override the index's own, so efSearch goes here too.
        if selector is None:
            return faiss.SearchParametersHNSW(efSearch=self.ef_search)
        return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)

    @contextmanager
    def _add_threads(self) -> Any:
        faiss = _import_faiss()

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.build_threads if self.build_threads > 0 else before)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)

    def _params(self) -> dict[str, Any]:
        return {
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "build_threads": self.build_threads,
        }


def load_index(directory: str | Path) -> VectorIndex:
    """Read an index written by :meth:`VectorIndex.save` (no pickles)."""
    faiss = _import_faiss()

    path = Path(directory)
    try:
        meta = json.loads((path / _META_FILE).read_text("utf-8"))
        ids = np.load(path / "ids.npy", allow_pickle=False)
        live = np.load(path / "live.npy", allow_pickle=False)
        raw = faiss.read_index(str(path / _FAISS_FILE))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(
            f"{path}: cannot read the vector index: {exc}", hint="rebuild the index"
        ) from None
    if meta.get("format") != _FORMAT or meta.get("kind") not in ("exact", "hnsw"):
        raise ModelError(f"{path}: unknown index format or kind in {_META_FILE}")
    index: VectorIndex
    if meta["kind"] == "exact":
        index = ExactIndex(meta["dim"])
    else:
        index = HNSWIndex(
            meta["dim"],
            m=meta["m"],
            ef_construction=meta["ef_construction"],
            ef_search=meta["ef_search"],
            build_threads=meta["build_threads"],
        )
    if raw.ntotal != len(ids) or len(live) != len(ids) or raw.d != index.dim:
        raise ModelError(f"{path}: index.faiss, ids.npy and live.npy disagree; rebuild the index")
    index._faiss, index._ids, index._live = raw, ids, live
    index._position, index._n_live = None, int(live.sum())
    index.metadata = meta.get("metadata", {})
    return index


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    config: IndexConfig | None = None,
    *,
    seed: int = 0,
    build_threads: int = 1,
) -> VectorIndex:
    """Build the index that suits the collection and report its quality.

    Up to ``config.exact_max`` vectors use :class:`ExactIndex`. Above that an
    :class:`HNSWIndex` is built and its recall@10 against exact search is measured on held-out
    queries: ``config.recall_sample`` vectors (at most a tenth of them) drawn with ``seed`` are
    left out of the graph, used as queries against the rest, then inserted last. Held-out
    queries are what the index will face (vectors from another platform); querying with
    vectors already in the graph would overstate recall, since HNSW stores each node's
    neighbours.

    Parameters
    ----------
    vectors : np.ndarray, shape (n, dim)
    ids : np.ndarray, shape (n,), int or str, unique
    config : IndexConfig, optional
        Defaults to ``IndexConfig()``.
    seed : int
        Seeds the recall sample.
    build_threads : int
        Threads for HNSW insertion (1: deterministic graph).

    Returns
    -------
    VectorIndex
        ``metadata`` holds ``kind``, ``recall_at_10`` (1.0 for exact), ``recall_queries``,
        ``build_seconds`` / ``build_cpu_seconds`` (insertion only; CPU time of this process,
        which shared cores disturb less) and ``recall_seconds`` / ``recall_cpu_seconds``.
    """
    config = config or IndexConfig()
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise InputError(f"vectors must have shape (n, dim), got {x.shape}")
    ids = _check_ids(ids, len(x))
    clock = _Clock()
    index: VectorIndex
    if len(x) <= config.exact_max:
        index = ExactIndex(x.shape[1]).build(x, ids)
        index.metadata.update(clock.lap("build"))
        return index
    rng = np.random.default_rng(seed)
    sample = min(config.recall_sample, max(1, len(x) // 10))
    held = np.zeros(len(x), dtype=bool)
    held[rng.choice(len(x), size=sample, replace=False)] = True
    index = HNSWIndex.from_config(x.shape[1], config, build_threads=build_threads)
    index.build(x[~held], ids[~held])
    build = clock.lap("build")
    recall = measure_recall(index, x[~held], ids[~held], x[held])
    recall.update(clock.lap("recall"))
    index.add(x[held], ids[held])
    for key, value in clock.lap("build").items():
        build[key] = round(build[key] + value, 3)
    index.metadata.update(build)
    index.metadata.update(recall)
    return index


def measure_recall(
    index: VectorIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    *,
    k: int = 10,
) -> dict[str, Any]:
    """Recall@k of ``index`` against exact search over ``vectors``.

    Parameters
    ----------
    index : VectorIndex
        Holds exactly ``vectors`` under ``ids``.
    vectors : np.ndarray, shape (n, dim)
    ids : np.ndarray, shape (n,)
    queries : np.ndarray, shape (q, dim)
    k : int

    Returns
    -------
    dict
        ``recall_at_{k}``: the share of each query's exact top ``k`` that ``index`` returns in
        its top ``k``, averaged (float in [0, 1]); ``recall_queries``: ``q``.
    """
    exact = ExactIndex(index.dim).build(vectors, ids)
    _, truth = exact.search(queries, k)
    _, found = index.search(queries, k)
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
    return {f"recall_at_{k}": round(hits / max(1, truth.size), 4), "recall_queries": len(queries)}


class _Clock:
    """Wall and CPU time since the previous lap."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = {
            f"{name}_seconds": round(wall - self._wall, 3),
            f"{name}_cpu_seconds": round(cpu - self._cpu, 3),
        }
        self._wall, self._cpu = wall, cpu
        return out


def _import_faiss() -> Any:
    """The faiss module, imported on first use (its type stubs miss the search parameters)."""
    import faiss

    return faiss


def _check_ids(ids: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.dtype == object:
        if not all(isinstance(i, str) for i in arr.tolist()):
            raise InputError("ids must be all integers or all strings")
        arr = arr.astype(str)
    if arr.ndim != 1 or len(arr) != n:
        raise InputError(f"ids must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind != "U":
        raise InputError(f"ids must be integers or strings, got dtype {arr.dtype}")
    if len(np.unique(arr)) != len(arr):
        raise InputError("ids must be unique", hint="deduplicate the ids before indexing")
    return arr


def _key(id_: object) -> object:
    """Dictionary key of an id as ``tolist()`` yields it (numpy scalars become Python)."""
    return id_.item() if isinstance(id_, np.generic) else id_


def _kind_name(arr: np.ndarray) -> str:
    return "integer" if arr.dtype.kind in "iu" else "string"
