"""``crossrec serve`` (the HTTP service) and ``crossrec token create|revoke|list``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, new_app, open_workspace, out, print_json


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
    ) -> None:
        """Serve recommendations, links, profiles, event ingest and erasure over HTTP."""
        if print_openapi:
            sys.stdout.write(openapi_text())
            return
        import uvicorn

        from crossrec.serve.app import create_app
        from crossrec.serve.state import ServeState
        from crossrec.store.lock import WriterLock

        _log_to_stderr()
        ws = open_workspace(workspace)
        with WriterLock(ws.root, command="crossrec serve"), ws:
            state = ServeState(ws)
            if len(state.tokens) == 0:
                err.print(
                    "no API tokens yet: every request except /healthz and /readyz will get "
                    "401; create one with `crossrec token create` (stop the server first)"
                )
            cfg = ws.config.serve
            uvicorn.run(
                create_app(state),
                host=host or cfg.host,
                port=port or cfg.port,
                log_level="info",
                access_log=False,  # the metrics count requests; raw ids stay out of logs
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
        """Create a bearer token and print it (it is shown only this once)."""
        from crossrec.serve.auth import create_token, parse_scopes
        from crossrec.store.lock import WriterLock

        scopes = parse_scopes(scope)
        ws = open_workspace(workspace)
        with WriterLock(ws.root, command="crossrec token"), ws:
            secret, info = create_token(ws.store, scopes, name)
        if json_out:
            print_json({"token": secret, **info.as_dict()})
            return
        scopes = info.as_dict()["scopes"]
        err.print(f"token {info.id} ({scopes}): keep it now, it is not shown again")
        sys.stdout.write(secret + "\n")

    @token.command("revoke")
    def token_revoke(
        token_or_id: Annotated[str, typer.Argument(help="The token itself or its id.")],
        workspace: WorkspaceOpt = Path("."),
        json_out: JsonOpt = False,
    ) -> None:
        """Revoke a token (a running server keeps accepting it until restarted)."""
        from crossrec.serve.auth import revoke_token
        from crossrec.store.lock import WriterLock

        ws = open_workspace(workspace)
        with WriterLock(ws.root, command="crossrec token"), ws:
            info = revoke_token(ws.store, token_or_id)
        if json_out:
            print_json(info.as_dict())
            return
        err.print(f"token {info.id} revoked")

    @token.command("list")
    def token_list(workspace: WorkspaceOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Show every token: id, name, scopes, when created and revoked (never the token)."""
        from crossrec.serve.auth import list_tokens
        from crossrec.store.lock import WriterLock

        ws = open_workspace(workspace)
        with WriterLock(ws.root, command="crossrec token"), ws:
            rows = [t.as_dict() for t in list_tokens(ws.store)]
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
