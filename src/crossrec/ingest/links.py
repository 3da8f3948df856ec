"""Known-links checks beyond one row: conflicts and accounts that exist nowhere.

A known link says two accounts of two platforms are one person, and a person has at most one
account per platform. A links file whose rows (with the links already stored) would give an
account two accounts of one platform is self-contradictory there: those rows are quarantined
with the reason, the stored links stay as they are. Rows naming accounts that no events file
has shown are stored (a login table may come before the events) and counted in the summary.

Both work on the staging connection's ``checked`` table of a links file
(:func:`crossrec.ingest.validate.checked_links_sql`), before its bad rows are quarantined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from crossrec.workspace import Workspace

#: What a conflicting row's quarantine reason starts with (the summary counts by it).
CONFLICT = "conflicting link"


def pseudonymise_links(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """Create ``_link_pseud(platform, raw, pseud)`` for every account the valid rows of
    ``checked`` name (links files are small: pseudonyms are computed in Python)."""
    pairs = con.execute(
        """
        SELECT platform_a, account_a FROM checked WHERE _reason IS NULL
        UNION SELECT platform_b, account_b FROM checked WHERE _reason IS NULL
        ORDER BY ALL
        """
    ).fetchall()
    ps = ws.pseudonymiser
    table = pa.table(
        {
            "platform": pa.array([p for p, _ in pairs], pa.string()),
            "raw": pa.array([r for _, r in pairs], pa.string()),
            "pseud": pa.array([ps.account(p, r) for p, r in pairs], pa.string()),
        }
    )
    con.register("_link_pseud_in", table)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _link_pseud AS SELECT * FROM _link_pseud_in")
    finally:
        con.unregister("_link_pseud_in")


def mark_conflicts(con: duckdb.DuckDBPyConnection, ws: Workspace) -> int:
    """Turn the valid rows of ``checked`` that link an account to a second account of one
    platform (within the file, or beside a stored known link) into bad rows with reason
    ``conflicting link: ...``; a row that repeats a stored link is never one (the stored
    link stays). Returns how many rows that was."""
    pseudonymise_links(con, ws)
    stored = ws.store.read(
        "known_links", columns=["platform_a", "account_a", "platform_b", "account_b"]
    )
    con.register("_stored_links", stored)
    try:
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _conflicts AS
            WITH f AS (
                SELECT c.rowid AS r, c.platform_a AS pa, x.pseud AS a,
                    c.platform_b AS pb, y.pseud AS b
                FROM checked c
                JOIN _link_pseud x ON x.platform = c.platform_a AND x.raw = c.account_a
                JOIN _link_pseud y ON y.platform = c.platform_b AND y.raw = c.account_b
                WHERE c._reason IS NULL
            ), stored AS (
                SELECT platform_a AS p, account_a AS a, platform_b AS q, account_b AS b
                FROM _stored_links
                UNION ALL SELECT platform_b, account_b, platform_a, account_a FROM _stored_links
            ), edges AS (
                SELECT pa AS p, a, pb AS q, b FROM f
                UNION ALL SELECT pb, b, pa, a FROM f
                UNION ALL SELECT * FROM stored
            ), multi AS (
                SELECT p, a, q FROM edges GROUP BY p, a, q HAVING count(DISTINCT b) > 1
            )
            SELECT f.r,
                CASE WHEN ma.p IS NOT NULL THEN 'account_a' ELSE 'account_b' END AS field,
                CASE WHEN ma.p IS NOT NULL
                    THEN 'this ' || f.pa || ' account is linked to two or more ' || f.pb
                    ELSE 'this ' || f.pb || ' account is linked to two or more ' || f.pa
                END || ' accounts; a person has one account per platform' AS why
            FROM f
            LEFT JOIN multi ma ON ma.p = f.pa AND ma.a = f.a AND ma.q = f.pb
            LEFT JOIN multi mb ON mb.p = f.pb AND mb.a = f.b AND mb.q = f.pa
            WHERE (ma.p IS NOT NULL OR mb.p IS NOT NULL)
                -- a stored link is kept: the file repeating it is a duplicate, not a conflict
                AND NOT EXISTS (SELECT 1 FROM stored s
                    WHERE s.p = f.pa AND s.a = f.a AND s.q = f.pb AND s.b = f.b)
            """
        )
    finally:
        con.unregister("_stored_links")
    rows = con.execute(
        f"""
        UPDATE checked SET _field = k.field, _reason = '{CONFLICT}: ' || k.why,
            _raw = CAST(to_json(struct_pack(platform_a := checked.platform_a,
                account_a := checked.account_a, platform_b := checked.platform_b,
                account_b := checked.account_b)) AS VARCHAR)
        FROM _conflicts k WHERE checked.rowid = k.r
        """
    ).fetchall()
    con.execute("DROP TABLE _conflicts")
    return int(rows[0][0]) if rows else 0


def unknown_accounts(ws: Workspace, links: pa.Table) -> int:
    """How many distinct accounts the ``known_links`` rows ``links`` (pseudonyms) name that
    the store has no events of."""
    if not links.num_rows:
        return 0

    def keys(table: pa.Table, platform: str, account: str) -> pa.ChunkedArray:
        return pc.binary_join_element_wise(table[platform], table[account], "\x1f")

    named = pc.unique(
        pa.chunked_array(
            keys(links, "platform_a", "account_a").chunks
            + keys(links, "platform_b", "account_b").chunks,
            pa.string(),
        )
    )
    seen = ws.store.read("accounts", columns=["platform", "account"])
    known = pc.is_in(named, value_set=keys(seen, "platform", "account").combine_chunks())
    return int(len(named) - pc.sum(known).as_py()) if len(named) else 0
