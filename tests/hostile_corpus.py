"""The hostile-input corpus: files and JSON documents a careless or hostile client sends, each
with what crossrec must make of it.

Files (:data:`FILES`) are written into a temporary folder by :func:`write_files`; each case
says how many events are stored and quarantined (or that the file is refused whole: the CLI's
exit code 3), the reasons of its quarantined rows and their physical lines. JSON documents
(:data:`DOCUMENTS`) are single events (with a ``platform`` field, as a Kafka message carries
it); each says what HTTP answers for a batch holding it and what the stream makes of it.

Run ``python -m tests.hostile_corpus DIR`` to write the files into DIR and look at them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

H = b"account,item,value\n"
GOOD3 = b"g1,i1,1\ng2,i2,2\ng3,i3,3\n"


@dataclass(frozen=True)
class FileCase:
    """One events file and its expected ingest."""

    name: str
    data: bytes
    stored: int = 0
    quarantined: int = 0
    #: the file is refused whole (exit code 3), with this text in the message
    refused: str | None = None
    #: reason prefix per quarantined physical line
    reasons: dict[int, str] = field(default_factory=dict)
    #: quarantined lines whose raw row must give back these bytes exactly
    raw_bytes: dict[int, bytes] = field(default_factory=dict)
    columns: str | None = None


def _deep(n: int) -> bytes:
    return b'{"account": "deep", "item": "i", "x": ' + b"[" * n + b"]" * n + b"}"


def _jsonl(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


_J_GOOD = b'{"account": "j1", "item": "i1", "value": 1}'

FILES: list[FileCase] = [
    # -- line endings -----------------------------------------------------------------------------
    FileCase(
        "crlf_then_lf.csv",
        H.replace(b"\n", b"\r\n") + b"a,i1,1\r\nb,i2,2\r\nc,i3,3\nd,i4,4\n",
        stored=4,
    ),
    FileCase("one_crlf_line.csv", H + b"a,i1,1\nb,i2,2\r\nc,i3,3\nd,i4,4\n", stored=4),
    FileCase("cr_only.csv", H.replace(b"\n", b"\r") + b"a,i1,1\rb,i2,2\rc,i3,3\r", stored=3),
    FileCase(
        "cr_only_bad_row.csv",
        H.replace(b"\n", b"\r") + b"a,i1,1\rb,i2,x\rc,i3,3",
        stored=2,
        quarantined=1,
        reasons={3: "unparsable value"},
    ),
    FileCase(
        "stray_cr.csv",
        H + b"a,i1,1\nb,i\r2,2\nc,i3,3\n",
        stored=2,
        quarantined=1,
        reasons={3: "stray carriage return"},
    ),
    FileCase(
        "stray_cr_in_crlf_file.csv",
        H.replace(b"\n", b"\r\n") + b"a,i1,1\r\nb,i\r2,2\r\nc,i3,3\r\n",
        stored=2,
        quarantined=1,
        reasons={3: "stray carriage return"},
    ),
    # -- bytes ------------------------------------------------------------------------------------
    FileCase(
        "nul_in_row.csv",
        H + b"a,i1,1\nb,i\x002,2\nc,i3,3\n",
        stored=2,
        quarantined=1,
        reasons={3: "NUL byte"},
    ),
    FileCase(
        "latin1_row.csv",
        H + b"a,i1,1\nlat_\xe9caf\xe9,i2,2\nc,i3,3\n",
        stored=2,
        quarantined=1,
        reasons={3: "bad encoding"},
        raw_bytes={3: b"lat_\xe9caf\xe9,i2,2"},
    ),
    FileCase("bom.csv", b"\xef\xbb\xbf" + H + GOOD3, stored=3),
    FileCase(
        "utf16.csv",
        (H + GOOD3).decode().encode("utf-16"),
        refused="not a text table",
    ),
    FileCase("binary.csv", bytes(range(256)) * 64, refused="not a text table"),
    FileCase("empty.csv", b"", refused="file is empty"),
    FileCase("header_only.csv", H),
    # -- quotes and sizes -------------------------------------------------------------------------
    FileCase(
        "nested_quotes.csv",
        H + b'q1,"say ""hi"" ""there""",1\nq2,"open ""quote,2\nq3,i3,3\n',
        stored=2,
        quarantined=1,
        reasons={3: "unterminated quote"},
    ),
    FileCase(
        "multi_line_field_then_bad_row.csv",
        b"account,item,value,note\n"
        + b'a,i1,1,"two\nlines"\nb,i2,x,\nc,i3,3,"three\nmore\nlines"\nd,i4,y,\n',
        stored=2,
        quarantined=2,
        reasons={4: "unparsable value", 8: "unparsable value"},
    ),
    FileCase(
        "blank_lines_then_bad_row.csv",
        H + b"a,i1,1\n\n\nb,i2,x\nc,i3,3\n",
        stored=2,
        quarantined=1,
        reasons={5: "unparsable value"},
    ),
    FileCase(
        "huge_field.csv",
        b"account,item,value,note\n" + b"a,i1,1," + b"n" * 3_000_000 + b"\nb,i2,2,short\n",
        stored=2,
    ),
    FileCase(
        "mixed_endings_and_bad_rows.csv",
        H.replace(b"\n", b"\r\n")
        + b"a,i1,1\r\n,i2,2\r\nb,i3,3\n"
        + b"c,i\x004,4\nd,i5,5\r\ne,\xff,6\n",
        stored=3,
        quarantined=3,
        reasons={3: "missing account", 5: "NUL byte", 7: "bad encoding"},
    ),
    # -- JSON lines -------------------------------------------------------------------------------
    FileCase(
        "bom.jsonl",
        b"\xef\xbb\xbf" + _jsonl(_J_GOOD, b'{"account": "j2", "item": "i2"}'),
        stored=2,
    ),
    FileCase(
        "huge_number.jsonl",
        _jsonl(_J_GOOD, b'{"account": "k5", "item": "i1", "value": ' + b"9" * 5000 + b"}"),
        stored=1,
        quarantined=1,
        reasons={2: "not valid JSON: a number with 5000 digits"},
    ),
    FileCase(
        "deep.jsonl",
        _jsonl(_J_GOOD, _deep(50_000)),
        stored=1,
        quarantined=1,
        reasons={2: "not valid JSON: nested more than 64 deep"},
    ),
    FileCase(
        "deep_just_allowed.jsonl",
        _jsonl(_J_GOOD, _deep(63)),
        stored=2,
    ),
    FileCase(
        "wrong_types.jsonl",
        _jsonl(
            _J_GOOD,
            b'{"account": {"id": 1}, "item": "i1"}',
            b'{"account": "j3", "item": ["i1"]}',
            b'{"account": "j4", "item": "i1", "value": true}',
            b'{"account": "j5", "item": "i1", "value": "x"}',
        ),
        stored=1,
        quarantined=4,
        reasons={
            2: "wrong type: account must be a string or an integer, not an object",
            3: "wrong type: item must be a string or an integer, not an array",
            4: "wrong type: value must be a number or a string, not a boolean",
            5: "unparsable value",
        },
    ),
    FileCase(
        "json_limits.jsonl",
        _jsonl(
            _J_GOOD,
            b'{"account": "s", "item": "i1", "note": "' + b"x" * 70_000 + b'"}',
            b'{"account": "k", "item": "i1", "' + b"k" * 300 + b'": 1}',
            b'{"account": "n", "item": "i1", "value": NaN}',
            b'{"account": "t", "item": "i1"',
        ),
        stored=1,
        quarantined=4,
        reasons={
            2: "too long: a string of 70,000 characters",
            3: "too long: a key of 300 characters",
            4: "not valid JSON: NaN",
            5: "not valid JSON",
        },
    ),
    FileCase(
        "latin1.jsonl",
        _jsonl(_J_GOOD, b'{"account": "caf\xe9", "item": "i1"}'),
        stored=1,
        quarantined=1,
        reasons={2: "bad encoding"},
        raw_bytes={2: b'{"account": "caf\xe9", "item": "i1"}'},
    ),
    # -- Parquet ----------------------------------------------------------------------------------
    FileCase("truncated.parquet", b"PAR1" + b"\x15\x04" * 40, refused="cannot be read as Parquet"),
]


