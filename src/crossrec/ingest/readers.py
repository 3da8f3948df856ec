"""Readers: feed one input file to the validation statement that creates ``checked``.

Everything happens on a private staging connection (in memory, spilling to a temporary
directory outside the workspace), so raw ids never touch the store. CSV and Parquet files are
read by DuckDB inside the validation statement itself (one pass: read, parse, check); JSON
lines, and CSV files whose bad lines need the exact path, are first staged into a table
``raw`` of text columns (with ``_line``, the physical line) and validated from there.

A regular CSV file (one line ending throughout, UTF-8, no NUL byte or stray CR: see
:func:`crossrec.ingest.formats.scan`) is read by DuckDB, and the rows it cannot parse are
recorded with their line. Any other file, a file DuckDB gives up on, and a file whose bad rows
DuckDB cannot place on their physical line (an unterminated quote, records spanning lines,
blank lines) are read by the exact reader (:mod:`crossrec.ingest.csv_exact`), so that one bad
line costs one row, never the good rows after it, and every quarantined row carries its
physical line. JSON lines are decoded by the bounded decoder (:mod:`crossrec.ingest.jsonsafe`)
under the JSON type rules of the canonical fields.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from crossrec.errors import IngestError
from crossrec.ingest import csv_exact, jsonsafe
from crossrec.ingest.formats import InputFile, count_lines, scan

_BATCH = 100_000
BOM_BYTES = b"\xef\xbb\xbf"


@dataclass
class Reject:
    line: int
    field: str | None
    reason: str
    raw: str | None


@dataclass(frozen=True)
class Source:
    """A relation the validation statement reads: a DuckDB table function over the file, or
    the staged table ``raw``.

    ``relation`` goes in a FROM clause and holds ``params`` (in order) as ``?``; ``types`` are
    DuckDB type names per column; ``line`` is the SQL for a row's physical line (or row
    number), NULL when it must be resolved afterwards (see :meth:`Staged.resolve_lines`).
    """

    relation: str
    params: list[Any]
    columns: list[str]
    types: dict[str, str]
    line: str


#: Builds the ``CREATE TABLE checked AS ...`` statement for a source.
Build = Callable[[Source], str]


@dataclass
class Staged:
    """A file validated into table ``checked`` on ``con`` (``columns``: the file's own)."""

    con: duckdb.DuckDBPyConnection
    columns: list[str]
    rejects: list[Reject] = field(default_factory=list)
    #: Sorted physical lines of rejected records, for resolving good rows' lines (fast path).
    rejected_lines: list[int] = field(default_factory=list)
    needs_line_resolution: bool = False

    def resolve_lines(self, rows: np.ndarray) -> np.ndarray:
        """Physical lines of rows (0-based order in ``checked``) when ``_line`` is NULL.

        Data starts on line 2 (after the header); each rejected line before a row shifts it.
        """
        out = np.empty(len(rows), dtype=np.int64)
        for i, r in enumerate(rows.tolist()):
            line = r + 2
            while True:  # smallest line L with (L - 1) - #rejected(<= L) == r + 1
                shifted = r + 2 + bisect.bisect_right(self.rejected_lines, line)
                if shifted == line:
                    break
                line = shifted
            out[i] = line
        return out


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def staging_connection(memory_limit: str, spill_dir: Path) -> duckdb.DuckDBPyConnection:
    """A private in-memory database; what does not fit spills into ``spill_dir`` (a private
    temporary folder the caller removes), never into the working directory."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{str(spill_dir).replace(chr(39), chr(39) * 2)}'")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    return con


def stage(
    con: duckdb.DuckDBPyConnection,
    f: InputFile,
    build: Build,
    *,
    typed: Mapping[str, str] | None = None,
) -> Staged:
    """Read ``f`` through the statement ``build`` makes, creating table ``checked``.

    ``typed`` maps a JSON-lines key to the canonical field it feeds, for the JSON type rules
    (:func:`crossrec.ingest.jsonsafe.type_problem`): an object given as an account is a bad
    row, as it is in a POST or a message.
    """
    if f.fmt == "parquet":
        return _stage_parquet(con, f.path, build)
    if f.fmt == "jsonl":
        return _stage_jsonl(con, f.path, build, typed or {})
    return _stage_csv(con, f, build)


def raw_source(columns: list[str]) -> Source:
    """The staged table ``raw`` (text columns and ``_line``) as a source."""
    return Source("raw", [], list(columns), dict.fromkeys(columns, "VARCHAR"), "_line")


# -- CSV ------------------------------------------------------------------------------------------
def _stage_csv(con: duckdb.DuckDBPyConnection, f: InputFile, build: Build) -> Staged:
    """DuckDB's reader for a regular file (one line ending, UTF-8, no NUL or stray CR), the
    exact reader for any other, and for a file DuckDB gives up on or whose bad rows' lines it
    cannot tell."""
    facts = scan(f.path)
    columns = csv_exact.header(f.path, f.delimiter, facts.newline)
    if not facts.regular:
        build(raw_source(columns))  # a file-level error (a required column missing) first
        return _stage_csv_exact(con, f, columns, facts.newline, build)
    col_spec = (
        "{" + ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for c in columns) + "}"
    )
    src = Source(
        f"""read_csv(
            ?, header = true, auto_detect = false, columns = {col_spec},
            delim = ?, quote = '"', escape = '"', strict_mode = true,
            null_padding = false, ignore_errors = true, store_rejects = true,
            rejects_table = 'csv_rejects', rejects_scan = 'csv_scans')""",
        [str(f.path), f.delimiter],
        columns,
        dict.fromkeys(columns, "VARCHAR"),
        "CAST(NULL AS BIGINT)",
    )
    sql = build(src)  # a file-level error (a required column missing) before any reading
    try:
        con.execute(sql, src.params)
    except duckdb.Error:  # the exact reader takes whatever DuckDB's cannot
        _drop_fast_path(con)
        return _stage_csv_exact(con, f, columns, facts.newline, build)
    rows = con.execute(
        """
        SELECT line, any_value(column_name), string_agg(DISTINCT CAST(error_type AS VARCHAR), ','),
               any_value(csv_line), any_value(error_message)
        FROM csv_rejects GROUP BY line ORDER BY line
        """
    ).fetchall()
    failed = _scalar(con, "SELECT count(*) FROM checked WHERE _reason IS NOT NULL")
    if not rows and not failed:
        return Staged(con, columns, needs_line_resolution=True)
    multi_line = any(r[3] is not None and "\n" in r[3] for r in rows)
    # an unterminated quote may swallow the lines after it; a long line is no bad row
    unterminated = any(k in (r[2] or "") for r in rows for k in ("UNQUOTED VALUE", "LINE SIZE"))
    good = _scalar(con, "SELECT count(*) FROM checked")
    # one record a line, no blank line: a bad row's physical line follows from its position
    lines_add_up = good + len(rows) == count_lines(f.path) - 1
    if multi_line or unterminated or not lines_add_up:
        _drop_fast_path(con)
        return _stage_csv_exact(con, f, columns, facts.newline, build)
    rejects = [
        Reject(int(r[0]), _reject_field(r[2], r[1]), _reject_reason(r[2], r[4]), r[3]) for r in rows
    ]
    return Staged(con, columns, rejects, [r.line for r in rejects], needs_line_resolution=True)


def _drop_fast_path(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("checked", "csv_rejects", "csv_scans"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _reject_field(kinds: str, column: str | None) -> str | None:
    return column if "INVALID ENCODING" in kinds else None


def _reject_reason(kinds: str, message: str | None) -> str:
    if "INVALID ENCODING" in kinds:
        return "bad encoding: not UTF-8 text"
    if "UNQUOTED VALUE" in kinds:
        return "unterminated quote"
    if "COLUMNS" in kinds and message:
        return "wrong number of fields: " + message.replace(
            "Expected Number of Columns:", "expected"
        ).replace(" Found:", ", found")
    if "LINE SIZE" in kinds:
        return "line too long"
    return (message or kinds).splitlines()[0]


def _stage_csv_exact(
    con: duckdb.DuckDBPyConnection,
    f: InputFile,
    columns: list[str],
    newline: bytes,
    build: Build,
) -> Staged:
    """Stage the file through the exact reader (:mod:`crossrec.ingest.csv_exact`) into
    ``raw``, a batch at a time, and validate from there."""
    _create_raw(con, columns)
    rejects: list[Reject] = []
    buffer: list[list[Any]] = []
    for row in csv_exact.rows(f.path, f.delimiter, newline, len(columns)):
        if isinstance(row, csv_exact.Bad):
            rejects.append(Reject(row.line, None, row.reason, row.raw))
            continue
        lineno, values = row
        buffer.append([lineno, *[v if v != "" else None for v in values]])
        if len(buffer) >= _BATCH:
            _flush(con, columns, buffer)
    _flush(con, columns, buffer)
    con.execute(build(raw_source(columns)))
    return Staged(con, columns, rejects)


# -- JSONL ----------------------------------------------------------------------------------------
def json_text(value: Any) -> str | None:
    """A JSON value as the text of a cell: strings as they are, numbers and booleans as JSON
    writes them, objects and arrays as sorted JSON (record ingest uses the same rule)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)


