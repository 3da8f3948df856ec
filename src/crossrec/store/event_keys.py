"""The identity of a stored event, as SQL: a 128-bit number kept in ``events.event_key``.

Two rows of one platform are the same event when their keys are equal. The key is

* for an event that came with an ``event_id``: ``md5_number(event_id)``;
* for one without: ``md5_number`` of its fields (platform, account pseudonym, item, event
  type, value, time), joined by the unit separator ``chr(31)``; its readable id is
  ``'h' || md5(<the same text>)``, and such a text, when it arrives as an ``event_id`` (as
  record ingest sends it), gives the same key as the fields it was made from.

A number instead of a 33-character string makes the store's dedupe joins and its appends
several times cheaper (random strings are the costliest thing DuckDB compresses).
``md5_number`` reads the digest's bytes little-endian, so the readable id and the key are
the same 16 bytes in opposite order; :func:`key_text_sql` and the parse in :func:`key_sql`
swap them.
"""

from __future__ import annotations

_SEP = "chr(31)"
_HEX_DIGITS = 32


def _reverse_bytes(hex32: str) -> str:
    """SQL: a 32-digit hex text with its 16 bytes in reverse order."""
    parts = ", ".join(f"substr({hex32}, {i}, 2)" for i in range(_HEX_DIGITS - 1, 0, -2))
    return f"concat({parts})"


def fields_text_sql(alias: str = "s") -> str:
    """SQL: the text an event without ``event_id`` is identified by (canonical typed fields:
    ``value`` DOUBLE and ``ts`` TIMESTAMPTZ, so equal values give equal text whatever the
    source format wrote). ``concat`` reads NULL as empty text: a missing value or time is an
    empty field, as ``concat_ws`` over ``coalesce(..., '')`` would write it, only cheaper."""
    a = f"{alias}." if alias else ""
    parts = [
        f"{a}platform",
        f"{a}account",
        f"{a}item",
        f"{a}event_type",
        f"CAST({a}value AS VARCHAR)",
        f"CAST(epoch_us({a}ts) AS VARCHAR)",
    ]
    return f"concat({f', {_SEP}, '.join(parts)})"


def _is_fields_id(event_id: str) -> str:
    # cheap tests first: DuckDB evaluates the regular expression only for 33-character ids
    return (
        f"(length({event_id}) = {_HEX_DIGITS + 1} AND starts_with({event_id}, 'h') "
        f"AND regexp_full_match({event_id}, 'h[0-9a-f]{{{_HEX_DIGITS}}}'))"
    )


def key_sql(alias: str = "s") -> str:
    """SQL: the UHUGEINT key of a canonical event row ``alias`` (its ``event_id`` may be NULL)."""
    a = f"{alias}." if alias else ""
    eid = f"CAST({a}event_id AS VARCHAR)"
    parsed = f"CAST('0x' || {_reverse_bytes(f'substr({eid}, 2)')} AS UHUGEINT)"
    return (
        f"CASE WHEN {eid} IS NULL THEN md5_number({fields_text_sql(alias)}) "
        f"WHEN {_is_fields_id(eid)} THEN {parsed} "
        f"ELSE md5_number({eid}) END"
    )


def stored_id_sql(alias: str = "s") -> str:
    """SQL: what ``events.event_id`` keeps: the given id, NULL when the key says it all."""
    a = f"{alias}." if alias else ""
    eid = f"CAST({a}event_id AS VARCHAR)"
    return f"CASE WHEN {eid} IS NULL OR {_is_fields_id(eid)} THEN NULL ELSE {eid} END"


def key_text_sql(key: str = "event_key", event_id: str = "event_id") -> str:
    """SQL: the readable id of a stored event: its given id, else ``'h'`` + the digest hex."""
    digits = "printf('%032x', " + key + ")"
    return f"coalesce({event_id}, 'h' || {_reverse_bytes(digits)})"
