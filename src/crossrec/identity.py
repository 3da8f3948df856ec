"""One identity rule for raw account and item ids, on every path.

A raw id (an account or item id as a platform sends it) is normalised and checked the same way
whether it arrives in a file row, an HTTP body, a Kafka message, a CLI ``--account`` or an API
path, so that every stored account can be found and erased by the id its client sent:

1. **Trim**: spaces at both ends are removed (the characters of Unicode category Zs: the
   space, the no-break space, the ideographic space...); an id that is only spaces is
   missing.
2. **Allowed characters**: an id may hold any character except control characters (U+0000 to
   U+001F, U+007F to U+009F), the line and paragraph separators U+2028 and U+2029, and lone
   surrogates.
3. **Normalisation**: the id is put in Unicode normal form C (``é`` typed as ``e`` + accent
   and as one character is the same id).
4. **Length**: at most :data:`MAX_ID_LENGTH` characters after the steps above.

:func:`normalize_id` applies the rule in Python (HTTP, Kafka, CLI, erasure); the SQL helpers
apply the same rule inside the ingest's validation statements, where a row that breaks it is
quarantined with the same reason.

>>> normalize_id("  u42 ", "account")
'u42'
>>> normalize_id("a/b c", "account")
'a/b c'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from crossrec.errors import InvalidIdError

#: A platform name: 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit.
PLATFORM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PLATFORM_HINT = "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"

#: The longest raw id accepted, in characters (Unicode code points) after normalisation.
MAX_ID_LENGTH = 512

#: What trimming removes: the Unicode space separators (category Zs), as DuckDB's ``trim``.
SPACES = "\u0020\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" + (
    "\u202f\u205f\u3000"
)

_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: The same class for DuckDB's RE2 (which cannot hold surrogates: DuckDB text is valid UTF-8).
_FORBIDDEN_RE2 = r"[\x00-\x1f\x7f-\x9f\x{2028}\x{2029}]"


def normalize_id(raw: Any, field: str) -> str:
    """The stored form of the raw id ``raw`` of ``field`` (``"account"``, ``"item"``...).

    Raises
    ------
    InvalidIdError
        ``raw`` is not text, is empty after trimming (``missing account``), holds a control
        character or is too long (``invalid account: ...``); ``error.field`` and
        ``error.reason`` are what the quarantine keeps.
    """
    if not isinstance(raw, str):
        raise InvalidIdError(field, f"invalid {field}: not text ({type(raw).__name__})")
    text = raw.strip(SPACES)
    if not text:
        raise InvalidIdError(field, f"missing {field}")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        raise InvalidIdError(field, f"invalid {field}: {_describe(bad.group())}")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidIdError(
            field, f"invalid {field}: {len(text)} characters (at most {MAX_ID_LENGTH})"
        )
    return text


def _describe(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "not valid Unicode text (a lone surrogate)"
    return f"control character U+{code:04X}"


# -- the same rule in SQL (DuckDB) -----------------------------------------------------------------
def normalized_sql(x: str) -> str:
    """SQL: the NFC form of the (already trimmed) text expression ``x``; ASCII text, which
    NFC leaves as it is, is not copied (``strlen`` counts bytes, ``length`` characters)."""
    return f"CASE WHEN strlen({x}) <> length({x}) THEN nfc_normalize({x}) ELSE {x} END"


def invalid_sql(x: str) -> str:
    """SQL condition: the trimmed, normalised, non-NULL id ``x`` breaks the rule."""
    return f"(regexp_matches({x}, '{_FORBIDDEN_RE2}') OR length({x}) > {MAX_ID_LENGTH})"


def reason_sql(x: str, field: str) -> str:
    """SQL: the quarantine reason for an id ``x`` for which :func:`invalid_sql` holds; the
    same text :func:`normalize_id` gives."""
    char = f"regexp_extract({x}, '{_FORBIDDEN_RE2}')"
    return (
        f"CASE WHEN regexp_matches({x}, '{_FORBIDDEN_RE2}') "
        f"THEN 'invalid {field}: control character U+' || upper(printf('%04x', unicode({char}))) "
        f"ELSE 'invalid {field}: ' || length({x}) || ' characters (at most {MAX_ID_LENGTH})' END"
    )
