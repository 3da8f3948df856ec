"""Erasure holds: an erased account's events that arrive later (a re-exported file, a record
batch as HTTP and Kafka send them, a POST) are quarantined as ``erased``, never stored; and an
account is erased by the id its client sent (spaces, ``/``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crossrec.forget_models import find_traces
from tests.conftest import write

EVENTS = "account,item,value\n  lead,i1,1\nkeep,i2,2\nlead,i3,3\n"
REEXPORT = "account,item,value\nlead ,i9,1\nkeep,i8,2\nlead,i1,5\n"


def _quarantined(ws, reason: str) -> list[dict]:
    return [r for r in ws.quarantine().list(limit=1000) if r["reason"] == reason]


def test_a_reexported_file_does_not_bring_an_erased_account_back(ws, tmp_path):
    ws.ingest_events("video", write(tmp_path / "e.csv", EVENTS))
    lead = ws.account_id("video", "lead")
    # erased by the id the client sent: leading spaces included
    result = ws.forget("video", "  lead")
    assert result["accounts"] == [["video", lead]]

    [s] = ws.ingest_events("video", write(tmp_path / "again.csv", REEXPORT))
    assert (s.accepted, s.quarantined) == (1, 2)
    assert s.reasons == {"erased": 2}
    assert not ws.store.has_account("video", lead)
    assert ws.stats()["platforms"]["video"] == {"accounts": 1, "items": 2, "events": 2}
    rows = _quarantined(ws, "erased")
    assert [(r["line"], r["field"], r["raw"]) for r in rows] == [
        (2, "account", None),
        (4, "account", None),
    ]
    # the suppression list holds a keyed mark, never the raw id nor the pseudonym
    ws.close()
    assert find_traces(ws.root, [lead]) == []
    assert find_traces(ws.root, ["lead"]) == []


def test_records_of_an_erased_account_are_quarantined_not_stored(ws, tmp_path):
    # the path of POST /events and of `crossrec consume`
    ws.ingest_events("video", write(tmp_path / "e.csv", EVENTS))
    ws.forget("video", "lead")
    s = ws.ingest_records(
        "video",
        [{"account": " lead", "item": "i7"}, {"account": "keep", "item": "i7"}],
        source="kafka:events/0",
        numbers=[10, 11],
    )
    assert (s.accepted, s.quarantined, s.reasons) == (1, 1, {"erased": 1})
    assert s.accounts == [ws.account_id("video", "keep")]
    assert not ws.store.has_account("video", ws.account_id("video", "lead"))
    [row] = _quarantined(ws, "erased")
    assert (row["file"], row["line"], row["raw"]) == ("kafka:events/0", 10, None)
    # the same raw id on another platform is another account: not erased
    other = ws.ingest_records("music", [{"account": "lead", "item": "m1"}], source="http")
    assert other.accepted == 1


def test_a_person_erased_stays_erased_on_every_platform(ws, tmp_path):
    ws.ingest_events("video", write(tmp_path / "v.csv", "account,item\nv1,i1\nv2,i2\n"))
    ws.ingest_events("music", write(tmp_path / "m.csv", "account,item\nm1,s1\nm2,s2\n"))
    ws.ingest_links(write(tmp_path / "l.csv", HEADER_LINKS + "video,v1,music,m1\n"))
    ws.forget("video", "v1", person=True)
    [s] = ws.ingest_events("music", write(tmp_path / "m2.csv", "account,item\nm1,s3\nm2,s3\n"))
    assert (s.accepted, s.reasons) == (1, {"erased": 1})


HEADER_LINKS = "platform_a,account_a,platform_b,account_b\n"


def test_forget_cli_finds_the_account_by_the_id_sent_and_says_erasure_holds(ws, tmp_path):
    from crossrec.cli import app

    ws.ingest_events("video", write(tmp_path / "e.csv", "account,item\na/b c,i1\n  lead,i2\n"))
    ws.close()
    runner = CliRunner()
    help_text = runner.invoke(app, ["forget", "--help"]).output
    assert "erased" in help_text and "quarantined" in help_text
    for raw in ("a/b c", "  lead"):
        r = runner.invoke(
            app, ["forget", "--workspace", str(ws.root), "--platform", "video", "--account", raw]
        )
        assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["forget", "--workspace", str(ws.root), "--platform", "video", "--account", "x\ny"]
    )
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "error: invalid account: control character U+000A (ids are trimmed, at most 512 "
        "characters, without control characters)"
    ]


# -- HTTP ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.test_serve_common import world_of

    return world_of(tmp_path_factory)


ODD_IDS = ("  lead", "a/b", "with space/x", "e\u0301t\u00e9")


def test_every_stored_account_is_read_and_erased_by_the_id_its_client_sent(world, tmp_path):
    from urllib.parse import quote

    from tests.test_serve_common import serve

    with serve(world, tmp_path / "ws") as s:
        c, h = s.client, s.auth()
        item = world.items["video"][0]
        events = [{"account": a, "item": item, "value": 1} for a in ODD_IDS]
        r = c.post("/v1/platforms/video/events", json=events, headers=h)
        assert r.status_code == 200 and r.json()["accepted"] == len(ODD_IDS), r.text
        for raw in ODD_IDS:
            for path_id in {quote(raw, safe=""), quote(raw, safe="/")}:
                url = f"/v1/platforms/video/accounts/{path_id}"
                r = c.get(url + "/profile", headers=h)
                assert r.status_code == 200, (raw, r.text)
                assert r.json()["events"] == 1
                assert c.get(url + "/links", headers=h).status_code == 200
            r = c.delete(f"/v1/platforms/video/accounts/{quote(raw, safe='')}", headers=h)
            assert r.status_code == 200, (raw, r.text)
            assert r.json()["accounts"] == 1
            r = c.get(f"/v1/platforms/video/accounts/{quote(raw, safe='')}/profile", headers=h)
            assert r.status_code == 404
        # sent again after the erasure: quarantined as erased, not stored
        r = c.post(
            "/v1/platforms/video/events", params={"on_error": "quarantine"}, json=events, headers=h
        )
        assert r.status_code == 200, r.text
        assert (r.json()["accepted"], r.json()["quarantined"]) == (0, len(ODD_IDS))
        for raw in ODD_IDS:
            r = c.get(f"/v1/platforms/video/accounts/{quote(raw, safe='')}/profile", headers=h)
            assert r.status_code == 404
        too_long = "x" * 513
        r = c.get(f"/v1/platforms/video/accounts/{too_long}/profile", headers=h)
        assert r.status_code == 422
        assert r.json()["field"] == "path.account"


# -- kill -9 of the server ------------------------------------------------------------------------
def _request(method: str, url: str, token: str, body: object = None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_kill_9_of_serve_keeps_acknowledged_events_and_erasures(ws, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from crossrec.serve.auth import create_token
    from tests.test_serve_uvicorn import _free_port

    token, _ = create_token(ws.store, ("read", "write"), "t")
    root = ws.root
    ws.close()
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossrec", "serve", "-w", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1/platforms/video"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                _request("GET", f"http://127.0.0.1:{port}/healthz", token)
                break
            except OSError:
                assert time.monotonic() < deadline, "server not up in 90 s"
                time.sleep(0.3)
        events = [{"account": a, "item": "i1", "event_id": f"{a}-1"} for a in ("x/1", "y 2")]
        assert _request("POST", f"{base}/events", token, events)[1]["accepted"] == 2
        assert _request("DELETE", f"{base}/accounts/x%2F1", token)[0] == 200
        later = [{"account": "y 2", "item": "i2", "event_id": "y-2"}]
        assert _request("POST", f"{base}/events", token, later)[1]["accepted"] == 1
        proc.send_signal(signal.SIGKILL)  # no shutdown: what was acknowledged must be on disk
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    from crossrec.workspace import Workspace

    with Workspace(root) as again:
        assert again.store.account_events("video", again.account_id("video", "y 2")).num_rows == 2
        assert not again.store.has_account("video", again.account_id("video", "x/1"))
        s = again.ingest_records("video", events, source="http")  # the erasure held
        assert (s.accepted, s.duplicates, s.reasons) == (0, 1, {"erased": 1})


# -- Kafka ----------------------------------------------------------------------------------------
@pytest.mark.kafka
def test_kafka_messages_of_an_erased_account_are_quarantined(ws, tmp_path, kafka_broker):
    import json
    import uuid

    from confluent_kafka import Producer

    from tests.test_consume import consume

    ws.ingest_events("video", write(tmp_path / "e.csv", EVENTS))
    ws.forget("video", "lead")
    topic = f"erased-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for account, item in ((" lead", "i5"), ("keep", "i6"), ("lead", "i7")):
        message = {"platform": "video", "account": account, "item": item}
        producer.produce(topic, json.dumps(message).encode(), partition=0)
    assert producer.flush(10) == 0
    consume(ws, kafka_broker, topic)
    assert not ws.store.has_account("video", ws.account_id("video", "lead"))
    assert ws.store.account_events("video", ws.account_id("video", "keep")).num_rows == 2
    rows = _quarantined(ws, "erased")
    assert [(r["file"], r["line"], r["raw"]) for r in rows] == [
        (f"kafka:{topic}/0", 0, None),
        (f"kafka:{topic}/0", 2, None),
    ]


@pytest.fixture(scope="module")
def kafka_broker():
    from tests.test_consume import broker

    yield from broker.__wrapped__()  # the Tansu broker of the consume tests
