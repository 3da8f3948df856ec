"""Bearer tokens of the HTTP service: created and revoked by ``crossrec token``.

A token is ``crx_<id>_<secret>``; the store keeps only its SHA-256 (``api_tokens``), so a
leaked store does not leak usable tokens. The id part is public: it names the token in
``token list`` and ``token revoke`` and in the service's metrics and quarantine sources.
Scopes: ``read`` (every GET, /metrics) and ``write`` (POST and DELETE).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crossrec.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from crossrec.store import Store

log = logging.getLogger("crossrec.serve")

SCOPES = ("read", "write")
TOKEN_PREFIX = "crx_"


def parse_scopes(text: str) -> tuple[str, ...]:
    """``"read,write"`` → ``("read", "write")``; unknown or empty scopes are an InputError."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in SCOPES]
    if bad or not parts:
        raise InputError(
            f"--scope {text!r}: {'unknown scope ' + repr(bad[0]) if bad else 'no scope given'}",
            hint="use read, write or read,write",
        )
    return tuple(s for s in SCOPES if s in parts)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """What the service knows about a token (never the token itself)."""

    id: str
    name: str | None
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": ",".join(s for s in SCOPES if s in self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _info(row: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        name=row["name"],
        scopes=frozenset(s for s in row["scopes"].split(",") if s),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def create_token(
    store: Store, scopes: tuple[str, ...], name: str | None = None
) -> tuple[str, TokenInfo]:
    """Make a new token with ``scopes``; returns the token (shown once) and its record."""
    if not scopes or any(s not in SCOPES for s in scopes):
        raise InputError(f"scopes {scopes!r} are invalid", hint="use read and/or write")
    taken = set(store.read("api_tokens", columns=["id"]).column("id").to_pylist())
    token_id = secrets.token_hex(4)
    while token_id in taken:  # 32 bits: a clash is rare, but the id is the primary key
        token_id = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    info = TokenInfo(token_id, name, frozenset(scopes), datetime.now(UTC))
    store.add_api_token(
        {
            "id": info.id,
            "name": name,
            "token_sha256": token_hash(token),
            "scopes": ",".join(s for s in SCOPES if s in scopes),
            "created_at": info.created_at,
            "revoked_at": None,
        }
    )
    return token, info


def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token ever created, oldest first (revoked ones carry ``revoked_at``)."""
    rows = store.read("api_tokens", order_by=["created_at", "id"]).to_pylist()
    return [_info(r) for r in rows]


def revoke_token(store: Store, token_or_id: str) -> TokenInfo:
    """Revoke a token named by itself or by its id; NotFoundError when no live token matches."""
    rows = store.read("api_tokens").to_pylist()
    if token_or_id.startswith(TOKEN_PREFIX):
        digest = token_hash(token_or_id)
        match = [r for r in rows if hmac.compare_digest(r["token_sha256"], digest)]
    else:
        match = [r for r in rows if r["id"] == token_or_id]
    live = [r for r in match if r["revoked_at"] is None]
    if not live:
        what = "token" if token_or_id.startswith(TOKEN_PREFIX) else f"token id {token_or_id!r}"
        state = "is already revoked" if match else "is unknown"
        raise NotFoundError(f"{what} {state}", hint="see `crossrec token list`")
    at = datetime.now(UTC)
    store.revoke_api_token(live[0]["id"], at)
    return _info({**live[0], "revoked_at": at})


def _rows_of(store: Store) -> Callable[[], list[dict[str, Any]] | None]:
    def read() -> list[dict[str, Any]] | None:
        return store.read("api_tokens").to_pylist()

    return read


class TokenBook:
    """Live tokens by SHA-256, held in memory: a check is one hash and one dict lookup.

    Tokens are created and revoked while a server runs (``crossrec token`` hands the change
    to the server, which writes it to the store), so the book re-reads ``api_tokens`` (one
    small read, never one per request):

    * every ``refresh_seconds`` at most, on the first lookup after that: a revoked token is
      refused within ``refresh_seconds``;
    * on a miss, at most once per ``miss_seconds``: a new token works at once, and a flood of
      bad tokens costs a few reads per second, not one each.

    The read runs on the request thread that finds the book stale; the others keep using the
    book as it is meanwhile. A failed read keeps the book as it was (and is retried later).

    Parameters
    ----------
    store : read its ``api_tokens`` table; or
    read : returns the table's rows (the HTTP service reads through its own cursor), or
        None when it cannot read now (the book stays as it is until the next try).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        read: Callable[[], list[dict[str, Any]] | None] | None = None,
        refresh_seconds: float = 1.0,
        miss_seconds: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if read is None:
            if store is None:
                raise ValueError("TokenBook needs a store or a read function")
            read = _rows_of(store)
        self._read = read
        self.refresh_seconds = refresh_seconds
        self.miss_seconds = miss_seconds
        self._clock = clock
        self._by_hash: dict[str, TokenInfo] = {}
        self._loaded_at = -math.inf
        self._reloading = threading.Lock()
        self.reload()

    def reload(self, store: Store | None = None) -> None:
        """Read the live tokens now (from ``store`` when given, else the book's source)."""
        rows = store.read("api_tokens").to_pylist() if store is not None else self._read()
        if rows is None:
            return
        self._by_hash = {r["token_sha256"]: _info(r) for r in rows if r["revoked_at"] is None}
        self._loaded_at = self._clock()

    def _refresh(self, older_than: float) -> bool:
        """Reload if the book is older than ``older_than`` seconds and no other thread is at
        it; True if it was reloaded."""
        if self._clock() - self._loaded_at < older_than:
            return False
        if not self._reloading.acquire(blocking=False):
            return False  # another thread is reloading: use the book as it is
        try:
            if self._clock() - self._loaded_at < older_than:
                return False
            self.reload()
            return True
        except Exception:  # the store is being replaced (erasure): keep the book, retry later
            log.warning("re-reading API tokens failed; the previous list stays", exc_info=True)
            self._loaded_at = self._clock()
            return False
        finally:
            self._reloading.release()

    def __len__(self) -> int:
        return len(self._by_hash)

    def peek(self, token: str) -> TokenInfo | None:
        """The token's record if the book is fresh and knows it, else None; never reads
        the store (safe on the event loop). On None, call :meth:`lookup` from a thread."""
        if self._clock() - self._loaded_at >= self.refresh_seconds:
            return None
        return self._by_hash.get(token_hash(token))

    def lookup(self, token: str) -> TokenInfo | None:
        """The live token's record, or None for an unknown or revoked token."""
        self._refresh(self.refresh_seconds)
        digest = token_hash(token)
        found = self._by_hash.get(digest)
        if found is None and self._refresh(self.miss_seconds):
            found = self._by_hash.get(digest)
        return found
