"""Row validation as SQL over the staged ``raw`` table.

Each builder returns one ``CREATE TABLE checked AS ...`` statement: canonical columns parsed
from text, plus ``_field`` and ``_reason`` (NULL for a good row; for a bad row the first field
that breaks the contract and why). Extra columns pass through for the ``attrs`` JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from crossrec.errors import IngestError
from crossrec.ingest.readers import quote_ident

_SHOW = 60  # characters of an offending value quoted in a reason


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


def _text(cmap: ColumnMap, canon: str) -> str:
    src = cmap.src(canon)
    return f"nullif(trim({quote_ident(src)}), '')" if src else "CAST(NULL AS VARCHAR)"


def _show(expr: str) -> str:
    return f"left({expr}, {_SHOW})"


def _epoch(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def _line_expr(has_line: bool) -> str:
    return "_line" if has_line else "CAST(NULL AS BIGINT) AS _line"


def events_sql(cmap: ColumnMap, ts_min: date, ts_max: date, *, has_line: bool) -> str:
    lo, hi = _epoch(ts_min), _epoch(ts_max)
    extras = "".join(f", {quote_ident(c)}" for c in cmap.extras)
    return f"""
    CREATE TABLE checked AS
    WITH s AS (
        SELECT rowid AS _row, {_line_expr(has_line)},
            {_text(cmap, "account")} AS account_raw,
            {_text(cmap, "item")} AS item,
            coalesce({_text(cmap, "event")}, 'interact') AS event_type,
            {_text(cmap, "value")} AS value_raw,
            {_text(cmap, "timestamp")} AS ts_raw,
            {_text(cmap, "event_id")} AS event_id{extras}
        FROM raw
    ), p AS (
        SELECT *, TRY_CAST(value_raw AS DOUBLE) AS value,
            TRY_CAST(ts_raw AS DOUBLE) AS ts_num,
            CASE WHEN ts_raw IS NOT NULL AND TRY_CAST(ts_raw AS DOUBLE) IS NULL
                 THEN TRY_CAST(ts_raw AS TIMESTAMPTZ) END AS ts_iso
        FROM s
    ), q AS (
        SELECT *,
            CASE WHEN isfinite(ts_num) THEN
                CASE WHEN abs(ts_num) >= 1e11 THEN ts_num / 1000.0 ELSE ts_num END
            WHEN ts_iso IS NOT NULL THEN epoch(ts_iso) END AS ts_sec
        FROM p
    )
    SELECT * EXCLUDE (ts_num, ts_iso, ts_sec),
        CASE WHEN ts_sec >= {lo} AND ts_sec < {hi} THEN to_timestamp(ts_sec) END AS ts,
        CASE
            WHEN account_raw IS NULL THEN 'account'
            WHEN item IS NULL THEN 'item'
            WHEN value_raw IS NOT NULL AND (value IS NULL OR NOT isfinite(value)) THEN 'value'
            WHEN ts_raw IS NOT NULL AND (ts_sec IS NULL OR ts_sec < {lo} OR ts_sec >= {hi})
                THEN 'timestamp'
        END AS _field,
        CASE
            WHEN account_raw IS NULL THEN 'missing account'
            WHEN item IS NULL THEN 'missing item'
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
    """


def items_sql(cmap: ColumnMap, *, has_line: bool) -> str:
    extras = "".join(f", {quote_ident(c)}" for c in cmap.extras)
    return f"""
    CREATE TABLE checked AS
    SELECT rowid AS _row, {_line_expr(has_line)},
        {_text(cmap, "item")} AS item,
        {_text(cmap, "title")} AS title,
        {_text(cmap, "text")} AS text,
        {_text(cmap, "category")} AS category{extras},
        CASE WHEN {_text(cmap, "item")} IS NULL THEN 'item' END AS _field,
        CASE WHEN {_text(cmap, "item")} IS NULL THEN 'missing item' END AS _reason
    FROM raw
    """


def links_sql(cmap: ColumnMap, *, has_line: bool) -> str:
    checks = []
    for field in ("platform_a", "account_a", "platform_b", "account_b"):
        checks.append((f"{field} IS NULL", field, f"'missing {field}'"))
    checks.append(
        (
            "platform_a = platform_b",
            "platform_b",
            "'platform_a equals platform_b: a link joins accounts of two platforms'",
        )
    )
    field_case = " ".join(f"WHEN {c} THEN '{f}'" for c, f, _ in checks)
    reason_case = " ".join(f"WHEN {c} THEN {r}" for c, _, r in checks)
    return f"""
    CREATE TABLE checked AS
    WITH s AS (
        SELECT rowid AS _row, {_line_expr(has_line)},
            {_text(cmap, "platform_a")} AS platform_a,
            {_text(cmap, "account_a")} AS account_a,
            {_text(cmap, "platform_b")} AS platform_b,
            {_text(cmap, "account_b")} AS account_b
        FROM raw
    )
    SELECT *, CASE {field_case} END AS _field, CASE {reason_case} END AS _reason FROM s
    """


def attrs_expr(extras: list[str], alias: str = "c") -> str:
    """JSON object of the extra columns (kept as attributes), or NULL when there are none."""
    if not extras:
        return "CAST(NULL AS JSON)"
    fields = ", ".join(f"{quote_ident(c)} := {alias}.{quote_ident(c)}" for c in extras)
    return f"to_json(struct_pack({fields}))"


def raw_json_expr(columns: list[str], alias: str = "r") -> str:
    if not columns:
        return "CAST(NULL AS VARCHAR)"
    fields = ", ".join(f"{quote_ident(c)} := {alias}.{quote_ident(c)}" for c in columns)
    return f"CAST(to_json(struct_pack({fields})) AS VARCHAR)"
