"""The engine seam: every test runs on the local engine and (marked ``spark``) on Spark.

Each step must give the same arrays on both engines: top-k inside IVF lists, pair scoring,
mutual-best assignment (equal to ``link.assign.one_to_one``) and size-capped components
(equal to ``link.graph.components``), on random inputs full of ties.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from crossrec.engine import ivf
from crossrec.engine.base import Engine
from crossrec.engine.local import LocalEngine
from crossrec.errors import InputError
from crossrec.link.assign import one_to_one
from crossrec.link.graph import components

CHUNK = 64


@pytest.fixture(params=["local", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request: pytest.FixtureRequest) -> Engine:
    if request.param == "local":
        return LocalEngine(chunk_rows=CHUNK)
    from crossrec.engine.spark import SparkEngine

    spark_engine = SparkEngine(request.getfixturevalue("spark"), chunk_rows=CHUNK)
    request.addfinalizer(spark_engine.close)
    return spark_engine


def integer_vectors(n: int, d: int, seed: int) -> np.ndarray:
    """Small integer entries: every inner product is exact in float32, ties are real ties."""
    return np.random.default_rng(seed).integers(-2, 3, size=(n, d)).astype(np.float32)


def brute_force(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by score, ties to the smaller id (float64 scores: exact for integers)."""
    scores = queries.astype(np.float64) @ base.astype(np.float64).T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(scores, ids, axis=1).astype(np.float32)


def test_topk_is_exact_search_when_every_list_is_probed(engine: Engine) -> None:
    base = integer_vectors(300, 6, seed=1)
    base[150:200] = base[100:150]  # duplicate vectors: equal scores, the smaller id first
    queries = integer_vectors(130, 6, seed=2)
    got = engine.topk(queries, base, 7, n_lists=5, n_probe=5, seed=3)
    ids, scores = brute_force(queries, base, 7)
    np.testing.assert_array_equal(got.ids, ids)
    np.testing.assert_array_equal(got.scores, scores)


def test_topk_searches_only_the_probed_lists(engine: Engine) -> None:
    base = integer_vectors(400, 8, seed=4)
    queries = integer_vectors(150, 8, seed=5)
    k, n_lists, n_probe = 5, 6, 2
    got = engine.topk(queries, base, k, n_lists=n_lists, n_probe=n_probe, seed=9)
    # the reference: the same quantizer, then brute force over each query's probed lists
    centroids = ivf.train_quantizer(base, n_lists, 9)
    lists = np.concatenate(
        [ivf.nearest_lists(base[i : i + CHUNK], centroids, 1)[:, 0] for i in range(0, 400, CHUNK)]
    )
    probes = np.concatenate(
        [ivf.nearest_lists(queries[i : i + CHUNK], centroids, n_probe) for i in range(0, 150, 64)]
    )
    for row in range(len(queries)):
        allowed = np.flatnonzero(np.isin(lists, probes[row]))
        ids, scores = brute_force(queries[row : row + 1], base[allowed], k)
        found = ids.shape[1]
        np.testing.assert_array_equal(got.ids[row, :found], allowed[ids[0]])
        np.testing.assert_array_equal(got.scores[row, :found], scores[0])
        assert (got.ids[row, found:] == -1).all()


def test_topk_pads_short_lists_and_refuses_bad_input(engine: Engine) -> None:
    base = integer_vectors(3, 4, seed=6)
    got = engine.topk(integer_vectors(2, 4, seed=7), base, 5, n_lists=1, n_probe=1, seed=0)
    assert got.ids.shape == (2, 5)
    assert (got.ids[:, 3:] == -1).all() and np.isneginf(got.scores[:, 3:]).all()
    with pytest.raises(InputError, match="dims"):
        engine.topk(integer_vectors(2, 5, seed=7), base, 2, n_lists=1, n_probe=1, seed=0)
    with pytest.raises(InputError, match="NaN"):
        engine.topk(np.full((1, 4), np.nan), base, 2, n_lists=1, n_probe=1, seed=0)


