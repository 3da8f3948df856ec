"""Candidate pairs: known answers on a synthetic world, the cap, the online path, real data."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from crossrec.config import Config, TrainConfig
from crossrec.errors import CapacityError, InputError
from crossrec.link.candidates import (
    RANK_NAMES,
    RRF_K,
    SPACES,
    Candidates,
    estimate_pairs,
    generate_candidates,
    pair_ranks,
)
from crossrec.link.context import LinkContext
from crossrec.link.mapping import CFMappings, fit_mappings
from crossrec.represent.interactions import build_interactions
from crossrec.represent.profiles import AccountProfiles

N = 300  # accounts per platform; account i of p1 and account i of p2 are one person


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def world(
    *, seq_noise: float = 0.05, with_text: bool = True, with_values: bool = False, seed: int = 0
) -> LinkContext:
    """Two platforms; a person's two accounts have close sequence (and text) vectors, and CF
    spaces that differ by a rotation; ``with_values``: close rating habits too (ten p2
    accounts without values)."""
    rng = np.random.default_rng(seed)
    seq = _unit(rng.normal(size=(N, 16)))
    seq2 = _unit(seq + seq_noise * rng.normal(size=seq.shape))
    text = _unit(rng.normal(size=(N, 12)))
    text2 = _unit(text + 0.1 * rng.normal(size=text.shape))
    has_text = np.ones(2 * N, bool)
    has_text[:10] = False  # ten p1 accounts without text
    cf = _unit(rng.normal(size=(N, 8)))
    rot, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    accounts = np.array([f"u{i:04d}" for i in range(N)] * 2)
    platform = np.repeat(["p1", "p2"], N)
    events = pa.table(
        {
            "platform": platform.tolist(),
            "account": accounts.tolist(),
            "item": ["i0"] * (2 * N),
            "event_type": ["view"] * (2 * N),
            "value": pa.array([None] * (2 * N), pa.float64()),
        }
    )
    inter = {
        p: build_interactions(events.slice(k * N, N), TrainConfig())
        for k, p in enumerate(("p1", "p2"))
    }
    text_all = np.vstack([text, text2]) if with_text else np.zeros((2 * N, 0), np.float32)
    profiles = AccountProfiles(
        platform=platform,
        account=accounts,
        cf=np.vstack([cf, (cf @ rot).astype(np.float32)]),
        sequence=np.vstack([seq, seq2]),
        text=np.where(has_text[:, None], text_all, 0).astype(np.float32),
        has_text=has_text & with_text,
        rhythm=np.zeros((2 * N, 168), np.float32),
        has_rhythm=np.zeros(2 * N, bool),
        active_days=np.zeros(2 * N, np.int32),
        events=np.ones(2 * N, np.int32),
        top_categories=[[] for _ in range(2 * N)],
    )
    if with_values:
        habit = rng.dirichlet(np.full(10, 0.3), size=N)
        habit2 = np.abs(habit + 0.01 * rng.normal(size=habit.shape))
        values = np.vstack([habit, habit2 / habit2.sum(axis=1, keepdims=True)])
        profiles.has_values = np.ones(2 * N, bool)
        profiles.has_values[N : N + 10] = False
        profiles.values = np.where(profiles.has_values[:, None], values, 0).astype(np.float32)
    links = (np.arange(50), np.arange(50) + N)
    return LinkContext.from_parts(profiles, Config(), inter, links=links)


@pytest.fixture(scope="module")
def ctx() -> LinkContext:
    return world()


@pytest.fixture(scope="module")
def mappings(ctx: LinkContext) -> CFMappings:
    return fit_mappings(ctx, alpha=1e-3, mlp=False)


@pytest.fixture(scope="module")
def batch(ctx: LinkContext, mappings: CFMappings) -> Candidates:
    return generate_candidates(ctx, mappings, top_k=10, max_candidates=15)


def _has(c: Candidates, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = 2 * N
    return np.isin(a * n + b, c.a_rows * n + c.b_rows)


def test_the_true_pair_is_among_the_candidates(batch: Candidates) -> None:
    truth_a, truth_b = np.arange(N), np.arange(N) + N
    assert _has(batch, truth_a, truth_b).all()
    assert len(batch) < N * N / 10  # never all pairs


def test_pairs_are_oriented_sorted_unique_and_bounded(batch: Candidates) -> None:
    assert np.all(batch.a_rows < batch.b_rows)
    keys = batch.a_rows * 2 * N + batch.b_rows
    assert np.all(np.diff(keys) > 0)
    assert batch.ranks.shape == (len(batch), len(RANK_NAMES)) and batch.ranks.dtype == np.uint16
    # each query keeps at most max_candidates of its own
    fused_ab = batch.rank("rank_ab_fused")
    per_a = np.bincount(batch.a_rows[fused_ab > 0], minlength=2 * N)
    assert per_a.max() <= 15
    assert fused_ab.max() <= 15
    # every pair was found by one of its two sides
    assert np.all((fused_ab > 0) | (batch.rank("rank_ba_fused") > 0))


def test_ranks_name_the_spaces_that_found_the_pair(batch: Candidates) -> None:
    truth = _has(batch, np.arange(N), np.arange(N) + N)
    assert truth.all()
    true_rows = np.flatnonzero(batch.b_rows - batch.a_rows == N)
    seq_rank = batch.rank("rank_ab_sequence")[true_rows]
    assert (seq_rank == 1).mean() > 0.9
    cf_rank = batch.rank("rank_ab_cf")[true_rows]
    assert (cf_rank == 1).mean() > 0.9  # the rotation is learned from 50 known links
    # accounts without text have no text rank from their side
    text_ab = batch.rank("rank_ab_text")
    no_text = batch.a_rows < 10
    assert np.all(text_ab[no_text] == 0)
    assert (text_ab[true_rows][10:] == 1).mean() > 0.9


def test_one_account_path_equals_the_batch_rows(
    ctx: LinkContext, mappings: CFMappings, batch: Candidates
) -> None:
    for row in (0, 17, N + 5, 2 * N - 1):
        online = generate_candidates(ctx, mappings, np.array([row]), top_k=10, max_candidates=15)
        want = batch.subset(batch.found_by(np.array([row])))
        assert len(online) > 0
        np.testing.assert_array_equal(online.a_rows, want.a_rows)
        np.testing.assert_array_equal(online.b_rows, want.b_rows)
        np.testing.assert_array_equal(online.ranks, want.ranks)


def test_candidates_are_deterministic(
    ctx: LinkContext, mappings: CFMappings, batch: Candidates
) -> None:
    again = generate_candidates(ctx, mappings, top_k=10, max_candidates=15)
    np.testing.assert_array_equal(again.a_rows, batch.a_rows)
    np.testing.assert_array_equal(again.ranks, batch.ranks)


def test_pair_ranks_match_the_candidate_ranks(
    ctx: LinkContext, mappings: CFMappings, batch: Candidates
) -> None:
    pick = np.arange(0, len(batch), 97)
    ranks = pair_ranks(
        ctx, mappings, batch.a_rows[pick], batch.b_rows[pick], top_k=10, max_candidates=15
    )
    np.testing.assert_array_equal(ranks, batch.ranks[pick])
    # a pair nobody listed has no ranks at all
    far = pair_ranks(ctx, mappings, np.array([0]), np.array([N + 1]), top_k=1, max_candidates=1)
    assert far.sum() == 0


def test_capacity_error_names_the_keys(ctx: LinkContext, mappings: CFMappings) -> None:
    assert estimate_pairs(ctx, max_candidates=15, top_k=10) == 2 * N * 15
    with pytest.raises(CapacityError) as err:
        generate_candidates(ctx, mappings, max_candidates=15, max_pairs=1000)
    message = str(err.value)
    assert "9,000" in message
    assert "link.max_candidates" in message and "link.max_candidate_pairs" in message
    # the online path of one account fits
    assert len(generate_candidates(ctx, mappings, np.array([3]), max_pairs=1000)) > 0


def test_bad_query_rows_are_refused(ctx: LinkContext, mappings: CFMappings) -> None:
    with pytest.raises(InputError):
        generate_candidates(ctx, mappings, np.array([2 * N]))
    with pytest.raises(InputError):
        generate_candidates(ctx, mappings, top_k=0)


def test_without_text_or_mappings_the_other_spaces_still_work() -> None:
    bare = world(with_text=False, seed=1)
    c = generate_candidates(bare, None, top_k=5, max_candidates=5)
    assert _has(c, np.arange(N), np.arange(N) + N).mean() > 0.95
    assert c.rank("rank_ab_text").sum() == 0 and c.rank("rank_ab_cf").sum() == 0


def test_the_values_space_finds_partners_by_rating_habit() -> None:
    # sequence and CF say little here (heavy noise, no maps); the rating habit finds them
    ctx = world(seq_noise=3.0, with_text=False, with_values=True, seed=2)
    c = generate_candidates(ctx, None, top_k=5, max_candidates=10)
    found = _has(c, np.arange(N), np.arange(N) + N)
    assert found[10:].mean() > 0.95
    true_rows = np.flatnonzero(c.b_rows - c.a_rows == N)
    values_ab = c.rank("rank_ab_values")[true_rows]
    values_ba = c.rank("rank_ba_values")[true_rows]
    without = c.a_rows[true_rows] < 10  # their p2 partner has no values
    assert np.all(values_ab[without] == 0) and np.all(values_ba[without] == 0)
    assert (values_ab[~without] == 1).mean() > 0.9
    from crossrec.link.signals import compute_signals

    X, names = compute_signals(ctx, None, c.a_rows, c.b_rows, c.ranks)
    rr = X[true_rows, names.index("rr_ab_values")]
    assert np.isnan(rr[without]).all() and (rr[~without] == 1.0).mean() > 0.9
    # profiles built without values (older models) search no values space
    assert generate_candidates(world(seed=2), None).rank("rank_ab_values").sum() == 0


# -- real data ---------------------------------------------------------------------------------
DEMO = os.environ.get("CROSSREC_DEMO_WORKSPACE")


@pytest.mark.slow
def test_demo_truth_pairs_are_among_the_candidates(tmp_path: Path) -> None:
    """On the MovieLens demo (two platforms, 110 known links, 256 held-out truth pairs) at
    least three quarters of the truth pairs are candidates (measured: 0.84)."""
    from crossrec.demo import run_demo
    from crossrec.models import ModelRegistry
    from crossrec.workspace import Workspace

    root = tmp_path / "demo"
    if DEMO:  # a trained demo workspace to copy instead of training one (minutes)
        shutil.copytree(DEMO, root)
    else:
        run_demo(root)
    with Workspace(root) as ws:
        context = LinkContext.load(ModelRegistry(ws.models_dir).path(), ws.store, ws.config)
        assert len(context.link_a) == 110
        assert ("cinema", "stream") in context.alignment
        assert context.day_counts()[context.rows_of("stream")].sum() == 0  # stream has no clock
        maps = fit_mappings(context, mlp=False)
        cands = generate_candidates(context, maps)
        truth = []
        with open(root / "demo-data" / "truth_links.csv", newline="") as f:
            for r in csv.DictReader(f):
                a = context.rows(r["platform_a"], [ws.account_id(r["platform_a"], r["account_a"])])
                b = context.rows(r["platform_b"], [ws.account_id(r["platform_b"], r["account_b"])])
                truth.append((min(a[0], b[0]), max(a[0], b[0])))
    pairs = np.array(truth)
    assert (pairs >= 0).all()
    recall = _has_rows(cands, pairs, len(context)).mean()
    assert recall >= 0.75


def _has_rows(c: Candidates, pairs: np.ndarray, n: int) -> np.ndarray:
    return np.isin(pairs[:, 0] * n + pairs[:, 1], c.a_rows * n + c.b_rows)


def _clean_scores(ctx: LinkContext, mappings: CFMappings, k: int, cap: int) -> np.ndarray:
    """The known partners' fused scores without the spaces learnt from their links, computed
    here from the uncut lists of the known-linked p1 accounts (the test world's known links
    are 0..49 ↔ N..N+49; no model, so every link counts as a sequence-encoder anchor)."""
    from crossrec.link.candidates import RRF_K, SPACES, _direction_lists

    linked = np.arange(50)
    lists = _direction_lists(ctx, mappings, 0, 1, linked, k, cap)
    scores = []
    for i, row in enumerate(linked):
        where = np.flatnonzero(lists.fused[i] == row + N)
        if len(where) == 0:
            continue
        ranks = lists.space_ranks[i, where[0]]
        scores.append(
            sum(
                1.0 / (RRF_K + int(ranks[s]))
                for s, space in enumerate(SPACES)
                if ranks[s] and space not in ("cf", "sequence")
            )
        )
    return np.sort(np.round(scores, 12))


@pytest.mark.parametrize("loss", [0.0, 0.2, 0.6])
def test_the_cut_drops_what_scores_below_the_known_partners(loss: float) -> None:
    from crossrec.config import LinkConfig

    ctx = world(with_values=True, seq_noise=0.5)
    ctx.config = Config(link=LinkConfig(candidate_cut_loss=loss))
    mappings = fit_mappings(ctx, alpha=1e-3, mlp=False)
    clean = _clean_scores(ctx, mappings, 10, 15)
    # ten p1 partners have no text and their p2 partners no values: they score 0 without the
    # learnt spaces, so at loss 0 nothing is cut
    assert (clean == 0).sum() == 10
    want = clean[int(np.floor(loss * len(clean)))]
    cands = generate_candidates(ctx, mappings, top_k=10, max_candidates=15)
    assert cands.cut_scores["p1->p2"] == pytest.approx(want, abs=1e-12)
    uncut = world(with_values=True, seq_noise=0.5)
    whole = generate_candidates(uncut, mappings, top_k=10, max_candidates=100)
    if loss == 0.0:
        assert want == 0.0 and cands.pairs_per_account == 15.0
        assert cands.known_partners_kept == 1.0
        return
    assert cands.pairs_per_account < 15.0 and len(cands) < len(whole)
    assert cands.known_partners_kept is not None and cands.known_partners_kept < 1.0
    # every pair in p1's fused lists scores at least the cut there, by its space ranks
    kept = cands.rank("rank_ab_fused") > 0
    ranks = np.stack([cands.rank(f"rank_ab_{s}") for s in SPACES], axis=1)[kept].astype(float)
    fused = np.where(ranks > 0, 1.0 / (RRF_K + ranks), 0.0).sum(axis=1)
    assert kept.any() and (np.round(fused, 12) >= want - 1e-12).all()
    assert cands.report()["pairs_per_account"] == round(cands.pairs_per_account, 2)


def test_exact_indexes_report_full_recall_and_the_online_path_the_same_cut(
    ctx: LinkContext, mappings: CFMappings, batch: Candidates
) -> None:
    assert batch.recall_vs_exact == {"sequence": 1.0, "text": 1.0, "cf": 1.0}
    one = generate_candidates(ctx, mappings, np.array([7]), top_k=10, max_candidates=15)
    assert one.recall_vs_exact == {}
    assert one.cut_scores == batch.cut_scores
