"""Prometheus metrics of the HTTP service (``GET /metrics``, text exposition format).

Each app has its own registry (no process-global collectors), so several apps in one process
(tests, benchmarks) never see each other's counts. Requests are labelled by route template
(``/v1/platforms/{platform}/events``), never by raw path: raw ids must not reach the metrics
and the label set must stay small.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from crossrec.serve.limits import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets in seconds: fine below 10 ms, where the service is meant to answer.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """The service's collectors.

    Parameters
    ----------
    newest_event_time : returns the epoch seconds of the newest event applied online (None
        before the first), read at scrape time for the freshness lag.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, newest_event_time: Callable[[], float | None] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "crossrec_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crossrec_http_request_duration_seconds",
            "Seconds from request to the end of the response, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "crossrec_events_ingested",
            "Events accepted into the store through the API, by platform.",
            ["platform"],
            registry=self.registry,
        )
        self.quarantined = Counter(
            "crossrec_events_quarantined",
            "Events refused into the quarantine through the API, by platform.",
            ["platform"],
            registry=self.registry,
        )
        self.online_updates = Counter(
            "crossrec_online_account_updates",
            "Accounts whose vectors were refreshed after new events.",
            registry=self.registry,
        )
        self.online_relinks = Counter(
            "crossrec_online_relinks",
            "Accounts whose candidate links were re-scored online after new events.",
            registry=self.registry,
        )
        self.relink_pending = Gauge(
            "crossrec_relink_pending",
            "Accounts waiting for their links to be re-scored online.",
            registry=self.registry,
        )
        self.model_swaps = Counter(
            "crossrec_model_swaps",
            "Times a newly trained model version was loaded and swapped in.",
            registry=self.registry,
        )
        self.retrains = Counter(
            "crossrec_retrains",
            "Trainings run inside the server, by result (ok, failed).",
            ["result"],
            registry=self.registry,
        )
        self.retrain_running = Gauge(
            "crossrec_retrain_running",
            "1 while a training runs inside the server, else 0.",
            registry=self.registry,
        )
        self.retrain_seconds = Gauge(
            "crossrec_retrain_last_seconds",
            "Seconds the last training inside the server took (ok or failed).",
            registry=self.registry,
        )
        self.precomputed = Gauge(
            "crossrec_precomputed_lists",
            "Accounts of the served model whose list was computed ahead, by platform.",
            ["platform"],
            registry=self.registry,
        )
        self.precompute_running = Gauge(
            "crossrec_precompute_running",
            "1 while the lists of the served model are being computed ahead, else 0.",
            registry=self.registry,
        )
        self.model = Gauge(
            "crossrec_model_info",
            "The model version being served (value 1 on its label).",
            ["version"],
            registry=self.registry,
        )
        self._newest = newest_event_time or (lambda: None)
        self.freshness = Gauge(
            "crossrec_freshness_lag_seconds",
            "Now minus the time of the newest event applied online (NaN before the first).",
            registry=self.registry,
        )
        self.freshness.set_function(self._lag)
        self._version: str | None = None

    def _lag(self) -> float:
        newest = self._newest()
        return math.nan if newest is None else max(0.0, time.time() - newest)

    def set_model(self, version: str | None) -> None:
        """Label the gauge with the version now served (the previous label is dropped)."""
        if self._version is not None and self._version != version:
            self.model.remove(self._version)
        if version is not None:
            self.model.labels(version).set(1)
        self._version = version

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request and times it until its last body byte is sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    # the router stores the matched route in the (shared) scope dict
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    # "{account:path}" is labelled "{account}": the converter is how it matches, not what it is
    return _CONVERTER.sub(r"{\1}", str(path)) if path else UNMATCHED_ROUTE


_CONVERTER = re.compile(r"\{(\w+):\w+\}")
