"""Links re-scored in the background after served events: the write path never waits for the
search, a burst of events costs one re-scoring, and an erased account is never relinked."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crossrec.serve.state import Loaded, ServeState
from crossrec.workspace import Workspace
from tests.worlds import linked_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    ws, data = linked_world(tmp_path_factory)
    yield ws, data
    ws.close()


def _linked_raw_account(ws: Workspace, data: Path, platform: str) -> tuple[str, str]:
    """(raw id, pseudonym) of an account of ``platform`` with an asserted link."""
    linked = {
        r[f"account_{side}"]
        for r in ws.store.read("links").to_pylist()
        for side in "ab"
        if r[f"platform_{side}"] == platform
    }
    with (data / platform / "events.csv").open(newline="") as f:
        for raw in sorted({row["account"] for row in csv.DictReader(f)}):
            pseudonym = ws.pseudonymiser.account(platform, raw)
            if pseudonym in linked:
                return raw, pseudonym
    raise AssertionError(f"no linked account on {platform}")


def _links_of(ws: Workspace, platform: str, account: str) -> list[dict]:
    return [
        r
        for r in ws.store.read("links").to_pylist()
        if (platform, account)
        in {(r["platform_a"], r["account_a"]), (r["platform_b"], r["account_b"])}
    ]


class _Held:
    """Wraps the linker's real re-scoring so that it starts, then waits to be released."""

    def __init__(self, linker) -> None:
        self.original = linker.rescore
        self.started = threading.Event()
        self.release = threading.Event()
        linker.rescore = self

    def __call__(self, platform: str, account: str):
        self.started.set()
        assert self.release.wait(120)
        return self.original(platform, account)


@contextmanager
def _serving(ws: Workspace) -> Iterator[tuple[ServeState, Loaded, _Held]]:
    """The service state over ``ws`` (no HTTP, no polling), its model, and its linker held."""
    state = ServeState(ws, poll_seconds=3600)
    state.start(poll=False)
    model = state.require_model()
    held = _Held(model.linker)
    try:
        yield state, model, held
    finally:
        held.release.set()  # a failed assertion must not leave the worker waiting
        state.close()


def test_posted_events_are_answered_and_served_while_links_are_rescored(world) -> None:
    ws, data = world
    raw, account = _linked_raw_account(ws, data, "video")
    with _serving(ws) as (state, model, held):
        rec = model.recommender
        before = [r.item for r in rec.recommend("video", account, 10)]
        summary = state.ingest(
            "video", [{"account": raw, "item": before[0], "event": "watch"}], source="t"
        )
        assert summary.accepted == 1
        assert held.started.wait(60)  # the search runs in the background ...
        # ... while the account's list has already changed and more events are accepted
        assert [r.item for r in rec.recommend("video", account, 10)] != before
        for item in before[1:4]:  # three more events while it is busy: queued once
            assert state.ingest("video", [{"account": raw, "item": item}], source="t").accepted
        assert model.linker.rescored == 0 and len(state.relinks) == 2  # busy + one queued
        held.release.set()
        assert state.relinks.wait(timeout=120)
        assert model.linker.rescored == 2
        threshold = round(model.linker.threshold or 0.0, 6)
        for r in _links_of(ws, "video", account):  # written with evidence, over the threshold
            assert r["probability"] >= threshold or r["source"] == "identifier"
            assert r["model_version"] == model.version


def test_an_account_erased_while_its_links_are_rescored_gets_none(world) -> None:
    ws, data = world
    raw, account = _linked_raw_account(ws, data, "music")
    with _serving(ws) as (state, model, held):
        state.apply_events("music", [account])
        assert held.started.wait(60)
        state.apply_events("music", [account])  # queued again behind the running one
        erased = threading.Thread(target=state.forget, args=("music", raw))
        erased.start()
        deadline = time.monotonic() + 60
        while not state.read_gate.closed:  # the erasure waits for the search (read gate)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        held.release.set()
        erased.join(timeout=300)
        assert not erased.is_alive()
        assert state.relinks.wait(timeout=120)
        assert model.linker.rescored == 1  # the queued one was dropped with the account
        assert _links_of(state.ws, "music", account) == []
        assert state.metrics.online_relinks._value.get() == 0
