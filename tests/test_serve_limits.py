"""Request limits without a workspace: the token bucket's arithmetic, and the body limit as
raw ASGI (an oversized upload is refused before, or as soon as, the limit is passed)."""

from __future__ import annotations

import asyncio
import json

import pytest

from crossrec.serve.limits import BodyLimitMiddleware, RateLimiter, retry_after_header


def test_bucket_allows_a_burst_then_refills_at_the_rate():
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("t", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("t", now=0.0) == pytest.approx(0.5)  # one request per 0.5 s
    assert limiter.take("t", now=0.25) == pytest.approx(0.25)
    assert limiter.take("t", now=0.5) == 0.0
    # a quiet spell refills up to the burst, no further
    assert [limiter.take("t", now=100.0) for _ in range(4)][-1] > 0


def test_buckets_are_per_key_and_refused_requests_do_not_count():
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.take("a", now=0.0) == 0.0
    assert limiter.take("b", now=0.0) == 0.0
    for _ in range(5):  # hammering does not push the next slot further away
        assert limiter.take("a", now=0.5) == pytest.approx(0.5)
    assert limiter.take("a", now=1.0) == 0.0


def test_retry_after_rounds_up_to_whole_seconds():
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"


def test_rate_limiter_refuses_nonsense_settings():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)


class _Upload:
    """An ASGI client side: ``chunks`` bodies of ``size`` bytes, counting what was read."""

    def __init__(self, chunks: int, size: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.left = chunks
        self.size = size
        self.read = 0
        self.scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        self.left -= 1
        self.read += self.size
        return {"type": "http.request", "body": b"x" * self.size, "more_body": self.left > 0}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def body(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if "body" in m))


async def _reading_app(scope, receive, send) -> None:
    """Reads the whole body, then answers 200 with its size."""
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps({"n": total}).encode()})


def _run(upload: _Upload, limit: int) -> None:
    asyncio.run(BodyLimitMiddleware(_reading_app, limit)(upload.scope, upload.receive, upload.send))


def test_declared_length_over_the_limit_is_refused_before_reading():
    upload = _Upload(1000, 1024, [(b"content-length", str(1000 * 1024).encode())])
    _run(upload, 10_240)
    assert upload.status == 413 and upload.read == 0
    assert upload.body["field"] == "body"
    headers = dict(upload.sent[0]["headers"])
    assert headers[b"connection"] == b"close"


def test_streamed_body_is_cut_off_once_past_the_limit():
    upload = _Upload(1000, 1024, [])  # chunked: no Content-Length
    _run(upload, 10_240)
    assert upload.status == 413
    assert upload.read == 11 * 1024  # the chunk that passed the limit, and nothing more


def test_bodies_within_the_limit_pass_untouched():
    upload = _Upload(10, 1024, [(b"content-length", b"10240")])
    _run(upload, 10_240)
    assert upload.status == 200 and upload.body == {"n": 10_240}
