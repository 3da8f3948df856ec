"""Vector index: exact search is the reference, HNSW is measured against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossrec.config import IndexConfig
from crossrec.errors import InputError, ModelError, NotFoundError
from crossrec.index import (
    NPROBE_STEPS,
    ExactIndex,
    HNSWIndex,
    IVFIndex,
    VectorIndex,
    build_index,
    exact_top_k,
    ivf_lists,
    load_index,
)


def random_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ v.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, top, axis=1), top


@pytest.fixture(scope="module")
def hnsw_data() -> tuple[np.ndarray, np.ndarray, VectorIndex]:
    vectors = random_vectors(4000, 32, seed=1)
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 7
    config = IndexConfig(exact_max=1000, recall_sample=300)
    return vectors, ids, build_index(vectors, ids, config, seed=5)


def test_exact_search_equals_brute_force() -> None:
    vectors, queries = random_vectors(500), random_vectors(20, seed=9)
    ids = np.arange(500) + 1000
    scores, found = ExactIndex(16).build(vectors, ids).search(queries, 10)
    want_scores, want_rows = brute_force(vectors, queries, 10)
    assert scores.shape == (20, 10) and scores.dtype == np.float32
    np.testing.assert_array_equal(found, ids[want_rows])
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_string_ids_and_single_query() -> None:
    vectors = random_vectors(50)
    ids = np.array([f"acct-{i:03d}" for i in range(50)])
    index = ExactIndex(16).build(vectors, ids)
    scores, found = index.search(vectors[7], 3)
    assert found.shape == (1, 3) and found[0, 0] == "acct-007"
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert "acct-007" in index and len(index) == 50


def test_k_is_capped_at_the_number_of_vectors() -> None:
    index = ExactIndex(16).build(random_vectors(4), np.arange(4))
    _, found = index.search(random_vectors(2, seed=3), 10)
    assert found.shape == (2, 4) and set(found[0]) == {0, 1, 2, 3}


def test_build_index_uses_exact_up_to_exact_max() -> None:
    index = build_index(random_vectors(100), np.arange(100), IndexConfig(exact_max=100))
    assert isinstance(index, ExactIndex) and index.metadata["recall_at_10"] == 1.0


def test_hnsw_recall_is_measured_and_high(
    hnsw_data: tuple[np.ndarray, np.ndarray, VectorIndex],
) -> None:
    vectors, ids, index = hnsw_data
    assert isinstance(index, HNSWIndex)
    assert len(index) == len(vectors) and set(index.ids.tolist()) == set(ids.tolist())
    assert index.metadata["recall_queries"] == 300
    assert index.metadata["recall_at_10"] >= 0.9
    # The reported figure is what a caller measures independently.
    queries = random_vectors(200, 32, seed=77)
    _, truth_rows = brute_force(vectors, queries, 10)
    _, found = index.search(queries, 10)
    recall = np.mean(
        [len(set(ids[t]) & set(f)) / 10 for t, f in zip(truth_rows, found, strict=True)]
    )
    assert recall >= 0.9


def test_hnsw_build_is_deterministic(hnsw_data: tuple[np.ndarray, np.ndarray, VectorIndex]) -> None:
    vectors, ids, index = hnsw_data
    again = build_index(vectors, ids, IndexConfig(exact_max=1000, recall_sample=300), seed=5)
    queries = random_vectors(50, 32, seed=4)
    np.testing.assert_array_equal(again.search(queries, 10)[1], index.search(queries, 10)[1])
    assert again.metadata["recall_at_10"] == index.metadata["recall_at_10"]


def _index(kind: str, **hnsw: int) -> VectorIndex:
    if kind == "ivf":
        return IVFIndex(16, n_lists=4, nprobe=4)  # every list probed: exact answers
    return ExactIndex(16) if kind == "exact" else HNSWIndex(16, m=8, **hnsw)


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_remove_and_upsert(kind: str) -> None:
    vectors = random_vectors(300)
    ids = np.arange(300)
    index = _index(kind)
    index.build(vectors, ids)
    index.remove(np.array([5, 6]))
    assert len(index) == 298 and 5 not in index
    _, found = index.search(vectors[[5, 6]], 10)
    assert not {5, 6} & set(found.ravel().tolist())
    with pytest.raises(NotFoundError):
        index.remove(np.array([5]))
    assert index.remove(np.array([5, 7]), missing_ok=True) == 1
    # Upsert moves id 8 to the vector of id 100 and brings back id 5.
    index.upsert(vectors[[100, 5]], np.array([8, 5]))
    _, found = index.search(vectors[100], 2)
    assert set(found[0].tolist()) == {8, 100}
    _, found = index.search(vectors[5], 1)
    assert found[0, 0] == 5
    with pytest.raises(InputError, match="upsert"):
        index.add(vectors[:1], np.array([8]))


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_removing_most_vectors_compacts(kind: str) -> None:
    vectors = random_vectors(200)
    index = _index(kind)
    index.build(vectors, np.arange(200))
    index.remove(np.arange(150))
    assert len(index) == 50 and len(index._ids) == 50  # rebuilt without the dead positions
    scores, found = index.search(vectors[160], 1)
    assert found[0, 0] == 160 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    vectors = random_vectors(400)
    ids = np.array([f"a{i}" for i in range(400)])
    index = _index(kind, ef_search=64)
    index.build(vectors, ids)
    index.remove(np.array(["a3"]))
    index.metadata["note"] = "kept"
    index.save(tmp_path)
    assert (tmp_path / "index.faiss").exists() and (tmp_path / "ids.npy").exists()
    loaded = load_index(tmp_path)
    assert type(loaded) is type(index) and len(loaded) == 399
    assert type(VectorIndex.load(tmp_path)) is type(index)
    other = HNSWIndex if kind == "exact" else ExactIndex
    with pytest.raises(ModelError, match="holds"):
        other.load(tmp_path)
    assert loaded.metadata["note"] == "kept"
    queries = random_vectors(30, seed=8)
    for a, b in zip(loaded.search(queries, 5), index.search(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    if isinstance(loaded, HNSWIndex):
        assert (loaded.m, loaded.ef_search) == (8, 64)
    if isinstance(loaded, IVFIndex):
        assert (loaded.n_lists, loaded.nprobe) == (4, 4)


def test_bad_inputs_are_refused() -> None:
    index = ExactIndex(16).build(random_vectors(10), np.arange(10))
    with pytest.raises(InputError, match="shape"):
        index.search(random_vectors(2, dim=8), 3)
    with pytest.raises(InputError, match="unique"):
        ExactIndex(16).build(random_vectors(2), np.array([1, 1]))
    with pytest.raises(InputError, match="NaN"):
        index.add(np.full((1, 16), np.nan), np.array([99]))
    with pytest.raises(InputError, match="string"):
        index.add(random_vectors(1), np.array(["x"]))
    with pytest.raises(InputError, match="k must be"):
        index.search(random_vectors(1), 0)


def clustered(n: int, dim: int = 16, clusters: int = 60, seed: int = 0) -> np.ndarray:
    """Embeddings-like vectors: cluster centres plus noise (seeded)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def ivf_data() -> tuple[np.ndarray, np.ndarray, VectorIndex]:
    vectors = clustered(8000)
    ids = np.arange(len(vectors), dtype=np.int64) * 2 + 1
    config = IndexConfig(exact_max=1000, ivf_min=5000, recall_sample=400, recall_k=20)
    return vectors, ids, build_index(vectors, ids, config, seed=11)


