"""Read-side of linkage: a person's accounts with evidence, and similar people elsewhere."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crossrec.errors import InputError, NotFoundError

if TYPE_CHECKING:
    import pyarrow as pa

    from crossrec.index import VectorIndex
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.workspace import Workspace


def _require_account(ws: Workspace, platform: str, raw_id: str) -> str:
    account = ws.account_id(platform, raw_id)
    if not ws.store.has_account(platform, account):
        raise NotFoundError(f"no account {raw_id!r} on platform {platform!r}")
    return account


def linked_accounts(key: tuple[str, str], *tables: pa.Table) -> set[tuple[str, str]]:
    """``key`` and every account on either side of the link rows in ``tables``."""
    members = {key}
    for table in tables:
        for side in ("a", "b"):
            platforms = table[f"platform_{side}"].to_pylist()
            members |= set(zip(platforms, table[f"account_{side}"].to_pylist(), strict=True))
    return members


def person_links(ws: Workspace, platform: str, raw_id: str) -> dict[str, Any]:
    """The person of an account: every account of it with how it is linked and why."""
    account = _require_account(ws, platform, raw_id)
    # only the person's rows: whole tables cost seconds at 100k accounts
    persons, links, known = ws.store.person_rows(platform, account)
    person = next(
        (
            p["person"]
            for p in persons.to_pylist()
            if p["platform"] == platform and p["account"] == account
        ),
        None,
    )
    # the accounts connected to this one by the links as they stand (re-scored online too)
    members = linked_accounts((platform, account), links, known)
    edges = []
    for row in links.to_pylist():
        edges.append(
            {
                "platform_a": row["platform_a"],
                "account_a": row["account_a"],
                "platform_b": row["platform_b"],
                "account_b": row["account_b"],
                "probability": row["probability"],
                "rank": row["rank"],
                "source": row["source"],
                "evidence": json.loads(row["evidence"]) if row["evidence"] else [],
            }
        )
    for row in known.to_pylist():
        edges.append(
            {
                "platform_a": row["platform_a"],
                "account_a": row["account_a"],
                "platform_b": row["platform_b"],
                "account_b": row["account_b"],
                "probability": 1.0,
                "rank": None,
                "source": f"known ({row['source']})",
                "evidence": [],
            }
        )
    for e in edges:  # the caller's own account is shown by the raw id it sent
        for side in ("a", "b"):
            if (e[f"platform_{side}"], e[f"account_{side}"]) == (platform, account):
                e[f"account_{side}"] = raw_id
    return {
        "platform": platform,
        "account": raw_id,
        "person": person,
        "accounts": [
            {"platform": p, "account": raw_id if (p, a) == (platform, account) else a}
            for p, a in sorted(members)
        ],
        "links": edges,
    }


@dataclass(frozen=True)
class SequenceSpace:
    """What :func:`similar_accounts` searches: a model version's profiles and sequence
    indexes. A long-running process passes the ones it holds in memory (the HTTP service: its
    served model, indexes updated online); the CLI loads them from disk per call.

    Attributes
    ----------
    version : the model version (``v0003``).
    profiles : the version's account profiles (rows are the indexes' ids).
    indexes : platform -> its sequence-space index over profile rows (vectors (n, d)).
    vector : the account's current sequence vector (d,) by profile row, platform and
        pseudonym; None reads ``profiles.sequence[row]``.
    """

    version: str
    profiles: AccountProfiles
    indexes: Mapping[str, VectorIndex]
    vector: Callable[[int, str, str], np.ndarray | None] | None = None


def similar_accounts(
    ws: Workspace,
    platform: str,
    raw_id: str,
    on: str,
    k: int = 10,
    *,
    space: SequenceSpace | None = None,
) -> dict[str, Any]:
    """The ``k`` accounts of platform ``on`` closest to the account in the shared sequence
    space (similar people, not the same person: the person's own accounts are left out).
    ``space`` is the model to search; None loads the current version's files."""
    if k < 1:
        raise InputError("-k must be at least 1")
    account = _require_account(ws, platform, raw_id)
    if space is None:
        space = _load_space(ws, on)
    profiles = space.profiles
    row = profiles.row(platform, account)
    if row is None:
        raise NotFoundError(
            f"account {raw_id!r} of {platform!r} is newer than model {space.version}",
            hint="run `crossrec train`",
        )
    index = space.indexes.get(on)
    if index is None:
        raise NotFoundError(f"no platform {on!r} in model {space.version}")
    same_person = {
        (m["platform"], m["account"]) for m in person_links(ws, platform, raw_id)["accounts"]
    }
    vector = space.vector(row, platform, account) if space.vector is not None else None
    if vector is None:
        vector = profiles.sequence[row]
    scores, ids = index.search(np.asarray(vector, np.float32)[None, :], k + len(same_person) + 1)
    out: list[dict[str, Any]] = []
    for s, i in zip(scores[0].tolist(), ids[0].tolist(), strict=True):
        if i < 0 or len(out) >= k:
            continue
        key = (str(profiles.platform[i]), str(profiles.account[i]))
        if i == row or key in same_person:
            continue
        out.append(
            {
                "platform": key[0],
                "account": key[1],
                "similarity": round(float(s), 6),
                "top_categories": profiles.top_categories[i],
            }
        )
    return {
        "platform": platform,
        "account": raw_id,
        "on": on,
        "similar": out,
        "model_version": space.version,
        "top_categories": profiles.top_categories[row],
    }


def _load_space(ws: Workspace, on: str) -> SequenceSpace:
    """The current version's profiles and the index of platform ``on`` only, from disk."""
    from crossrec.index import load_index
    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles

    model_dir = ModelRegistry(ws.models_dir).path()
    profiles = AccountProfiles.load(model_dir / "accounts")
    index_dir = model_dir / "index" / "sequence" / on
    indexes = {on: load_index(index_dir)} if index_dir.is_dir() else {}
    return SequenceSpace(model_dir.name, profiles, indexes)
