"""The quarantine: bad input rows with file, line, field and reason, kept apart from the store.

Quarantined rows are raw (they may hold raw account ids), so they live in their own DuckDB
file, ``quarantine.duckdb``, never in the store. Inserts are idempotent per
(file fingerprint, kind, line): re-ingesting a file does not quarantine its bad rows twice.
A file's bad rows are prepared in a quarantine transaction that commits right after the
store's transaction of its events (:meth:`Quarantine.prepare`): a crash leaves both or
neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from crossrec import schema


class Quarantine:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> duckdb.DuckDBPyConnection:
        from crossrec.store.lock import open_duckdb  # waits for, then names, another holder

        con = open_duckdb(self.path, what="quarantine")
        con.execute("SET TimeZone = 'UTC'")
        con.execute(schema.QUARANTINE.ddl())
        return con

    def add(self, rows: pa.Table) -> int:
        """Insert quarantine rows (columns of ``schema.QUARANTINE``); returns rows offered."""
        if rows.num_rows == 0:
            return 0
        con = self._connect()
        try:
            _insert(con, rows)
        finally:
            con.close()
        return rows.num_rows

    def prepare(self, rows: pa.Table) -> PendingRows:
        """Insert quarantine rows in a transaction left open: :meth:`PendingRows.commit` makes
        them visible, :meth:`PendingRows.rollback` (or a crash) drops them. A file's ingest
        prepares its bad rows as the last step of its store transaction and commits them
        right after the store's commit, so they stand or fall with its events."""
        if rows.num_rows == 0:
            return PendingRows(None)
        from crossrec.ingest.record_quarantine import _waiting as waiting

        con = waiting(self.path, self._connect)  # another process may be reading it
        try:
            con.execute("BEGIN TRANSACTION")
            _insert(con, rows)
        except BaseException:
            con.close()
            raise
        return PendingRows(con)

    def count(self) -> int:
        if not self.path.exists():
            return 0
        con = self._connect()
        try:
            rows = con.execute("SELECT count(*) FROM quarantine").fetchall()
            row = rows[0] if rows else None
        finally:
            con.close()
        return int(row[0]) if row else 0

    def reasons(self, fingerprint: str, kind: str) -> list[str]:
        """Reasons of the rows quarantined from one ingested file (by its fingerprint)."""
        if not self.path.exists():
            return []
        con = self._connect()
        try:
            rows = con.execute(
                "SELECT reason FROM quarantine WHERE fingerprint = ? AND kind = ? ORDER BY line",
                [fingerprint, kind],
            ).fetchall()
        finally:
            con.close()
        return [str(r[0]) for r in rows]

    def list(self, *, limit: int = 50, file: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        con = self._connect()
        try:
            where, params = ("WHERE file = ?", [file]) if file else ("", [])
            cur = con.execute(
                "SELECT file, line, kind, platform, field, reason, raw, quarantined_at "
                f"FROM quarantine "
                f"{where} ORDER BY quarantined_at, file, line LIMIT ?",
                [*params, limit],
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()

    def purge(self, *, file: str | None = None) -> int:
        """Delete quarantined rows (all, or those of ``file``) and checkpoint the bytes away."""
        if not self.path.exists():
            return 0
        con = self._connect()
        try:
            where, params = ("WHERE file = ?", [file]) if file else ("", [])
            rows = con.execute(f"SELECT count(*) FROM quarantine {where}", params).fetchall()
            row = rows[0] if rows else None
            con.execute(f"DELETE FROM quarantine {where}", params)
            con.execute("FORCE CHECKPOINT")
        finally:
            con.close()
        return int(row[0]) if row else 0


class PendingRows:
    """Quarantine rows inserted in a transaction not yet committed (see
    :meth:`Quarantine.prepare`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None) -> None:
        self._con = con

    def commit(self) -> None:
        if self._con is not None:
            try:
                self._con.execute("COMMIT")
            finally:
                self._close()

    def rollback(self) -> None:
        if self._con is not None:
            try:
                self._con.execute("ROLLBACK")
            finally:
                self._close()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _insert(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """Idempotent per (fingerprint, kind, line): a retried ingest adds no row twice."""
    cols = schema.QUARANTINE.column_names
    con.register("_bad", rows.select(cols))
    try:
        con.execute(
            f"INSERT OR IGNORE INTO quarantine ({', '.join(cols)}) "
            f"SELECT {', '.join(cols)} FROM _bad"
        )
    finally:
        con.unregister("_bad")
