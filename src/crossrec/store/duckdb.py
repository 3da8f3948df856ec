"""DuckDB implementation of :class:`~crossrec.store.base.Store` (the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from crossrec import schema
from crossrec.errors import SchemaVersionError, WorkspaceError
from crossrec.store import event_keys
from crossrec.store.base import PERSON_LIMIT, PlatformStats, Store, WriteResult
from crossrec.store.erasure import erase_rows, rebuild_database
from crossrec.store.lock import damaged, open_duckdb

_TABLES = {t.name: t for t in schema.CANONICAL_TABLES}
__all__ = ["DuckDBStore", "rebuild_database"]


def _select_list(table: schema.Table, cols: Sequence[str]) -> str:
    """Columns as callers read them: an event's ``event_id`` is never NULL on the way out."""
    if table.name != schema.EVENTS.name:
        return ", ".join(cols)
    return ", ".join(
        f"{event_keys.key_text_sql()} AS event_id" if c == "event_id" else c for c in cols
    )


def _either_side(n: int) -> str:
    """SQL condition: a link row with one of ``n`` accounts on either side."""
    one = "(platform_a = ? AND account_a = ?) OR (platform_b = ? AND account_b = ?)"
    return "(" + " OR ".join([one] * n) + ")"


def _member_params(members: set[tuple[str, str]]) -> list[str]:
    return [x for m in sorted(members) for x in (*m, *m)]


def _table(name: str) -> schema.Table:
    try:
        return _TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; known: {sorted(_TABLES)}") from None


#: Links that join accounts into a person (``probable`` ones do not).
_ASSERTED = "coalesce(status, 'asserted') = 'asserted' AND "


