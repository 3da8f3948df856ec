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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_book_sees_revocations_after_refresh_seconds_without_a_read_per_lookup(ws):
    token, info = create_token(ws.store, ("read",), None)
    reads = []

    def read():
        reads.append(1)
        return ws.store.read("api_tokens").to_pylist()

    clock = Clock()
    book = TokenBook(read=read, refresh_seconds=1.0, clock=clock)
    assert len(reads) == 1
    for _ in range(100):  # hits never read the store
        assert book.lookup(token) is not None
    assert len(reads) == 1
    revoke_token(ws.store, info.id)
    clock.now += 0.5
    assert book.lookup(token) is not None  # within refresh_seconds the book is as it was
    clock.now += 0.6
    assert book.lookup(token) is None  # the next lookup after it re-reads: refused
    assert len(reads) == 2


def test_a_new_token_works_at_once_and_bad_tokens_cost_few_reads(ws):
    clock = Clock()
    reads = []

    def read():
        reads.append(1)
        return ws.store.read("api_tokens").to_pylist()

    book = TokenBook(read=read, refresh_seconds=60.0, miss_seconds=0.25, clock=clock)
    token, _ = create_token(ws.store, ("write",), None)
    clock.now += 0.3
    found = book.lookup(token)  # a miss re-reads: the new token is known
    assert found is not None and found.scopes == frozenset({"write"})
    before = len(reads)
    for _ in range(1000):  # a flood of bad tokens within one miss interval
        assert book.lookup("crx_bad_token") is None
    assert len(reads) - before <= 1


def test_a_failed_reread_keeps_the_book(ws):
    token, _ = create_token(ws.store, ("read",), None)
    clock = Clock()
    broken = {"now": False}

    def read():
        if broken["now"]:
            raise RuntimeError("store closed")
        return ws.store.read("api_tokens").to_pylist()

    book = TokenBook(read=read, refresh_seconds=1.0, clock=clock)
    broken["now"] = True
    clock.now += 5
    assert book.lookup(token) is not None
    # a source that cannot read now (the server's store is being replaced) answers None
    later = TokenBook(read=lambda: None if broken["now"] else read(), clock=clock)
    broken["now"] = False
    later.reload()
    broken["now"] = True
    clock.now += 5
    assert later.lookup(token) is not None and len(later) == 1


def test_a_running_server_refuses_a_revoked_token_within_seconds(tmp_path_factory, tmp_path):
    import time

    from tests.test_serve_common import serve, world_of

    world = world_of(tmp_path_factory)
    with serve(world, tmp_path / "ws") as s:
        url = f"/v1/platforms/video/accounts/{world.accounts['video'][0]}/profile"
        made = s.state.control("token-create", {"scopes": "read", "name": "dash"})
        assert made["token"].startswith("crx_") and made["name"] == "dash"
        fresh = {"Authorization": f"Bearer {made['token']}"}
        assert s.client.get(url, headers=fresh).status_code == 200  # at once
        s.state.control("token-revoke", {"token": made["id"]})
        assert s.client.get(url, headers=fresh).status_code == 401  # at once
        listed = s.state.control("token-list", {})
        assert [t["revoked_at"] is not None for t in listed if t["id"] == made["id"]] == [True]
        # revoked by any other writer of the store: refused within token_refresh_seconds
        with s.state._write_lock:
            revoke_token(s.state.ws.store, s.tokens["read"])
        deadline = time.monotonic() + 5
        while s.client.get(url, headers=s.auth("read")).status_code == 200:
            assert time.monotonic() < deadline, "the revoked token is still accepted"
            time.sleep(0.1)
        assert s.client.get(url, headers=s.auth("read")).status_code == 401
        assert s.client.get(url, headers=s.auth("rw")).status_code == 200
        with pytest.raises(NotFoundError, match="already revoked"):
            s.state.control("token-revoke", {"token": made["id"]})
