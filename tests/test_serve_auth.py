"""API tokens: only their hash is stored; scopes; revocation; the ``crossrec token`` commands."""

from __future__ import annotations

import hashlib
import json

import pytest

from crossrec.errors import InputError, NotFoundError
from crossrec.serve.auth import (
    TokenBook,
    create_token,
    list_tokens,
    parse_scopes,
    revoke_token,
)


class Ran:
    def __init__(self, result) -> None:
        self.returncode = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr


def crossrec(*args: str) -> Ran:
    """The command line, in-process (the subprocess form is exercised in test_serve_uvicorn)."""
    from typer.testing import CliRunner

    from crossrec.cli import app

    return Ran(CliRunner().invoke(app, list(args)))


@pytest.mark.parametrize(
    ("text", "scopes"),
    [("read", ("read",)), ("write, read", ("read", "write")), ("read,write", ("read", "write"))],
)
def test_scopes_parse_in_a_fixed_order(text, scopes):
    assert parse_scopes(text) == scopes


@pytest.mark.parametrize("text", ["", "admin", "read,admin", " , "])
def test_unknown_or_empty_scopes_say_what_to_use(text):
    with pytest.raises(InputError, match="read, write or read,write"):
        parse_scopes(text)


def test_only_the_hash_of_a_token_is_stored(ws):
    token, info = create_token(ws.store, ("read",), "dashboards")
    assert token.startswith(f"crx_{info.id}_") and len(token) > 40
    rows = ws.store.read("api_tokens").to_pylist()
    assert len(rows) == 1
    assert rows[0]["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(rows, default=str)
    assert rows[0]["scopes"] == "read" and rows[0]["name"] == "dashboards"


def test_the_book_knows_live_tokens_only(ws):
    live, live_info = create_token(ws.store, ("read", "write"), None)
    gone, _ = create_token(ws.store, ("read",), None)
    revoke_token(ws.store, gone)
    book = TokenBook(ws.store)
    assert len(book) == 1
    found = book.lookup(live)
    assert found is not None and found.id == live_info.id
    assert found.scopes == frozenset({"read", "write"})
    assert book.lookup(gone) is None
    assert book.lookup(live + "x") is None


def test_revoke_by_id_or_token_once(ws):
    token, info = create_token(ws.store, ("write",), "ingest")
    revoked = revoke_token(ws.store, info.id)
    assert revoked.revoked_at is not None
    with pytest.raises(NotFoundError, match="already revoked"):
        revoke_token(ws.store, token)
    with pytest.raises(NotFoundError, match="unknown"):
        revoke_token(ws.store, "deadbeef")
    assert [t.revoked_at is not None for t in list_tokens(ws.store)] == [True]


def test_token_commands(tmp_path):
    w = str(tmp_path / "ws")
    assert crossrec("init", "--workspace", w).returncode == 0
    r = crossrec("token", "create", "--workspace", w, "--scope", "read,write", "--name", "ci")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()  # stdout holds the token alone: TOKEN=$(crossrec token create ...)
    assert token.startswith("crx_") and "\n" not in token
    assert "not shown again" in r.stderr
    listed = json.loads(crossrec("token", "list", "--workspace", w, "--json").stdout)
    assert len(listed) == 1
    assert listed[0]["name"] == "ci" and listed[0]["scopes"] == "read,write"
    assert listed[0]["revoked_at"] is None and token not in json.dumps(listed)
    r = crossrec("token", "revoke", "--workspace", w, listed[0]["id"])
    assert r.returncode == 0 and "revoked" in r.stderr
    r = crossrec("token", "revoke", "--workspace", w, token)
    assert r.returncode == 4 and "already revoked" in r.stderr
    r = crossrec("token", "create", "--workspace", w, "--scope", "admin")
    assert r.returncode == 2 and "unknown scope 'admin'" in r.stderr
    assert "Traceback" not in r.stderr
