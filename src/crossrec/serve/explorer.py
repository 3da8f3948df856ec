"""The link explorer: a page at ``/ui`` and the JSON routes it reads beside the account routes.

The page (``serve/ui/``: static HTML, JS and CSS shipped in the package, nothing fetched from
elsewhere) asks for a bearer token, keeps it in the tab's ``sessionStorage`` and sends it on
every request, like any client. Its own JSON routes need the ``read`` scope:

* ``/v1/explorer/summary``: the served model's linkage: operating point, held-out
  precision-recall curve and calibration, the truth evaluation when there is one;
* ``/v1/explorer/signals``: each linkage signal's distribution among true and false pairs;
* ``/v1/explorer/platforms/{platform}/accounts/{account}``: the account's person, every link
  with its probability, status and evidence placed against those distributions, and its
  weekly activity rhythm.

Accounts are shown by raw id where the server holds an id list for their platform
(``crossrec serve --ids PLATFORM=FILE``, kept in memory only), else by pseudonym.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from crossrec.serve.app import _ERRORS, _NO_MODEL, _NOT_FOUND, Account, Platform, ReadToken, _state
from crossrec.serve.explorer_data import (
    Distributions,
    link_summary,
    signal_distributions,
    weekly_rhythm,
)
from crossrec.serve.schemas import ErrorBody

if TYPE_CHECKING:
    from crossrec.serve.state import ServeState

UI_PACKAGE = "crossrec.serve"
UI_DIR = "ui"
#: The page's files and their media types; nothing else is served under /ui.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "explorer.js": "text/javascript; charset=utf-8",
    "explorer.css": "text/css; charset=utf-8",
}
#: The page may load and fetch only from this server.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class ExplorerAccount(BaseModel):
    platform: str
    account: str = Field(description="Raw id where the server holds one, else the pseudonym.")
    raw_id: bool = Field(description="`account` is the raw id (else a pseudonym).")
    query: bool = Field(description="This is the account looked up.")


class ExplorerEvidence(BaseModel):
    signal: str
    value: float
    text: str
    true_below: float | None = Field(
        description="Share of true training pairs with a lower value (null: no distribution)."
    )
    false_below: float | None = Field(
        description="Share of false training pairs with a lower value."
    )


class ExplorerLink(BaseModel):
    platform_a: str
    account_a: str
    platform_b: str
    account_b: str
    raw_a: bool = Field(description="`account_a` is a raw id (else a pseudonym).")
    raw_b: bool
    probability: float
    status: str = Field(description="asserted, probable or known.")
    source: str
    rank: int | None
    evidence: list[ExplorerEvidence]


class ExplorerCandidate(BaseModel):
    platform: str
    account: str
    raw_id: bool
    probability: float
    status: str = Field(description="asserted, probable, below threshold or not chosen.")


class Rhythm(BaseModel):
    days: list[str]
    counts: list[list[int]] = Field(description="Events per day (Monday first) × hour, UTC.")
    events: int


class ExplorerPerson(BaseModel):
    platform: str
    account: str
    person: int | None
    accounts: list[ExplorerAccount]
    links: list[ExplorerLink]
    candidates: list[ExplorerCandidate] = Field(
        description="Best candidates of an account with no asserted or known link."
    )
    rhythm: Rhythm | None = Field(description="Null when the events carry no timestamps.")
    model_version: str | None


class ExplorerSummary(BaseModel):
    model_version: str | None
    platforms: list[str]
    raw_ids: dict[str, int] = Field(description="Platform → raw ids the server can show.")
    link: dict[str, Any] | None = Field(description="The linkage of the served model.")


class SignalHistogram(BaseModel):
    edges: list[float]
    true: list[float] = Field(description="Share of true pairs per bin.")
    false: list[float] = Field(description="Share of false pairs per bin.")
    n_true: int
    n_false: int


class SignalDistributions(BaseModel):
    model_version: str
    source: str
    signals: dict[str, SignalHistogram]


class _Cache:
    """The signal distributions of the served model version, computed once per version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Distributions | None = None

    def get(self, state: ServeState) -> Distributions:
        version = state.require_model().version
        with self._lock:
            if self._value is None or self._value.version != version:
                self._value = signal_distributions(state.registry.path(version))
            return self._value


def _asset(name: str) -> bytes:
    return (resources.files(UI_PACKAGE) / UI_DIR / name).read_bytes()


