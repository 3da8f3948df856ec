"""Vector index behind one interface: exact search (the reference), faiss HNSW and IVF
(approximate).

Both indexes score by cosine similarity: vectors and queries are L2-normalised and compared by
inner product (a zero vector scores 0 against everything). Ids are any 1-D array of integers
or strings (account pseudonyms, item ids); the index keeps its own map from ids to faiss
positions, so ``remove`` and ``upsert`` work for both kinds of index.

Removal marks positions as deleted and searches skip them through a faiss id selector; when
more than half of the positions are deleted the index is rebuilt from the live vectors
(``compact``). HNSW cannot delete graph nodes, so this is how it supports online updates.

The approximate index is measured, not trusted: :func:`build_index` computes recall@k against
exact search on a seeded sample of held-out queries and keeps it in ``metadata`` (and an IVF
index's ``nprobe`` is chosen there for a target recall).

faiss is imported inside the functions that use it, so ``import crossrec.index`` is cheap.
"""

from __future__ import annotations

import json
import math
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


class IVFIndex(VectorIndex):
    """Approximate cosine search with a faiss inverted-file index (``IndexIVFFlat``, inner
    product): the collection is split into ``n_lists`` k-means cells and a query scores the
    vectors of its ``nprobe`` nearest cells exactly.

    Training is seeded (the sample of vectors k-means sees and k-means itself), and a search
    scores each query on one thread, so the same vectors give the same results on any number
    of cores. :func:`build_index` chooses ``nprobe`` for a target recall and stores it.

    Parameters
    ----------
    dim : int
    n_lists : int
        k-means cells (``4·√N`` in :func:`build_index`).
    nprobe : int
        Cells searched per query.
    seed : int
        Seeds the training sample and k-means.
    """

    kind = "ivf"
    #: Training vectors per cell at most (faiss warns below 39; more adds little).
    TRAIN_PER_LIST: ClassVar[int] = 64
    #: k-means iterations.
    TRAIN_ITERATIONS: ClassVar[int] = 20

    def __init__(self, dim: int, *, n_lists: int, nprobe: int = 16, seed: int = 0) -> None:
        if n_lists < 1 or nprobe < 1:
            raise InputError(f"n_lists and nprobe must be >= 1, got {n_lists} and {nprobe}")
        self.n_lists, self.nprobe, self.seed = int(n_lists), int(nprobe), int(seed)
        super().__init__(dim)
        self.metadata = {"kind": self.kind, "recall_at_10": None}

    def _new_faiss(self) -> Any:
        faiss = _import_faiss()

        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, self.n_lists, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = self.nprobe  # faiss's wrapper keeps the quantizer alive with the index
        return index

    def train(self, vectors: np.ndarray) -> IVFIndex:
        """Fit the cells on a seeded sample of ``vectors`` (n, dim), n >= ``n_lists``."""
        faiss = _import_faiss()

        x = self._check_vectors(vectors, "vectors")
        if len(x) < self.n_lists:
            raise InputError(
                f"an IVF index of {self.n_lists} lists needs at least as many training vectors, "
                f"got {len(x)}",
                hint="lower the number of lists or use an exact or HNSW index",
            )
        sample = min(len(x), self.TRAIN_PER_LIST * self.n_lists)
        rng = np.random.default_rng(self.seed)
        chosen = (
            np.sort(rng.choice(len(x), size=sample, replace=False)) if sample < len(x) else None
        )
        train_x = x if chosen is None else x[chosen]
        clustering = faiss.Clustering(self.dim, self.n_lists)
        clustering.seed = self.seed
        clustering.niter = self.TRAIN_ITERATIONS
        clustering.max_points_per_centroid = self.TRAIN_PER_LIST
        clustering.spherical = True
        clustering.train(train_x, self._faiss.quantizer)
        self._faiss.is_trained = True
        return self

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """Train on ``vectors`` (seeded) and hold them under ``ids``."""
        self._reset(keep_training=False)
        self.train(vectors)
        return self.add(vectors, ids)

    def _add(self, x: np.ndarray, new_ids: np.ndarray) -> VectorIndex:
        if not self._faiss.is_trained:
            raise ModelError(
                "this IVF index is not trained", hint="build() it, or train() it before add()"
            )
        return super()._add(x, new_ids)

    def _reset(self, keep_training: bool = True) -> None:
        # compaction and rebuilds keep the trained cells: only the vectors go
        if keep_training and getattr(self, "_faiss", None) is not None and self._faiss.is_trained:
            self._faiss.reset()
            self._ids = np.empty(0, dtype=np.int64)
            self._live = np.empty(0, dtype=bool)
            self._position = None
            self._n_live = 0
            return
        super()._reset()

    def compact(self) -> None:
        if len(self._ids):
            self._faiss.make_direct_map()
        super().compact()

    def _search_params(self, selector: Any) -> Any:
        faiss = _import_faiss()

        if selector is None:
            return faiss.SearchParametersIVF(nprobe=self.nprobe)
        return faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe)

    def _params(self) -> dict[str, Any]:
        return {"n_lists": self.n_lists, "nprobe": self.nprobe, "seed": self.seed}


