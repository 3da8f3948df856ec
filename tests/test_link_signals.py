"""Linkage signals and CF maps on tiny hand-made worlds with known answers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp

from crossrec.config import Config, TrainConfig
from crossrec.errors import InputError, ModelError
from crossrec.link.candidates import RANK_NAMES
from crossrec.link.context import Alignment, LinkContext
from crossrec.link.mapping import (
    CFMappings,
    apply_linear,
    fit_mappings,
    fit_mlp,
    map_scores,
    ridge_map,
)
from crossrec.link.signals import (
    CF_MAP_SIGNALS,
    SIGNAL_NAMES,
    cf_signals,
    compute_signals,
    evidence,
)
from crossrec.represent.interactions import build_interactions
from crossrec.represent.profiles import build_profiles

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)  # 2024-01-01 was a Monday


class FakeStore:
    """The three tables LinkContext.read_store reads, from Arrow tables in memory."""

    def __init__(self, events: pa.Table, identifiers: list[tuple[str, str, str, str]]) -> None:
        self.tables = {
            "events": events,
            "account_identifiers": pa.table(
                {
                    name: [r[i] for r in identifiers]
                    for i, name in enumerate(("platform", "account", "kind", "value"))
                },
                schema=pa.schema(
                    [(n, pa.string()) for n in ("platform", "account", "kind", "value")]
                ),
            ),
            "known_links": pa.table(
                {
                    n: pa.array([], pa.string())
                    for n in ("platform_a", "account_a", "platform_b", "account_b", "source")
                }
            ),
        }

    def read(self, table: str, *, columns=None, platform=None, order_by=None) -> pa.Table:  # type: ignore[no-untyped-def]
        t = self.tables[table]
        if platform is not None:
            t = t.filter(pc.equal(t["platform"], platform))
        return t.select(columns) if columns else t


def events_table(rows: list[tuple[str, str, str, datetime | None]]) -> pa.Table:
    return pa.table(
        {
            "platform": [r[0] for r in rows],
            "account": [r[1] for r in rows],
            "item": [r[2] for r in rows],
            "event_type": ["view"] * len(rows),
            "value": pa.array([None] * len(rows), pa.float64()),
            "ts": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
            "seq": list(range(len(rows))),
        }
    )


def make_context(
    rows: list[tuple[str, str, str, datetime | None]],
    *,
    identifiers: list[tuple[str, str, str, str]] = (),  # type: ignore[assignment]
    alignment: dict[tuple[str, str], Alignment] | None = None,
    seq: dict[tuple[str, str], np.ndarray] | None = None,
) -> LinkContext:
    """Profiles and item sets built by the training code itself, from a list of events."""
    events = events_table(rows)
    platforms = sorted(set(r[0] for r in rows))
    inter = {
        p: build_interactions(events.filter(pc.equal(events["platform"], p)), TrainConfig())
        for p in platforms
    }
    cf = {p: (m.accounts, np.ones((len(m.accounts), 4), np.float32)) for p, m in inter.items()}
    keys = sorted({(r[0], r[1]) for r in rows})
    dim = 4
    vectors = np.array(
        [(seq or {}).get(k, np.eye(dim)[0]) for k in keys], dtype=np.float32
    ).reshape(len(keys), dim)
    profiles = build_profiles(
        events,
        weights=np.ones(events.num_rows),
        cf_vectors=cf,
        sequence=(np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), vectors),
        item_text=None,
    )
    ctx = LinkContext.from_parts(profiles, Config(), inter, alignment=alignment)
    ctx.read_store(FakeStore(events, list(identifiers)))  # type: ignore[arg-type]
    return ctx


def signals_of(ctx: LinkContext, pairs: list[tuple[str, str, str, str]], **kw):  # type: ignore[no-untyped-def]
    a = np.array([ctx.rows(p, [acc])[0] for p, acc, _, _ in pairs])
    b = np.array([ctx.rows(p, [acc])[0] for _, _, p, acc in pairs])
    X, names = compute_signals(ctx, kw.get("mappings"), a, b, kw.get("ranks"))
    return {name: X[:, j] for j, name in enumerate(names)}


# -- time ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timed() -> LinkContext:
    h = timedelta(hours=1)
    d = timedelta(days=1)
    a_times = [MONDAY + 10 * h, MONDAY + d + 20 * h]  # Mon 10:00, Tue 20:00
    rows: list[tuple[str, str, str, datetime | None]] = []
    rows += [("p1", "a", f"i{k}", t) for k, t in enumerate(a_times)]
    rows += [("p2", "week", f"j{k}", t + 7 * d) for k, t in enumerate(a_times)]  # one week later
    rows += [("p2", "day", f"j{k}", t + d) for k, t in enumerate(a_times)]  # one day later
    rows += [("p2", "same", f"j{k}", t) for k, t in enumerate(a_times)]
    rows += [("p3", "untimed", "k0", None), ("p3", "untimed", "k1", None)]
    identifiers = [
        ("p1", "a", "email", "x"),
        ("p1", "a", "phone", "y"),
        ("p2", "week", "email", "x"),
        ("p2", "week", "phone", "y"),
        ("p2", "day", "email", "x"),
        ("p2", "same", "email", "z"),
    ]
    return make_context(rows, identifiers=identifiers)


def test_rhythm_survives_a_whole_week_clock_shift_and_days_do_not(timed: LinkContext) -> None:
    s = signals_of(timed, [("p1", "a", "p2", "week")])
    assert s["rhythm_cos"][0] == pytest.approx(1.0)
    assert s["hour_cos"][0] == pytest.approx(1.0)
    assert s["days_jaccard"][0] == 0.0  # disjoint day sets


def test_hour_profile_survives_a_one_day_shift(timed: LinkContext) -> None:
    s = signals_of(timed, [("p1", "a", "p2", "day")])
    assert s["rhythm_cos"][0] == pytest.approx(0.0)  # Mon/Tue against Tue/Wed
    assert s["hour_cos"][0] == pytest.approx(1.0)
    assert s["days_jaccard"][0] == pytest.approx(1 / 3)  # {Jan 1, 2} vs {Jan 2, 3}


def test_same_days_give_jaccard_one(timed: LinkContext) -> None:
    s = signals_of(timed, [("p1", "a", "p2", "same")])
    assert s["days_jaccard"][0] == pytest.approx(1.0)
    assert s["rhythm_cos"][0] == pytest.approx(1.0)


def test_time_signals_are_nan_without_timestamps(timed: LinkContext) -> None:
    s = signals_of(timed, [("p1", "a", "p3", "untimed")])
    for name in ("rhythm_cos", "hour_cos", "days_jaccard"):
        assert math.isnan(s[name][0]), name
    # and so are the text signals of a world without text
    assert math.isnan(s["text_cos"][0])
    assert math.isnan(s["aligned_overlap"][0])


def test_equal_identifiers_are_counted(timed: LinkContext) -> None:
    s = signals_of(
        timed,
        [("p1", "a", "p2", "week"), ("p1", "a", "p2", "day"), ("p1", "a", "p2", "same")],
    )
    assert s["identifiers_equal"].tolist() == [2.0, 1.0, 0.0]


def test_signals_without_ranks_or_mappings_are_nan_and_sizes_are_logged(
    timed: LinkContext,
) -> None:
    s = signals_of(timed, [("p1", "a", "p2", "week")])
    assert math.isnan(s["cf_linear_cos"][0]) and math.isnan(s["rr_ab_fused"][0])
    assert s["log_events_a"][0] == pytest.approx(math.log1p(2))
    assert s["seq_cos"][0] == pytest.approx(1.0)


def test_rank_signals_are_reciprocal_ranks(timed: LinkContext) -> None:
    ranks = np.zeros((1, len(RANK_NAMES)), np.uint16)
    ranks[0, RANK_NAMES.index("rank_ab_sequence")] = 4
    ranks[0, RANK_NAMES.index("rank_ab_fused")] = 1
    ranks[0, RANK_NAMES.index("rank_ba_fused")] = 1
    s = signals_of(timed, [("p1", "a", "p2", "week")], ranks=ranks)
    assert s["rr_ab_sequence"][0] == pytest.approx(0.25)
    assert s["rr_ba_sequence"][0] == 0.0
    assert s["mutual_best"][0] == 1.0
    assert math.isnan(s["rr_ab_text"][0])  # no text on either side
    assert math.isnan(s["rr_ab_cf"][0])  # no CF map


def test_pairs_must_join_two_platforms(timed: LinkContext) -> None:
    with pytest.raises(InputError, match="different platforms"):
        compute_signals(timed, None, np.array([0]), np.array([0]))
    with pytest.raises(InputError, match="candidate_ranks"):
        compute_signals(timed, None, np.array([0]), np.array([1]), np.zeros((1, 3), np.uint16))


def test_evidence_names_the_strongest_signals_in_words(timed: LinkContext) -> None:
    a = timed.rows("p1", ["a"])
    b = timed.rows("p2", ["week"])
    X, names = compute_signals(timed, None, a, b)
    found = evidence(names, X[0], top=2)
    assert found[0]["signal"] == "identifiers_equal"
    assert found[1]["signal"] in ("hour_cos", "rhythm_cos", "seq_cos")  # all 1.0 here
    assert found[0]["text"].startswith("2 equal")
    assert all(isinstance(e["value"], float) for e in found)
    # NaN and size signals are never named
    assert all(e["signal"] not in ("log_events_a", "text_cos") for e in evidence(names, X[0], 99))


# -- aligned items -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aligned() -> LinkContext:
    t = MONDAY
    rows = [
        ("p1", "a", "i1", t), ("p1", "a", "i2", t), ("p1", "a", "i3", t),
        ("p1", "a2", "i4", t),
        ("p2", "b", "j1", t), ("p2", "b", "j3", t),
        ("p2", "b2", "j4", t),
        ("p2", "b3", "j1", t), ("p2", "b3", "j2", t),
    ]  # fmt: skip
    # columns are the sorted item ids: i1..i4 -> 0..3, j1..j4 -> 0..3
    fwd = Alignment(
        neighbours=np.array([[0], [1], [2], [-1]], np.int32),
        similarity=np.array([[0.95], [0.9], [0.5], [0.0]], np.float32),
        n_items_b=4,
    )
    rev = Alignment(
        neighbours=np.array([[0], [1], [2], [-1]], np.int32),
        similarity=np.array([[0.95], [0.9], [0.5], [0.0]], np.float32),
        n_items_b=4,
    )
    return make_context(rows, alignment={("p1", "p2"): fwd, ("p2", "p1"): rev})


def test_aligned_overlap_on_a_hand_made_alignment(aligned: LinkContext) -> None:
    idf1, idf2 = aligned.idf["p1"], aligned.idf["p2"]
    assert idf1.tolist() == pytest.approx([math.log(2)] * 4)
    assert idf2.tolist() == pytest.approx([math.log(3 / 2), math.log(3), math.log(3), math.log(3)])
    s = signals_of(
        aligned,
        [("p1", "a", "p2", "b3"), ("p1", "a", "p2", "b"), ("p1", "a2", "p2", "b2")],
    )
    # a = {i1, i2, i3} reaches {j1, j2} (i3→j3 is below 0.8); b3 = {j1, j2} reaches {i1, i2}.
    want_b3 = (idf2[0] + idf2[1] + 2 * idf1[0]) / (idf2[0] + idf2[1] + 3 * idf1[0])
    # b = {j1, j3}: only j1 is reached by a, and b reaches only i1.
    want_b = (idf2[0] + idf1[0]) / (idf2[0] + idf2[2] + 3 * idf1[0])
    assert s["aligned_overlap"].tolist() == pytest.approx([want_b3, want_b, 0.0], abs=1e-6)


def test_aligned_overlap_follows_the_threshold(aligned: LinkContext) -> None:
    loose = LinkContext.from_parts(
        aligned.profiles,
        Config.from_dict({"link": {"align_min_similarity": 0.4}}),
        aligned.interactions,
        alignment=aligned.alignment,
    )
    s = signals_of(loose, [("p1", "a", "p2", "b")])
    idf1, idf2 = loose.idf["p1"], loose.idf["p2"]
    # now i3→j3 counts: all of b is reached, and b reaches i1 and i3
    want = (idf2[0] + idf2[2] + 2 * idf1[0]) / (idf2[0] + idf2[2] + 3 * idf1[0])
    assert s["aligned_overlap"][0] == pytest.approx(want, abs=1e-6)


# -- CF maps -------------------------------------------------------------------------------------
def test_ridge_map_recovers_a_linear_map_exactly_on_noiseless_data() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    w = rng.normal(size=(8, 5))
    w0 = rng.normal(size=5)
    y = x @ w + w0
    fitted = ridge_map(x, y, alpha=0.0)
    assert fitted.shape == (9, 5)
    np.testing.assert_allclose(fitted[:-1], w, atol=1e-8)
    np.testing.assert_allclose(fitted[-1], w0, atol=1e-8)
    np.testing.assert_allclose(apply_linear(x, fitted), y, atol=1e-4)
    # a tiny penalty barely moves it
    np.testing.assert_allclose(ridge_map(x, y, alpha=1e-6)[:-1], w, atol=1e-5)


def test_map_scores_put_the_mapped_partner_first() -> None:
    rng = np.random.default_rng(1)
    x_a = rng.normal(size=(50, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    x_b = x_a @ q
    w = ridge_map(x_a, x_b, alpha=1e-6)
    scores = map_scores(x_a[:10], w, x_b)
    assert scores.shape == (10, 50)
    assert scores.argmax(axis=1).tolist() == list(range(10))


def test_ridge_map_refuses_unpaired_anchors() -> None:
    with pytest.raises(InputError):
        ridge_map(np.zeros((3, 2)), np.zeros((4, 2)))


def _cf_world(n: int = 60, f: int = 8, seed: int = 0) -> tuple[LinkContext, np.ndarray]:
    """Two platforms whose CF spaces differ by a rotation; row i of p1 is row i of p2."""
    from crossrec.represent.profiles import AccountProfiles

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rot, _ = np.linalg.qr(rng.normal(size=(f, f)))
    cf = np.vstack([x, (x @ rot).astype(np.float32)])
    accounts = np.array([f"u{i:03d}" for i in range(n)] * 2)
    platform = np.repeat(["p1", "p2"], n)
    rows = [(p, a, "i0", None) for p, a in zip(platform, accounts, strict=True)]
    events = events_table(rows)  # type: ignore[arg-type]
    inter = {
        p: build_interactions(events.filter(pc.equal(events["platform"], p)), TrainConfig())
        for p in ("p1", "p2")
    }
    seq = rng.normal(size=(2 * n, 4)).astype(np.float32)
    profiles = AccountProfiles(
        platform=platform,
        account=accounts,
        cf=cf,
        sequence=seq / np.linalg.norm(seq, axis=1, keepdims=True),
        text=np.zeros((2 * n, 0), np.float32),
        has_text=np.zeros(2 * n, bool),
        rhythm=np.zeros((2 * n, 168), np.float32),
        has_rhythm=np.zeros(2 * n, bool),
        active_days=np.zeros(2 * n, np.int32),
        events=np.ones(2 * n, np.int32),
        top_categories=[[] for _ in range(2 * n)],
    )
    links = (np.arange(n), np.arange(n) + n)
    return LinkContext.from_parts(profiles, Config(), inter, links=links), rot


def test_fitted_maps_align_the_cf_spaces_of_linked_accounts() -> None:
    ctx, _ = _cf_world()
    mappings = fit_mappings(ctx, alpha=1e-6, max_epochs=100)
    assert mappings.anchors == {("p1", "p2"): 60, ("p2", "p1"): 60}
    n = 60
    a, b = np.arange(n), np.arange(n) + n
    X, names = compute_signals(ctx, mappings, a, b)
    linear = X[:, names.index("cf_linear_cos")]
    mlp = X[:, names.index("cf_mlp_cos")]
    assert linear.min() > 0.999
    Xr, _ = compute_signals(ctx, mappings, a, np.roll(b, 1))
    assert mlp.mean() > Xr[:, names.index("cf_mlp_cos")].mean() + 0.3


def test_cf_signals_alone_equal_those_of_the_full_signal_matrix() -> None:
    """Out-of-fold refits recompute only the CF-map columns: they must be the same numbers."""
    ctx, _ = _cf_world()
    mappings = fit_mappings(ctx, max_epochs=20, seed=1)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 60, 50)
    b = rng.integers(60, 120, 50)
    a, b = np.concatenate([a, b[:5]]), np.concatenate([b, a[:5]])  # both orientations
    X, names = compute_signals(ctx, mappings, a, b)
    cols = [names.index(n) for n in CF_MAP_SIGNALS]
    np.testing.assert_array_equal(cf_signals(ctx, mappings, a, b), X[:, cols])


def test_few_anchors_give_no_map_and_nan_cf_signals() -> None:
    ctx, _ = _cf_world(n=8)
    mappings = fit_mappings(ctx, min_pairs=10)
    assert not mappings.has("p1", "p2")
    X, names = compute_signals(ctx, mappings, np.array([0]), np.array([8]))
    assert math.isnan(X[0, names.index("cf_linear_cos")])
    with pytest.raises(ModelError, match="CF mapping from 'p1' to 'p2'"):
        mappings.map("p1", "p2", np.zeros((1, 8)))


def test_linear_maps_alone_leave_the_mlp_signal_nan() -> None:
    ctx, _ = _cf_world()
    mappings = fit_mappings(ctx, mlp=False)
    assert mappings.has("p1", "p2") and not mappings.has("p1", "p2", "mlp")
    X, names = compute_signals(ctx, mappings, np.array([0]), np.array([60]))
    assert X[0, names.index("cf_linear_cos")] > 0.9
    assert math.isnan(X[0, names.index("cf_mlp_cos")])


def test_mappings_are_seeded_and_survive_save_and_load(tmp_path: Path) -> None:
    ctx, _ = _cf_world()
    first = fit_mappings(ctx, max_epochs=20, seed=3)
    again = fit_mappings(ctx, max_epochs=20, seed=3)
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(first.mlp[("p1", "p2")][name], again.mlp[("p1", "p2")][name])
    first.save(tmp_path / "maps")
    loaded = CFMappings.load(tmp_path / "maps")
    x = ctx.profiles.cf[:5]
    for kind in ("linear", "mlp"):
        np.testing.assert_array_equal(
            first.map("p1", "p2", x, kind),
            loaded.map("p1", "p2", x, kind),  # type: ignore[arg-type]
        )
    assert loaded.anchors == first.anchors
    with pytest.raises(ModelError):
        CFMappings.load(tmp_path / "missing")


def test_fit_mlp_returns_numpy_weights_of_the_asked_shape() -> None:
    rng = np.random.default_rng(2)
    w = fit_mlp(rng.normal(size=(30, 5)), rng.normal(size=(30, 3)), hidden=7, max_epochs=5)
    assert {k: v.shape for k, v in w.items()} == {
        "w1": (5, 7),
        "b1": (7,),
        "w2": (7, 3),
        "b2": (3,),
    }
    assert all(v.dtype == np.float32 for v in w.values())


def test_signal_names_are_unique_and_cover_the_matrix() -> None:
    assert len(set(SIGNAL_NAMES)) == len(SIGNAL_NAMES)
    assert "identifiers_equal" in SIGNAL_NAMES and "mutual_best" in SIGNAL_NAMES


def test_identifier_matrix_counts_each_identifier_once() -> None:
    t = MONDAY
    ctx = make_context(
        [("p1", "a", "i", t), ("p2", "b", "j", t)],
        identifiers=[
            ("p1", "a", "email", "x"),
            ("p1", "a", "email", "x"),
            ("p2", "b", "email", "x"),
        ],
    )
    assert isinstance(ctx.identifiers, sp.csr_matrix)
    assert signals_of(ctx, [("p1", "a", "p2", "b")])["identifiers_equal"][0] == 1.0


# -- kernels: the same numbers as the gathering numpy/scipy code they replaced ------------------
def _gathered_dot(x, ia, y, ib):  # type: ignore[no-untyped-def]
    """The replaced code: gather both sides of every pair, then a row-wise einsum."""
    return np.einsum("ij,ij->i", np.asarray(x)[ia], np.asarray(y)[ib])


def _gathered_sparse_dot(x, ia, y, ib):  # type: ignore[no-untyped-def]
    return np.asarray(x[ia].multiply(y[ib]).sum(axis=1), dtype=np.float64).ravel()


def _random_world(seed: int = 0) -> LinkContext:
    """Two timed platforms and an untimed one, random items, times, sequence vectors,
    identifiers and a random item alignment: every signal has values, and NaNs."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str, datetime | None]] = []
    seq: dict[tuple[str, str], np.ndarray] = {}
    for platform, timed_ in (("p1", True), ("p2", True), ("p3", False)):
        for u in range(40):
            for _ in range(int(rng.integers(1, 12))):
                t = MONDAY + timedelta(hours=int(rng.integers(0, 24 * 60))) if timed_ else None
                rows.append((platform, f"u{u}", f"{platform}i{rng.integers(0, 30)}", t))
            seq[(platform, f"u{u}")] = rng.normal(size=4)
    seq[("p2", "u0")] = np.zeros(4)  # a zero vector: cosine 0, not NaN
    identifiers = [
        (p, f"u{rng.integers(0, 40)}", "email", f"e{rng.integers(0, 15)}")
        for p in ("p1", "p2", "p3")
        for _ in range(30)
    ]
    alignment = {}
    for src, dst in (("p1", "p2"), ("p2", "p1")):
        alignment[(src, dst)] = Alignment(
            neighbours=rng.integers(-1, 30, size=(30, 3)).astype(np.int32),
            similarity=rng.uniform(0.5, 1.0, size=(30, 3)).astype(np.float32),
            n_items_b=30,
        )
    ctx = make_context(rows, identifiers=identifiers, alignment=alignment, seq=seq)
    prof, n = ctx.profiles, len(ctx)
    prof.cf = rng.normal(size=(n, 4)).astype(np.float32)
    prof.has_text = rng.random(n) < 0.7
    prof.text = np.where(prof.has_text[:, None], rng.normal(size=(n, 6)), 0).astype(np.float32)
    prof.has_values = rng.random(n) < 0.6
    prof.values = np.where(prof.has_values[:, None], rng.random((n, 10)), 0).astype(np.float32)
    return ctx


