"""The HTTP API: FastAPI routes over the same Python API the CLI uses.

Every route is thin: it checks the token and its scope, spends one request of the token's rate
bucket, and calls the workspace (``ingest_records``, ``forget``), the link queries or the
served :class:`~crossrec.recommend.Recommender`. Raw account ids in paths and bodies are
pseudonymised on entry by those functions; answers echo a raw id only where the caller sent it.
Every error answer is ``{"error": ..., "field": ...}``; a client mistake is always a 4xx.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from crossrec import errors, identity
from crossrec.ingest import jsonsafe
from crossrec.serve import schemas as s
from crossrec.serve.auth import TokenInfo
from crossrec.serve.limits import BodyLimitMiddleware, retry_after_header
from crossrec.serve.metrics import Metrics, MetricsMiddleware
from crossrec.serve.state import ServeState

log = logging.getLogger("crossrec.serve")

API_TITLE = "crossrec"
PLATFORM_PATTERN = identity.PLATFORM_PATTERN
#: Paths carry the id as the client sent it (percent-encoded): the identity rule (trimming
#: first) decides on its length, so a path may hold the spaces a stored id lost.
MAX_ID_LENGTH = 4 * identity.MAX_ID_LENGTH
#: Status recorded for a request whose client went away mid-body (nginx's "client closed").
CLIENT_CLOSED = 499

_STATUS: tuple[tuple[type[errors.CrossrecError], int], ...] = (
    (errors.NotFoundError, 404),
    (errors.InvalidIdError, 422),  # an id the identity rule refuses, like a bad parameter
    (errors.InputError, 400),
    (errors.IngestError, 400),
    (errors.CapacityError, 422),
    (errors.ModelError, 503),
    (errors.WorkspaceError, 503),
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorBody, "description": text}
    for code, text in (
        (401, "Missing or invalid bearer token."),
        (403, "The token lacks the scope this route needs."),
        (422, "A parameter or the body is invalid; `field` names it."),
        (429, "Rate limit of the token reached; see Retry-After."),
    )
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": s.ErrorBody, "description": "Account or platform unknown."}
}
_NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": s.ErrorBody, "description": "No trained model is loaded yet."}
}

Platform = Annotated[str, Path(pattern=PLATFORM_PATTERN, description="Platform name, e.g. video.")]


def _account_id(raw: str) -> str:
    """The identity rule on a path's account id: a refusal is a 422 naming ``path.account``."""
    try:
        return identity.normalize_id(raw, "account")
    except errors.InvalidIdError as exc:
        raise ValueError(exc.reason) from None


Account = Annotated[
    str,
    AfterValidator(_account_id),
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Raw account id as the client sent it, percent-encoded (`/` as `%2F` or "
        "as is, a space as `%20`); trimmed and normalised as on ingest.",
    ),
]
K = Annotated[int, Query(ge=1, le=1000, description="How many to return.")]
_bearer = HTTPBearer(auto_error=False, description="A token from `crossrec token create`.")


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def _state(request: Request) -> ServeState:
    state: ServeState | None = getattr(request.app.state, "serve", None)
    if state is None:
        raise errors.WorkspaceError("this app was built without a workspace")
    return state


