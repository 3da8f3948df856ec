"""An account's profile: facts from the store, and what the served model holds for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc

from crossrec.errors import NotFoundError

if TYPE_CHECKING:
    from crossrec.recommend import Recommender
    from crossrec.workspace import Workspace


def account_profile(
    ws: Workspace, platform: str, raw_id: str, recommender: Recommender | None = None
) -> dict[str, Any]:
    """Summary of one account, by its raw id.

    From the store: event count, first and last event time (ISO-8601 UTC; None without
    timestamps), active days (distinct UTC dates), events per type, its person id in the
    identity graph. From the model (when one is given and knows the account): top
    categories, and whether the account has a CF, sequence and text vector; ``updated_online``
    says its vectors were refreshed from events newer than the model.

    Raises NotFoundError for an account the store does not know.
    """
    account = ws.account_id(platform, raw_id)
    store = ws.store
    if not store.has_account(platform, account):
        raise NotFoundError(f"no account {raw_id!r} on platform {platform!r}")
    events = store.account_events(platform, account, columns=["event_type", "ts"])
    ts = events.column("ts")
    first = last = None
    active_days = 0
    if ts.null_count < len(ts):
        bounds = pc.min_max(ts)
        first, last = bounds["min"].as_py(), bounds["max"].as_py()
        days = pc.cast(pc.drop_null(ts), "date32")
        active_days = len(pc.unique(days))
    types = pc.value_counts(events.column("event_type")).to_pylist()
    persons = store.read("persons", columns=["account", "person"], platform=platform)
    match = persons.filter(pc.equal(persons["account"], account))
    person = match.column("person")[0].as_py() if match.num_rows else None
    doc: dict[str, Any] = {
        "platform": platform,
        "account": raw_id,
        "events": events.num_rows,
        "first_event": first.isoformat() if first else None,
        "last_event": last.isoformat() if last else None,
        "active_days": active_days,
        "event_types": {t["values"]: int(t["counts"]) for t in sorted(types, key=_by_count)},
        "person": person,
        "model_version": None,
        "in_model": False,
        "updated_online": False,
        "top_categories": [],
        "vectors": {"cf": False, "sequence": False, "text": False},
    }
    if recommender is None:
        return doc
    parts = recommender.parts
    doc["model_version"] = recommender.model_version
    plat = parts.platforms.get(platform)
    doc["updated_online"] = plat is not None and account in plat.updated
    row = parts.profiles.row(platform, account)
    if row is None:
        return doc
    profiles = parts.profiles
    doc["in_model"] = True
    doc["top_categories"] = list(profiles.top_categories[row])
    doc["vectors"] = {
        "cf": bool(profiles.cf.shape[1] and np.any(profiles.cf[row])),
        "sequence": bool(profiles.sequence.shape[1] and np.any(profiles.sequence[row])),
        "text": bool(profiles.has_text[row]),
    }
    return doc


def _by_count(entry: dict[str, Any]) -> tuple[int, str]:
    return (-int(entry["counts"]), str(entry["values"]))
