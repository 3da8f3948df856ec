"""Matcher: supervised on known links with calibration, unsupervised without, saved without
pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from crossrec.errors import InputError, ModelError
from crossrec.link.matcher import UNSUPERVISED_THRESHOLD, Matcher

NAMES = ["sequence_cos", "rhythm_cos", "noise"]


def synthetic(seed: int, n_groups: int = 1500, k: int = 10) -> tuple[np.ndarray, ...]:
    """``k`` candidates per source account, the first one its true link.

    Signal 0 separates well, signal 1 weakly (and is missing for 30% of pairs), signal 2 is
    noise, so probabilities are neither all 0 nor all 1 and calibration has work to do.
    """
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), k)
    y = np.zeros(n_groups * k, dtype=bool)
    y[::k] = True
    X = rng.normal(size=(y.size, 3)).astype(np.float32)
    X[y, 0] += 2.0
    X[y, 1] += 0.7
    X[rng.random(y.size) < 0.3, 1] = np.nan
    return X, y, groups


@pytest.fixture(scope="module")
def train() -> tuple[np.ndarray, ...]:
    return synthetic(0)


@pytest.fixture(scope="module")
def fresh() -> tuple[np.ndarray, ...]:
    return synthetic(1)


@pytest.fixture(scope="module")
def hgb(train: tuple[np.ndarray, ...]) -> Matcher:
    X, y, groups = train
    return Matcher("hgb").fit(X, y, groups, seed=7, feature_names=NAMES)


@pytest.fixture(scope="module")
def logistic(train: tuple[np.ndarray, ...]) -> Matcher:
    X, y, groups = train
    return Matcher("logistic").fit(X, y, groups, seed=7, feature_names=NAMES)


@pytest.mark.parametrize("kind", ["hgb", "logistic"])
def test_supervised_matcher_separates_and_is_calibrated(
    kind: str, request: pytest.FixtureRequest, fresh: tuple[np.ndarray, ...]
) -> None:
    matcher: Matcher = request.getfixturevalue(kind)
    assert matcher.mode == "supervised"
    X, y, _ = fresh
    p = matcher.predict_proba(X)
    assert p.dtype == np.float64 and p.shape == y.shape
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(y, p) > 0.9
    # Calibration: in every well-filled probability bin the predicted mean matches the
    # observed share of true links, and overall the expected calibration error is small.
    bins = np.minimum((p * 10).astype(int), 9)
    ece = 0.0
    for b in range(10):
        inside = bins == b
        if inside.sum() >= 200:
            assert abs(p[inside].mean() - y[inside].mean()) < 0.1
        if inside.any():
            ece += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    assert ece < 0.05
    assert abs(p.mean() - y.mean()) < 0.02


def test_every_training_pair_has_an_out_of_fold_score(
    hgb: Matcher, train: tuple[np.ndarray, ...]
) -> None:
    _, y, groups = train
    # cross-fitting: every pair is scored, by a model that never saw its account's fold
    assert np.array_equal(np.sort(hgb.heldout_index), np.arange(y.size))
    assert np.array_equal(hgb.heldout_labels, y[hgb.heldout_index])
    assert np.array_equal(hgb.heldout_groups, groups[hgb.heldout_index])
    fold = hgb._arrays["fold"]
    for g in np.unique(groups)[:50]:
        assert np.unique(fold[groups == g]).size == 1  # an account's pairs share one fold
    assert hgb.metrics["folds"] == 5
    # Out-of-fold scores rank the pairs well and are calibrated overall.
    assert roc_auc_score(hgb.heldout_labels, hgb.heldout_scores) > 0.9
    assert abs(hgb.heldout_scores.mean() - y.mean()) < 0.02
    assert hgb.metrics["positives"] == int(y.sum())
    assert hgb.metrics["calibration"] in ("isotonic", "platt")


def test_feature_importance_names_the_informative_signal(hgb: Matcher) -> None:
    importance = hgb.feature_importance()
    assert list(importance) == NAMES
    assert importance["sequence_cos"] > importance["rhythm_cos"] > importance["noise"]
    assert abs(importance["noise"]) < 0.01


@pytest.mark.parametrize("kind", ["hgb", "logistic"])
def test_save_load_round_trip_gives_identical_probabilities(
    kind: str, request: pytest.FixtureRequest, fresh: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    matcher: Matcher = request.getfixturevalue(kind)
    matcher.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["matcher.json", "matcher.npz"]
    loaded = Matcher.load(tmp_path / "m")
    X = fresh[0]
    assert np.array_equal(loaded.predict_proba(X), matcher.predict_proba(X))
    assert loaded.mode == "supervised" and loaded.feature_names == NAMES
    assert np.array_equal(loaded.heldout_scores, matcher.heldout_scores)
    assert np.array_equal(loaded.heldout_index, matcher.heldout_index)


def test_load_refuses_a_refit_that_does_not_reproduce(hgb: Matcher, tmp_path: Path) -> None:
    hgb.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "matcher.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["final_raw"] = arrays["final_raw"] + 1e-3
    np.savez(tmp_path / "m" / "matcher.npz", **arrays)
    with pytest.raises(ModelError, match="does not reproduce"):
        Matcher.load(tmp_path / "m")
    with pytest.raises(ModelError, match="no matcher"):
        Matcher.load(tmp_path / "missing")


def test_same_seed_same_probabilities(train: tuple[np.ndarray, ...], logistic: Matcher) -> None:
    X, y, groups = train
    again = Matcher("logistic").fit(X, y, groups, seed=7, feature_names=NAMES)
    assert np.array_equal(again.predict_proba(X[:500]), logistic.predict_proba(X[:500]))
    assert np.array_equal(again.heldout_index, logistic.heldout_index)


@pytest.mark.parametrize("n_links", [0, 5])
def test_unsupervised_without_enough_links(
    n_links: int, train: tuple[np.ndarray, ...], fresh: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    X, y, groups = train
    labels = np.zeros_like(y)
    labels[np.flatnonzero(y)[:n_links]] = True
    matcher = Matcher().fit(X, labels, groups, seed=1, feature_names=NAMES)
    assert matcher.mode == "unsupervised"
    assert f"only {n_links} known links" in matcher.mode_reason
    assert matcher.default_threshold == UNSUPERVISED_THRESHOLD
    assert matcher.heldout_scores.size == 0
    Xf, yf, _ = fresh
    p = matcher.predict_proba(Xf)
    assert ((p >= 0) & (p <= 1)).all()
    # Signals that grow with a match make true links score higher without any labels (the
    # noise signal weighs as much as the others, which costs some ranking quality).
    assert roc_auc_score(yf, p) > 0.75
    # About 1% of candidate pairs pass the documented threshold, far richer in true links
    # than the 10% base rate.
    passed = p >= matcher.default_threshold
    assert 0.003 < passed.mean() < 0.03
    assert yf[passed].mean() > 0.5
    assert matcher.feature_importance() == dict.fromkeys(NAMES, pytest.approx(1 / 3))
    matcher.save(tmp_path / "u")
    assert np.array_equal(Matcher.load(tmp_path / "u").predict_proba(Xf), p)


def test_unsupervised_score_uses_available_signals_only() -> None:
    X = np.array([[0.1, np.nan], [0.5, 0.2], [0.9, 0.9], [np.nan, np.nan]], dtype=np.float32)
    matcher = Matcher().fit(X, np.zeros(4, bool), np.arange(4), seed=0)
    p = matcher.predict_proba(X)
    assert p[3] == 0.0  # no evidence at all
    assert p[2] == p.max() == 1.0


def test_matcher_input_errors(hgb: Matcher) -> None:
    with pytest.raises(InputError, match="3 signal columns"):
        hgb.predict_proba(np.zeros((2, 4), np.float32))
    with pytest.raises(ModelError, match="not fitted"):
        Matcher().predict_proba(np.zeros((1, 3)))
    with pytest.raises(ModelError, match="no candidate pairs"):
        Matcher().fit(np.zeros((0, 3)), np.zeros(0, bool), np.zeros(0, int), seed=0)
    with pytest.raises(InputError):
        Matcher("forest")  # type: ignore[arg-type]


# -- real data: MovieLens users split into two platforms ----------------------------------------
MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-ml-latest-small"


def _movielens_pairs() -> tuple[np.ndarray, ...]:
    """Each MovieLens user becomes two accounts: its ratings of even movie ids on one platform
    and of odd ids on the other. Candidates: each account's 20 most similar accounts by
    hour-of-week rhythm; signals: rhythm cosine, genre cosine, rating-mean and count gaps."""
    import polars as pl

    ratings = pl.read_csv(MOVIELENS / "ratings.csv")
    movies = pl.read_csv(MOVIELENS / "movies.csv")
    names = sorted({g for gs in movies["genres"].to_list() for g in gs.split("|")})
    genre = np.zeros((int(movies["movieId"].max()) + 1, len(names)))
    for mid, gs in zip(movies["movieId"].to_list(), movies["genres"].to_list(), strict=True):
        genre[mid, [names.index(g) for g in gs.split("|")]] = 1.0
    user, movie = ratings["userId"].to_numpy(), ratings["movieId"].to_numpy()
    value, ts = ratings["rating"].to_numpy(), ratings["timestamp"].to_numpy()
    n = int(user.max()) + 1

    def side(mask: np.ndarray) -> tuple[np.ndarray, ...]:
        u = user[mask]
        genres = np.zeros((n, len(names)))
        np.add.at(genres, u, genre[movie[mask]])
        rhythm = np.zeros((n, 168))
        np.add.at(rhythm, (u, (ts[mask] // 3600) % 168), 1.0)
        count = np.bincount(u, minlength=n).astype(np.float64)
        mean = np.bincount(u, weights=value[mask], minlength=n) / np.maximum(count, 1)
        unit = [
            v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9) for v in (genres, rhythm)
        ]
        return unit[0], unit[1], count, mean

    ga, ra, ca, ma = side(movie % 2 == 0)
    gb, rb, cb, mb = side(movie % 2 == 1)
    users = np.flatnonzero((ca >= 5) & (cb >= 5))
    sim = ra[users] @ rb[users].T
    top = np.argsort(-sim, axis=1, kind="stable")[:, :20]
    qa, qb = np.repeat(np.arange(users.size), 20), top.ravel()
    ua, ub = users[qa], users[qb]
    X = np.stack(
        [
            sim[qa, qb],
            np.einsum("ij,ij->i", ga[ua], gb[ub]),
            -np.abs(ma[ua] - mb[ub]),
            -np.abs(np.log(ca[ua]) - np.log(cb[ub])),
        ],
        axis=1,
    ).astype(np.float32)
    return X, qa, qb, users.size


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason="MovieLens data folder not found")
def test_real_data_matcher_threshold_and_assignment_hold_on_unseen_users() -> None:
    from crossrec.evaluate.metrics import hits_at, precision_recall_f1, ranks_from_pairs
    from crossrec.link.assign import one_to_one, threshold_for_precision

    X, qa, qb, n_users = _movielens_pairs()
    y = qa == qb
    known = np.random.default_rng(0).random(n_users) < 0.4  # known links: 40% of users
    train = known[qa]
    names = ["rhythm_cos", "genre_cos", "rating_gap", "count_gap"]
    matcher = Matcher().fit(X[train], y[train], qa[train], seed=0, feature_names=names)
    assert matcher.mode == "supervised"
    importance = matcher.feature_importance()
    assert max(importance, key=importance.__getitem__) == "rhythm_cos"

    # Threshold for 90% precision, chosen on held-out known links after assignment.
    rows = np.flatnonzero(train)[matcher.heldout_index]
    zeros, ones = np.zeros(rows.size), np.ones(rows.size)
    kept = one_to_one(qa[rows], qb[rows] + n_users, matcher.heldout_scores, zeros, ones)
    choice = threshold_for_precision(
        matcher.heldout_scores[kept],
        y[rows][kept],
        0.9,
        n_positives=np.unique(qa[rows]).size,
    )
    assert choice.threshold is not None and choice.precision >= 0.9

    # Unseen users: the matcher ranks the true account first far more often than the best
    # single signal, and the held-out threshold keeps its precision.
    test = ~train
    unseen = np.flatnonzero(~known)
    p = matcher.predict_proba(X[test])
    ranks = ranks_from_pairs(qa[test], p, y[test], unseen, n_users)
    baseline = ranks_from_pairs(qa[test], X[test, 0], y[test], unseen, n_users)
    assert hits_at(ranks, 1) > 0.8
    assert hits_at(ranks, 1) > hits_at(baseline, 1) + 0.1
    zeros, ones = np.zeros(p.size), np.ones(p.size)
    asserted = one_to_one(qa[test], qb[test] + n_users, p, zeros, ones) & (p >= choice.threshold)
    scores = precision_recall_f1((qa[test][asserted], qb[test][asserted]), (unseen, unseen))
    assert scores.precision >= 0.85
    assert scores.recall > 0.6


def test_a_plain_scorer_in_place_of_the_classifier_survives_save_and_load(
    train: tuple[np.ndarray, ...], fresh: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    from crossrec.link.calibration import fit_calibration
    from crossrec.link.matcher import scorer_values

    X, y, groups = train
    matcher = Matcher("logistic").fit(X, y, groups, seed=3, feature_names=NAMES)
    spec = {"name": "signal:sequence_cos", "columns": [0], "sign": [1.0]}
    spec.update(center=[0.0], scale=[1.0], missing=-10.0)
    cal, _ = fit_calibration(scorer_values(spec, X), y, groups % 5, 3)
    matcher.set_scorer({**spec, "calibration": cal})
    assert matcher.scorer == "signal:sequence_cos"
    Xf = fresh[0]
    p = matcher.predict_proba(Xf)
    # the scorer orders pairs by its one signal
    order = np.argsort(Xf[:, 0])
    assert (np.diff(p[order]) >= -1e-12).all()
    matcher.save(tmp_path / "m")
    loaded = Matcher.load(tmp_path / "m")
    assert loaded.scorer == "signal:sequence_cos"
    assert np.array_equal(loaded.predict_proba(Xf), p)