def _stage_jsonl(
    con: duckdb.DuckDBPyConnection, path: Path, build: Build, typed: Mapping[str, str]
) -> Staged:
    columns: list[str] = []
    _create_raw(con, columns)
    rejects: list[Reject] = []
    buffer: list[dict[str, Any]] = []
    parsed_any = False
    # lines one at a time, a line over csv_exact.MAX_LINE_BYTES quarantined unread
    for lineno, line in csv_exact.physical_lines(path, b"\n"):
        if line is None:
            reason = f"line too long: over {csv_exact.MAX_LINE_BYTES:,} bytes"
            rejects.append(Reject(lineno, None, reason, ""))
            continue
        raw = line.strip()
        if not raw or raw == BOM_BYTES:
            continue
        try:
            obj = jsonsafe.decode(raw)  # bounded: digits, depth, sizes; a BOM skipped
        except jsonsafe.JsonRejected as exc:
            reason = exc.reason
            if reason.startswith("bad encoding"):
                reason += f" ({csv_exact.LATIN1_NOTE})"
            rejects.append(Reject(lineno, exc.field, reason, _text(raw)))
            continue
        if not isinstance(obj, dict):
            rejects.append(Reject(lineno, None, "not a JSON object", _text(raw)))
            continue
        parsed_any = True
        problem = _type_problem(obj, typed)
        if problem is not None:
            rejects.append(Reject(lineno, problem[0], problem[1], _text(raw)))
            continue
        row: dict[str, Any] = {"_line": lineno}
        for key, value in obj.items():
            key = str(key)
            if key not in columns:
                _flush_dicts(con, columns, buffer)
                con.execute(f"ALTER TABLE raw ADD COLUMN {quote_ident(key)} VARCHAR")
                columns.append(key)
            row[key] = json_text(value)
        buffer.append(row)
        if len(buffer) >= _BATCH:
            _flush_dicts(con, columns, buffer)
    _flush_dicts(con, columns, buffer)
    if not parsed_any and rejects and len(rejects) == _count_nonblank(path):
        raise IngestError(f"{path}: not a JSON-lines table (no line is a JSON object)")
    con.execute(build(raw_source(columns)))
    return Staged(con, columns, rejects)