def register_explorer(app: FastAPI) -> None:
    """Add the page and its routes to ``app``."""
    cache = _Cache()
    app.state.explorer = cache

    def page(name: str) -> Response:
        return Response(
            _asset(name),
            media_type=ASSETS[name],
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
        )

    @app.get("/ui", include_in_schema=False)
    def ui_page() -> Response:
        return page("index.html")

    @app.get("/ui/explorer.js", include_in_schema=False)
    def ui_script() -> Response:
        return page("explorer.js")

    @app.get("/ui/explorer.css", include_in_schema=False)
    def ui_style() -> Response:
        return page("explorer.css")

    @app.get(
        "/v1/explorer/summary",
        response_model=ExplorerSummary,
        tags=["explorer"],
        responses={**_ERRORS},
    )
    def summary(request: Request, token: ReadToken) -> Any:
        """The served model's linkage, the platforms, and which can be shown by raw id."""
        state = _state(request)
        model = state.model
        with state.reading() as view:
            platforms = sorted(view.store.platform_stats())
        ids = state.ids
        link = None
        if model is not None:
            link = link_summary(state.registry.path(model.version), state.ws.reports_dir)
        return {
            "model_version": model.version if model else None,
            "platforms": platforms,
            "raw_ids": {p: s["ids"] for p, s in ids.stats().items()} if ids else {},
            "link": link,
        }

    @app.get(
        "/v1/explorer/signals",
        response_model=SignalDistributions,
        tags=["explorer"],
        responses={
            **_ERRORS,
            **_NO_MODEL,
            404: {"model": ErrorBody, "description": "The model has not linked accounts yet."},
        },
    )
    def signals(request: Request, token: ReadToken) -> Any:
        """Each linkage signal's distribution among the matcher's true and false pairs (404
        until `crossrec link` has run on the served model)."""
        from crossrec.errors import ModelError, NotFoundError

        state = _state(request)
        try:
            return cache.get(state).as_dict()
        except ModelError as exc:
            if state.model is None:
                raise  # 503: no model is loaded at all
            # a model without linkage results: nothing to show yet
            raise NotFoundError(exc.message, hint=exc.hint) from None

    @app.get(
        "/v1/explorer/platforms/{platform}/accounts/{account:path}",
        response_model=ExplorerPerson,
        tags=["explorer"],
        responses={**_ERRORS, **_NOT_FOUND},
    )
    def person(platform: Platform, account: Account, request: Request, token: ReadToken) -> Any:
        """The account's person: every account and link, the evidence of each link against
        the signal distributions, and the account's weekly activity rhythm."""
        from crossrec.errors import ModelError
        from crossrec.link.query import person_links

        state = _state(request)
        pseudonym = state.account_id(platform, account)
        try:
            dist: Distributions | None = cache.get(state)
        except ModelError:
            dist = None
        with state.reading() as view:
            doc = person_links(view, platform, account, ids=state.ids, candidates=True)
            rhythm = weekly_rhythm(view.store, platform, pseudonym)
        model = state.model
        return {
            "platform": platform,
            "account": account,
            "person": doc["person"],
            "accounts": [
                {
                    "platform": m["platform"],
                    "account": m.get("account_raw") or m["account"],
                    "raw_id": m.get("account_raw") is not None,
                    "query": (m["platform"], m["account"]) == (platform, account),
                }
                for m in doc["accounts"]
            ],
            "links": [_link(e, dist) for e in doc["links"]],
            "candidates": [
                {
                    "platform": c["platform"],
                    "account": c.get("account_raw") or c["account"],
                    "raw_id": c.get("account_raw") is not None,
                    "probability": c["probability"],
                    "status": c["status"],
                }
                for c in doc["candidates"]
            ],
            "rhythm": rhythm,
            "model_version": model.version if model else None,
        }


def _link(edge: dict[str, Any], dist: Distributions | None) -> dict[str, Any]:
    """One link as the page shows it: raw ids where known, its evidence placed against the
    distributions."""
    out = {k: edge[k] for k in ("platform_a", "platform_b", "probability", "source", "rank")}
    for side in ("a", "b"):  # the looked-up account's own side carries the id asked by
        raw = edge.get(f"account_{side}_raw")
        out[f"account_{side}"] = raw or edge[f"account_{side}"]
        out[f"raw_{side}"] = raw is not None
    out["status"] = str(edge.get("status") or "asserted")
    evidence = []
    for item in edge.get("evidence") or []:
        if not isinstance(item, dict):
            continue
        value = float(item.get("value") or 0.0)
        stats = dist.signals.get(str(item.get("signal"))) if dist else None
        t, f = stats.share_below(value) if stats else (None, None)
        evidence.append(
            {
                "signal": str(item.get("signal")),
                "value": value,
                "text": str(item.get("text") or item.get("signal")),
                "true_below": t,
                "false_below": f,
            }
        )
    out["evidence"] = evidence
    return out