def require(scope: str) -> Callable[..., Awaitable[TokenInfo]]:
    """Dependency: a live bearer token with ``scope``, within its rate limit."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenInfo:
        state = _state(request)
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        # from memory when the book is fresh; re-reading the store happens off the event loop
        token = state.tokens.peek(credentials.credentials)
        if token is None:
            token = await run_in_threadpool(state.tokens.lookup, credentials.credentials)
        if token is None:
            raise HTTPException(
                401, "the token is unknown or revoked", {"WWW-Authenticate": "Bearer"}
            )
        if scope not in token.scopes:
            raise HTTPException(403, f"this route needs a token with the {scope!r} scope")
        wait = state.limiter.take(token.id)
        if wait > 0:
            raise HTTPException(
                429,
                f"rate limit of {state.limiter.rate:g} requests per second reached",
                {"Retry-After": retry_after_header(wait)},
            )
        return token

    return check


ReadToken = Annotated[TokenInfo, Depends(require("read"))]
WriteToken = Annotated[TokenInfo, Depends(require("write"))]


def parse_events(raw: bytes, max_batch: int) -> list[Any]:
    """The POSTed JSON array of events, decoded by the bounded decoder of every ingest path
    (:mod:`crossrec.ingest.jsonsafe`: digits, depth, string and key sizes; a BOM skipped). A
    body that is not a JSON array is a client mistake (HTTPException naming ``body``: 400 for
    a body that does not decode, 422 for one that is not an array, 413 for more than
    ``max_batch`` events); the events themselves are checked by ingest."""
    try:
        data = jsonsafe.decode(raw)
    except jsonsafe.JsonRejected as exc:
        raise _field_error(400, exc.reason, "body") from None
    if not isinstance(data, list):
        raise _field_error(422, "must be a JSON array of event objects", "body")
    if len(data) > max_batch:
        raise _field_error(
            413, f"{len(data):,} events in one request; at most {max_batch:,} allowed", "body"
        )
    return data


class FieldError(HTTPException):
    def __init__(self, status: int, message: str, field: str) -> None:
        super().__init__(status, message)
        self.field = field


def _field_error(status: int, message: str, field: str) -> FieldError:
    return FieldError(status, f"{field}: {message}", field)


def _batch_errors(rejected: list[Any], n: int) -> JSONResponse:
    """422 naming every invalid event of a batch that was not stored (record numbers count
    from 1, array indexes from 0)."""
    errs = [{"index": b.number - 1, "field": b.field, "reason": b.reason} for b in rejected]
    first = errs[0]
    where = f"body[{first['index']}]" + (f".{first['field']}" if first["field"] else "")
    message = (
        f"{len(errs)} of {n} events are invalid, e.g. {where}: {first['reason']}; nothing was "
        "stored (fix them, or send ?on_error=quarantine to store the valid ones)"
    )
    return JSONResponse({"error": message, "field": where, "errors": errs}, status_code=422)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _json_bytes(doc: Any) -> bytes:
    """``doc`` as FastAPI's JSONResponse writes it (for answers built without a model)."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def create_app(state: ServeState | None = None) -> FastAPI:
    """The service over ``state`` (None builds the routes only, e.g. for the OpenAPI spec)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state is not None and state.model is None:
            await run_in_threadpool(state.start)
        yield
        if state is not None:
            await run_in_threadpool(state.close)

    app = FastAPI(
        title=API_TITLE,
        version="1",
        description="Cross-platform recommendations, account links and event ingest.",
        lifespan=lifespan,
    )
    app.state.serve = state
    metrics = state.metrics if state is not None else Metrics()
    max_body = state.config.max_body_bytes if state is not None else 1_048_576
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _install_error_handlers(app)
    _routes(app)
    from crossrec.serve.explorer import register_explorer  # the /ui page and its routes

    register_explorer(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ())]
        field = ".".join(loc) if loc else None
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        msg = str(first.get("msg", "invalid"))
        message = f"{field}: {msg}{more}" if field else msg
        return error_response(422, message, field)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error_response(
            exc.status_code, str(exc.detail), getattr(exc, "field", None), headers
        )

    @app.exception_handler(errors.CrossrecError)
    async def crossrec_error(request: Request, exc: errors.CrossrecError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(status, str(exc), getattr(exc, "field", None))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # not a server failure: no traceback, and 499 (client closed request) in the metrics
        log.info("%s %s: the client closed the connection", request.method, request.url.path)
        return error_response(CLIENT_CLOSED, "the client closed the connection mid-request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal error; see the server log")


def _routes(app: FastAPI) -> None:
    base = "/v1/platforms/{platform}"
    # ``:path``: an id may hold ``/`` (sent as is or as ``%2F``, which arrives decoded)
    account_path = base + "/accounts/{account:path}"

    @app.get("/healthz", response_model=s.Health, tags=["service"])
    def healthz() -> dict[str, Any]:
        """The process is up (no token needed)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=s.Ready,
        tags=["service"],
        responses={503: {"model": s.Ready, "description": "Not ready."}},
    )
    def readyz(request: Request) -> Any:
        """Ready to serve: a model is loaded and the store is open (no token needed)."""
        state = _state(request)
        model = state.model
        store_ok = True
        try:
            with state.reading() as view:
                view.store.count("meta")
        except Exception:
            store_ok = False
        ready = model is not None and store_ok
        doc = {
            "status": "ready" if ready else "not ready",
            "model_version": model.version if model else None,
            "store": store_ok,
        }
        return doc if ready else JSONResponse(doc, status_code=503)

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **_ERRORS,
        },
    )
    def metrics(request: Request, token: ReadToken) -> Response:
        """Prometheus metrics (text exposition format)."""
        m = _state(request).metrics
        return Response(m.render(), media_type=m.content_type)

    @app.post(
        base + "/events",
        response_model=s.IngestResult,
        tags=["events"],
        responses={
            413: {"model": s.ErrorBody, "description": "Body or batch too large."},
            400: {
                "model": s.ErrorBody,
                "description": "Body is not JSON, or beyond a limit of the decoder (digits of "
                "a number, nesting depth, length of a string or key).",
            },
            **_ERRORS,
            422: {
                "model": s.BatchErrors,
                "description": "With on_error=reject (the default): an event is invalid; "
                "nothing of the batch was stored, `errors` names every invalid event. Also a "
                "body that is not an array, or an invalid parameter (`error`, `field`).",
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "array", "items": s.EventRecord.model_json_schema()}
                    }
                },
            }
        },
    )
    async def post_events(
        platform: Platform,
        request: Request,
        token: WriteToken,
        on_error: Annotated[
            str,
            Query(
                pattern="^(reject|quarantine)$",
                description="`reject`: a batch with an invalid event is refused whole (422) "
                "and nothing of it is stored. `quarantine`: invalid events are quarantined "
                "with their number and reason, the others stored (200 with counts).",
            ),
        ] = "reject",
    ) -> Any:
        """Ingest a JSON array of events; the accounts they touch are updated online."""
        state = _state(request)
        records = parse_events(await request.body(), state.config.max_batch)
        strict = on_error == "reject"
        summary = await run_in_threadpool(
            state.ingest, platform, records, source=f"http:{token.id}", strict=strict
        )
        if summary.rejected:
            return _batch_errors(summary.rejected, len(records))
        return {
            "accepted": summary.accepted,
            "quarantined": summary.quarantined,
            "duplicates": summary.duplicates,
        }

    @app.get(
        account_path + "/recommendations",
        response_model=s.Recommendations,
        tags=["accounts"],
        responses={**_ERRORS, **_NOT_FOUND, **_NO_MODEL},
    )
    async def recommendations(
        platform: Platform, account: Account, request: Request, token: ReadToken, k: K = 10
    ) -> Any:
        """Top-k items on the platform with a reason each; an account the store does not
        know gets the anonymous (popular items) list, never an error."""
        state = _state(request)
        model = state.require_model()  # this request keeps this model to the end
        rec = model.recommender
        # in memory only: an account the model has no trace of is served as anonymous
        pseudonym = state.account_id(platform, account)
        items = rec.cached(platform, pseudonym, k)  # a list ready in memory: no thread hop
        if items is None:
            items = await run_in_threadpool(rec.recommend, platform, pseudonym, k)
        body = {
            "platform": platform,
            "account": account,
            "items": [
                {
                    "item": r.item,
                    "score": _finite(float(r.score)),
                    "reason": r.reason,
                    **rec.describe(platform, r.item),
                }
                for r in items
            ],
            "model_version": model.version,
        }
        return Response(_json_bytes(body), media_type="application/json")

    @app.get(
        account_path + "/links",
        response_model=s.PersonLinks,
        tags=["accounts"],
        responses={**_ERRORS, **_NOT_FOUND},
    )
    def links(platform: Platform, account: Account, request: Request, token: ReadToken) -> Any:
        """The account's person: every linked account with how and why it is linked."""
        from crossrec.link.query import person_links

        state = _state(request)
        with state.reading() as view:  # raw ids of other accounts where --ids holds them
            return person_links(view, platform, account, ids=state.ids)

    @app.get(
        account_path + "/similar",
        response_model=s.SimilarAccounts,
        tags=["accounts"],
        responses={**_ERRORS, **_NOT_FOUND, **_NO_MODEL},
    )
    def similar(
        platform: Platform,
        account: Account,
        request: Request,
        token: ReadToken,
        on: Annotated[str, Query(pattern=PLATFORM_PATTERN, description="Platform to search.")],
        k: K = 10,
    ) -> Any:
        """The k most similar accounts (other people) on platform ``on``."""
        from crossrec.link.query import similar_accounts

        state = _state(request)
        # the served model's profiles and indexes: nothing is loaded from disk per request
        space = state.sequence_space(state.require_model())
        with state.reading() as view:
            return similar_accounts(view, platform, account, on, k, space=space, ids=state.ids)

    @app.get(
        account_path + "/profile",
        response_model=s.AccountProfile,
        tags=["accounts"],
        responses={**_ERRORS, **_NOT_FOUND},
    )
    def profile(platform: Platform, account: Account, request: Request, token: ReadToken) -> Any:
        """What the store and the served model know of the account."""
        from crossrec.serve.profile import account_profile

        state = _state(request)
        model = state.model
        with state.reading() as view:
            return account_profile(view, platform, account, model.recommender if model else None)

    @app.delete(
        account_path,
        response_model=s.Erased,
        tags=["accounts"],
        responses={**_ERRORS, **_NOT_FOUND},
    )
    def erase(
        platform: Platform,
        account: Account,
        request: Request,
        token: WriteToken,
        scope: Annotated[
            str,
            Query(
                pattern="^(account|person)$",
                description="`account` erases this account; `person` every linked account.",
            ),
        ] = "account",
    ) -> Any:
        """Erase the account (or its whole person) from the store and the served model."""
        result = _state(request).forget(platform, account, person=scope == "person")
        return {
            "deleted_until": str(result["deleted_until"]),
            "accounts": len(result.get("accounts", [])),
        }
