"""Turning stored pseudonyms back into the raw account ids a company uses, in memory only.

The store never holds a raw account id. To show results in the company's own ids, the caller
supplies id lists (``PLATFORM=FILE``: a CSV, JSON-lines or Parquet file with an ``account``
column, such as the event files that were ingested); each id is read and normalised exactly
as ingest reads it (the same readers, text trimmed, numbers as their text), pseudonymised with
the workspace's key, and kept in a dictionary from pseudonym back to raw id. Nothing is
written anywhere: an :class:`IdMap` lives as long as the command or server that built it.

>>> from crossrec.privacy import Pseudonymiser
>>> ps = Pseudonymiser(b"k")
>>> ids = IdMap.from_pairs({"video": ["u1", " u2 "]}, ps)
>>> ids.raw("video", ps.account("video", "u2"))
'u2'
>>> ids.raw("video", ps.account("video", "nobody")) is None
True
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrec.errors import InputError, InvalidIdError
from crossrec.identity import invalid_sql, normalize_id, normalized_sql
from crossrec.ingest.formats import detect
from crossrec.ingest.readers import Source, quote_ident, stage, staging_connection
from crossrec.ingest.validate import trimmed
from crossrec.privacy import Pseudonymiser

ACCOUNT = "account"
_MEMORY_LIMIT = "2GB"


def _normalize(raw: str) -> str | None:
    """The id ingest would store for ``raw`` (:func:`crossrec.identity.normalize_id`), or
    ``None`` for an id ingest refuses (such a row is quarantined: never a stored account)."""
    try:
        return normalize_id(raw, ACCOUNT)
    except InvalidIdError:
        return None


def parse_id_spec(spec: str) -> tuple[str, Path]:
    """``PLATFORM=FILE`` → ``(platform, Path(FILE))``; a one-line error otherwise."""
    platform, sep, file = spec.partition("=")
    platform, file = platform.strip(), file.strip()
    if not sep or not platform or not file:
        raise InputError(
            f"--ids {spec!r} is not PLATFORM=FILE",
            hint="e.g. --ids video=video_events.csv (a file with an account column)",
        )
    return platform, Path(file)


@dataclass(frozen=True)
class IdListStats:
    """What one platform's id lists gave: files read and distinct raw ids."""

    files: list[str]
    ids: int


class IdMap:
    """Pseudonym → raw id, per platform, built from id lists the caller supplies.

    ``raw(platform, pseudonym)`` answers ``None`` for an account the lists do not hold: such
    an account is never guessed.
    """

    def __init__(self) -> None:
        self._raw: dict[str, dict[str, str]] = {}
        self._files: dict[str, list[str]] = {}

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[str] | Iterable[tuple[str, Path]],
        pseudonymiser: Pseudonymiser,
        columns: Mapping[str, str] | None = None,
    ) -> IdMap:
        """Read every ``PLATFORM=FILE`` (or ``(platform, path)``) id list.

        ``columns`` maps ``account`` to the file column holding the ids (default
        ``account``). Raises :class:`IngestError` for a missing or unreadable file and
        :class:`InputError` for a missing column, each naming the file.
        """
        column = _account_column(columns)
        out = cls()
        for spec in specs:
            platform, path = parse_id_spec(spec) if isinstance(spec, str) else spec
            pairs = read_ids(Path(path), column, (pseudonymiser, platform))
            out._raw.setdefault(platform, {}).update(pairs)
            out._files.setdefault(platform, []).append(str(path))
        return out

    @classmethod
    def from_pairs(cls, ids: Mapping[str, Iterable[str]], pseudonymiser: Pseudonymiser) -> IdMap:
        """An id map from raw ids held in memory, per platform (normalised as ingest does)."""
        out = cls()
        for platform, raws in ids.items():
            out._add(platform, (r for r in map(_normalize, raws) if r is not None), pseudonymiser)
            out._files.setdefault(platform, [])
        return out

    def _add(self, platform: str, raws: Iterable[str], ps: Pseudonymiser) -> None:
        unique = list(dict.fromkeys(raws))
        table = self._raw.setdefault(platform, {})
        table.update(zip(ps.accounts(platform, unique), unique, strict=True))

    def raw(self, platform: str, pseudonym: str) -> str | None:
        """The raw id of a stored account, or ``None`` when no id list holds it."""
        table = self._raw.get(platform)
        return None if table is None else table.get(pseudonym)

    def __contains__(self, key: object) -> bool:
        """``(platform, pseudonym) in ids``: whether that account can be shown by raw id."""
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        platform, pseudonym = key
        table = self._raw.get(platform) if isinstance(platform, str) else None
        return table is not None and pseudonym in table

    def __len__(self) -> int:
        return sum(len(t) for t in self._raw.values())

    @property
    def platforms(self) -> list[str]:
        return sorted(self._raw)

    def stats(self) -> dict[str, Any]:
        """Per platform: the files read and how many distinct raw ids they held."""
        return {
            p: {"files": list(self._files.get(p, [])), "ids": len(self._raw[p])}
            for p in sorted(self._raw)
        }


def _account_column(columns: Mapping[str, str] | None) -> str:
    if not columns:
        return ACCOUNT
    unknown = sorted(set(columns) - {ACCOUNT})
    if unknown:
        raise InputError(
            f"--columns: {', '.join(unknown)} cannot be mapped for an id list",
            hint="an id list needs only its account column: --columns account=NAME",
        )
    return columns.get(ACCOUNT, ACCOUNT)


def read_ids(
    path: Path, column: str = ACCOUNT, pseudonymise: tuple[Pseudonymiser, str] | None = None
) -> list[tuple[str, str]]:
    """The distinct raw ids in ``column`` of ``path``, read as ingest reads them (trimmed,
    NFC; ids the identity rule refuses left out), as ``(pseudonym, raw)`` pairs: with
    ``pseudonymise = (pseudonymiser, platform)`` the pseudonyms are computed in the same SQL
    pass, as ingest computes them; without it the pseudonym is the raw id."""
    f = detect(path)
    spill = Path(tempfile.mkdtemp(prefix="crossrec-ids-"))
    try:
        con = staging_connection(_MEMORY_LIMIT, spill)
        try:

            def build(src: Source) -> str:
                if column not in src.columns:
                    shown = ", ".join(src.columns[:12]) or "none"
                    raise InputError(
                        f"{path}: no column {column!r} (columns: {shown})",
                        hint="name the id column with --columns account=NAME",
                    )
                text = trimmed(f"CAST({quote_ident(column)} AS VARCHAR)")
                # the columns every reader may look at in ``checked``: no row is refused here
                return (
                    f"CREATE TABLE checked AS SELECT {src.line} AS _line, "
                    f"{normalized_sql(text)} AS raw, CAST(NULL AS VARCHAR) AS _field, "
                    f"CAST(NULL AS VARCHAR) AS _reason FROM {src.relation}"
                )

            staged = stage(con, f, build)
            # ids the identity rule refuses were quarantined by ingest: never stored
            valid = f"raw IS NOT NULL AND NOT {invalid_sql('raw')}"
            expr, params = (
                ("raw", [])
                if pseudonymise is None
                else pseudonymise[0].account_sql(pseudonymise[1], "raw")
            )
            rows = staged.con.execute(
                f"SELECT {expr}, raw FROM (SELECT DISTINCT raw FROM checked WHERE {valid})",
                params,
            ).fetchall()
        finally:
            con.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return [(str(k), str(r)) for k, r in rows]
