"""``crossrec serve`` (the HTTP service) and ``crossrec token create|revoke|list``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, new_app, open_workspace, out, print_json

if TYPE_CHECKING:
    from crossrec.store import Store


def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI document (``docs/openapi.json``); needs no workspace."""
    from crossrec.serve.app import create_app

    return create_app(None).openapi()


def openapi_text() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def _log_to_stderr() -> None:
    """The service's own messages (model loads and swaps) beside uvicorn's, on stderr."""
    import logging

    logger = logging.getLogger("crossrec")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        workspace: WorkspaceOpt = Path("."),
        host: Annotated[
            str | None, typer.Option("--host", help="Address to listen on (serve.host).")
        ] = None,
        port: Annotated[
            int | None, typer.Option("--port", help="Port to listen on (serve.port).")
        ] = None,
        print_openapi: Annotated[
            bool,
            typer.Option("--print-openapi", help="Print the OpenAPI document and exit."),
        ] = False,
        ids: Annotated[
            list[str] | None,
            typer.Option(
                "--ids",
                help="PLATFORM=FILE: a file with an account column (e.g. an ingested events "
                "file) whose raw ids the API and the /ui page show instead of pseudonyms; "
                "held in memory only. Repeat per platform.",
            ),
        ] = None,
        columns: Annotated[
            str | None,
            typer.Option("--columns", help="account=NAME: the id column of the --ids files."),
        ] = None,
    ) -> None:
        """Serve recommendations, links, profiles, event ingest and erasure over HTTP, and
        the link explorer page at /ui."""
        if print_openapi:
            sys.stdout.write(openapi_text())
            return
        import uvicorn

        from crossrec.serve.app import create_app
        from crossrec.serve.bad_request import http_protocol
        from crossrec.serve.state import ServeState
        from crossrec.store.lock import WriterLock

        _log_to_stderr()
        ws = open_workspace(workspace)
        with WriterLock(ws.root, command="crossrec serve"), ws:
            id_map = None
            if ids:
                from crossrec.cli.ingest import parse_columns
                from crossrec.idmap import IdMap

                id_map = IdMap.from_specs(ids, ws.pseudonymiser, parse_columns(columns))
                for platform, s in id_map.stats().items():
                    err.print(f"--ids {platform}: {s['ids']:,} raw ids held in memory")
            state = ServeState(ws, ids=id_map)
            if len(state.tokens) == 0:
                err.print(
                    "no API tokens yet: every request except /healthz and /readyz will get "
                    "401; create one with `crossrec token create` (the server accepts it at once)"
                )
            cfg = ws.config.serve
            err.print(f"link explorer page: http://{host or cfg.host}:{port or cfg.port}/ui")
            uvicorn.run(
                create_app(state),
                host=host or cfg.host,
                port=port or cfg.port,
                log_level="info",
                access_log=False,  # the metrics count requests; raw ids stay out of logs
                http=http_protocol(),  # a malformed request gets a JSON 400 too
            )

    token = new_app("API tokens of the HTTP service (only their SHA-256 is stored).")
    app.add_typer(token, name="token")

    @token.command("create")
    def token_create(
        scope: Annotated[
            str, typer.Option("--scope", help="read, write or read,write (GET needs read).")
        ],
        workspace: WorkspaceOpt = Path("."),
        name: Annotated[str | None, typer.Option("--name", help="What the token is for.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Create a bearer token and print it (it is shown only this once); a running server
        accepts it at once."""
        from crossrec.serve.auth import create_token, parse_scopes

        scopes = parse_scopes(scope)

        def local(store: Store) -> dict[str, Any]:
            secret, info = create_token(store, scopes, name)
            return {"token": secret, **info.as_dict()}

        doc = _token_job(
            workspace, "token-create", {"scopes": ",".join(scopes), "name": name}, local
        )
        if json_out:
            print_json(doc)
            return
        err.print(f"token {doc['id']} ({doc['scopes']}): keep it now, it is not shown again")
        sys.stdout.write(doc["token"] + "\n")

    @token.command("revoke")
    def token_revoke(
        token_or_id: Annotated[str, typer.Argument(help="The token itself or its id.")],
        workspace: WorkspaceOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Revoke a token (a running server refuses it within serve.token_refresh_seconds)."""
        from crossrec.serve.auth import revoke_token

        doc = _token_job(
            workspace,
            "token-revoke",
            {"token": token_or_id},
            lambda store: revoke_token(store, token_or_id).as_dict(),
        )
        if json_out:
            print_json(doc)
            return
        err.print(f"token {doc['id']} revoked")

    @token.command("list")
    def token_list(workspace: WorkspaceOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Show every token: id, name, scopes, when created and revoked (never the token)."""
        from crossrec.serve.auth import list_tokens

        rows = _token_job(
            workspace, "token-list", {}, lambda store: [t.as_dict() for t in list_tokens(store)]
        )
        if json_out:
            print_json(rows)
            return
        table = Table(title="API tokens")
        for col in ("id", "name", "scopes", "created_at", "revoked_at"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["id"], r["name"] or "", r["scopes"], r["created_at"], r["revoked_at"] or ""
            )
        out.print(table)


def _token_job(
    workspace: Path, op: str, args: dict[str, Any], local: Callable[[Store], Any]
) -> Any:
    """Run a token job on the store here, or, while `crossrec serve` holds the workspace,
    hand it to that server (which writes the store and updates its token book at once)."""
    from crossrec.errors import WorkspaceError
    from crossrec.serve import control
    from crossrec.store.lock import WriterLock

    ws = open_workspace(workspace)
    lock = WriterLock(ws.root, command="crossrec token")
    try:
        lock.acquire()
    except WorkspaceError:
        if control.serving_pid(ws.root) is None:
            raise
        request_id = control.submit(ws.root, op, args)
        return control.wait_answer(
            ws.root, request_id, alive=lambda: control.server_holds_lock(ws.root), timeout=60
        )
    with lock, ws:
        return local(ws.store)
