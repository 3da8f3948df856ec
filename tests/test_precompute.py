"""Lists computed ahead: the same lists as on request, dropped as soon as they go stale."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
from crossrec.link.pipeline import run_link
from crossrec.recommend import Recommender
from crossrec.recommend.precompute import compute_lists, top_rows
from crossrec.workspace import Workspace
from tests.worlds import build_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Path]]:
    raw = tmp_path_factory.mktemp("raw")
    generate_synthetic(
        raw, SyntheticConfig(accounts=240, events=6000, anchor_fraction=0.6, format="csv", seed=9)
    )
    workspace = build_workspace(raw, tmp_path_factory.mktemp("ws") / "ws", ("video", "music"))
    run_link(workspace)  # asserted links too: the linked components are in the lists
    yield workspace, raw
    workspace.close()


def _live(rec: Recommender, platform: str, account: str, k: int) -> list:
    return rec._recommend(platform, account, k, None)


@pytest.mark.parametrize("platform", ["video", "music"])
def test_lists_computed_ahead_equal_the_lists_computed_on_request(ws, platform) -> None:
    rec = Recommender.load(ws[0])
    accounts = rec.parts.platform(platform).matrix.accounts.tolist()
    lists = compute_lists(rec, platform, k=15)
    assert lists is not None and len(lists) == len(accounts)
    linked = 0
    for account in accounts:
        ahead, live = lists.get(account, 15), _live(rec, platform, account, 15)
        assert ahead is not None
        assert [r.item for r in ahead] == [r.item for r in live]
        assert [r.reason for r in ahead] == [r.reason for r in live]
        np.testing.assert_allclose([r.score for r in ahead], [r.score for r in live], atol=1e-5)
        linked += bool(rec.parts.linked(platform, account))
        # a shorter list is the head of the longer one
        assert lists.get(account, 5) == ahead[:5]
    assert linked > 10  # linked accounts (their transfer components) were among them
    assert lists.get(accounts[0], 16) is None  # beyond the lists' length: computed on request
    assert lists.get("no-such-account", 5) is None


def test_recommender_answers_from_the_lists_until_the_account_changes(ws) -> None:
    workspace, raw = ws
    rec = Recommender.load(workspace)
    n = rec.precompute(10)
    assert n == sum(len(p.matrix.accounts) for p in rec.parts.platforms.values())
    raw_id = (raw / "music" / "events.csv").read_text().splitlines()[1].split(",")[0]
    account = workspace.account_id("music", raw_id)
    listed = rec.cached("music", account, 10)
    assert listed is not None and rec.recommend("music", account, 10) == listed
    # new events: the list computed ahead is dropped; the next one leaves out the new items
    items = [r.item for r in listed[:2]]
    records = [{"account": raw_id, "item": it, "event": "play"} for it in items]
    assert workspace.ingest_records("music", records, source="test").accepted == 2
    rec.update_account("music", account)
    assert rec.cached("music", account, 10) is None
    after = rec.recommend("music", account, 10)
    assert not set(items) & {r.item for r in after}
    # k beyond the lists' length is computed on request, not refused
    video = rec.parts.platform("video").matrix.accounts[0]
    assert len(rec.recommend("video", video, 12)) == 12


def test_changes_during_the_computation_are_not_overwritten(ws) -> None:
    rec = Recommender.load(ws[0])
    account = rec.parts.platform("video").matrix.accounts[7]

    def progress(platform: str, done: int, total: int) -> None:
        if platform == "video":  # the account changes while its platform is computed
            with rec._lock:
                rec._invalidate([("video", account)])

    rec.precompute(10, progress=progress)
    assert rec.cached("video", account, 10) is None
    other = rec.parts.platform("video").matrix.accounts[8]
    assert rec.cached("video", other, 10) is not None


def test_stop_ends_the_computation_early(ws) -> None:
    rec = Recommender.load(ws[0])
    assert rec.precompute(10, stop=lambda: True) == 0
    assert rec.cached("video", rec.parts.platform("video").matrix.accounts[0], 10) is None


def test_top_rows_known_answer() -> None:
    inf = -np.inf
    scores = np.array(
        [
            [0.5, 2.0, 2.0, inf, 1.0],  # tie broken by the lower column
            [inf, inf, 3.0, inf, inf],  # fewer allowed than k
            [1.0, 1.0, 1.0, 1.0, 1.0],  # all tied
        ]
    )
    got = [t.tolist() for t in top_rows(scores, 3)]
    assert got == [[1, 2, 4], [2], [0, 1, 2]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([-np.inf, 0.0, 0.5, 1.0, 2.0]), min_size=6, max_size=6),
        min_size=1,
        max_size=4,
    ),
    st.integers(1, 8),
)
def test_top_rows_is_the_sort_by_score_then_column(rows, k) -> None:
    scores = np.array(rows)
    for row, got in zip(scores, top_rows(scores, k), strict=True):
        allowed = [c for c in range(len(row)) if row[c] > -np.inf]
        expected = sorted(allowed, key=lambda c: (-row[c], c))[:k]
        assert got.tolist() == expected


def test_serve_computes_the_lists_ahead_and_answers_from_them(ws) -> None:
    from crossrec.serve.state import ServeState

    state = ServeState(ws[0], poll_seconds=3600)
    state.start(poll=False)
    try:
        assert state.warmer.wait(60)  # started by the model swap
        model = state.require_model()
        rec = model.recommender
        assert rec._lists, "no list was computed ahead"
        account = rec.parts.platform("video").matrix.accounts[1]
        assert rec.cached("video", account, 10) is not None
        metrics = state.metrics.render().decode()
        assert 'crossrec_precomputed_lists{platform="video"}' in metrics
    finally:
        state.close()


def test_a_new_model_version_is_swapped_in_with_its_lists(ws) -> None:
    import shutil

    from crossrec.models import ModelRegistry
    from crossrec.serve.state import ServeState

    workspace, _ = ws
    state = ServeState(workspace, poll_seconds=3600)
    state.start(poll=False)
    try:
        assert state.warmer.wait(60)
        served = state.require_model()
        registry = ModelRegistry(workspace.models_dir)
        staging = registry.staging_dir("v0002")
        shutil.rmtree(staging)
        shutil.copytree(registry.path(served.version), staging)
        meta = json.loads((staging / "metadata.json").read_text())
        registry.publish("v0002", staging, meta)
        assert state.check_model()
        model = state.require_model()
        assert model.version == "v0002"
        # no window computing lists on request after a retrain: they came with the model
        account = model.recommender.parts.platform("music").matrix.accounts[2]
        assert model.recommender.cached("music", account, 10) is not None
        assert state.warmer.wait(60)  # nothing left to compute; /metrics still counts them
        assert 'crossrec_precomputed_lists{platform="music"}' in state.metrics.render().decode()
    finally:
        state.close()


def test_an_erasure_keeps_the_other_accounts_lists(ws) -> None:
    from crossrec.serve.state import ServeState

    workspace, raw = ws
    line = (raw / "video" / "events.csv").read_text().splitlines()[1]
    raw_id = line.split(",")[0]
    erased = workspace.account_id("video", raw_id)
    state = ServeState(workspace, poll_seconds=3600)
    state.start(poll=False)
    try:
        assert state.warmer.wait(60)
        rec = state.require_model().recommender
        other = next(a for a in rec.parts.platform("video").matrix.accounts if a != erased)
        assert rec.cached("video", erased, 10) is not None
        state.forget("video", raw_id)
        after = state.require_model().recommender
        assert after is not rec  # reloaded from the rewritten files
        assert after.cached("video", erased, 10) is None
        assert after.cached("video", other, 10) == rec.cached("video", other, 10)
        anonymous = after.recommend("video", None, 10)
        assert after.recommend("video", erased, 10) == anonymous
    finally:
        state.close()
