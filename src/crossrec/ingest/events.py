"""Writing a file's valid events: pseudonymise, drop repeats, append to the store.

Works on the staging connection's ``checked`` table (see :mod:`crossrec.ingest.validate`):

1. one aggregate over the valid rows gives each distinct raw account, its first and last
   event time and its keyed pseudonym (HMAC-SHA256 computed by DuckDB, once per account);
2. repeats within the file are found by sorting 64-bit hashes of each event's identity; only
   when two rows share a hash (a real repeat, or a rare collision) is the exact identity
   compared, and later occurrences dropped;
3. the rows stream (Arrow batches) into :meth:`Store.insert_events`, which computes each
   event's 128-bit key and skips events already stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from crossrec.store.base import Store

if TYPE_CHECKING:
    from crossrec.privacy import Pseudonymiser

# The identity of a valid row within one file (an event id when given, else its fields) as
# the store's key sees it (crossrec.store.event_keys), with the raw account standing in for
# its pseudonym (one raw id, one pseudonym).
_FIELDS_TEXT = (
    "concat_ws(chr(31), account_raw, item, event_type, "
    "coalesce(CAST(value AS VARCHAR), ''), coalesce(CAST(epoch_us(ts) AS VARCHAR), ''))"
)
_IDENTITY = f"CASE WHEN event_id IS NOT NULL THEN 'g' || event_id ELSE 'h' || {_FIELDS_TEXT} END"
# A 64-bit hash that is equal whenever the identity is equal (the converse may fail).
_IDENTITY_HASH = (
    "CASE WHEN event_id IS NOT NULL THEN hash(event_id) "
    "ELSE hash(account_raw, item, event_type, value, ts) END"
)


@dataclass(frozen=True)
class EventsWritten:
    """Valid rows of a file, and what became of them."""

    valid: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.valid - self.inserted


def pseudonymise_accounts(con: duckdb.DuckDBPyConnection, ps: Pseudonymiser, platform: str) -> int:
    """Create ``_accounts(raw, pseud, first_seen, last_seen)`` from the valid rows of
    ``checked``; returns the number of valid rows."""
    expr, params = ps.account_sql(platform, "raw")
    con.execute(
        f"""
        CREATE TABLE _accounts AS
        SELECT raw, {expr} AS pseud, first_seen, last_seen, n FROM (
            SELECT account_raw AS raw, min(ts) AS first_seen, max(ts) AS last_seen,
                count(*) AS n
            FROM checked WHERE _reason IS NULL GROUP BY account_raw)
        """,
        params,
    )
    return _scalar(con, "SELECT coalesce(sum(n), 0) FROM _accounts")


def mark_repeats(con: duckdb.DuckDBPyConnection, valid: int) -> int:
    """Create ``_repeats(_row)``: valid rows of ``checked`` that repeat an earlier row's
    event; returns how many there are."""
    con.execute("CREATE TABLE _repeats (_row BIGINT)")
    if valid < 2:
        return 0
    # sorted hashes with no two neighbours equal: every hash differs, so every identity does
    # (a sort costs a third less than a distinct count over ten million keys)
    equal_neighbours = _scalar(
        con,
        f"""
        SELECT count(*) FROM (
            SELECT h = lag(h) OVER (ORDER BY h) AS same
            FROM (SELECT {_IDENTITY_HASH} AS h FROM checked WHERE _reason IS NULL))
        WHERE same
        """,
    )
    if equal_neighbours == 0:
        return 0
    con.execute(
        f"""
        INSERT INTO _repeats
        SELECT rowid FROM checked WHERE _reason IS NULL
        QUALIFY row_number() OVER (PARTITION BY {_IDENTITY} ORDER BY rowid) > 1
        """
    )
    return _scalar(con, "SELECT count(*) FROM _repeats")


def identifiers(
    con: duckdb.DuckDBPyConnection, ps: Pseudonymiser, platform: str, personal: list[str]
) -> pa.Table:
    """``account_identifiers`` rows of the valid rows' personal columns (``_p0..`` of
    ``checked``, named by ``personal``), pseudonymised."""
    parts: list[str] = []
    params: list[object] = []
    for j, kind in enumerate(personal):
        expr, p = ps.identifier_sql(kind, f"c._p{j}")
        parts.append(
            f"SELECT DISTINCT a.pseud AS account, ? AS kind, {expr} AS value "
            f"FROM checked c JOIN _accounts a ON a.raw = c.account_raw "
            f"WHERE c._reason IS NULL AND c._p{j} IS NOT NULL"
        )
        params += [kind, *p]
    if not parts:
        return pa.table({c: pa.array([], pa.string()) for c in _IDENT_COLUMNS})
    sql = f"SELECT ? AS platform, * FROM ({' UNION ALL '.join(parts)}) ORDER BY ALL"
    return con.sql(sql, params=[platform, *params]).to_arrow_table()


_IDENT_COLUMNS = ("platform", "account", "kind", "value")


def accounts_seen(con: duckdb.DuckDBPyConnection, platform: str) -> pa.Table:
    """``(platform, account, first_seen, last_seen)`` of the file's accounts."""
    return con.sql(
        "SELECT ? AS platform, pseud AS account, first_seen, last_seen FROM _accounts",
        params=[platform],
    ).to_arrow_table()


def stream_events(
    con: duckdb.DuckDBPyConnection, platform: str, first_seq: int, batch_rows: int, repeats: int
) -> pa.RecordBatchReader:
    """Canonical event rows of the valid, first-occurrence rows, in file order.

    ``event_id`` is the given id or NULL: the store derives the key of an event without one.
    ``seq`` is ``first_seq`` + the row's position in the file.
    """
    skip = "AND c.rowid NOT IN (SELECT _row FROM _repeats)" if repeats else ""
    sql = f"""
        SELECT ? AS platform, a.pseud AS account, c.item, c.event_type, c.value, c.ts,
            c.event_id, ? + c.rowid AS seq, c.attrs
        FROM checked c JOIN _accounts a ON a.raw = c.account_raw
        WHERE c._reason IS NULL {skip}
    """
    return con.sql(sql, params=[platform, first_seq]).to_arrow_reader(batch_rows)


def write(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    ps: Pseudonymiser,
    platform: str,
    *,
    personal: list[str],
    batch_rows: int,
) -> EventsWritten:
    """Write the valid rows of ``checked`` into ``store`` (the caller holds the transaction
    that makes the file's writes atomic)."""
    valid = pseudonymise_accounts(con, ps, platform)
    repeats = mark_repeats(con, valid)
    idents = identifiers(con, ps, platform, personal)
    reader = stream_events(con, platform, store.next_seq(), batch_rows, repeats)
    inserted = store.insert_events(reader, unique=True, platform=platform).inserted
    store.add_duplicates(valid - inserted)
    if idents.num_rows:
        store.insert_identifiers(idents)
    store.upsert_accounts(accounts_seen(con, platform))
    return EventsWritten(valid, inserted)


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0