@pytest.mark.spark
def test_topk_same_numbers_on_both_engines_with_float_vectors(spark) -> None:
    from crossrec.engine.spark import SparkEngine

    rng = np.random.default_rng(11)
    base = rng.standard_normal((700, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = rng.standard_normal((260, 16)).astype(np.float32)
    local = LocalEngine(chunk_rows=CHUNK).topk(queries, base, 10, n_lists=9, n_probe=3, seed=2)
    remote_engine = SparkEngine(spark, chunk_rows=CHUNK)
    try:
        remote = remote_engine.topk(queries, base, 10, n_lists=9, n_probe=3, seed=2)
    finally:
        remote_engine.close()
    np.testing.assert_array_equal(remote.ids, local.ids)
    np.testing.assert_array_equal(remote.scores, local.scores)


def make_scorer(width: int | None):
    """A fitted-matcher stand-in: a logistic model over features of both rows (picklable)."""
    rng = np.random.default_rng(3)
    table = rng.standard_normal((500, 3))
    weights = rng.standard_normal(6)

    class Scorer:
        def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            x = np.hstack([table[a], table[b]])
            p = 1.0 / (1.0 + np.exp(-(x @ weights)))
            return p if width is None else np.column_stack([p, x[:, 0] - x[:, 3]])

    return Scorer()


@pytest.mark.parametrize("width", [None, 2])
def test_score_pairs_equals_the_scorer_on_all_pairs(engine: Engine, width: int | None) -> None:
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 500, 333), rng.integers(0, 500, 333)
    scorer = make_scorer(width)
    got = engine.score_pairs(a, b, scorer, width=width)
    np.testing.assert_array_equal(got, scorer(a, b))


def test_score_pairs_refuses_a_scorer_of_the_wrong_shape(engine: Engine) -> None:
    with pytest.raises(Exception, match="shape"):
        engine.score_pairs(np.arange(5), np.arange(5) + 1, make_scorer(2))


def random_pairs(seed: int, n: int = 400) -> tuple[np.ndarray, ...]:
    """Pairs over three platforms with tied scores, duplicate and reversed pairs."""
    rng = np.random.default_rng(seed)
    platform = np.array(["music", "shop", "video"])[rng.integers(0, 3, 120)]
    a = rng.integers(0, 120, n)
    b = rng.integers(0, 120, n)
    ok = platform[a] != platform[b]
    a, b = a[ok], b[ok]
    a = np.r_[a, b[:20], a[:10]]  # reversed and repeated pairs
    b = np.r_[b, a[:20], b[:10]]
    prob = rng.choice([0.1, 0.5, 0.5, 0.9, 0.0, -0.0], a.size)
    return a, b, prob, platform[a], platform[b]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_to_one_equals_mutual_best(engine: Engine, seed: int) -> None:
    a, b, prob, pa, pb = random_pairs(seed)
    got = engine.one_to_one(a, b, prob, pa, pb)
    np.testing.assert_array_equal(got, one_to_one(a, b, prob, pa, pb))
    assert got.any()


def test_one_to_one_refuses_what_assignment_refuses(engine: Engine) -> None:
    one, two = np.array(["video"]), np.array(["music"])
    with pytest.raises(InputError, match="NaN"):
        engine.one_to_one(np.r_[0], np.r_[1], np.r_[np.nan], one, two)
    with pytest.raises(InputError, match="same platform"):
        engine.one_to_one(np.r_[0], np.r_[1], np.r_[0.5], one, one)
    assert engine.one_to_one(*(np.zeros(0),) * 5).shape == (0,)


@pytest.mark.parametrize(("seed", "max_size"), [(0, 3), (1, 10), (2, 2)])
def test_components_equal_the_graph_module(engine: Engine, seed: int, max_size: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    a = rng.integers(0, n, 180)
    b = rng.integers(0, n, 180)
    chain = np.arange(200, 240)  # a long chain: many rounds of propagation without jumps
    a, b = np.r_[a, chain[:-1], 5, 5], np.r_[b, chain[1:], 5, 7]  # with a self-link, a repeat
    got = engine.components(n, a, b, max_size)
    want = components(n, a, b, max_size)
    np.testing.assert_array_equal(got.component, want.component)
    assert got.withheld == want.withheld


def test_components_without_edges(engine: Engine) -> None:
    got = engine.components(4, np.zeros(0, np.int64), np.zeros(0, np.int64), 2)
    np.testing.assert_array_equal(got.component, np.arange(4))
    with pytest.raises(InputError, match="outside"):
        engine.components(3, np.r_[0], np.r_[3], 2)


class World(NamedTuple):
    """A tiny synthetic world as the link job's steps see it: topic profiles per account."""

    video: np.ndarray  # (n_video, topics) float32, L2-normalised; rows 0..n_video-1
    music: np.ndarray  # (n_music, topics); rows n_video.. in the combined numbering
    known_a: np.ndarray  # combined rows of the known links' video accounts
    known_b: np.ndarray  # ... and of their music accounts


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic

    out = tmp_path_factory.mktemp("world")
    generate_synthetic(out, SyntheticConfig(accounts=300, events=6000, anchor_fraction=0.6, seed=5))
    profiles, rows = {}, {}
    topics: dict[str, int] = {}
    for platform in ("video", "music"):
        items = pq.read_table(out / platform / "items.parquet").to_pydict()
        topic_of = {
            item: topics.setdefault(str(category), len(topics))
            for item, category in zip(items["item"], items["category"], strict=True)
        }
        events = pq.read_table(out / platform / "events.parquet").to_pydict()
        accounts = sorted(set(events["account"]))
        rows[platform] = {a: i for i, a in enumerate(accounts)}
        counts = np.zeros((len(accounts), 32), np.float32)
        for account, item in zip(events["account"], events["item"], strict=True):
            counts[rows[platform][account], topic_of[item]] += 1
        profiles[platform] = counts / np.linalg.norm(counts, axis=1, keepdims=True)
    links = pv.read_csv(out / "known_links.csv").to_pydict()
    n_video = len(rows["video"])
    known_a = np.array([rows["video"][a] for a in links["account_a"]])
    known_b = np.array([n_video + rows["music"][b] for b in links["account_b"]])
    return World(profiles["video"], profiles["music"], known_a, known_b)


def test_a_tiny_world_gives_the_same_candidates_links_and_persons(
    engine: Engine, world: World
) -> None:
    n_video = len(world.video)
    # candidates: each music account's 5 nearest video accounts by topic profile
    top = engine.topk(world.music, world.video, 5, n_lists=4, n_probe=2, seed=1)
    reference = LocalEngine(chunk_rows=CHUNK).topk(
        world.music, world.video, 5, n_lists=4, n_probe=2, seed=1
    )
    np.testing.assert_array_equal(top.ids, reference.ids)
    np.testing.assert_array_equal(top.scores, reference.scores)
    found = top.ids >= 0
    a = top.ids[found]
    b = n_video + np.nonzero(found)[0]
    # scoring: a picklable function of the pair rows (here the cosine, rounded: many ties)
    video, music = world.video, world.music

    def cosine(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
        return np.round(np.einsum("ij,ij->i", video[ra], music[rb - n_video]), 2)

    prob = engine.score_pairs(a, b, cosine)
    np.testing.assert_array_equal(prob, cosine(a, b))
    platform_a, platform_b = np.zeros(a.size, np.int64), np.ones(a.size, np.int64)
    kept = engine.one_to_one(a, b, prob, platform_a, platform_b)
    np.testing.assert_array_equal(kept, one_to_one(a, b, prob, platform_a, platform_b))
    assert 0 < kept.sum() < a.size
    edges_a = np.r_[a[kept], world.known_a]
    edges_b = np.r_[b[kept], world.known_b]
    persons = engine.components(n_video + len(music), edges_a, edges_b, 3)
    want = components(n_video + len(music), edges_a, edges_b, 3)
    np.testing.assert_array_equal(persons.component, want.component)
    assert persons.withheld == want.withheld
