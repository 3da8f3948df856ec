"""The HTTP API in-process: auth and scopes, limits, field-named errors, 404s, the anonymous
fallback, online updates after posted events, metrics, erasure and model swap."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime

import pytest

from tests.test_serve_common import Served, serve, world_of

RECS = "/v1/platforms/{p}/accounts/{a}/recommendations"
ACCOUNT = "/v1/platforms/{p}/accounts/{a}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return world_of(tmp_path_factory)


@pytest.fixture(scope="module")
def served(world, tmp_path_factory):
    with serve(world, tmp_path_factory.mktemp("served") / "ws") as s:
        yield s


@pytest.fixture
def fresh(world, tmp_path):
    """A served copy of its own, for tests that erase or swap models."""
    with serve(world, tmp_path / "ws") as s:
        yield s


def recs(s: Served, platform: str, account: str, k: int = 5, which: str = "rw") -> dict:
    r = s.client.get(RECS.format(p=platform, a=account), params={"k": k}, headers=s.auth(which))
    assert r.status_code == 200, r.text
    return r.json()


# -- service routes and auth ----------------------------------------------------------------------
def test_health_and_readiness_need_no_token(served):
    assert served.client.get("/healthz").json() == {"status": "ok"}
    r = served.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "model_version": "v0001", "store": True}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer crx_nope_nope"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_or_invalid_token_is_401(served, world, headers):
    account = world.accounts["video"][0]
    r = served.client.get(RECS.format(p="video", a=account), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"] and set(r.json()) == {"error", "field"}


def test_revoked_token_is_401(served, world):
    r = served.client.get("/metrics", headers=served.auth("revoked"))
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]


def test_scopes_get_needs_read_post_and_delete_need_write(served, world):
    account = world.accounts["video"][0]
    c = served.client
    r = c.post("/v1/platforms/video/events", json=[], headers=served.auth("read"))
    assert r.status_code == 403 and "'write'" in r.json()["error"]
    r = c.delete(ACCOUNT.format(p="video", a=account), headers=served.auth("read"))
    assert r.status_code == 403
    r = c.get(RECS.format(p="video", a=account), headers=served.auth("write"))
    assert r.status_code == 403 and "'read'" in r.json()["error"]
    assert c.get("/metrics", headers=served.auth("write")).status_code == 403
    assert c.get("/metrics", headers=served.auth("read")).status_code == 200
    # a write-only token may post
    r = c.post("/v1/platforms/video/events", json=[], headers=served.auth("write"))
    assert r.status_code == 200 and r.json() == {"accepted": 0, "quarantined": 0, "duplicates": 0}


# -- recommendations ------------------------------------------------------------------------------
def test_recommendations_of_a_known_account(served, world):
    account = world.accounts["video"][3]
    doc = recs(served, "video", account, k=4)
    assert doc["platform"] == "video" and doc["account"] == account  # the raw id, as sent
    assert doc["model_version"] == "v0001"
    assert len(doc["items"]) == 4
    assert all(i["item"] in set(world.items["video"]) for i in doc["items"])
    scores = [i["score"] for i in doc["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["reason"] and "popular" not in i["reason"] for i in doc["items"])


def test_unknown_account_gets_the_anonymous_fallback(served):
    a = recs(served, "video", "never-seen-1", k=5)
    b = recs(served, "video", "never-seen-2", k=5)
    assert a["account"] == "never-seen-1"
    assert [i["item"] for i in a["items"]] == [i["item"] for i in b["items"]]
    assert len(a["items"]) == 5
    assert all("popular" in i["reason"] for i in a["items"])


def test_unknown_platform_is_404_with_a_message(served):
    r = served.client.get(RECS.format(p="books", a="x"), headers=served.auth())
    assert r.status_code == 404
    assert "books" in r.json()["error"]


# -- errors name the field ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (RECS.format(p="video", a="x"), {"k": 0}, "query.k"),
        (RECS.format(p="video", a="x"), {"k": "ten"}, "query.k"),
        (RECS.format(p="video", a="x"), {"k": 100_000}, "query.k"),
        (RECS.format(p="bad name!", a="x"), {}, "path.platform"),
        (RECS.format(p="video", a="x" * 600), {}, "path.account"),
        ("/v1/platforms/video/accounts/x/similar", {}, "query.on"),
        ("/v1/platforms/video/accounts/x/similar", {"on": "music", "k": -1}, "query.k"),
    ],
)
def test_validation_errors_are_422_naming_the_field(served, path, params, field):
    r = served.client.get(path, params=params, headers=served.auth())
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field
    assert body["error"].startswith(field)


def test_delete_scope_must_be_account_or_person(served, world):
    account = world.accounts["video"][0]
    r = served.client.delete(
        ACCOUNT.format(p="video", a=account), params={"scope": "all"}, headers=served.auth()
    )
    assert r.status_code == 422 and r.json()["field"] == "query.scope"


@pytest.mark.parametrize("route", ["links", "similar?on=music", "profile"])
def test_unknown_account_is_404_for_account_routes(served, route):
    r = served.client.get(f"/v1/platforms/video/accounts/nobody/{route}", headers=served.auth())
    assert r.status_code == 404
    assert r.json() == {"error": "no account 'nobody' on platform 'video'", "field": None}


def test_unknown_route_and_wrong_method_answer_json(served):
    r = served.client.get("/v2/nothing", headers=served.auth())
    assert r.status_code == 404 and r.json()["error"] == "Not Found"
    r = served.client.put("/healthz")
    assert r.status_code == 405 and "error" in r.json()


def test_odd_requests_never_get_a_5xx(served):
    c, h = served.client, served.auth()
    odd = [
        c.get(RECS.format(p="video", a="%00%01"), headers=h),
        c.get(RECS.format(p="video", a="名前 ✓"), headers=h),
        c.get(RECS.format(p="video", a="a%2Fb"), headers=h),
        c.get("/v1/platforms/video/accounts/x/similar?on=bad%20name", headers=h),
        c.get("/v1/platforms/video/accounts/nobody/similar?on=books", headers=h),
        c.post("/v1/platforms/video/events", content=b"\xff\xfe", headers=h),
        c.post("/v1/platforms/video/events", content=b"[1, 2", headers=h),
        c.post("/v1/platforms/video/events", json={"account": "a"}, headers=h),
        c.post("/v1/platforms/bad name/events", json=[], headers=h),
        c.delete(ACCOUNT.format(p="video", a="nobody"), headers=h),
    ]
    # a NUL in an id breaks the identity rule (422); an id with "/" is an id like any other
    assert [r.status_code for r in odd] == [422, 200, 200, 422, 404, 400, 400, 422, 422, 404]
    assert all(set(r.json()) == {"error", "field"} for r in odd if r.status_code >= 400)


# -- limits ---------------------------------------------------------------------------------------
def test_body_over_the_limit_is_413_from_content_length(served):
    limit = served.state.config.max_body_bytes
    r = served.client.post(
        "/v1/platforms/video/events", content=b"[" + b" " * limit + b"]", headers=served.auth()
    )
    assert r.status_code == 413
    assert r.json()["field"] == "body"


def test_streamed_body_is_cut_off_at_the_limit(served):
    limit = served.state.config.max_body_bytes

    def chunks():  # no Content-Length: a chunked upload of 4x the limit
        for _ in range(64):
            yield b" " * (limit // 16)

    r = served.client.post("/v1/platforms/video/events", content=chunks(), headers=served.auth())
    assert r.status_code == 413
    assert r.json()["field"] == "body"


def test_batch_over_max_batch_is_413(served, monkeypatch):
    state = served.state
    monkeypatch.setattr(state, "config", state.config.model_copy(update={"max_batch": 3}))
    batch = [{"account": f"u{i}", "item": "i1"} for i in range(4)]
    r = served.client.post("/v1/platforms/video/events", json=batch, headers=served.auth())
    assert r.status_code == 413
    assert r.json()["field"] == "body" and "at most 3" in r.json()["error"]


def test_rate_limit_is_429_with_retry_after_per_token(served, monkeypatch):
    from crossrec.serve.limits import RateLimiter

    monkeypatch.setattr(served.state, "limiter", RateLimiter(rate=0.5, burst=2))
    c = served.client
    codes = [c.get("/metrics", headers=served.auth("read")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = c.get("/metrics", headers=served.auth("read"))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"  # one request per 2 s
    assert "rate limit" in r.json()["error"]
    # another token has its own bucket
    assert c.get("/metrics", headers=served.auth("rw")).status_code == 200


# -- events in, fresh recommendations out ---------------------------------------------------------
def test_posted_events_update_the_account_online(served, world):
    account = world.accounts["video"][5]
    before = recs(served, "video", account, k=5)
    top = before["items"][0]["item"]
    event = {
        "account": account,
        "item": top,
        "event": "watch",
        "timestamp": datetime.now(UTC).isoformat(),
        "event_id": "fresh-1",
    }
    r = served.client.post("/v1/platforms/video/events", json=[event], headers=served.auth())
    assert r.json() == {"accepted": 1, "quarantined": 0, "duplicates": 0}
    after = recs(served, "video", account, k=5)
    assert top not in [i["item"] for i in after["items"]]  # now seen: filtered out
    profile = served.client.get(
        ACCOUNT.format(p="video", a=account) + "/profile", headers=served.auth()
    ).json()
    assert profile["events"] == world.events["video"][account] + 1
    assert profile["updated_online"] is True
    # the same event again is a duplicate, not a second event
    r = served.client.post("/v1/platforms/video/events", json=[event], headers=served.auth())
    assert r.json() == {"accepted": 0, "quarantined": 0, "duplicates": 1}


def test_a_new_account_gets_personal_recommendations_after_its_first_event(served, world):
    anonymous = recs(served, "music", "brand-new")
    item = world.items["music"][7]
    r = served.client.post(
        "/v1/platforms/music/events",
        json=[{"account": "brand-new", "item": item, "event": "listen"}],
        headers=served.auth(),
    )
    assert r.json()["accepted"] == 1
    personal = recs(served, "music", "brand-new")
    assert personal["items"] != anonymous["items"]
    assert item not in [i["item"] for i in personal["items"]]
    assert not any("popular" in i["reason"] for i in personal["items"])


def test_bad_records_are_quarantined_on_request(served):
    batch = [
        {"item": "i1"},  # no account
        {"account": {"nested": 1}, "item": "i1"},  # wrong JSON type
        {"account": "u1", "item": "i1", "timestamp": "yesterday"},
        7,  # not an object
        {"account": "ok-one", "item": "i1", "colour": "blue"},  # extra key: an attribute
    ]
    r = served.client.post(
        "/v1/platforms/video/events?on_error=quarantine", json=batch, headers=served.auth()
    )
    assert r.status_code == 200
    assert r.json() == {"accepted": 1, "quarantined": 4, "duplicates": 0}


# -- links, similar, profile ----------------------------------------------------------------------
def test_links_show_the_known_link_with_the_raw_id_sent(served, world):
    pa, a, pb, b = world.known_links[0]
    docs = {}
    for p, raw in ((pa, a), (pb, b)):
        r = served.client.get(ACCOUNT.format(p=p, a=raw) + "/links", headers=served.auth())
        assert r.status_code == 200
        docs[raw] = r.json()
        assert docs[raw]["account"] == raw
    # without a `crossrec link` run the person is the account alone; the known link shows
    # from (at least) the side it is stored under
    shown = {
        raw: [e for e in doc["links"] if e["source"].startswith("known")]
        for raw, doc in docs.items()
    }
    caller, other = (a, b) if shown[a] else (b, a)
    assert len(shown[caller]) == 1 and shown[caller][0]["probability"] == 1.0
    edge = shown[caller][0]
    assert caller in (edge["account_a"], edge["account_b"])
    assert other not in json.dumps(docs[caller])  # never sent by this caller: a pseudonym


def test_similar_accounts_on_the_other_platform(served, world):
    account = world.accounts["video"][2]
    r = served.client.get(
        ACCOUNT.format(p="video", a=account) + "/similar",
        params={"on": "music", "k": 3},
        headers=served.auth(),
    )
    assert r.status_code == 200
    doc = r.json()
    assert len(doc["similar"]) == 3
    assert all(s["platform"] == "music" for s in doc["similar"])
    sims = [s["similarity"] for s in doc["similar"]]
    assert sims == sorted(sims, reverse=True)


def test_profile_summarises_store_and_model(served, world):
    account = world.accounts["music"][4]
    r = served.client.get(ACCOUNT.format(p="music", a=account) + "/profile", headers=served.auth())
    doc = r.json()
    assert doc["account"] == account and doc["events"] == world.events["music"][account]
    assert sum(doc["event_types"].values()) == doc["events"]
    assert doc["first_event"] <= doc["last_event"]
    assert 1 <= doc["active_days"] <= doc["events"]
    assert doc["in_model"] is True and doc["model_version"] == "v0001"
    assert doc["vectors"] == {"cf": True, "sequence": True, "text": True}
    assert doc["top_categories"]


# -- metrics --------------------------------------------------------------------------------------
def test_metrics_count_requests_by_route_and_keep_raw_ids_out(served, world):
    account = world.accounts["video"][1]
    recs(served, "video", account)
    served.client.post(
        "/v1/platforms/video/events",
        json=[{"account": account, "item": world.items["video"][0], "timestamp": time.time()}],
        headers=served.auth(),
    )
    r = served.client.get("/metrics", headers=served.auth("read"))
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = "/v1/platforms/{platform}/accounts/{account}/recommendations"
    assert f'crossrec_http_requests_total{{method="GET",route="{route}",status="200"}}' in text
    assert (
        f'crossrec_http_request_duration_seconds_bucket{{le="0.01",method="GET",route="{route}"}}'
        in text
    )
    assert 'crossrec_events_ingested_total{platform="video"}' in text
    assert 'crossrec_model_info{version="v0001"} 1.0' in text
    lag = next(line for line in text.splitlines() if line.startswith("crossrec_freshness_lag"))
    assert 0 <= float(lag.split()[-1]) < 60
    assert account not in text


# -- erasure --------------------------------------------------------------------------------------
def test_erasure_forgets_the_account_everywhere_the_service_looks(fresh, world):
    account = world.accounts["video"][9]
    assert "popular" not in recs(fresh, "video", account)["items"][0]["reason"]
    r = fresh.client.delete(ACCOUNT.format(p="video", a=account), headers=fresh.auth())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["accounts"] == 1
    assert datetime.fromisoformat(doc["deleted_until"]) <= datetime.now(UTC)
    after = recs(fresh, "video", account)
    assert all("popular" in i["reason"] for i in after["items"])  # nothing known any more
    for route in ("profile", "links"):
        r = fresh.client.get(
            ACCOUNT.format(p="video", a=account) + f"/{route}", headers=fresh.auth()
        )
        assert r.status_code == 404
    assert (
        fresh.client.delete(ACCOUNT.format(p="video", a=account), headers=fresh.auth()).status_code
        == 404
    )
    # the service goes on: other accounts, ingest and readiness
    assert fresh.client.get("/readyz").status_code == 200
    other = world.accounts["video"][10]
    assert "popular" not in recs(fresh, "video", other)["items"][0]["reason"]
    r = fresh.client.post(
        "/v1/platforms/video/events", json=[{"account": other, "item": "i-x"}], headers=fresh.auth()
    )
    assert r.json()["accepted"] == 1


def test_erasing_a_person_takes_the_linked_account_too(fresh, world):
    pa, a, pb, b = world.known_links[1]
    r = fresh.client.delete(
        ACCOUNT.format(p=pa, a=a), params={"scope": "person"}, headers=fresh.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json()["accounts"] == 2
    assert (
        fresh.client.get(ACCOUNT.format(p=pb, a=b) + "/profile", headers=fresh.auth()).status_code
        == 404
    )


# -- model swap -----------------------------------------------------------------------------------
def _publish_copy(root, version: str, created_at: datetime) -> None:
    """A new model version: a copy of v0001 with its own name and creation time."""
    from crossrec.models import METADATA, ModelRegistry

    registry = ModelRegistry(root / "models")
    staging = registry.staging_dir(version)
    shutil.rmtree(staging)
    shutil.copytree(root / "models" / "v0001", staging)
    meta = json.loads((staging / METADATA).read_text())
    meta.update(version=version, created_at=created_at.isoformat(timespec="seconds"), seconds=0)
    registry.publish(version, staging, meta)


def test_a_new_model_version_is_swapped_in_whole(fresh, world):
    state = fresh.state
    account = world.accounts["music"][0]
    old = state.model
    assert state.check_model() is False  # nothing new yet
    _publish_copy(fresh.root, "v0002", datetime.now(UTC))
    assert state.check_model() is True
    assert fresh.client.get("/readyz").json()["model_version"] == "v0002"
    assert recs(fresh, "music", account)["model_version"] == "v0002"
    # a request that took the old model before the swap finishes on it, whole
    assert old.version == "v0001" and old.recommender.model_version == "v0001"
    assert len(old.recommender.recommend("music", None, 3)) == 3
    metrics = fresh.client.get("/metrics", headers=fresh.auth()).text
    assert 'crossrec_model_info{version="v0002"} 1.0' in metrics
    assert 'crossrec_model_info{version="v0001"}' not in metrics
    assert "crossrec_model_swaps_total 1.0" in metrics


def test_accounts_updated_after_training_are_replayed_on_the_new_model(fresh, world):
    item = world.items["video"][3]
    r = fresh.client.post(
        "/v1/platforms/video/events",
        json=[{"account": "late-comer", "item": item}],
        headers=fresh.auth(),
    )
    assert r.json()["accepted"] == 1
    # trained before the event arrived: the new version does not hold it
    _publish_copy(fresh.root, "v0002", datetime(2020, 1, 1, tzinfo=UTC))
    assert fresh.state.check_model() is True
    doc = recs(fresh, "video", "late-comer")
    assert doc["model_version"] == "v0002"
    assert item not in [i["item"] for i in doc["items"]]
    assert not any("popular" in i["reason"] for i in doc["items"])


def test_a_broken_model_version_keeps_the_served_one(fresh):
    from crossrec.models import ModelRegistry

    registry = ModelRegistry(fresh.root / "models")
    broken = fresh.root / "models" / "v0002"
    broken.mkdir()
    (fresh.root / "models" / "CURRENT").write_text("v0002\n")
    assert registry.current() == "v0002"
    assert fresh.state.check_model() is False
    assert fresh.client.get("/readyz").json()["model_version"] == "v0001"
    assert "v0002" in (fresh.state.model_error or "")


# -- concurrency -----------------------------------------------------------------------------------
def test_reads_and_writes_from_many_threads_never_fail(served, world):
    from concurrent.futures import ThreadPoolExecutor

    c, h = served.client, served.auth()
    accounts = world.accounts["video"][20:30]

    def read(i: int) -> int:
        a = accounts[i % len(accounts)]
        route = ("/profile", "/links", "/recommendations?k=3")[i % 3]
        return c.get(ACCOUNT.format(p="video", a=a) + route, headers=h).status_code

    def write(i: int) -> int:
        batch = [
            {"account": f"busy-{i}", "item": world.items["video"][i % 50], "event_id": f"b{i}"}
        ]
        return c.post("/v1/platforms/video/events", json=batch, headers=h).status_code

    with ThreadPoolExecutor(8) as pool:
        reads = [pool.submit(read, i) for i in range(60)]
        writes = [pool.submit(write, i) for i in range(20)]
        codes = [f.result() for f in reads + writes]
    assert codes == [200] * 80
    # every write landed once
    r = c.get(ACCOUNT.format(p="video", a="busy-7") + "/profile", headers=h)
    assert r.json()["events"] == 1
