"""``crossrec forget``: erase an account, or a whole person, from a workspace without a trace.

What goes, for every erased ``(platform, pseudonym)``:

* every model version's files (:mod:`crossrec.forget_models`): profiles, CF rows, sequence
  vectors and anchors, vector-index entries (compacted away), candidate pairs, the matcher's
  training pairs; reports that mention it are redacted;
* the quarantine's bad rows that carry its raw id: each value of a quarantined row is
  pseudonymised under the row's platform and compared, so the raw ids of a person's other
  accounts (which the store never saw) are found too;
* every store row naming it (events, accounts, identifiers, known and asserted links, the
  persons table, and any row whose text still mentions it); persons it held together are
  split into what the remaining links connect;
* the deleted bytes: DuckDB keeps deleted rows' bytes in its file after a checkpoint, so the
  store and the quarantine are copied into fresh files that replace them.

What stays, so that erasure holds: one suppression mark per erased account in the store's
``erased_accounts`` table, a keyed hash of its pseudonym (:meth:`Pseudonymiser.erasure_mark`;
neither the raw id nor the pseudonym, and useless without the workspace key). Every ingest path
(files, HTTP, Kafka) checks it where ids are pseudonymised: events of an erased account that
arrive later (a re-export, a retried POST, a replayed message) are quarantined with reason
``erased`` and without their raw row, never stored.

Finally every file of the workspace is scanned for the pseudonyms (as UTF-8 and as numpy's
UTF-32); what still holds one is listed in ``leftovers``.

The order makes a crash safe to retry: model files and the quarantine first, the store last,
so until the store forgets the account, running ``forget`` again finds it and finishes the
job. The erasing transaction also sets a mark that the store file's rewrite clears; a run
that finds the mark set (a crash between the two) rewrites the file before anything else.

A long-running process that holds model objects or store connections must drop them after
:func:`forget` returns: model files were rewritten in place (profile rows renumbered) and the
store file was replaced. ``Workspace.store`` reopens by itself; :func:`erased_keys` turns the
returned account list into keys to evict from caches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from crossrec.errors import CapacityError, NotFoundError
from crossrec.forget_models import erase_reports, erase_version, find_traces, recover

if TYPE_CHECKING:
    from crossrec.store.base import Store
    from crossrec.workspace import Workspace

Key = tuple[str, str]
_LINK_COLUMNS = ["platform_a", "account_a", "platform_b", "account_b"]
_BATCH = 10_000
#: Meta key set by the erasing transaction and cleared once the store file is rewritten.
_PENDING = "forget_pending"


def forget(ws: Workspace, platform: str, raw_id: str, *, person: bool = False) -> dict[str, Any]:
    """Erase the account ``raw_id`` of ``platform`` (and with ``person`` every account linked
    to it) from the store, the quarantine, every model version and the reports.

    Returns
    -------
    dict
        ``deleted_until`` (ISO-8601 UTC: data up to this moment is gone; events of the
        account that arrive later are quarantined as ``erased``), ``accounts``
        (``[[platform, pseudonym], ...]`` erased),
        ``removed`` (counts per store table, quarantine, model version and the report files
        changed) and ``leftovers`` (workspace files still holding a pseudonym: empty unless
        some file this code does not know names an account).

    Raises
    ------
    NotFoundError
        The store knows no such account.
    CapacityError
        With ``person``: the linked accounts exceed ``link.max_component_size``.
    """
    store = ws.store
    if store.get_meta(_PENDING):  # a run stopped between its commit and the rewrite
        _rewrite_store(ws)
        store = ws.store
    account = ws.account_id(platform, raw_id)
    if not _known(store, platform, account):
        raise NotFoundError(
            f"no account {raw_id!r} on platform {platform!r}",
            hint="check the platform and the raw id; an account already forgotten is gone",
        )
    keys = {(platform, account)}
    if person:
        keys = _component(store, (platform, account), ws.config.link.max_component_size)
    names = sorted(a for _, a in keys)

    # model files before the store: see the module docstring
    recover(ws.models_dir)
    models: dict[str, dict[str, int]] = {}
    if ws.models_dir.is_dir():
        for version in sorted(p for p in ws.models_dir.iterdir() if p.is_dir()):
            done = erase_version(version, keys)
            if done:
                models[version.name] = done
    quarantine = _erase_quarantine(ws, keys)
    reports = erase_reports(ws.reports_dir, names)

    with store.transaction():
        deleted_until = datetime.now(UTC).isoformat(timespec="seconds")
        persons = store.read("persons", columns=["platform", "account", "person"])
        affected = _persons_of(persons, keys)
        tables = store.erase_accounts(sorted(keys))
        ordered = sorted(keys)  # the suppression marks: later events of these are refused
        marks = ws.pseudonymiser.erasure_marks(a for _, a in ordered)
        store.add_erasure_marks([(p, m) for (p, _), m in zip(ordered, marks, strict=True)])
        split = _split_persons(store, affected)
        store.set_meta(_PENDING, deleted_until)
    _rewrite_store(ws)
    return {
        "deleted_until": deleted_until,
        "accounts": [[p, a] for p, a in sorted(keys)],
        "removed": {
            "store": tables,
            "persons_changed": split,
            "quarantine": quarantine,
            "models": models,
            "reports": reports,
        },
        "leftovers": find_traces(ws.root, names),
    }


def erased_keys(accounts: Iterable[Sequence[str]]) -> frozenset[Key]:
    """``(platform, pseudonym)`` keys of the ``accounts`` list :func:`forget` returned, e.g. to
    evict a long-running process's caches (``Recommender`` online vectors, query caches)."""
    return frozenset((str(p), str(a)) for p, a in accounts)


