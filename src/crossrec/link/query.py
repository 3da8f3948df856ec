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

    from crossrec.idmap import IdMap
    from crossrec.index import VectorIndex
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.workspace import Workspace

#: How many of an unlinked account's best candidates ``person_links`` lists.
CANDIDATES_SHOWN = 10


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


def person_links(
    ws: Workspace,
    platform: str,
    raw_id: str,
    *,
    ids: IdMap | None = None,
    candidates: bool = False,
) -> dict[str, Any]:
    """The person of an account: every account of it with how it is linked and why.

    Each link carries its ``status`` (``asserted`` or ``probable`` as the linker wrote it;
    ``known`` for a known link). Accounts are shown by pseudonym under ``account`` (the
    caller's own by the raw id it sent) and by raw id under ``account_raw`` /
    ``account_a_raw`` / ``account_b_raw`` where ``ids`` resolves them (else null). With
    ``candidates``, an account without an asserted or known link also gets its best
    candidates from the current model's link step (see :func:`account_candidates`).
    """
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

    def raw(p: str, a: str) -> str | None:
        if (p, a) == (platform, account):
            return raw_id
        return ids.raw(p, a) if ids is not None else None

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
                "status": row.get("status") or "asserted",
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
                "status": "known",
                "evidence": [],
            }
        )
    settled = False
    for e in edges:  # the caller's own account is shown by the raw id it sent
        own = False
        for side in ("a", "b"):
            key = (e[f"platform_{side}"], e[f"account_{side}"])
            e[f"account_{side}_raw"] = raw(*key)
            if key == (platform, account):
                e[f"account_{side}"] = raw_id
                own = True
        settled |= own and e["status"] in ("asserted", "known")
    doc: dict[str, Any] = {
        "platform": platform,
        "account": raw_id,
        "person": person,
        "accounts": [
            {
                "platform": p,
                "account": raw_id if (p, a) == (platform, account) else a,
                "account_raw": raw(p, a),
            }
            for p, a in sorted(members)
        ],
        "links": edges,
        "candidates": [],
    }
    if candidates and not settled:
        status = {
            (r["platform_a"], r["account_a"], r["platform_b"], r["account_b"]): r.get("status")
            for r in links.to_pylist()
        }
        doc["candidates"] = account_candidates(ws, platform, account, ids=ids, statuses=status)
    return doc


def account_candidates(
    ws: Workspace,
    platform: str,
    account: str,
    *,
    ids: IdMap | None = None,
    limit: int = CANDIDATES_SHOWN,
    statuses: Mapping[tuple[str, str, str, str], str | None] | None = None,
) -> list[dict[str, Any]]:
    """The account's (a pseudonym) best candidate partners from the current model's last
    ``crossrec link``, most probable first: ``platform``, ``account`` (pseudonym),
    ``account_raw`` (where ``ids`` resolves it, else null), ``probability`` and ``status``:

    - ``asserted``: the linker asserted the pair;
    - ``probable``: the links table holds the pair as probable (``statuses``);
    - ``below threshold``: its probability is under the operating threshold (or no
      threshold was certified);
    - ``not chosen``: at or above the threshold, but the one-to-one assignment gave one of the
      two accounts another partner.

    An empty list when the model has no link step or the account is newer than the model.
    """
    from crossrec.link.pipeline import LINK_DIR
    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles

    model_dir = ModelRegistry(ws.models_dir).path()
    path = model_dir / LINK_DIR / "candidates.npz"
    if not path.is_file():
        return []
    profiles = AccountProfiles.load(model_dir / "accounts")
    row = profiles.row(platform, account)
    if row is None:
        return []
    summary_file = model_dir / LINK_DIR / "link.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    threshold = summary.get("threshold")
    with np.load(path, allow_pickle=False) as z:
        a, b = z["a_rows"], z["b_rows"]
        prob, asserted = z["probability"], z["asserted"]
    at = np.flatnonzero((a == row) | (b == row))
    at = at[np.argsort(-prob[at], kind="stable")][:limit]
    out = []
    for i in at.tolist():
        ra, rb = int(a[i]), int(b[i])
        other = rb if ra == row else ra
        key = (str(profiles.platform[other]), str(profiles.account[other]))
        p = float(prob[i])
        pf, ac = profiles.platform, profiles.account
        stored = (statuses or {}).get((str(pf[ra]), str(ac[ra]), str(pf[rb]), str(ac[rb])))
        if bool(asserted[i]):
            status = "asserted"
        elif stored == "probable":
            status = "probable"
        elif threshold is None or p < float(threshold):
            status = "below threshold"
        else:
            status = "not chosen"
        out.append(
            {
                "platform": key[0],
                "account": key[1],
                "account_raw": ids.raw(*key) if ids is not None else None,
                "probability": round(p, 6),
                "status": status,
            }
        )
    return out


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
    ids: IdMap | None = None,
) -> dict[str, Any]:
    """The ``k`` accounts of platform ``on`` closest to the account in the shared sequence
    space (similar people, not the same person: the person's own accounts are left out).
    ``space`` is the model to search; None loads the current version's files. Each account
    is shown by pseudonym and, under ``account_raw``, by the raw id ``ids`` gives (else
    null)."""
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
    scores, hits = index.search(np.asarray(vector, np.float32)[None, :], k + len(same_person) + 1)
    out: list[dict[str, Any]] = []
    for s, i in zip(scores[0].tolist(), hits[0].tolist(), strict=True):
        if i < 0 or len(out) >= k:
            continue
        key = (str(profiles.platform[i]), str(profiles.account[i]))
        if i == row or key in same_person:
            continue
        out.append(
            {
                "platform": key[0],
                "account": key[1],
                "account_raw": ids.raw(*key) if ids is not None else None,
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