@dataclass(frozen=True)
class DocCase:
    """One JSON event document and what each path makes of it.

    ``http`` is the status of a strict POST of ``[document]`` (200, 400 when the body does
    not decode, 422 with the event's ``field``); the stream quarantines every document that
    is not stored, with ``field`` and a reason starting with ``reason``.
    """

    name: str
    data: bytes
    http: int
    field: str | None = None
    reason: str = ""

    @property
    def stored(self) -> bool:
        return self.http == 200

    def body(self) -> bytes:
        """The HTTP body: the event without its platform, in an array (a BOM kept first)."""
        text = self.data.decode("utf-8", "replace")
        bom = text.startswith("\ufeff")
        event = json.loads(text.lstrip("\ufeff")) if self.http != 400 else None
        if event is None:
            return b"[" + self.data.replace(b'"platform": "video", ', b"") + b"]"
        event.pop("platform", None)
        return (b"\xef\xbb\xbf" if bom else b"") + json.dumps([event]).encode()


def _event(rest: bytes) -> bytes:
    return b'{"platform": "video", ' + rest + b"}"


DOCUMENTS: list[DocCase] = [
    DocCase("good", _event(b'"account": "d1", "item": "i1", "value": 2'), 200),
    DocCase("bom", b"\xef\xbb\xbf" + _event(b'"account": "d2", "item": "i1"'), 200),
    DocCase(
        "huge_number",
        _event(b'"account": "k5", "item": "i1", "value": ' + b"9" * 5000),
        400,
        None,
        "not valid JSON: a number with 5000 digits",
    ),
    DocCase(
        "deep",
        _event(b'"account": "d3", "item": "i1", "x": ' + b"[" * 50_000 + b"]" * 50_000),
        400,
        None,
        "not valid JSON: nested more than 64 deep",
    ),
    DocCase(
        "long_string",
        _event(b'"account": "d4", "item": "i1", "note": "' + b"x" * 70_000 + b'"'),
        400,
        "note",
        "too long: a string of 70,000 characters",
    ),
    DocCase(
        "long_key",
        _event(b'"account": "d5", "item": "i1", "' + b"k" * 300 + b'": 1'),
        400,
        None,
        "too long: a key of 300 characters",
    ),
    DocCase("nan", _event(b'"account": "d6", "item": "i1", "value": NaN'), 400, None, "not valid"),
    DocCase(
        "object_account",
        _event(b'"account": {"id": 1}, "item": "i1"'),
        422,
        "account",
        "wrong type: account must be a string or an integer, not an object",
    ),
    DocCase(
        "array_item",
        _event(b'"account": "d7", "item": ["i1"]'),
        422,
        "item",
        "wrong type: item must be a string or an integer, not an array",
    ),
    DocCase(
        "value_text",
        _event(b'"account": "d8", "item": "i1", "value": "x"'),
        422,
        "value",
        "unparsable value",
    ),
    DocCase("missing_account", _event(b'"item": "i1"'), 422, "account", "missing account"),
    DocCase(
        "bad_timestamp",
        _event(b'"account": "d9", "item": "i1", "timestamp": "yesterday"'),
        422,
        "timestamp",
        "unparsable timestamp",
    ),
]


def write_files(folder: Path) -> dict[str, Path]:
    """Write every file case into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for case in FILES:
        path = folder / case.name
        path.write_bytes(case.data)
        out[case.name] = path
    return out


if __name__ == "__main__":
    for path in write_files(Path(sys.argv[1])).values():
        print(path)