def test_ivf_nprobe_is_the_fewest_lists_that_reach_the_target_recall(
    ivf_data: tuple[np.ndarray, np.ndarray, VectorIndex],
) -> None:
    vectors, ids, index = ivf_data
    assert isinstance(index, IVFIndex) and index.metadata["kind"] == "ivf"
    assert len(index) == len(vectors) and index.n_lists == ivf_lists(len(vectors) - 400)
    meta = index.metadata
    tried = {int(k): v for k, v in meta["nprobe_recall"].items()}
    # the stored nprobe is the first of the steps that reached 0.95; the ones before did not
    assert meta["nprobe"] == index.nprobe == max(tried)
    assert tried[index.nprobe] == meta["recall_at_20"] >= 0.95
    assert all(r < 0.95 for p, r in tried.items() if p < index.nprobe)
    assert list(tried) == [p for p in NPROBE_STEPS if p <= index.nprobe][: len(tried)]
    assert index.nprobe < index.n_lists  # the point of IVF: not every list
    # the reported figure holds for queries the index has never seen (noisy copies)
    rng = np.random.default_rng(5)
    queries = vectors[rng.choice(len(vectors), 300)] + 0.3 * rng.standard_normal((300, 16))
    truth = ids[exact_top_k(vectors, queries, 20)]
    _, found = index.search(queries, 20)
    recall = np.mean([len(set(t) & set(f)) / 20 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.93


def test_ivf_build_is_deterministic(ivf_data: tuple[np.ndarray, np.ndarray, VectorIndex]) -> None:
    import faiss

    vectors, ids, index = ivf_data
    config = IndexConfig(exact_max=1000, ivf_min=5000, recall_sample=400, recall_k=20)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # training and search on one thread give the same index
    try:
        again = build_index(vectors, ids, config, seed=11)
    finally:
        faiss.omp_set_num_threads(before)
    queries = clustered(200, seed=3)
    for x, y in zip(again.search(queries, 20), index.search(queries, 20), strict=True):
        np.testing.assert_array_equal(x, y)
    assert again.metadata["nprobe_recall"] == index.metadata["nprobe_recall"]


def test_exact_top_k_in_chunks_equals_one_pass() -> None:
    vectors, queries = random_vectors(1000), random_vectors(30, seed=2)
    whole = exact_top_k(vectors, queries, 15)
    _, want = brute_force(vectors, queries, 15)
    np.testing.assert_array_equal(whole, want)
    np.testing.assert_array_equal(exact_top_k(vectors, queries, 15, chunk=97), whole)
    rows = np.arange(0, 1000, 3)
    np.testing.assert_array_equal(
        rows[exact_top_k(vectors, queries, 5, rows=rows)],
        rows[brute_force(vectors[rows], queries, 5)[1]],
    )


def test_ivf_refuses_too_few_training_vectors() -> None:
    with pytest.raises(InputError, match="training vectors"):
        IVFIndex(16, n_lists=50).build(random_vectors(20), np.arange(20))
