"""Input format detection and the checks that refuse a file that is not a table at all."""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from crossrec.errors import IngestError, InputError

FORMATS = ("auto", "csv", "jsonl", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".dat": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_DELIMITERS = (",", "\t", ";", "|")
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class InputFile:
    """A file accepted for reading: its path, detected format and CSV delimiter."""

    path: Path
    fmt: str
    delimiter: str = ","


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def detect(path: Path, fmt: str = "auto") -> InputFile:
    """Check that ``path`` is a readable, non-empty table and find its format.

    Raises :class:`IngestError` for a missing, empty or binary file, or an unknown format.
    """
    check_format(fmt)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if not path.is_file():
        raise IngestError(f"{path}: not a regular file")
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head.strip():
        raise IngestError(f"{path}: file is empty", hint="nothing to ingest")
    if fmt == "auto":
        fmt = _guess(path, head)
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            raise IngestError(f"{path}: not a Parquet file (no PAR1 magic bytes)")
        return InputFile(path, "parquet")
    if _looks_binary(head):
        raise IngestError(
            f"{path}: not a text table (binary content)",
            hint="give a CSV, JSONL or Parquet file",
        )
    if fmt == "jsonl":
        return InputFile(path, "jsonl")
    return InputFile(path, "csv", _sniff_delimiter(path, head))


def _guess(path: Path, head: bytes) -> str:
    if head.startswith(b"PAR1"):
        return "parquet"
    by_ext = _EXTENSIONS.get(path.suffix.lower())
    if by_ext:
        return by_ext
    if head.lstrip()[:1] in (b"{", b"["):
        return "jsonl"
    if _looks_binary(head):
        raise IngestError(
            f"{path}: unknown format (binary content)", hint="give a CSV, JSONL or Parquet file"
        )
    return "csv"


def _looks_binary(head: bytes) -> bool:
    # NUL bytes all over (UTF-16, images, archives): not text. A few are bad rows.
    if head.count(b"\x00") > max(8, len(head) // 100):
        return True
    # Mostly undecodable bytes: not a text table. A few bad bytes are bad rows, not a bad file.
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    return bad > max(16, len(text) // 10)


def _sniff_delimiter(path: Path, head: bytes) -> str:
    first = re.split(rb"\r\n|\r|\n", head, maxsplit=1)[0].decode("utf-8", errors="replace")
    counts = {d: first.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    if counts[best] == 0:
        return ","  # one column: the header check will say which fields are missing
    return best


def fingerprint(path: Path, *parts: str) -> str:
    """Content hash of a file plus context (platform, kind): the identity of one ingest."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode() + b"\x1f")
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def count_lines(path: Path) -> int:
    """Physical lines in a text file (a last line without newline counts)."""
    n = 0
    last = b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)


@dataclass(frozen=True)
class TextFacts:
    """What one pass over a text file's bytes tells about its lines (see :func:`scan`)."""

    #: Line feeds, carriage returns, and CR LF pairs.
    lf: int
    cr: int
    crlf: int
    nul: bool
    utf8: bool

    @property
    def newline(self) -> bytes:
        """The file's line ending: LF (LF or CR LF lines), or CR for a file without any LF."""
        return b"\r" if self.lf == 0 and self.cr > 0 else b"\n"

    @property
    def regular(self) -> bool:
        """Every line ends the same way (all LF or all CR LF), no NUL byte, no stray CR, all
        UTF-8: the file DuckDB's CSV reader takes as it is."""
        uniform = self.cr == 0 or (self.cr == self.crlf == self.lf)
        return self.lf > 0 and uniform and not self.nul and self.utf8


def scan(path: Path) -> TextFacts:
    """Count line endings and look for NUL bytes and bytes that are not UTF-8, streaming
    (memory stays at one chunk however large the file)."""
    lf = cr = crlf = 0
    nul = False
    utf8 = True
    decoder = codecs.getincrementaldecoder("utf-8")()
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            lf += chunk.count(b"\n")
            cr += chunk.count(b"\r")
            crlf += chunk.count(b"\r\n") + (1 if last == b"\r" and chunk[:1] == b"\n" else 0)
            nul = nul or b"\x00" in chunk
            # ASCII (the usual chunk) is UTF-8: decode only the rest, or a character split
            # across chunks
            if utf8 and not (chunk.isascii() and not decoder.getstate()[0]):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            last = chunk[-1:]
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return TextFacts(lf, cr, crlf, nul, utf8)