class DuckDBStore(Store):
    """Canonical tables in one DuckDB file."""

    def __init__(
        self,
        path: Path,
        *,
        create: bool = False,
        read_only: bool = False,
        memory_limit: str | None = None,
    ) -> None:
        self.path = path
        if not create and not path.exists():
            raise WorkspaceError(f"store {path} is missing", hint="run `crossrec init` first")
        # a store another process holds is waited for, then its holder named
        self.con = open_duckdb(path, read_only=read_only, what="store")
        self._in_tx = False
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit.replace(chr(39), '')}'")
        if create:
            self._create()
        try:
            self._check_version()
        except duckdb.Error as exc:  # opened, but its catalogue cannot be read
            self.con.close()
            raise damaged(path, "store", str(exc)) from None
        if not read_only:
            for table in schema.CANONICAL_TABLES:
                self.con.execute(table.ddl())
            # stores written before links had a status hold asserted links only
            self.con.execute(
                "ALTER TABLE links ADD COLUMN IF NOT EXISTS status VARCHAR DEFAULT 'asserted'"
            )

    # -- lifecycle -------------------------------------------------------------------------
    def _create(self) -> None:
        with self.transaction():
            for table in schema.CANONICAL_TABLES:
                self.con.execute(table.ddl())
            self.con.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                [str(schema.SCHEMA_VERSION)],
            )
            self.con.execute("INSERT OR IGNORE INTO meta VALUES ('duplicates', '0')")

    def _check_version(self) -> None:
        try:
            rows = self.con.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchall()
            row = rows[0] if rows else None
        except duckdb.CatalogException:
            row = None
        if row is None:
            raise WorkspaceError(f"{self.path} is not a crossrec store (no schema version)")
        if int(row[0]) != schema.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has schema version {row[0]}, this crossrec reads version "
                f"{schema.SCHEMA_VERSION}",
                hint="use the crossrec release that wrote it, or re-ingest into a new workspace",
            )

    def close(self) -> None:
        self.con.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_tx:  # nested: the outer transaction decides
            yield
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")
        finally:
            self._in_tx = False

    def checkpoint(self) -> None:
        self.con.execute("FORCE CHECKPOINT")

    # -- metadata --------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        row = rows[0] if rows else None
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    # -- writes ----------------------------------------------------------------------------------
    def next_seq(self) -> int:
        rows = self.con.execute("SELECT coalesce(max(seq) + 1, 0) FROM events").fetchall()
        row = rows[0] if rows else None
        return int(row[0]) if row else 0

    def insert_events(
        self, batches: pa.RecordBatchReader, *, unique: bool = False, platform: str | None = None
    ) -> WriteResult:
        # the store computes each row's identity (event_keys): one definition for every path
        names = [c for c in schema.EVENTS.column_names if c != "event_id"]
        target = ", ".join([*names, "event_id", "event_key"])
        values = ", ".join([*(f"s.{c}" for c in names), "s._event_id", "s._key"])
        keyed = (
            f"SELECT *, {event_keys.key_sql('s')} AS _key, "
            f"{event_keys.stored_id_sql('s')} AS _event_id FROM _staged_events s"
        )
        absent = (
            "NOT EXISTS (SELECT 1 FROM events e "
            "WHERE e.platform = s.platform AND e.event_key = s._key)"
        )
        counted = _Counted(batches)
        with self.transaction():
            self.con.register("_staged_events", counted.reader)
            try:
                if unique:
                    # no repeats in the stream: one pass; a platform's first rows just append
                    first = platform is not None and not self._has_events(platform)
                    where = "" if first else f"WHERE {absent}"
                    inserted = self._scalar(
                        f"INSERT INTO events ({target}) SELECT {values} FROM ({keyed}) s {where}"
                    )
                    return WriteResult(counted.rows, inserted)
                self.con.execute(f"CREATE TEMP TABLE _incoming AS {keyed}")
            finally:
                self.con.unregister("_staged_events")
            try:
                # the first occurrence per (platform, event_key), absent from the store
                inserted = self._scalar(
                    f"""
                    INSERT INTO events ({target})
                    SELECT {values} FROM _incoming s WHERE {absent}
                    QUALIFY row_number() OVER (PARTITION BY s.platform, s._key ORDER BY s.seq) = 1
                    """
                )
            finally:
                self.con.execute("DROP TABLE IF EXISTS _incoming")
            self.add_duplicates(counted.rows - inserted)
        return WriteResult(counted.rows, inserted)

    def _has_events(self, platform: str) -> bool:
        rows = self.con.execute(
            "SELECT 1 FROM events WHERE platform = ? LIMIT 1", [platform]
        ).fetchall()
        return bool(rows)

    def upsert_accounts(self, table: pa.Table) -> None:
        cols = ["platform", "account", "first_seen", "last_seen"]
        with self.transaction():
            self.con.register("_staged_accounts", table.select(cols))
            try:
                self.con.execute(
                    """
                    INSERT INTO accounts (platform, account, first_seen, last_seen)
                    SELECT platform, account, first_seen, last_seen FROM _staged_accounts
                    ON CONFLICT (platform, account) DO UPDATE SET
                        first_seen = CASE WHEN accounts.first_seen IS NULL
                            OR excluded.first_seen < accounts.first_seen
                            THEN coalesce(excluded.first_seen, accounts.first_seen)
                            ELSE accounts.first_seen END,
                        last_seen = CASE WHEN accounts.last_seen IS NULL
                            OR excluded.last_seen > accounts.last_seen
                            THEN coalesce(excluded.last_seen, accounts.last_seen)
                            ELSE accounts.last_seen END
                    """
                )
            finally:
                self.con.unregister("_staged_accounts")

    def upsert_items(self, table: pa.Table) -> WriteResult:
        cols = schema.ITEMS.column_names
        with self.transaction():
            self.con.register("_staged_items", table.select(cols))
            try:
                # only new or changed items are written; identical ones are duplicates
                inserted = self._scalar(
                    f"""
                    INSERT OR REPLACE INTO items ({", ".join(cols)})
                    SELECT {", ".join("s." + c for c in cols)} FROM _staged_items s
                    LEFT JOIN items i ON i.platform = s.platform AND i.item = s.item
                    WHERE i.item IS NULL
                       OR (i.title, i.text, i.category, CAST(i.attrs AS VARCHAR))
                          IS DISTINCT FROM
                          (s.title, s.text, s.category, CAST(s.attrs AS VARCHAR))
                    """
                )
            finally:
                self.con.unregister("_staged_items")
        return WriteResult(table.num_rows, inserted)

    def insert_identifiers(self, table: pa.Table) -> WriteResult:
        return self._insert_ignore(schema.ACCOUNT_IDENTIFIERS, table)

    def insert_known_links(self, table: pa.Table) -> WriteResult:
        with self.transaction():
            result = self._insert_ignore(schema.KNOWN_LINKS, table, canonical_pair=True)
            self.add_duplicates(result.duplicates)
        return result

    def _insert_ignore(
        self, target: schema.Table, table: pa.Table, *, canonical_pair: bool = False
    ) -> WriteResult:
        cols = target.column_names
        select = ", ".join(cols)
        if canonical_pair:  # store each undirected link once: side a < side b
            select = (
                "CASE WHEN (platform_a, account_a) <= (platform_b, account_b) "
                "THEN platform_a ELSE platform_b END, "
                "CASE WHEN (platform_a, account_a) <= (platform_b, account_b) "
                "THEN account_a ELSE account_b END, "
                "CASE WHEN (platform_a, account_a) <= (platform_b, account_b) "
                "THEN platform_b ELSE platform_a END, "
                "CASE WHEN (platform_a, account_a) <= (platform_b, account_b) "
                "THEN account_b ELSE account_a END, source"
            )
        with self.transaction():
            self.con.register("_staged_rows", table.select(cols))
            try:
                inserted = self._scalar(
                    f"INSERT OR IGNORE INTO {target.name} ({', '.join(cols)}) "
                    f"SELECT DISTINCT {select} FROM _staged_rows"
                )
            finally:
                self.con.unregister("_staged_rows")
        return WriteResult(table.num_rows, inserted)

    def replace_links(self, links: pa.Table, persons: pa.Table) -> None:
        with self.transaction():
            for target, table in ((schema.LINKS, links), (schema.PERSONS, persons)):
                self.con.execute(f"DELETE FROM {target.name}")
                self._append(target, table)

    def update_links(self, remove: list[tuple[str, str, str | None]], add: pa.Table) -> None:
        with self.transaction():
            for platform, account, other in remove:
                self.con.execute(
                    f"DELETE FROM {schema.LINKS.name} WHERE "
                    "(platform_a = $p AND account_a = $a AND ($q IS NULL OR platform_b = $q)) "
                    "OR (platform_b = $p AND account_b = $a AND ($q IS NULL OR platform_a = $q))",
                    {"p": platform, "a": account, "q": other},
                )
            if add.num_rows:
                self._append(schema.LINKS, add)

    def replace_persons(self, accounts: list[tuple[str, str]], persons: pa.Table) -> None:
        with self.transaction():
            for start in range(0, len(accounts), 500):  # bounded statement size
                part = accounts[start : start + 500]
                self.con.execute(
                    "DELETE FROM persons WHERE "
                    + " OR ".join(["(platform = ? AND account = ?)"] * len(part)),
                    [x for key in part for x in key],
                )
            if persons.num_rows:
                self._append(schema.PERSONS, persons)

    def _append(self, target: schema.Table, table: pa.Table) -> None:
        """Insert ``table``'s rows into ``target`` (in the caller's transaction)."""
        cols = target.column_names
        for name, typ in target.columns:  # a column with a default may be left out
            if name not in table.column_names and "DEFAULT '" in typ:
                default = typ.split("DEFAULT '", 1)[1].split("'", 1)[0]
                table = table.append_column(name, pa.array([default] * table.num_rows))
        self.con.register("_staged_append", table.select(cols))
        try:
            self.con.execute(
                f"INSERT INTO {target.name} ({', '.join(cols)}) "
                f"SELECT {', '.join(cols)} FROM _staged_append"
            )
        finally:
            self.con.unregister("_staged_append")

    def log_ingest(self, row: dict[str, Any]) -> None:
        cols = schema.INGEST_LOG.column_names
        self.con.execute(
            f"INSERT INTO ingest_log ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [row[c] for c in cols],
        )

    def add_duplicates(self, n: int) -> None:
        if n:
            self.con.execute(
                "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + ? AS VARCHAR) "
                "WHERE key = 'duplicates'",
                [n],
            )

    # -- reads -----------------------------------------------------------------------------------
    def _scalar(self, sql: str, params: list[Any] | None = None) -> int:
        rows = self.con.execute(sql, params or []).fetchall()
        row = rows[0] if rows else None
        return int(row[0]) if row and row[0] is not None else 0

    def platforms(self) -> list[str]:
        rows = self.con.execute(
            "SELECT platform FROM events UNION SELECT platform FROM items ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    def read(
        self,
        table: str,
        *,
        columns: Sequence[str] | None = None,
        platform: str | None = None,
        order_by: Sequence[str] | None = None,
    ) -> pa.Table:
        t = _table(table)
        cols = list(columns) if columns else t.column_names
        unknown = set(cols) - set(t.column_names)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)} for table {table}")
        sql = f"SELECT {_select_list(t, cols)} FROM {t.name}"
        params: list[Any] = []
        if platform is not None:
            sql += " WHERE platform = ?"
            params.append(platform)
        if order_by:
            bad = set(order_by) - set(t.column_names)
            if bad:
                raise ValueError(f"unknown order columns {sorted(bad)} for table {table}")
            sql += f" ORDER BY {', '.join(order_by)}"
        return self.con.sql(sql, params=params).to_arrow_table()

    def count(self, table: str, *, platform: str | None = None) -> int:
        t = _table(table)
        if platform is None:
            return self._scalar(f"SELECT count(*) FROM {t.name}")
        return self._scalar(f"SELECT count(*) FROM {t.name} WHERE platform = ?", [platform])

    def platform_stats(self) -> dict[str, PlatformStats]:
        rows = self.con.execute(
            """
            WITH p AS (SELECT platform FROM events UNION SELECT platform FROM items),
            e AS (SELECT platform, count(*) n, count(DISTINCT account) a
                  FROM events GROUP BY platform),
            i AS (SELECT platform, count(DISTINCT item) n FROM (
                    SELECT platform, item FROM items UNION ALL
                    SELECT platform, item FROM events) GROUP BY platform)
            SELECT p.platform, coalesce(e.a, 0), coalesce(i.n, 0), coalesce(e.n, 0)
            FROM p LEFT JOIN e USING (platform) LEFT JOIN i USING (platform)
            ORDER BY p.platform
            """
        ).fetchall()
        return {r[0]: PlatformStats(int(r[1]), int(r[2]), int(r[3])) for r in rows}

    def duplicates_total(self) -> int:
        value = self.get_meta("duplicates")
        return int(value) if value else 0

    def has_account(self, platform: str, account: str) -> bool:
        rows = self.con.execute(
            "SELECT 1 FROM accounts WHERE platform = ? AND account = ? LIMIT 1",
            [platform, account],
        ).fetchall()
        row = rows[0] if rows else None
        return row is not None

    def account_events(
        self, platform: str, account: str, *, columns: Sequence[str] | None = None
    ) -> pa.Table:
        cols = list(columns) if columns else schema.EVENTS.column_names
        unknown = set(cols) - set(schema.EVENTS.column_names)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)} for table events")
        return self.con.sql(
            f"SELECT {_select_list(schema.EVENTS, cols)} FROM events "
            "WHERE platform = ? AND account = ? ORDER BY seq",
            params=[platform, account],
        ).to_arrow_table()

    def person_rows(
        self, platform: str, account: str, *, limit: int = PERSON_LIMIT
    ) -> tuple[pa.Table, pa.Table, pa.Table]:
        # a person is joined by asserted and known links; probable links join no one
        members = {(platform, account)}
        frontier = set(members)
        while frontier and len(members) < limit:
            found: set[tuple[str, str]] = set()
            for name in ("links", "known_links"):
                for pa_, a, pb, b in self.con.execute(
                    f"SELECT platform_a, account_a, platform_b, account_b FROM {name} WHERE "
                    + (_ASSERTED if name == "links" else "")
                    + _either_side(len(frontier)),
                    _member_params(frontier),
                ).fetchall():
                    found |= {(pa_, a), (pb, b)}
            frontier = found - members
            members |= frontier
        # a person has a handful of accounts (``limit``): a few terms per query
        where, params = _either_side(len(members)), _member_params(members)
        links, known = (
            self.con.sql(
                f"SELECT * FROM {name} WHERE {_ASSERTED if name == 'links' else ''}{where}",
                params=params,
            ).to_arrow_table()
            for name in ("links", "known_links")
        )
        persons = self.con.sql(
            "SELECT * FROM persons WHERE "
            + " OR ".join(["(platform = ? AND account = ?)"] * len(members)),
            params=[x for m in sorted(members) for x in m],
        ).to_arrow_table()
        return persons, links, known

    # -- concurrency -----------------------------------------------------------------------------
    def cursor(self) -> DuckDBStore:
        """A store on a DuckDB cursor: its own transaction context on the same database, so
        reads from another thread see committed data and never wait on this one's writes."""
        view = object.__new__(DuckDBStore)
        view.path = self.path
        view.con = self.con.cursor()
        view._in_tx = False
        view.con.execute("SET TimeZone = 'UTC'")
        view.con.execute("SET enable_progress_bar = false")
        return view

    # -- API tokens ------------------------------------------------------------------------------
    def add_api_token(self, row: dict[str, Any]) -> None:
        cols = schema.API_TOKENS.column_names
        self.con.execute(
            f"INSERT INTO api_tokens ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [row.get(c) for c in cols],
        )

    def revoke_api_token(self, token_id: str, at: Any) -> bool:
        rows = self.con.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            [at, token_id],
        ).fetchall()
        return bool(rows and rows[0][0])

    def account_activity(self, platform: str | None = None) -> pa.Table:
        where, params = ("WHERE platform = ?", [platform]) if platform is not None else ("", [])
        return self.con.sql(
            "SELECT platform, account, count(*) AS events, min(ts) AS first_ts, "
            f"max(ts) AS last_ts FROM events {where} GROUP BY platform, account "
            "ORDER BY platform, account",
            params=params,
        ).to_arrow_table()

    # -- erasure ---------------------------------------------------------------------------------
    def erase_accounts(self, accounts: Sequence[tuple[str, str]]) -> dict[str, int]:
        if not accounts:
            return {}
        with self.transaction():
            return erase_rows(self.con, accounts)

    # -- suppression of erased accounts -----------------------------------------------------------
    def add_erasure_marks(self, marks: Sequence[tuple[str, str]]) -> None:
        if not marks:
            return
        self.con.executemany(
            "INSERT OR IGNORE INTO erased_accounts (platform, mark, erased_at) "
            "VALUES (?, ?, now())",
            [list(m) for m in marks],
        )

    def erasure_marks(self, platform: str) -> list[str]:
        rows = self.con.execute(
            "SELECT mark FROM erased_accounts WHERE platform = ? ORDER BY mark", [platform]
        ).fetchall()
        return [str(r[0]) for r in rows]

    def erased_among(self, marks: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not marks or not self._scalar("SELECT count(*) FROM erased_accounts"):
            return set()
        asked = pa.table(
            {
                "platform": pa.array([p for p, _ in marks], pa.string()),
                "mark": pa.array([m for _, m in marks], pa.string()),
            }
        )
        self.con.register("_asked_marks", asked)
        try:
            rows = self.con.execute(
                "SELECT DISTINCT a.platform, a.mark FROM _asked_marks a "
                "JOIN erased_accounts e ON e.platform = a.platform AND e.mark = a.mark"
            ).fetchall()
        finally:
            self.con.unregister("_asked_marks")
        return {(str(p), str(m)) for p, m in rows}

    # -- stream offsets --------------------------------------------------------------------------
    def stream_offsets(self, group: str, topic: str) -> dict[int, int]:
        rows = self.con.execute(
            "SELECT partition, next_offset FROM stream_offsets "
            "WHERE consumer_group = ? AND topic = ?",
            [group, topic],
        ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def save_stream_offsets(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        if not offsets:
            return
        rows = sorted(offsets.items())
        with self.transaction():  # one statement: this runs once per streamed batch
            self.con.execute(
                "INSERT OR REPLACE INTO stream_offsets "
                "(consumer_group, topic, partition, next_offset) VALUES "
                + ", ".join(["(?, ?, ?, ?)"] * len(rows)),
                [v for p, o in rows for v in (group, topic, int(p), int(o))],
            )


class _Counted:
    """A record-batch stream that counts the rows DuckDB pulls through it."""

    def __init__(self, batches: pa.RecordBatchReader) -> None:
        self.rows = 0
        self.reader = pa.RecordBatchReader.from_batches(batches.schema, self._pull(batches))

    def _pull(self, batches: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.rows += batch.num_rows
            yield batch
