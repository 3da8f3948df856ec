"""Read-side of linkage: a person's accounts with evidence, and similar people elsewhere."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from crossrec.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from crossrec.workspace import Workspace


def _require_account(ws: Workspace, platform: str, raw_id: str) -> str:
    account = ws.account_id(platform, raw_id)
    if not ws.store.has_account(platform, account):
        raise NotFoundError(f"no account {raw_id!r} on platform {platform!r}")
    return account


def person_links(ws: Workspace, platform: str, raw_id: str) -> dict[str, Any]:
    """The person of an account: every account of it with how it is linked and why."""
    account = _require_account(ws, platform, raw_id)
    persons = ws.store.read("persons").to_pylist()
    person = next(
        (p["person"] for p in persons if p["platform"] == platform and p["account"] == account),
        None,
    )
    members = (
        [(p["platform"], p["account"]) for p in persons if p["person"] == person]
        if person is not None
        else [(platform, account)]
    )
    member_set = set(members)
    edges = []
    for row in ws.store.read("links").to_pylist():
        if (row["platform_a"], row["account_a"]) in member_set:
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
    for row in ws.store.read("known_links").to_pylist():
        if (row["platform_a"], row["account_a"]) in member_set:
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


def similar_accounts(
    ws: Workspace, platform: str, raw_id: str, on: str, k: int = 10
) -> dict[str, Any]:
    """The ``k`` accounts of platform ``on`` closest to the account in the shared sequence
    space (similar people, not the same person: the person's own accounts are left out)."""
    from crossrec.index import load_index
    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles

    if k < 1:
        raise InputError("-k must be at least 1")
    account = _require_account(ws, platform, raw_id)
    model_dir = ModelRegistry(ws.models_dir).path()
    profiles = AccountProfiles.load(model_dir / "accounts")
    row = profiles.row(platform, account)
    if row is None:
        raise NotFoundError(
            f"account {raw_id!r} of {platform!r} is newer than model {model_dir.name}",
            hint="run `crossrec train`",
        )
    index_dir = model_dir / "index" / "sequence" / on
    if not index_dir.is_dir():
        raise NotFoundError(f"no platform {on!r} in model {model_dir.name}")
    same_person = {
        (m["platform"], m["account"]) for m in person_links(ws, platform, raw_id)["accounts"]
    }
    index = load_index(index_dir)
    scores, ids = index.search(profiles.sequence[row][None, :], k + len(same_person) + 1)
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
        "model_version": model_dir.name,
        "top_categories": profiles.top_categories[row],
    }
