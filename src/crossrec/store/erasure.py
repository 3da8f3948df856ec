"""Erasure in a DuckDB store: delete every row that names the erased accounts, then rewrite
the file so that the deleted rows' bytes leave it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from crossrec import schema
from crossrec.errors import WorkspaceError


def erase_rows(
    con: duckdb.DuckDBPyConnection, accounts: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Delete, in the caller's transaction, every row of every table that names one of the
    (platform, pseudonym) ``accounts``: by account columns, then by any text mention.
    Returns rows deleted per table."""
    erased = pa.table(
        {
            "_p": pa.array([p for p, _ in accounts], pa.string()),
            "_a": pa.array([a for _, a in accounts], pa.string()),
        }
    )
    deleted: dict[str, int] = {}
    con.register("_erased", erased)
    try:
        for table in schema.CANONICAL_TABLES:
            conds = []
            for col in table.column_names:
                if col != "account" and not col.startswith("account_"):
                    continue
                plat = "platform" + col[len("account") :]
                if plat in table.column_names:
                    conds.append(f"EXISTS (SELECT 1 FROM _erased WHERE _p = {plat} AND _a = {col})")
                else:
                    conds.append(f"{col} IN (SELECT _a FROM _erased)")
            if conds:
                n = _count(con, f"DELETE FROM {table.name} WHERE {' OR '.join(conds)}")
                if n:
                    deleted[table.name] = n
        # Any other mention (evidence, attributes, tables without account columns):
        # pseudonyms are hex, so they need no escaping in the pattern.
        pattern = "|".join(sorted({a for _, a in accounts}))
        for name, columns in text_columns(con).items():
            where = " OR ".join(f'regexp_matches(CAST("{c}" AS VARCHAR), ?)' for c in columns)
            n = _count(con, f'DELETE FROM "{name}" WHERE {where}', [pattern] * len(columns))
            if n:
                deleted[name] = deleted.get(name, 0) + n
    finally:
        con.unregister("_erased")
    return deleted


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[str] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def text_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Text columns of every base table of the database: table → columns."""
    rows = con.execute(
        """
        SELECT c.table_name, c.column_name FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema
         AND t.table_name = c.table_name
        WHERE t.table_type = 'BASE TABLE' AND c.table_catalog = current_database()
          AND c.table_schema = 'main' AND c.data_type IN ('VARCHAR', 'JSON')
        ORDER BY c.table_name, c.ordinal_position
        """
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(str(table), []).append(str(column).replace('"', '""'))
    return out


def rebuild_database(path: Path) -> None:
    """Copy a DuckDB file into a fresh one and put that in its place (atomically).

    Deleting rows does not remove their bytes: a checkpoint may leave them in blocks the file
    keeps. The copy holds live rows only (same tables, constraints and data), so after an
    erasure nothing of the deleted rows stays on disk in the database. Every connection to
    ``path`` must be closed first (checkpointed: no write-ahead log left).
    """
    path = Path(path)
    wal = path.with_name(path.name + ".wal")
    tmp = path.with_name(f".{path.name}.rebuild")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        try:
            con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS _old (READ_ONLY)")
        except duckdb.Error as exc:
            raise WorkspaceError(
                f"cannot rewrite {path}: {str(exc).splitlines()[0]}",
                hint="another connection or process has it open; close it and retry",
            ) from None
        target = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f'COPY FROM DATABASE _old TO "{target}"')
        con.execute("DETACH _old")
        con.execute("FORCE CHECKPOINT")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    if wal.exists():  # someone wrote after our checkpoint: their rows are not in the copy
        tmp.unlink(missing_ok=True)
        raise WorkspaceError(
            f"{path} has an unflushed write-ahead log; it is open elsewhere",
            hint="stop the other crossrec process and retry",
        )
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