def test_kernels_give_the_signals_of_the_gathering_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import crossrec.link.signals as signals_module

    ctx = _random_world()
    rng = np.random.default_rng(1)
    code = ctx.platform_code
    a = rng.integers(0, len(ctx), 3000)
    b = rng.integers(0, len(ctx), 3000)
    ok = code[a] != code[b]
    a, b = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
    ranks = rng.integers(0, 30, size=(len(a), len(RANK_NAMES))).astype(np.uint16)
    link = np.flatnonzero(code == 0)[:20], np.flatnonzero(code == 1)[:20]
    maps = fit_mappings(ctx, link, min_pairs=5, max_epochs=5, seed=0)
    X, names = compute_signals(ctx, maps, a, b, ranks)
    with monkeypatch.context() as m:
        m.setattr(signals_module, "pair_dot", _gathered_dot)
        m.setattr(signals_module, "sparse_pair_dot", _gathered_sparse_dot)
        old, _ = compute_signals(ctx, maps, a, b, ranks)  # per-row caches are kernel-free
    for j, name in enumerate(names):
        assert np.array_equal(np.isnan(X[:, j]), np.isnan(old[:, j])), name
        assert not np.isnan(X[:, j]).all(), name
    exact = ("identifiers_equal", "days_jaccard", "log_events_a", "log_events_gap", "mutual_best")
    for name in exact:  # counts and ratios of counts: the very same numbers
        j = names.index(name)
        np.testing.assert_array_equal(X[:, j], old[:, j], err_msg=name)
    # sums of float products: equal to float32 rounding (the kernels add in float64)
    np.testing.assert_allclose(X, old, rtol=2e-6, atol=2e-6, equal_nan=True)


