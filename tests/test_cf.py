"""Per-platform confidence matrix and collaborative filtering (implicit ALS / BPR)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from crossrec.config import TrainConfig
from crossrec.errors import InputError, ModelError, NotFoundError
from crossrec.represent.cf import CFModel
from crossrec.represent.interactions import InteractionMatrix, build_interactions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DOUBAN_BOOK = DATA / "douban-gadtcdr-book-music" / "douban_book" / "ratings.dat"


def checkerboard(n: int = 50, confidence: float = 2.0) -> sp.csr_matrix:
    """Even accounts liked even items, odd accounts odd items; account i's item i is held out.

    The held-out diagonal is the known answer: the one unseen item of the account's block.
    """
    dense = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        dense[i, i % 2 :: 2] = confidence
        dense[i, i] = 0.0
    return sp.csr_matrix(dense)


def events(rows: list[tuple[str, str, str, float | None]], platform: str = "shop") -> pa.Table:
    return pa.table(
        {
            "platform": [platform] * len(rows),
            "account": [r[0] for r in rows],
            "item": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "value": pa.array([r[3] for r in rows], pa.float64()),
            "seq": list(range(len(rows))),
        }
    )


# -- interactions ----------------------------------------------------------------------------


def test_matrix_has_sorted_index_maps_and_sums_repeats() -> None:
    table = events(
        [
            ("u2", "b", "view", None),
            ("u1", "c", "view", None),
            ("u2", "b", "view", None),
            ("u1", "a", "view", None),
        ]
    )
    m = build_interactions(table, TrainConfig())
    assert m.accounts.tolist() == ["u1", "u2"]
    assert m.items.tolist() == ["a", "b", "c"]
    assert m.matrix.dtype == np.float32 and m.matrix.has_sorted_indices
    assert m.matrix[m.account_index("u2"), m.item_index("b")] == pytest.approx(2.0)
    # Row order of the events does not change the result.
    shuffled = build_interactions(table.take([3, 1, 0, 2]), TrainConfig())
    assert (shuffled.matrix != m.matrix).nnz == 0


def test_purchase_counts_more_than_like_more_than_view() -> None:
    table = events(
        [
            ("u", "bought", "purchase", None),
            ("u", "liked", "like", None),
            ("u", "viewed", "view", None),
            ("u", "odd", "wishlist", None),
        ]
    )
    m = build_interactions(table, TrainConfig(default_event_weight=0.5))
    row = m.matrix.toarray()[0]
    bought, liked, viewed, odd = (m.item_index(i) for i in ("bought", "liked", "viewed", "odd"))
    assert row[bought] > row[liked] > row[viewed] > row[odd] == pytest.approx(0.5)


def test_values_raise_confidence_without_depending_on_their_scale() -> None:
    five_stars = [("u1", "a", "rating", 5.0), ("u1", "b", "rating", 1.0), ("u2", "a", "rating", 3)]
    m = build_interactions(events(five_stars), TrainConfig())
    assert m.matrix[0, m.item_index("a")] > m.matrix[0, m.item_index("b")]
    # The same ratings on a 0-100 scale on another platform give the same confidences.
    hundred = [(a, i, t, v * 20) for a, i, t, v in five_stars]
    scaled = build_interactions(events(hundred, "video"), TrainConfig())
    np.testing.assert_allclose(scaled.matrix.toarray(), m.matrix.toarray(), rtol=1e-6)
    # A huge value does not explode: 1000x the median multiplies the weight by < 9.
    big = build_interactions(
        events([("u", "a", "view", 1.0), ("u", "b", "view", 1000.0)]), TrainConfig()
    )
    assert big.matrix.max() < 9 * TrainConfig().event_weights["view"]


def test_events_of_two_platforms_are_refused() -> None:
    table = pa.concat_tables(
        [events([("u", "a", "view", None)], "shop"), events([("u", "a", "view", None)], "video")]
    )
    with pytest.raises(InputError, match="one interaction matrix per platform"):
        build_interactions(table, TrainConfig())


def test_negative_event_weight_is_refused() -> None:
    with pytest.raises(InputError, match="event weights"):
        build_interactions(
            events([("u", "a", "view", None)]), TrainConfig(event_weights={"view": -1.0})
        )


def test_encode_account_matches_matrix_row_and_skips_new_items(tmp_path: Path) -> None:
    rows = [("u1", "a", "purchase", 2.0), ("u1", "b", "view", None), ("u2", "b", "like", None)]
    m = build_interactions(events(rows), TrainConfig())
    cols, conf = m.encode_account(events([*rows[:2], ("u1", "zz-new", "view", None)]))
    assert cols.tolist() == [0, 1]
    np.testing.assert_allclose(conf, m.matrix[0].toarray()[0])
    with pytest.raises(NotFoundError):
        m.account_index("nobody")
    m.save(tmp_path)
    again = InteractionMatrix.load(tmp_path)
    assert again.accounts.tolist() == m.accounts.tolist()
    assert (again.matrix != m.matrix).nnz == 0
    assert again.weighting == m.weighting


# -- CF models ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "iterations"),
    [("als", 15), ("bpr", 100)],
)
def test_checkerboard_held_out_item_is_recommended_first(kind: str, iterations: int) -> None:
    matrix = checkerboard()
    model = CFModel(
        kind, factors=2, iterations=iterations, regularization=0.01, learning_rate=0.05, seed=3
    ).fit(matrix)
    for account in range(matrix.shape[0]):
        items, scores = model.recommend(account, k=5)
        assert items[0] == account
        assert not set(items) & set(matrix[account].indices)  # seen items are excluded
        assert np.all(np.diff(scores) <= 0)


def test_als_factor_shapes_and_dtype() -> None:
    model = CFModel("als", factors=4, iterations=3).fit(checkerboard(20))
    assert model.user_factors.shape == (20, 4) and model.item_factors.shape == (20, 4)
    assert model.user_factors.dtype == np.float32 and model.item_factors.dtype == np.float32


def test_bpr_runs_with_bias_column_and_folds_in() -> None:
    matrix = checkerboard()
    model = CFModel("bpr", factors=2, iterations=100, learning_rate=0.05, seed=1).fit(matrix)
    assert model.dim == 3 and model.user_factors.shape == (50, 3)
    np.testing.assert_array_equal(model.user_factors[:, -1], 1.0)
    vector = model.fold_in(matrix[6].indices, matrix[6].data)
    assert vector[-1] == 1.0
    items, _ = model.recommend(vector, k=1, seen=matrix[6].indices)
    assert items[0] == 6


def test_fold_in_reproduces_trained_vector_and_changes_nothing() -> None:
    matrix = checkerboard(40, confidence=3.0)
    model = CFModel("als", factors=4, iterations=15, regularization=0.05).fit(matrix)
    before = model.user_factors.copy()
    trained = before[7]
    vector = model.fold_in(matrix[7].indices, matrix[7].data)
    cosine = vector @ trained / (np.linalg.norm(vector) * np.linalg.norm(trained))
    assert cosine > 0.99
    assert np.linalg.norm(vector) == pytest.approx(np.linalg.norm(trained), rel=0.05)
    np.testing.assert_array_equal(model.user_factors, before)
    assert not model.fold_in(np.array([], dtype=np.int32), np.array([])).any()


def test_update_account_changes_only_that_account() -> None:
    matrix = checkerboard(30)
    model = CFModel("als", factors=2, iterations=10).fit(matrix)
    before = model.user_factors.copy()
    odd_items = np.arange(1, 30, 2)
    stored = model.update_account(4, odd_items, np.full(len(odd_items), 2.0))
    after = model.user_factors
    np.testing.assert_array_equal(np.delete(after, 4, axis=0), np.delete(before, 4, axis=0))
    np.testing.assert_array_equal(after[4], stored)
    assert set(model.seen(4)) == set(odd_items)
    # Account 4 now looks like an odd account: an even item comes first.
    assert model.recommend(4, k=1)[0][0] % 2 == 0
    model.update_account(30, odd_items[:3], np.full(3, 2.0))  # a new account is appended
    assert model.n_accounts == 31


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    matrix = checkerboard(30)
    model = CFModel(kind, factors=3, iterations=5, seed=5).fit(matrix)
    model.save(tmp_path)
    loaded = CFModel.load(tmp_path)
    assert (loaded.kind, loaded.factors, loaded.seed) == (kind, 3, 5)
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    for account in (0, 11):
        np.testing.assert_array_equal(loaded.seen(account), model.seen(account))
        np.testing.assert_array_equal(
            loaded.recommend(account, 5)[0], model.recommend(account, 5)[0]
        )
    np.testing.assert_allclose(
        loaded.fold_in(matrix[3].indices, matrix[3].data),
        model.fold_in(matrix[3].indices, matrix[3].data),
        rtol=1e-5,
    )


def test_save_keeps_online_updates(tmp_path: Path) -> None:
    model = CFModel("als", factors=2, iterations=3).fit(checkerboard(10))
    model.update_account(2, np.array([1, 3]), np.array([2.0, 2.0]))
    model.save(tmp_path)
    loaded = CFModel.load(tmp_path)
    assert loaded.seen(2).tolist() == [1, 3]
    assert loaded.seen(3).tolist() == model.seen(3).tolist()


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_same_seed_same_factors(kind: str) -> None:
    matrix = checkerboard(40)
    a = CFModel(kind, factors=4, iterations=5, seed=11).fit(matrix)
    b = CFModel(kind, factors=4, iterations=5, seed=11).fit(matrix)
    c = CFModel(kind, factors=4, iterations=5, seed=12).fit(matrix)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_from_config_and_errors() -> None:
    model = CFModel.from_config(TrainConfig(cf_model="bpr", factors=8, seed=3))
    assert (model.kind, model.factors, model.seed, model.num_threads) == ("bpr", 8, 3, 1)
    with pytest.raises(ModelError, match="not trained"):
        _ = model.user_factors
    with pytest.raises(ModelError, match="empty"):
        model.fit(sp.csr_matrix((3, 3), dtype=np.float32))
    with pytest.raises(InputError):
        CFModel("svd")  # type: ignore[arg-type]
    fitted = CFModel("als", factors=2, iterations=2).fit(checkerboard(10))
    with pytest.raises(InputError, match="outside"):
        fitted.recommend(10)
    with pytest.raises(InputError, match="shape"):
        fitted.recommend(np.ones(5))
    with pytest.raises(InputError, match="item indices"):
        fitted.fold_in(np.array([10]), np.array([1.0]))


@pytest.mark.skipif(not DOUBAN_BOOK.exists(), reason="shared Douban data not present")
def test_douban_book_als_beats_popularity() -> None:
    raw = np.loadtxt(DOUBAN_BOOK, dtype=np.int64)
    table = pa.table(
        {
            "platform": ["book"] * len(raw),
            "account": raw[:, 0].astype(str),
            "item": raw[:, 1].astype(str),
            "event_type": ["rating"] * len(raw),
            "value": raw[:, 2].astype(np.float64),
        }
    )
    interactions = build_interactions(table, TrainConfig())
    m = interactions.matrix
    assert m.shape == (len(np.unique(raw[:, 0])), len(np.unique(raw[:, 1])))
    # Hold out one seeded entry of every account with >= 5 items.
    rng = np.random.default_rng(0)
    keep = np.ones(m.nnz, dtype=bool)
    held: dict[int, int] = {}
    for u in range(m.shape[0]):
        lo, hi = m.indptr[u], m.indptr[u + 1]
        if hi - lo >= 5:
            j = int(rng.integers(lo, hi))
            keep[j] = False
            held[u] = int(m.indices[j])
    train = sp.csr_matrix((m.data * keep, m.indices, m.indptr), shape=m.shape)
    train.eliminate_zeros()
    model = CFModel("als", factors=32, iterations=10, seed=0).fit(train)
    popularity = np.bincount(train.indices, minlength=m.shape[1]).astype(np.float64)
    als_hits = pop_hits = 0
    for u, item in held.items():
        als_hits += item in model.recommend(u, k=10)[0]
        scores = popularity.copy()
        scores[model.seen(u)] = -1
        pop_hits += item in np.argsort(-scores, kind="stable")[:10]
    assert als_hits > 1.3 * pop_hits
