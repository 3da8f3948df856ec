"""Bounded JSON: one decoder and one set of type rules for every path events arrive by.

JSON-lines files, HTTP bodies and Kafka messages are decoded here, under limits that keep a
hostile document from costing more than its size: digits of a number, nesting depth, length
of a string and of an object key. A UTF-8 byte order mark at the start is skipped; ``NaN`` and
``Infinity`` (not JSON) are refused. Whatever goes wrong is a :class:`JsonRejected` with the
field (when one is to blame) and a reason; no ``ValueError`` or ``RecursionError`` escapes.

The type rules of the canonical event fields live here too, so that an object or an array
given as ``account`` is refused with the same field and reason whether it came in a file, a
POST or a message.

>>> decode(b'{"account": "u1", "item": 7}')
{'account': 'u1', 'item': 7}
>>> decode(b'{"value": ' + b'9' * 5000 + b'}')
Traceback (most recent call last):
...
crossrec.ingest.jsonsafe.JsonRejected: not valid JSON: a number with 5000 digits (at most 100)
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

BOM = "\ufeff"


@dataclass(frozen=True)
class JsonLimits:
    """What one JSON document may hold."""

    #: Characters of one number literal (sign, digits, point and exponent included).
    max_digits: int = 100
    #: Arrays and objects inside one another (the top level is depth 1).
    max_depth: int = 64
    #: Characters of one string value.
    max_string: int = 65_536
    #: Characters of one object key.
    max_key: int = 256


LIMITS = JsonLimits()


class JsonRejected(ValueError):
    """A document (or a field of it) that is not accepted; ``field`` is None when the
    document as a whole is to blame."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class _Limit(Exception):
    """Raised inside the decoder's hooks (caught in :func:`decode`)."""


@functools.lru_cache(maxsize=8)
def _decoder(limits: JsonLimits) -> json.JSONDecoder:
    """A decoder whose number hooks refuse literals longer than ``limits.max_digits`` (built
    once: ``json.loads`` with hooks would build one per call)."""
    most = limits.max_digits

    def number(parse: Any) -> Any:
        def hook(literal: str) -> Any:
            if len(literal) > most:
                raise _Limit(
                    f"not valid JSON: a number with {len(literal)} digits (at most {most})"
                )
            return parse(literal)

        return hook

    def constant(name: str) -> Any:
        raise _Limit(f"not valid JSON: {name} is not a JSON number")

    return json.JSONDecoder(
        parse_int=number(int), parse_float=number(float), parse_constant=constant
    )


def decode(data: bytes | str, limits: JsonLimits = LIMITS) -> Any:
    """The JSON value of ``data`` (UTF-8 bytes or text), within ``limits``.

    Raises
    ------
    JsonRejected
        Not UTF-8, not JSON, or beyond a limit; ``reason`` says which and where.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRejected(f"bad encoding: not UTF-8 text at byte {exc.start}") from None
    else:
        text = data
    if text.startswith(BOM):
        text = text[1:]
    try:
        value = _decoder(limits).decode(text)
    except _Limit as exc:
        raise JsonRejected(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise JsonRejected(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:  # the parser's own guard, far below any stack overflow
        raise JsonRejected(f"not valid JSON: nested more than {limits.max_depth} deep") from None
    except ValueError as exc:  # any other conversion limit of the runtime
        raise JsonRejected(f"not valid JSON: {str(exc).splitlines()[0]}") from None
    small = len(text) <= min(limits.max_string, limits.max_key)
    if not small or text.count("[") + text.count("{") > limits.max_depth:
        _check_sizes(value, limits)
    return value


def _check_sizes(value: Any, limits: JsonLimits) -> None:
    """Depth, string and key lengths, walked without recursion (only containers are stacked:
    a batch of flat events costs one look at each value)."""
    most_string, most_key, most_depth = limits.max_string, limits.max_key, limits.max_depth

    def too_long(text: str, where: str | None) -> JsonRejected:
        n = len(text)
        return JsonRejected(
            f"too long: a string of {n:,} characters (at most {most_string:,})", where
        )

    if type(value) is str and len(value) > most_string:
        raise too_long(value, None)
    stack: list[tuple[Any, str | None, int]] = [(value, None, 1)]
    while stack:
        v, where, depth = stack.pop()
        if depth > most_depth:
            raise JsonRejected(f"not valid JSON: nested more than {most_depth} deep")
        if type(v) is dict:
            for k, item in v.items():
                if len(k) > most_key:
                    raise JsonRejected(
                        f"too long: a key of {len(k):,} characters (at most {most_key:,})"
                    )
                t = type(item)
                if t is str:
                    if len(item) > most_string:
                        raise too_long(item, where or k)
                elif t is dict or t is list:
                    stack.append((item, where or k, depth + 1))
        elif type(v) is list:
            for item in v:
                t = type(item)
                if t is str:
                    if len(item) > most_string:
                        raise too_long(item, where)
                elif t is dict or t is list:
                    stack.append((item, where, depth + 1))


# -- type rules of the canonical fields -----------------------------------------------------------
#: Fields that hold a number: a JSON number, or a string holding one.
PARSED_FIELDS = frozenset({"value", "timestamp"})


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        bool: "a boolean",
        float: "a number",
        int: "an integer",
        str: "a string",
    }.get(type(value), type(value).__name__)


def type_problem(field: str, value: Any) -> str | None:
    """Why ``value`` cannot be the canonical field ``field`` (None when it can, or when it is
    null): ids are strings or integers; ``value`` and ``timestamp`` numbers or strings."""
    if value is None or type(value) is str:
        return None
    if field in PARSED_FIELDS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        want = "a number or a string"
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "a string or an integer"
    if ok:
        return None
    return f"wrong type: {field} must be {want}, not {type_name(value)}"