def _type_problem(obj: dict[str, Any], typed: Mapping[str, str]) -> tuple[str, str] | None:
    """``(field, reason)`` of the first canonical field of wrong JSON type (the rule records
    from HTTP and Kafka follow), or None."""
    for key, canon in typed.items():
        problem = jsonsafe.type_problem(canon, obj.get(key))
        if problem is not None:
            return canon, problem
    return None


def _text(raw: bytes) -> str:
    """A line as quarantine text: UTF-8, or its bytes as Latin-1 (byte for byte)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _count_nonblank(path: Path) -> int:
    return sum(
        1 for _, line in csv_exact.physical_lines(path, b"\n") if line is None or line.strip()
    )


# -- Parquet --------------------------------------------------------------------------------------
def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path, build: Build) -> Staged:
    try:
        described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    except duckdb.Error as exc:
        raise IngestError(
            f"{path}: cannot be read as Parquet: {str(exc).splitlines()[0]}"
        ) from None
    columns = [str(r[0]) for r in described]
    # the insertion order is the file's order, so no ORDER BY file_row_number is needed
    src = Source(
        "read_parquet(?, file_row_number = true)",
        [str(path)],
        columns,
        {str(r[0]): str(r[1]) for r in described},
        "file_row_number + 1",
    )
    sql = build(src)
    try:
        con.execute(sql, src.params)
    except duckdb.Error as exc:
        raise IngestError(
            f"{path}: cannot be read as Parquet: {str(exc).splitlines()[0]}"
        ) from None
    return Staged(con, columns)


# -- helpers --------------------------------------------------------------------------------------
def _create_raw(con: duckdb.DuckDBPyConnection, columns: list[str]) -> None:
    cols = ", ".join(f"{quote_ident(c)} VARCHAR" for c in columns)
    con.execute(f"CREATE TABLE raw (_line BIGINT{', ' + cols if cols else ''})")


def _flush(con: duckdb.DuckDBPyConnection, columns: list[str], buffer: list[list[Any]]) -> None:
    if not buffer:
        return
    names = ["_line", *columns]
    arrays = [
        pa.array([row[i] for row in buffer], type=pa.int64() if i == 0 else pa.string())
        for i in range(len(names))
    ]
    _insert(con, names, pa.Table.from_arrays(arrays, names=names))
    buffer.clear()


def _flush_dicts(
    con: duckdb.DuckDBPyConnection, columns: list[str], buffer: list[dict[str, Any]]
) -> None:
    if not buffer:
        return
    names = ["_line", *columns]
    arrays = [
        pa.array([row.get(c) for row in buffer], type=pa.int64() if c == "_line" else pa.string())
        for c in names
    ]
    _insert(con, names, pa.Table.from_arrays(arrays, names=names))
    buffer.clear()


def _insert(con: duckdb.DuckDBPyConnection, names: list[str], table: pa.Table) -> None:
    con.register("_batch", table)
    try:
        cols = ", ".join(quote_ident(c) for c in names)
        con.execute(f"INSERT INTO raw ({cols}) SELECT {cols} FROM _batch")
    finally:
        con.unregister("_batch")


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    row = rows[0] if rows else None
    return int(row[0]) if row else 0
