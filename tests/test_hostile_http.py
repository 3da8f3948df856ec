"""The hostile-input corpus through POST /v1/platforms/{p}/events: a body that does not decode
is a JSON 400, a batch with an invalid event a 422 naming every one and storing nothing
(``?on_error=quarantine`` stores the good ones), a client that goes away mid-body is no 5xx,
and a request too malformed for the app still gets a JSON 400 from the real server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager

import pytest

from tests.hostile_corpus import DOCUMENTS, DocCase

EVENTS = "/v1/platforms/video/events"


@pytest.fixture
def api(tmp_path):
    """The app over a fresh workspace without a model (ingest needs none)."""
    from fastapi.testclient import TestClient

    from crossrec.serve.app import create_app
    from crossrec.serve.auth import create_token
    from crossrec.serve.state import ServeState
    from crossrec.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    token = create_token(ws.store, ("read", "write"), "rw")[0]
    state = ServeState(ws, poll_seconds=3600)
    app = create_app(state)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, ws, state, app, token
    ws.close()


@pytest.mark.parametrize("case", DOCUMENTS, ids=[c.name for c in DOCUMENTS])
def test_corpus_document_posted(api, case: DocCase):
    client, ws, *_ = api
    good = {"account": "other", "item": "i9"}
    body = case.body()
    batch = body[:-1] + b", " + json.dumps(good).encode() + b"]"  # a good event beside it
    r = client.post(EVENTS, content=batch)
    assert r.status_code == case.http, r.text
    doc = r.json()
    if case.http == 200:
        assert doc == {"accepted": 2, "quarantined": 0, "duplicates": 0}
        assert ws.store.count("events") == 2
        return
    assert ws.store.count("events") == 0  # nothing of the batch is kept
    assert ws.quarantine().count() == 0
    if case.http == 400:
        assert doc["field"] == "body" and case.reason in doc["error"]
        return
    # 422: every invalid event with its index, field and reason
    [error] = doc["errors"]
    assert (error["index"], error["field"]) == (0, case.field)
    assert error["reason"].startswith(case.reason)
    assert doc["field"] == f"body[0].{case.field}"
    # the same batch with on_error=quarantine: the good event stored, the bad one quarantined
    r = client.post(EVENTS, content=batch, params={"on_error": "quarantine"})
    assert r.status_code == 200
    assert r.json() == {"accepted": 1, "quarantined": 1, "duplicates": 0}
    [row] = ws.quarantine().list()
    assert (row["line"], row["field"]) == (1, case.field)
    assert row["reason"].startswith(case.reason)


def test_every_invalid_event_is_named_and_the_valid_ones_are_not_stored(api):
    client, ws, *_ = api
    batch = [
        {"account": "a", "item": "i1"},
        {"item": "i2"},
        {"account": "b", "item": "i3", "value": "x"},
        7,
        {"account": "c", "item": "i4", "timestamp": 1_600_000_000},
    ]
    r = client.post(EVENTS, json=batch)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"index": 1, "field": "account", "reason": "missing account"},
        {"index": 2, "field": "value", "reason": "unparsable value: x"},
        {"index": 3, "field": None, "reason": "not a JSON object"},
    ]
    assert "3 of 5 events are invalid" in r.json()["error"]
    assert ws.store.count("events") == 0
    assert client.post(EVENTS, json=batch, params={"on_error": "nonsense"}).status_code == 422


async def _post_and_disconnect(app, token: str) -> list[dict]:
    """POST half a body, then the client goes away (what uvicorn tells the app)."""
    sent: list[dict] = []
    messages = [
        {"type": "http.request", "body": b'[{"account": "a", ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": EVENTS,
        "raw_path": EVENTS.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000"),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return sent


def test_client_gone_mid_body_is_no_5xx_and_no_traceback(api, caplog):
    client, ws, _, app, token = api
    with caplog.at_level(logging.INFO):
        sent = asyncio.run(_post_and_disconnect(app, token))
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert any("closed the connection" in r.getMessage() for r in caplog.records)
    metrics = client.get("/metrics").text
    assert 'route="/v1/platforms/{platform}/events",status="499"' in metrics
    assert 'status="500"' not in metrics
    assert ws.store.count("events") == 0


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def _real_server(app) -> Iterator[int]:
    """uvicorn in a thread with the service's protocol (as `crossrec serve` runs it)."""
    import uvicorn

    from crossrec.serve.bad_request import http_protocol

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, http=http_protocol(), log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_client_gone_mid_body_on_the_real_server_is_counted_499(api, caplog):
    client, ws, _, app, token = api
    with caplog.at_level(logging.INFO), _real_server(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST {EVENTS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
                + b'[{"account": "a", "item": '
            )
            time.sleep(0.5)  # the app is reading the body when the client goes
        deadline = time.monotonic() + 10
        while "499" not in client.get("/metrics").text and time.monotonic() < deadline:
            time.sleep(0.1)
    metrics = client.get("/metrics").text
    assert 'route="/v1/platforms/{platform}/events",status="499"' in metrics
    assert 'status="500"' not in metrics
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert ws.store.count("events") == 0


def test_malformed_http_gets_a_json_400_from_the_real_server(api):
    _, _, _, app, _ = api
    with _real_server(app) as port:
        for bad in (
            b"NONSENSE\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            b"POST /v1/platforms/video/events HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        ):
            answer = _raw_request(port, bad)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), answer
            assert b"content-type: application/json" in head.lower()
            assert json.loads(body)["error"].startswith("malformed HTTP request")
        # a well-formed request on the same server is served as ever
        ok = _raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200") and b'{"status":"ok"}' in ok
