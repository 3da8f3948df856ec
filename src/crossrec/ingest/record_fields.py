"""One event record (a JSON object) as the text cells a file row would hold.

Record ingest (:mod:`crossrec.ingest.records`) stages a batch as text columns so that the
file-ingest validation SQL runs on it unchanged. This module does the per-record part in
Python: the JSON type rules a file cannot break (ids are strings or integers, value and
timestamp numbers or strings), text that cannot be stored as UTF-8, the attributes as one JSON
object, and the personal identifiers. Values become text as a JSON-lines file's cells do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring as _encode_string
from typing import Any

from crossrec import schema
from crossrec.ingest.jsonsafe import type_problem
from crossrec.ingest.readers import json_text

_CANONICAL_KEYS = frozenset(schema.EVENT_FIELDS)


def raw_json(record: Any) -> str:
    """The record as JSON text for the quarantine, whatever it holds."""
    try:
        text = json.dumps(record, ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):  # circular, or an int too long to print
        try:
            text = repr(record)
        except (ValueError, TypeError, RecursionError):
            text = f"<{type(record).__name__} that cannot be printed>"
    if not _encodable(text):  # lone surrogates cannot be stored as UTF-8: escape them
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Reject(Exception):
    """A record breaks a type rule (caught per record, never escapes this module)."""

    def __init__(self, field: str | None, reason: str) -> None:
        self.field = field
        self.reason = reason


def _safe_text(key: str | None, value: Any) -> str | None:
    """``_text`` of a value, or a reject when it cannot be written as valid UTF-8 text."""
    try:
        text = json_text(value)
    except (ValueError, TypeError, RecursionError):  # huge int, circular or odd keys
        raise Reject(key, f"wrong type: {key or 'a field'} cannot be written as JSON") from None
    if text is not None and not _encodable(text):
        raise Reject(key, "bad encoding: not valid Unicode text")
    return text


def _json_object(fields: dict[str, str | None]) -> str:
    """``json.dumps(fields, ensure_ascii=False, separators=(",", ":"))`` for text values,
    several times faster (it runs for every streamed event that has attributes)."""
    quote = _encode_string
    return (
        "{"
        + ",".join(f"{quote(k)}:{'null' if v is None else quote(v)}" for k, v in fields.items())
        + "}"
    )


def canonical(
    record: Mapping[Any, Any], personal: frozenset[str]
) -> tuple[list[str | None], dict[str, str]]:
    """The staged texts of one record: the six canonical fields in ``schema.EVENT_FIELDS``
    order, then the attrs JSON; and its personal identifiers ``{kind: value}``.

    Plain strings (the common case) take a fast path: this runs once per streamed event.
    """
    texts: list[str | None] = []
    get = record.get
    for key in schema.EVENT_FIELDS:
        value = get(key)
        if type(value) is str:
            if not value.isascii() and not _encodable(value):
                raise Reject(key, "bad encoding: not valid Unicode text")
            texts.append(value)
            continue
        if value is None:
            texts.append(None)
            continue
        problem = type_problem(key, value)  # the one rule of files, POSTs and messages
        if problem is not None:
            raise Reject(key, problem)
        texts.append(_safe_text(key, value))
    attrs: dict[str, str | None] = {}
    idents: dict[str, str] = {}
    for key, value in record.items():
        if key in _CANONICAL_KEYS and type(key) is str:
            continue
        if type(key) is str and type(value) is str and key not in personal:
            attrs[key] = value  # checked once below, in the dumped JSON
            continue
        name = str(key)
        text = _safe_text(name, value)
        if name in personal:
            text = text.strip(" ") if text is not None else None  # as SQL trim() in files
            if text:
                if not _encodable(name):
                    raise Reject(None, "bad encoding: a key is not valid Unicode text")
                idents[name] = text
            continue
        attrs[name] = text
    if attrs:
        dumped = _json_object(attrs)
        if not dumped.isascii() and not _encodable(dumped):
            raise Reject(None, "bad encoding: an attribute is not valid Unicode text")
        texts.append(dumped)
    else:
        texts.append(None)
    return texts, idents
