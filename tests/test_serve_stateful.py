"""The event API as a state machine: sequences of POST, GET and DELETE on a few accounts.

Hypothesis drives random sequences of requests (new and known accounts, duplicate event ids,
bad events, erasures) against the real app and checks after every step that no answer is a
5xx, that each answer conforms to the OpenAPI document (schemathesis' checks on the
operation it hit), that an account's stored events equal the ones acknowledged for it, and
that an erased account stays erased: its later events are not stored and its routes answer
404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.test_serve_common import serve, world_of

ACCOUNT = "/v1/platforms/{p}/accounts/{a}"
EVENTS = "/v1/platforms/{p}/events"
#: the same routes as the OpenAPI document names them
T_ACCOUNT = "/v1/platforms/{platform}/accounts/{account}"
T_EVENTS = "/v1/platforms/{platform}/events"
NEW = ("st-new-1", "st new/2", "st-new-3")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    world = world_of(tmp_path_factory)
    with serve(world, tmp_path_factory.mktemp("stateful") / "ws") as s:
        yield s, world


def test_request_sequences_keep_the_store_equal_to_what_was_acknowledged(served) -> None:
    s, world = served
    api = schemathesis.openapi.from_asgi("/openapi.json", s.client.app)
    known = [("video", a) for a in world.accounts["video"][:3]]
    known += [("music", a) for a in world.accounts["music"][:2]]
    accounts = known + [("video", a) for a in NEW]
    items = world.items["video"][:5]
    counter = iter(range(10**9))
    erased: set[tuple[str, str]] = set()  # the server keeps erasures across examples

    class API(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.expected: dict[tuple[str, str], int] = {}
            self.erased = erased
            self.event_ids: dict[tuple[str, str], list[str]] = {}

        def call(self, method: str, path: str, template: str, **kwargs: Any) -> Any:
            r = s.client.request(method, path, headers=s.auth(), **kwargs)
            assert r.status_code < 500, (method, path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json"), r.headers
            operation = api[template][method]
            operation.validate_response(r)  # status, content type and body as documented
            return r

        def stored(self, key: tuple[str, str]) -> int | None:
            p, a = key
            r = self.call("GET", ACCOUNT.format(p=p, a=a) + "/profile", T_ACCOUNT + "/profile")
            if r.status_code == 404:
                return None
            assert r.status_code == 200, r.text
            return int(r.json()["events"])

        def baseline(self, key: tuple[str, str]) -> int:
            if key not in self.expected:
                got = self.stored(key)
                self.expected[key] = got or 0
            return self.expected[key]

        @rule(key=st.sampled_from(accounts), item=st.sampled_from(items), again=st.booleans())
        def post(self, key: tuple[str, str], item: str, again: bool) -> None:
            p, a = key
            before = self.baseline(key)
            ids = self.event_ids.setdefault(key, [])
            event_id = ids[-1] if again and ids else f"st-{next(counter)}"
            event = {
                "account": a,
                "item": item,
                "event": "watch",
                "timestamp": datetime.now(UTC).isoformat(),
                "event_id": event_id,
            }
            r = self.call("POST", EVENTS.format(p=p), T_EVENTS, json=[event])
            if key in self.erased:
                # refused or quarantined as erased; never stored
                assert r.status_code in (200, 422), r.text
                if r.status_code == 200:
                    assert r.json()["accepted"] == 0
                return
            assert r.status_code == 200, r.text
            doc = r.json()
            assert doc["accepted"] + doc["duplicates"] == 1
            if doc["accepted"]:
                ids.append(event_id)
            self.expected[key] = before + doc["accepted"]

        @rule(key=st.sampled_from(accounts))
        def bad_event(self, key: tuple[str, str]) -> None:
            """A strict batch with one invalid event stores nothing of the batch."""
            p, a = key
            before = self.baseline(key) if key not in self.erased else None
            good = {"account": a, "item": items[0], "event_id": f"st-{next(counter)}"}
            bad = {"item": items[0], "value": "x"}
            r = self.call("POST", EVENTS.format(p=p), T_EVENTS, json=[good, bad])
            assert r.status_code == 422, r.text
            assert any(e["index"] == 1 for e in r.json()["errors"])
            if before is not None:
                assert (self.stored(key) or 0) == before

        @rule(key=st.sampled_from(accounts))
        def delete(self, key: tuple[str, str]) -> None:
            p, a = key
            exists = key not in self.erased and self.baseline(key) > 0
            r = self.call("DELETE", ACCOUNT.format(p=p, a=a), T_ACCOUNT)
            if exists:
                assert r.status_code == 200, r.text
            else:
                assert r.status_code in (200, 404), r.text
            if r.status_code == 200 or exists:
                self.erased.add(key)
                self.expected.pop(key, None)

        @invariant()
        def stored_equals_acknowledged(self) -> None:
            for key, count in self.expected.items():
                assert self.stored(key) == (count or None), key
            for key in self.erased:
                assert self.stored(key) is None, key

    API.TestCase.settings = settings(
        max_examples=12,
        stateful_step_count=8,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    API.TestCase().runTest()