def test_pair_kernels_on_random_rows() -> None:
    from crossrec.link.kernels import pair_dot, sparse_pair_dot

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 37)).astype(np.float32)
    y = rng.normal(size=(150, 37)).astype(np.float32)
    ia, ib = rng.integers(0, 200, 5000), rng.integers(0, 150, 5000)
    got = pair_dot(x, ia, y, ib)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _gathered_dot(x, ia, y, ib), rtol=1e-5, atol=1e-5)
    xs = sp.random(200, 90, density=0.1, format="csr", dtype=np.float32, random_state=4)
    ys = sp.random(150, 90, density=0.1, format="csr", dtype=np.float32, random_state=5)
    np.testing.assert_allclose(
        sparse_pair_dot(xs, ia, ys, ib), _gathered_sparse_dot(xs, ia, ys, ib), rtol=1e-6
    )
    ones_x, ones_y = xs.copy(), ys.copy()
    ones_x.data[:], ones_y.data[:] = 1.0, 1.0  # counts: equal, not close
    np.testing.assert_array_equal(
        sparse_pair_dot(ones_x, ia, ones_y, ib), _gathered_sparse_dot(ones_x, ia, ones_y, ib)
    )
    assert pair_dot(x, ia[:0], y, ib[:0]).shape == (0,)
