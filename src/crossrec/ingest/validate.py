"""Row validation as SQL: one ``CREATE TABLE checked AS ...`` statement per input.

A builder reads a :class:`~crossrec.ingest.readers.Source` (a file read by DuckDB in the same
statement, or the staged table ``raw``) and writes ``checked``: the canonical columns parsed,
plus ``_field`` and ``_reason`` (NULL for a good row; for a bad row the first field that
breaks the contract and why) and ``_raw`` (the bad row's own fields as JSON text, for the
quarantine; NULL for good rows). Reading, parsing and checking are one pass over the data.

Typed columns (Parquet) are parsed from their type, not through text: a numeric ``value`` or
``timestamp`` is used as a number, a timestamp column as a time. Text columns are trimmed and
empty text means absent. ``checked``'s row order is the input's order, so its ``rowid`` is the
row's position (the ingest order, and the key for resolving physical lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from crossrec.errors import IngestError
from crossrec.identity import (
    PLATFORM_HINT,
    PLATFORM_PATTERN,
    invalid_sql,
    normalized_sql,
    reason_sql,
)
from crossrec.ingest.readers import Source, quote_ident

_SHOW = 60  # characters of an offending value quoted in a reason
_TEXT_TYPES = ("VARCHAR", "JSON")
_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
)
_TIME_TYPES = ("DATE", "TIMESTAMP")  # any TIMESTAMP* type (with zone, _S, _MS, _NS)


@dataclass(frozen=True)
class ColumnMap:
    """Which source column feeds each canonical field (None: absent from the file)."""

    sources: dict[str, str | None]
    extras: list[str]

    def src(self, canon: str) -> str | None:
        return self.sources.get(canon)


def map_columns(
    file: str,
    columns: list[str],
    canonical: tuple[str, ...],
    required: tuple[str, ...],
    mapping: dict[str, str],
    *,
    exclude: tuple[str, ...] = (),
) -> ColumnMap:
    """Resolve ``--columns`` for one file; a required field missing is a file-level error."""
    present = set(columns)
    sources: dict[str, str | None] = {}
    for canon in canonical:
        source = mapping.get(canon, canon)
        if canon in mapping and source not in present:
            raise IngestError(
                f"{file}: --columns maps {canon}={source} but the file has no column {source!r}",
                hint=f"its columns are: {', '.join(columns)}",
            )
        sources[canon] = source if source in present else None
    missing = [c for c in required if sources[c] is None]
    if missing:
        raise IngestError(
            f"{file}: no {' or '.join(repr(m) for m in missing)} column",
            hint=f"its columns are: {', '.join(columns) or '(none)'}; map them with "
            f"--columns {','.join(f'{m}=<column>' for m in missing)}",
        )
    used = {s for s in sources.values() if s is not None} | set(exclude)
    return ColumnMap(sources, [c for c in columns if c not in used])


# -- expressions ----------------------------------------------------------------------------------
def _kind(typ: str) -> str:
    t = typ.upper()
    if t in _NUMERIC_TYPES or t.startswith("DECIMAL"):
        return "number"
    if t.startswith(_TIME_TYPES):
        return "time"
    if t in _TEXT_TYPES:
        return "text"
    return "other"  # booleans, lists, structs...: read through their text


def _as_text(src: Source, column: str) -> str:
    """The column as text, untrimmed (how a CSV cell would hold it)."""
    q = quote_ident(column)
    return q if _kind(src.types[column]) == "text" else f"CAST({q} AS VARCHAR)"


def trimmed(x: str) -> str:
    """SQL: ``nullif(trim(x), '')`` (DuckDB's ``trim`` removes Unicode spaces at both ends),
    without copying the text of the usual value that has none: only a value that starts or
    ends with a space, or holds a non-ASCII character (``strlen`` counts bytes, ``length``
    characters), is trimmed."""
    return (
        f"nullif(CASE WHEN {x} LIKE ' %' OR {x} LIKE '% ' OR strlen({x}) <> length({x}) "
        f"THEN trim({x}) ELSE {x} END, '')"
    )


def _field_text(src: Source, column: str | None) -> str:
    """Trimmed text of a column; empty means absent."""
    if column is None:
        return "CAST(NULL AS VARCHAR)"
    return trimmed(_as_text(src, column))


def _show(expr: str) -> str:
    return f"left(CAST({expr} AS VARCHAR), {_SHOW})"


def _epoch(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def _raw_name(i: int) -> str:
    return f"_r{i}"


def _passthrough(src: Source) -> str:
    """The source's own columns under positional names (no clash with canonical names)."""
    return "".join(f", {quote_ident(c)} AS {_raw_name(i)}" for i, c in enumerate(src.columns))


def _raw_json(src: Source) -> str:
    """JSON text of a row's own fields as text, from the passthrough columns."""
    if not src.columns:
        return "CAST(NULL AS VARCHAR)"
    fields = ", ".join(
        f"{quote_ident(c)} := CAST({_raw_name(i)} AS VARCHAR)" for i, c in enumerate(src.columns)
    )
    return f"CAST(to_json(struct_pack({fields})) AS VARCHAR)"


def _attrs(src: Source, extras: list[str]) -> str:
    """JSON object of the extra columns (kept as attributes, as text), or NULL."""
    if not extras:
        return "CAST(NULL AS JSON)"
    index = {c: i for i, c in enumerate(src.columns)}
    fields = ", ".join(
        f"{quote_ident(c)} := CAST({_raw_name(index[c])} AS VARCHAR)" for c in extras
    )
    return f"to_json(struct_pack({fields}))"


def _value_exprs(src: Source, column: str | None) -> tuple[str, str]:
    """(the value as read, the value as DOUBLE or NULL when it does not parse)."""
    if column is not None and _kind(src.types[column]) == "number":
        return quote_ident(column), "CAST(value_raw AS DOUBLE)"
    return _field_text(src, column), "TRY_CAST(value_raw AS DOUBLE)"


def _ts_exprs(src: Source, column: str | None) -> tuple[str, str, str]:
    """(the timestamp as read, as a number of epoch seconds or ms, as a time)."""
    kind = _kind(src.types[column]) if column is not None else "text"
    if kind == "number":
        return quote_ident(column or ""), "CAST(ts_raw AS DOUBLE)", "CAST(NULL AS TIMESTAMPTZ)"
    if kind == "time":
        return quote_ident(column or ""), "CAST(NULL AS DOUBLE)", "CAST(ts_raw AS TIMESTAMPTZ)"
    return (
        _field_text(src, column),
        "TRY_CAST(ts_raw AS DOUBLE)",
        "CASE WHEN ts_raw IS NOT NULL AND TRY_CAST(ts_raw AS DOUBLE) IS NULL "
        "THEN TRY_CAST(ts_raw AS TIMESTAMPTZ) END",
    )


# -- events ---------------------------------------------------------------------------------------
def checked_events_sql(
    cmap: ColumnMap,
    src: Source,
    ts_min: date,
    ts_max: date,
    *,
    personal: tuple[str, ...] = (),
    keep_extras: bool = False,
    with_row: bool = False,
) -> str:
    """``CREATE TABLE checked`` for events.

    Columns: ``_line, account_raw, item, event_type, value, ts, event_id``, then ``_p0..``
    (trimmed text of each ``personal`` column), then ``attrs`` (JSON of the extra columns) or,
    with ``keep_extras``, the extra columns themselves under their own names; then ``_field,
    _reason, _raw``. ``with_row`` (a table source only) adds ``_row``, the source's rowid.
    """
    lo, hi = _epoch(ts_min), _epoch(ts_max)
    value_raw, value = _value_exprs(src, cmap.src("value"))
    ts_raw, ts_num, ts_iso = _ts_exprs(src, cmap.src("timestamp"))
    personal_in = "".join(f", {_field_text(src, c)} AS _p{j}" for j, c in enumerate(personal))
    personal_out = "".join(f", _p{j}" for j in range(len(personal)))
    if keep_extras:
        index = {c: i for i, c in enumerate(src.columns)}
        extras_out = "".join(f", {_raw_name(index[c])} AS {quote_ident(c)}" for c in cmap.extras)
    else:
        extras_out = f", {_attrs(src, cmap.extras)} AS attrs"
    row_in, row_out = ("rowid AS _row, ", "_row, ") if with_row else ("", "")
    return f"""
    CREATE TABLE checked AS
    WITH s AS (
        SELECT {row_in}{src.line} AS _line,
            {_field_text(src, cmap.src("account"))} AS account_raw,
            {_field_text(src, cmap.src("item"))} AS item,
            coalesce({_field_text(src, cmap.src("event"))}, 'interact') AS event_type,
            {value_raw} AS value_raw,
            {ts_raw} AS ts_raw,
            {_field_text(src, cmap.src("event_id"))} AS event_id{personal_in}{_passthrough(src)}
        FROM {src.relation}
    ), p AS (
        SELECT * REPLACE ({normalized_sql("account_raw")} AS account_raw,
                {normalized_sql("item")} AS item),
            {value} AS value, {ts_num} AS ts_num, {ts_iso} AS ts_iso FROM s
    ), q AS (
        SELECT *,
            CASE WHEN isfinite(ts_num) THEN
                CASE WHEN abs(ts_num) >= 1e11 THEN ts_num / 1000.0 ELSE ts_num END
            WHEN ts_iso IS NOT NULL THEN epoch(ts_iso) END AS ts_sec
        FROM p
    ), r AS (
        SELECT *,
            CASE WHEN ts_sec >= {lo} AND ts_sec < {hi} THEN to_timestamp(ts_sec) END AS ts,
            CASE
                WHEN account_raw IS NULL THEN 'account'
                WHEN {invalid_sql("account_raw")} THEN 'account'
                WHEN item IS NULL THEN 'item'
                WHEN {invalid_sql("item")} THEN 'item'
                WHEN value_raw IS NOT NULL AND (value IS NULL OR NOT isfinite(value))
                    THEN 'value'
                WHEN ts_raw IS NOT NULL AND (ts_sec IS NULL OR ts_sec < {lo} OR ts_sec >= {hi})
                    THEN 'timestamp'
            END AS _field,
            CASE
                WHEN account_raw IS NULL THEN 'missing account'
                WHEN {invalid_sql("account_raw")} THEN {reason_sql("account_raw", "account")}
                WHEN item IS NULL THEN 'missing item'
                WHEN {invalid_sql("item")} THEN {reason_sql("item", "item")}
                WHEN value_raw IS NOT NULL AND value IS NULL
                    THEN 'unparsable value: ' || {_show("value_raw")}
                WHEN value_raw IS NOT NULL AND NOT isfinite(value)
                    THEN 'non-finite value: ' || {_show("value_raw")}
                WHEN ts_raw IS NOT NULL AND ts_sec IS NULL AND ts_num IS NOT NULL
                    THEN 'non-finite timestamp: ' || {_show("ts_raw")}
                WHEN ts_raw IS NOT NULL AND ts_sec IS NULL
                    THEN 'unparsable timestamp: ' || {_show("ts_raw")}
                WHEN ts_raw IS NOT NULL AND (ts_sec < {lo} OR ts_sec >= {hi})
                    THEN 'timestamp out of range: ' || {_show("ts_raw")}
                        || ' (allowed from {ts_min} to before {ts_max})'
            END AS _reason
        FROM q
    )
    SELECT {row_out}_line, account_raw, item, event_type, value, ts, event_id
        {personal_out}{extras_out}, _field, _reason,
        CASE WHEN _reason IS NOT NULL THEN {_raw_json(src)} END AS _raw
    FROM r
    """


def events_sql(cmap: ColumnMap, ts_min: date, ts_max: date, *, has_line: bool) -> str:
    """``CREATE TABLE checked`` for events staged as text in table ``raw`` (record ingest):
    the columns of :func:`checked_events_sql` with ``keep_extras``, plus ``_row`` (the row's
    position in ``raw``)."""
    columns = [c for c in cmap.sources.values() if c is not None] + list(cmap.extras)
    src = Source(
        relation="raw",
        params=[],
        columns=columns,
        types=dict.fromkeys(columns, "VARCHAR"),
        line="_line" if has_line else "CAST(NULL AS BIGINT)",
    )
    return checked_events_sql(cmap, src, ts_min, ts_max, keep_extras=True, with_row=True)


# -- items and links ------------------------------------------------------------------------------
def checked_items_sql(cmap: ColumnMap, src: Source) -> str:
    """``CREATE TABLE checked`` for items: ``_line, item, title, text, category, attrs, _field,
    _reason, _raw``."""
    item = _field_text(src, cmap.src("item"))
    return f"""
    CREATE TABLE checked AS
    WITH s AS (
        SELECT {src.line} AS _line,
            {item} AS item,
            {_field_text(src, cmap.src("title"))} AS title,
            {_field_text(src, cmap.src("text"))} AS text,
            {_field_text(src, cmap.src("category"))} AS category{_passthrough(src)}
        FROM {src.relation}
    ), r AS (
        SELECT *,
            CASE WHEN item IS NULL OR {invalid_sql("item")} THEN 'item' END AS _field,
            CASE WHEN item IS NULL THEN 'missing item'
                WHEN {invalid_sql("item")} THEN {reason_sql("item", "item")} END AS _reason
        FROM (SELECT * REPLACE ({normalized_sql("item")} AS item) FROM s)
    )
    SELECT _line, item, title, text, category, {_attrs(src, cmap.extras)} AS attrs,
        _field, _reason, CASE WHEN _reason IS NOT NULL THEN {_raw_json(src)} END AS _raw
    FROM r
    """


def checked_links_sql(cmap: ColumnMap, src: Source) -> str:
    """``CREATE TABLE checked`` for known links: ``_line, platform_a, account_a, platform_b,
    account_b, _field, _reason, _raw``."""
    checks = []
    for field in ("platform_a", "account_a", "platform_b", "account_b"):
        checks.append((f"{field} IS NULL", field, f"'missing {field}'"))
        if field.startswith("platform"):  # the rule `crossrec ingest --platform` applies
            hint = PLATFORM_HINT.replace("'", "''")
            why = f"'invalid {field}: ' || {_show(field)} || ' ({hint})'"
            checks.append((f"NOT regexp_matches({field}, '{PLATFORM_PATTERN}')", field, why))
        else:  # the identity rule of every raw account id
            checks.append((invalid_sql(field), field, reason_sql(field, field)))
    checks.append(
        (
            "platform_a = platform_b",
            "platform_b",
            "'platform_a equals platform_b: a link joins accounts of two platforms'",
        )
    )
    field_case = " ".join(f"WHEN {c} THEN '{f}'" for c, f, _ in checks)
    reason_case = " ".join(f"WHEN {c} THEN {r}" for c, _, r in checks)
    fields = ",\n            ".join(
        f"{_field_text(src, cmap.src(f))} AS {f}"
        for f in ("platform_a", "account_a", "platform_b", "account_b")
    )
    return f"""
    CREATE TABLE checked AS
    WITH s AS (
        SELECT {src.line} AS _line,
            {fields}{_passthrough(src)}
        FROM {src.relation}
    ), n AS (
        SELECT * REPLACE ({normalized_sql("account_a")} AS account_a,
            {normalized_sql("account_b")} AS account_b) FROM s
    ), r AS (
        SELECT *, CASE {field_case} END AS _field, CASE {reason_case} END AS _reason FROM n
    )
    SELECT _line, platform_a, account_a, platform_b, account_b, _field, _reason,
        CASE WHEN _reason IS NOT NULL THEN {_raw_json(src)} END AS _raw
    FROM r
    """