# -- which accounts --------------------------------------------------------------------------------
def _keys(table: pa.Table, platform: str, account: str) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(table.column(platform), table.column(account), "\x1f")


def _known(store: Store, platform: str, account: str) -> bool:
    """Whether any store table names the account (known links may name accounts that have
    no events)."""
    if store.has_account(platform, account):
        return True
    key = pa.array([f"{platform}\x1f{account}"])
    for table, pairs in (
        ("known_links", (("platform_a", "account_a"), ("platform_b", "account_b"))),
        ("links", (("platform_a", "account_a"), ("platform_b", "account_b"))),
        ("persons", (("platform", "account"),)),
    ):
        t = store.read(table)
        for p, a in pairs:
            if pc.any(pc.is_in(_keys(t, p, a), value_set=key)).as_py():
                return True
    return False


def _component(store: Store, start: Key, cap: int) -> set[Key]:
    """The account's identity-graph component: known links, asserted links and persons."""
    edges = [store.read(t, columns=_LINK_COLUMNS) for t in ("known_links", "links")]
    ends = [
        (_keys(e, "platform_a", "account_a"), _keys(e, "platform_b", "account_b")) for e in edges
    ]
    persons = store.read("persons", columns=["platform", "account", "person"])
    members = _keys(persons, "platform", "account")
    found = {"\x1f".join(start)}
    frontier = set(found)
    while frontier:
        value_set = pa.array(sorted(frontier), pa.string())
        new: set[str] = set()
        for a, b in ends:
            new.update(pc.filter(b, pc.is_in(a, value_set=value_set)).to_pylist())
            new.update(pc.filter(a, pc.is_in(b, value_set=value_set)).to_pylist())
        ids = pc.filter(persons.column("person"), pc.is_in(members, value_set=value_set))
        if len(ids):
            same = pc.is_in(persons.column("person"), value_set=pc.unique(ids))
            new.update(pc.filter(members, same).to_pylist())
        frontier = new - found
        found |= new
        if len(found) > cap:
            raise CapacityError(
                f"the person of {start[0]} account spans more than {cap} linked accounts "
                "(link.max_component_size)",
                hint="forget the accounts one by one, or raise link.max_component_size",
            )
    out = set()
    for key in found:
        p, _, a = key.partition("\x1f")
        out.add((p, a))
    return out


# -- persons ---------------------------------------------------------------------------------------
def _persons_of(persons: pa.Table, keys: set[Key]) -> set[int]:
    plats, accs = persons.column("platform").to_pylist(), persons.column("account").to_pylist()
    ids = persons.column("person").to_pylist()
    return {int(i) for p, a, i in zip(plats, accs, ids, strict=True) if (p, a) in keys}