def ivf_lists(n: int) -> int:
    """Cells of an IVF index over ``n`` vectors: ``4·√n`` (at least 1, at most n / 39 so
    that k-means has enough points per cell)."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


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
    if meta.get("format") != _FORMAT or meta.get("kind") not in ("exact", "hnsw", "ivf"):
        raise ModelError(f"{path}: unknown index format or kind in {_META_FILE}")
    index: VectorIndex
    if meta["kind"] == "exact":
        index = ExactIndex(meta["dim"])
    elif meta["kind"] == "ivf":
        index = IVFIndex(
            meta["dim"], n_lists=meta["n_lists"], nprobe=meta["nprobe"], seed=meta["seed"]
        )
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

    Up to ``config.exact_max`` vectors use :class:`ExactIndex`; from ``config.ivf_min`` on an
    :class:`IVFIndex` (``4·√N`` lists, seeded training) whose ``nprobe`` is the smallest that
    reaches ``config.ivf_target_recall``; in between an :class:`HNSWIndex`. An approximate
    index's recall against exact search is measured on held-out queries:
    ``config.recall_sample`` vectors (at most a tenth of them) drawn with ``seed`` are left
    out, used as queries against the rest, then added last. Held-out queries are what the
    index will face (vectors from another platform); querying with vectors already in the
    index would overstate recall (a vector finds itself; HNSW stores each node's neighbours).

    Parameters
    ----------
    vectors : np.ndarray, shape (n, dim)
    ids : np.ndarray, shape (n,), int or str, unique
    config : IndexConfig, optional
        Defaults to ``IndexConfig()``.
    seed : int
        Seeds the recall sample and the IVF training.
    build_threads : int
        Threads for HNSW insertion (1: deterministic graph).

    Returns
    -------
    VectorIndex
        ``metadata`` holds ``kind``, ``recall_at_10`` and ``recall_at_{recall_k}`` (1.0 for
        exact), ``recall_queries``, ``build_seconds`` / ``build_cpu_seconds`` (training and
        insertion; CPU time of this process, which shared cores disturb less) and
        ``recall_seconds`` / ``recall_cpu_seconds``; an IVF index also ``n_lists``,
        ``nprobe`` and ``nprobe_recall`` (recall at each ``nprobe`` tried).
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
    kept_x, kept_ids = x[~held], ids[~held]
    k = config.recall_k
    if len(x) >= config.ivf_min:
        ivf = IVFIndex(x.shape[1], n_lists=ivf_lists(len(kept_x)), seed=seed)
        ivf.train(kept_x)
        index = ivf.add(kept_x, kept_ids)
        build = clock.lap("build")
        recall = choose_nprobe(ivf, kept_x, x[held], k=k, target=config.ivf_target_recall)
    else:
        index = HNSWIndex.from_config(x.shape[1], config, build_threads=build_threads)
        index.build(kept_x, kept_ids)
        build = clock.lap("build")
        recall = measure_recall(index, kept_x, kept_ids, x[held], k=k)
        if k != 10:
            recall.update(measure_recall(index, kept_x, kept_ids, x[held], k=10))
    recall.update(clock.lap("recall"))
    index.add(x[held], ids[held])
    for key, value in clock.lap("build").items():
        build[key] = round(build[key] + value, 3)
    index.metadata.update(build)
    index.metadata.update(recall)
    return index


#: ``nprobe`` values :func:`choose_nprobe` tries, in order (each probes a superset of lists).
NPROBE_STEPS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def choose_nprobe(
    index: IVFIndex, vectors: np.ndarray, queries: np.ndarray, *, k: int, target: float
) -> dict[str, Any]:
    """Set ``index.nprobe`` to the smallest of :data:`NPROBE_STEPS` (or all lists) whose
    recall@k against exact search over ``vectors`` (what the index holds, in order) reaches
    ``target`` on ``queries``.

    Returns
    -------
    dict
        ``nprobe``, ``n_lists``, ``recall_at_{k}`` and ``recall_at_10`` at that ``nprobe``,
        ``recall_queries``, ``nprobe_recall`` (``{nprobe: recall@k}`` of each value tried).
    """
    truth = exact_top_k(vectors, queries, k)
    tried: dict[str, float] = {}
    steps = [p for p in NPROBE_STEPS if p < index.n_lists] + [index.n_lists]
    for nprobe in steps:
        index.nprobe = nprobe
        _, found = index.search(queries, k)
        tried[str(nprobe)] = _overlap(found, index.ids[truth])
        if tried[str(nprobe)] >= target:
            break
    _, found10 = index.search(queries, 10)
    return {
        "nprobe": index.nprobe,
        "n_lists": index.n_lists,
        f"recall_at_{k}": tried[str(index.nprobe)],
        "recall_at_10": _overlap(found10, index.ids[truth[:, :10]]),
        "recall_queries": len(queries),
        "nprobe_recall": tried,
    }


def exact_top_k(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    rows: np.ndarray | None = None,
    chunk: int = 262_144,
) -> np.ndarray:
    """Positions in ``vectors`` (or in ``rows``) of each query's ``k`` most cosine-similar
    rows, best first (exact, in chunks of ``chunk`` vectors so memory stays bounded at any
    size).

    Parameters
    ----------
    vectors : np.ndarray, shape (n, dim)
    queries : np.ndarray, shape (q, dim)
    k : int
    rows : np.ndarray of int, shape (r,), optional
        Search ``vectors[rows]`` only (without copying them whole); positions index ``rows``.

    Returns
    -------
    np.ndarray, shape (q, min(k, n)), int64
    """
    faiss = _import_faiss()

    q = np.array(np.atleast_2d(queries), dtype=np.float32, order="C", copy=True)
    faiss.normalize_L2(q)
    n = len(vectors) if rows is None else len(rows)
    kk = min(int(k), n)
    scores = np.empty((len(q), 0), np.float32)
    positions = np.empty((len(q), 0), np.int64)
    for start in range(0, n, chunk):
        block = (
            vectors[start : start + chunk] if rows is None else vectors[rows[start : start + chunk]]
        )
        part = np.array(block, dtype=np.float32, order="C", copy=True)
        faiss.normalize_L2(part)
        flat = faiss.IndexFlatIP(part.shape[1])
        flat.add(part)
        s, p = flat.search(q, min(kk, len(part)))
        scores = np.hstack([scores, s])
        positions = np.hstack([positions, p + start])
        # best first; a stable sort keeps ties in position order
        best = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        scores = np.take_along_axis(scores, best, axis=1)
        positions = np.take_along_axis(positions, best, axis=1)
    return positions


def _overlap(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of each row of ``truth`` found in the same row of ``found``, averaged."""
    if truth.size == 0:
        return 1.0
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
    return round(hits / truth.size, 4)


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
    truth = np.asarray(ids)[exact_top_k(vectors, queries, k)]
    _, found = index.search(queries, k)
    return {f"recall_at_{k}": _overlap(found, truth), "recall_queries": len(queries)}


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
