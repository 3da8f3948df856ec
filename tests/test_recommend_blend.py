"""Known answers for the recommender's blend, tuning and test-set builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from crossrec.datasets.holdout import build_holdout
from crossrec.errors import InputError
from crossrec.recommend.blend import (
    DEFAULT_WEIGHTS,
    BlendWeights,
    blend,
    make_example,
    ndcg,
    tune,
)
from crossrec.recommend.components import COMPONENTS, Query, standardise


def test_standardise_centres_and_scales_and_zeroes_constants() -> None:
    z = standardise(np.array([1.0, 2.0, 3.0]))
    assert z.mean() == pytest.approx(0.0)
    assert z.std() == pytest.approx(1.0)
    assert not standardise(np.full(4, 7.0)).any()


def test_blend_adds_weighted_standardised_scores_and_names_contributions() -> None:
    comps = {"own_cf": np.array([0.0, 1.0, 2.0]), "popularity": np.array([2.0, 1.0, 0.0])}
    total, parts, names = blend(comps, {"own_cf": 2.0, "popularity": 1.0, "linked_seq": 5.0})
    assert names == ["own_cf", "popularity"]  # linked_seq has no evidence: left out
    z = standardise(np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(total, 2 * z - z)
    assert int(np.argmax(total)) == 2
    np.testing.assert_allclose(parts.sum(axis=0), total)


def test_blend_without_weighted_evidence_falls_back_to_popularity() -> None:
    total, _, names = blend({"popularity": np.array([3.0, 1.0, 2.0])}, {"own_cf": 1.0})
    assert names == ["popularity"]
    assert list(np.argsort(-total)) == [0, 2, 1]


def test_ndcg_of_pooled_examples_known_answer() -> None:
    # One account, 3 items; own_cf ranks item 2 first, popularity ranks item 0 first.
    comps = {"own_cf": np.array([0.0, 1.0, 5.0]), "popularity": np.array([5.0, 1.0, 0.0])}
    ex = make_example(comps, relevant=np.array([2]), seen=np.zeros(0, np.int64))
    assert ex is not None and ex.n_relevant == 1
    w_cf = np.array([1.0 if c == "own_cf" else 0.0 for c in COMPONENTS])
    w_pop = np.array([1.0 if c == "popularity" else 0.0 for c in COMPONENTS])
    assert ndcg([ex], w_cf) == pytest.approx(1.0)  # relevant item at rank 1
    assert ndcg([ex], w_pop) == pytest.approx(0.5)  # rank 3: 1/log2(4)


def test_seen_items_never_enter_the_pool() -> None:
    comps = {"own_cf": np.array([9.0, 1.0, 0.0])}
    ex = make_example(comps, relevant=np.array([1]), seen=np.array([0]))
    assert ex is not None
    w = np.array([1.0 if c == "own_cf" else 0.0 for c in COMPONENTS])
    assert ndcg([ex], w) == pytest.approx(1.0)  # item 0 was seen: item 1 is first


def test_tuning_moves_weight_to_the_informative_component() -> None:
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(30):
        signal = rng.normal(size=50)
        noise = rng.normal(size=50)
        target = int(np.argmax(signal))
        comps = {"linked_map": signal, "popularity": noise}
        ex = make_example(comps, np.array([target]), np.zeros(0, np.int64))
        assert ex is not None
        examples.append(ex)
    weights, start, best = tune(examples, {"linked_map": 0.1, "popularity": 4.0})
    assert best == pytest.approx(1.0)
    assert best >= start
    assert weights["linked_map"] > weights.get("popularity", 0.0)
    # deterministic
    assert tune(examples, {"linked_map": 0.1, "popularity": 4.0})[0] == weights


def test_blend_weights_round_trip_and_defaults(tmp_path: Path) -> None:
    w = BlendWeights({"music": {"cold": {"linked_map": 2.0}}}, {"music": {"cold": {"n": 3}}})
    w.save(tmp_path)
    back = BlendWeights.load(tmp_path)
    assert back.of("music", "cold") == {"linked_map": 2.0}
    assert back.of("music", "warm") == DEFAULT_WEIGHTS["warm"]
    assert BlendWeights.load(tmp_path / "missing").of("x", "anonymous") == {"popularity": 1.0}


def test_query_regimes() -> None:
    assert Query("p").regime == "anonymous"
    assert Query("p", linked=[("q", "a", 1.0)]).regime == "cold"
    assert Query("p", own_cf=np.zeros(2), linked=[("q", "a", 1.0)]).regime == "warm"


def _split_folder(root: Path) -> Path:
    src = root / "src"
    (src / "music").mkdir(parents=True)
    (src / "book").mkdir()
    rows = []
    for a in range(6):  # accounts m0..m5 with 5 + a events each
        rows += [(f"m{a}", f"i{j}", "rating", "4.0", "") for j in range(5 + a)]
    rows.append(("m6", "i0", "rating", "3.0", ""))  # too few to split
    pl.DataFrame(
        rows, schema=["account", "item", "event", "value", "timestamp"], orient="row"
    ).write_csv(src / "music" / "events.csv")
    pl.DataFrame(
        {
            "platform_a": ["book"] * 2,
            "account_a": ["b0", "b1"],
            "platform_b": ["music"] * 2,
            "account_b": ["m0", "m1"],
        }
    ).write_csv(src / "known_links.csv")
    return src


def test_holdout_splits_cold_and_warm_exactly(tmp_path: Path) -> None:
    src = _split_folder(tmp_path)
    s = build_holdout(src, tmp_path / "out", "music", cold_fraction=0.5, warm_fraction=0.2)
    out = tmp_path / "out" / "music"
    cold = pl.read_csv(out / "test_cold.csv")
    warm = pl.read_csv(out / "test_warm.csv")
    kept = pl.read_csv(out / "events.csv")
    assert s["cold_accounts"] == 1  # half of the 2 linked accounts
    cold_account = cold["account"][0]
    assert cold_account in {"m0", "m1"}
    assert cold_account not in kept["account"].to_list()  # all its history is the test
    assert cold.height == (5 if cold_account == "m0" else 6)
    # warm: every other account with >= 5 events loses round(20 %) (at least 1) of them
    per = dict(warm.group_by("account").len().iter_rows())
    for a in range(6):
        name = f"m{a}"
        if name != cold_account:
            assert per[name] == max(1, round(0.2 * (5 + a)))
    assert "m6" not in per and "m6" in kept["account"].to_list()
    assert kept.height + warm.height + cold.height == 5 + 6 + 7 + 8 + 9 + 10 + 1
    # same seed, same bytes
    build_holdout(src, tmp_path / "again", "music", cold_fraction=0.5, warm_fraction=0.2)
    for name in ("events.csv", "test_cold.csv", "test_warm.csv"):
        assert (out / name).read_bytes() == (tmp_path / "again" / "music" / name).read_bytes()


def test_holdout_refuses_a_folder_without_events(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        build_holdout(tmp_path, tmp_path / "out", "music")


def test_tuning_ignores_gains_within_noise() -> None:
    rng = np.random.default_rng(1)
    examples = []
    for _ in range(40):  # popularity knows the answer; the other component is pure noise
        pop = rng.normal(size=40)
        comps = {"popularity": pop, "linked_map": rng.normal(size=40)}
        ex = make_example(comps, np.array([int(np.argmax(pop))]), np.zeros(0, np.int64))
        assert ex is not None
        examples.append(ex)
    weights, start, best = tune(examples, {"popularity": 1.0})
    assert weights == {"popularity": 1.0}
    assert best == start == pytest.approx(1.0)
