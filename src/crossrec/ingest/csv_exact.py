"""The exact CSV row reader: every readable file gives its good rows, whatever its bad ones.

DuckDB's CSV reader is fast on regular files; this one takes the rest, streaming, one
physical line at a time:

* lines end with LF or CR LF, each line on its own (two exports concatenated), or with CR
  alone in a file without any LF;
* a row holding a NUL byte or a stray CR (one not ending its line) is quarantined as that
  row; so is a row that is not UTF-8, with its bytes kept as Latin-1 text (byte for byte:
  ``raw.encode("latin-1")`` gives them back);
* a quoted field may span lines; a record then starts at its first physical line, which is
  the line a quarantined record is known by. A quote that never closes costs its own line
  only: when the lines that follow do not complete a record of the right width within
  :data:`MAX_RECORD_LINES` lines, the first line is quarantined as an unterminated quote and
  the next lines are read again as rows of their own.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crossrec.errors import IngestError

#: Lines one quoted record may span (and bytes it may hold) before its quote is taken as
#: unterminated.
MAX_RECORD_LINES = 1_000
MAX_RECORD_BYTES = 1 << 20
#: Bytes of one physical line; a longer line is quarantined without being read into memory.
MAX_LINE_BYTES = 64 << 20
LATIN1_NOTE = "raw: the row's bytes as Latin-1"


@dataclass(frozen=True)
class Bad:
    """A physical line (or a record starting there) that is not a row."""

    line: int
    reason: str
    raw: str


def physical_lines(path: Path, newline: bytes) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes without the line ending)`` of every line, from 1; ``None`` for
    a line over :data:`MAX_LINE_BYTES` (skipped unread: memory stays bounded).

    ``newline`` is ``b"\n"`` (a line ends with LF or CR LF) or ``b"\r"`` (CR only).
    """
    with path.open("rb") as fh:
        if newline == b"\n":
            lineno = 0
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                if not raw.endswith(b"\n") and len(raw) > MAX_LINE_BYTES:
                    while (more := fh.readline(1 << 20)) and not more.endswith(b"\n"):
                        pass
                    yield lineno, None
                    continue
                if raw.endswith(b"\n"):
                    raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
                yield lineno, raw
            return
        lineno = 0
        rest = b""
        too_long = False
        while chunk := fh.read(1 << 22):
            parts = (rest + chunk).split(newline)
            rest = parts.pop()
            for raw in parts:
                lineno += 1
                yield lineno, None if too_long or len(raw) > MAX_LINE_BYTES else raw
                too_long = False
            if len(rest) > MAX_LINE_BYTES:
                rest, too_long = b"", True
        if rest or too_long:
            yield lineno + 1, None if too_long else rest


def _shown(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _line_problem(raw: bytes | None) -> tuple[str | None, str]:
    """``(reason, text)``: why a physical line cannot be (part of) a row, and its text."""
    if raw is None:
        return f"line too long: over {MAX_LINE_BYTES:,} bytes", ""
    nul = raw.find(b"\x00")
    if nul >= 0:
        return f"NUL byte: at byte {nul} of the row", _shown(raw)
    cr = raw.find(b"\r")
    if cr >= 0:
        return f"stray carriage return: a CR at byte {cr} of the row", _shown(raw)
    try:
        return None, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"bad encoding: not UTF-8 text at byte {exc.start} ({LATIN1_NOTE})"
        return reason, raw.decode("latin-1")


def header(path: Path, delimiter: str, newline: bytes) -> list[str]:
    """The column names of the first line (a BOM skipped; blank or repeated names made
    unique)."""
    first = next(physical_lines(path, newline), (1, b""))[1]
    if first is not None and first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    problem, text = _line_problem(first)
    if problem is not None:
        raise IngestError(f"{path}: line 1 (header): {problem}")
    try:
        names = next(csv.reader([text], delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        raise IngestError(f"{path}: line 1 (header) is not CSV: {exc}") from None
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        name = name.strip() or f"column{i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def rows(
    path: Path, delimiter: str, newline: bytes, width: int
) -> Iterator[tuple[int, list[str]] | Bad]:
    """The data rows after the header: ``(physical line, fields)`` for a row of ``width``
    fields (empty text stays empty), a :class:`Bad` for anything else; blank lines are
    skipped."""
    lines = physical_lines(path, newline)
    next(lines, None)  # the header
    # lines read ahead for a quoted record that may span lines, not yet taken
    pending: deque[tuple[int, bytes | None]] = deque()

    def ahead(i: int) -> tuple[int, bytes | None] | None:
        """The i-th line after the current one (0: the next), read ahead."""
        while len(pending) <= i:
            nxt = next(lines, None)
            if nxt is None:
                return None
            pending.append(nxt)
        return pending[i]

    def quoted(first: str) -> list[str] | None:
        """The record that starts with ``first`` (an odd number of quotes) and ends on a
        later line, when it parses with ``width`` fields; its lines are then taken."""
        parts = [first]
        size = len(first)
        quotes = first.count('"')
        for i in range(MAX_RECORD_LINES):
            nxt = ahead(i)
            if nxt is None:
                return None
            problem, text = _line_problem(nxt[1])
            size += len(text) + 1
            if problem is not None or size > MAX_RECORD_BYTES:
                return None
            parts.append(text)
            quotes += text.count('"')
            if quotes % 2 == 0:
                try:
                    values = next(csv.reader(["\n".join(parts)], delimiter=delimiter, strict=True))
                except csv.Error:
                    return None
                if len(values) != width:
                    return None
                for _ in range(i + 1):
                    pending.popleft()
                return values
        return None

    while True:
        item = pending.popleft() if pending else next(lines, None)
        if item is None:
            return
        lineno, raw = item
        problem, text = _line_problem(raw)
        if problem is not None:
            yield Bad(lineno, problem, text)
            continue
        if not text.strip():
            continue
        if '"' not in text:
            values = text.split(delimiter)
        elif text.count('"') % 2 == 0:
            try:
                values = next(csv.reader([text], delimiter=delimiter, strict=True))
            except csv.Error as exc:
                yield Bad(lineno, f"malformed CSV: {exc}", text)
                continue
        else:
            record = quoted(text)
            if record is None:  # the lines read ahead are read again as rows of their own
                yield Bad(lineno, "unterminated quote", text)
                continue
            values = record
        if len(values) != width:
            found = len(values)
            yield Bad(lineno, f"wrong number of fields: expected {width}, found {found}", text)
            continue
        yield lineno, values