def _split_persons(store: Store, affected: set[int]) -> int:
    """Recompute the persons an erased account belonged to from the links that remain: what
    it alone held together falls apart (pieces of one account are no person). Returns the
    number of persons that lost a member."""
    if not affected:
        return 0
    persons = store.read("persons")
    links = store.read("links")
    known = store.read("known_links", columns=_LINK_COLUMNS)
    rows = persons.to_pylist()
    parent: dict[Key, Key] = {}

    def find(k: Key) -> Key:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    person_of = {(r["platform"], r["account"]): int(r["person"]) for r in rows}
    for r in rows:
        if int(r["person"]) in affected:
            k = (r["platform"], r["account"])
            parent[k] = k
    for table in (links, known):
        for e in table.select(_LINK_COLUMNS).to_pylist():
            a, b = (e["platform_a"], e["account_a"]), (e["platform_b"], e["account_b"])
            if a in parent and b in parent and person_of[a] == person_of[b]:
                parent[find(a)] = find(b)
    pieces: dict[Key, list[Key]] = {}
    for k in parent:
        pieces.setdefault(find(k), []).append(k)
    next_id = max((int(r["person"]) for r in rows), default=-1) + 1
    new_id: dict[Key, int | None] = {}
    for person in sorted(affected):
        groups = sorted(
            (sorted(g) for g in pieces.values() if person_of[g[0]] == person),
            key=lambda g: (-len(g), g),
        )
        for i, group in enumerate(groups):  # the largest piece keeps the person's number
            pid: int | None
            if len(group) < 2:
                pid = None
            elif i == 0:
                pid = person
            else:
                pid, next_id = next_id, next_id + 1
            for k in group:
                new_id[k] = pid
    kept = []
    for r in rows:
        k = (r["platform"], r["account"])
        if k in new_id:
            if new_id[k] is None:
                continue
            r = {**r, "person": new_id[k]}
        kept.append(r)
    store.replace_links(links, pa.Table.from_pylist(kept, schema=persons.schema))
    return len(affected)


# -- quarantine ------------------------------------------------------------------------------------
def _tokens(raw: str | None) -> list[str]:
    """The values of a quarantined row: a JSON object's values, else the fields of a line."""
    if not raw:
        return []
    out = {raw, raw.strip()}
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if isinstance(obj, dict | list):
        stack: list[Any] = [obj]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
            elif v is not None:
                s = v if isinstance(v, str) else json.dumps(v)
                out.update((s, s.strip()))
    else:
        for part in re.split(r"[,;\t|]", raw):
            out.add(part.strip().strip("\"'").strip())
    return sorted(t for t in out if t)


def _erase_quarantine(ws: Workspace, keys: set[Key]) -> int:
    """Delete quarantined rows that carry a raw id whose pseudonym (under the row's platform,
    or any erased platform for rows without one, such as known links) is erased."""
    import duckdb

    from crossrec.workspace import QUARANTINE_FILE

    path = ws.root / QUARANTINE_FILE
    if not path.is_file():
        return 0
    ps = ws.pseudonymiser
    platforms = sorted({p for p, _ in keys})
    hits: list[tuple[str, str, int]] = []
    con = duckdb.connect(str(path))
    try:
        cur = con.execute(
            "SELECT fingerprint, kind, line, platform, raw, reason FROM quarantine "
            f"WHERE platform IS NULL OR platform IN ({', '.join('?' * len(platforms))})",
            platforms,
        )
        while batch := cur.fetchmany(_BATCH):
            for fp, kind, line, plat, raw, reason in batch:
                tokens = _tokens(raw) + _tokens(reason)
                for p in [plat] if plat is not None else platforms:
                    if any((p, a) in keys for a in ps.accounts(p, tokens)):
                        hits.append((fp, kind, line))
                        break
        if hits:
            con.register(
                "_hits",
                pa.table(
                    {
                        "_f": pa.array([h[0] for h in hits], pa.string()),
                        "_k": pa.array([h[1] for h in hits], pa.string()),
                        "_l": pa.array([h[2] for h in hits], pa.int64()),
                    }
                ),
            )
            con.execute(
                "DELETE FROM quarantine WHERE EXISTS (SELECT 1 FROM _hits "
                "WHERE _f = fingerprint AND _k = kind AND _l = line)"
            )
            con.unregister("_hits")
            con.execute("FORCE CHECKPOINT")
    finally:
        con.close()
    if hits:  # at once: a later run would find no row to delete, hence nothing to rewrite
        from crossrec.store.duckdb import rebuild_database

        rebuild_database(path)
    return len(hits)


# -- store bytes -----------------------------------------------------------------------------------
def _rewrite_store(ws: Workspace) -> None:
    """Copy the store into a fresh file (DuckDB keeps deleted rows' bytes after a checkpoint),
    then clear the pending mark the erasing transaction set; the workspace reopens the store
    on next use."""
    from crossrec.store.duckdb import DuckDBStore, rebuild_database
    from crossrec.workspace import STORE_FILE

    store = ws.store
    if isinstance(store, DuckDBStore):
        store.checkpoint()
        ws.close()
        rebuild_database(ws.root / STORE_FILE)
        store = ws.store
    store.set_meta(_PENDING, "")
    store.checkpoint()
