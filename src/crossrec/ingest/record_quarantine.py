"""The quarantine side of record ingest: bad records by source and number, written once.

Records come from a source (``http:<token>``, ``kafka:<topic>/<partition>``) and carry a
number within it (a stream offset, or the position in an HTTP batch). A quarantined record is
stored as a file-ingest quarantine row: the source as ``file``, the number as ``line``, and a
fingerprint that makes the insert idempotent, so a replayed batch adds no row twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import duckdb
import pyarrow as pa

from crossrec import schema
from crossrec.errors import WorkspaceError

if TYPE_CHECKING:
    from crossrec.workspace import Workspace

_T = TypeVar("_T")
_WAIT_S = 30.0  # how long a batch waits for a reader to release the quarantine


@dataclass(frozen=True)
class Bad:
    """One record for the quarantine: where it came from, what is wrong, the raw record."""

    source: str
    fingerprint: str
    number: int
    platform: str | None
    field: str | None
    reason: str
    raw: str | None


def source_fingerprint(source: str) -> str:
    """The quarantine identity of a numbered source: a record number is quarantined once."""
    return hashlib.blake2b(f"records\x1f{source}".encode(), digest_size=16).hexdigest()


def quarantine_table(rows: list[Bad]) -> pa.Table:
    """``schema.QUARANTINE`` rows of bad records (kind ``events``)."""
    n = len(rows)
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    return pa.table(
        {
            "file": pa.array([b.source for b in rows], pa.string()),
            "fingerprint": pa.array([b.fingerprint for b in rows], pa.string()),
            "line": pa.array([b.number for b in rows], pa.int64()),
            "kind": pa.array(["events"] * n, pa.string()),
            "platform": pa.array([b.platform for b in rows], pa.string()),
            "field": pa.array([b.field for b in rows], pa.string()),
            "reason": pa.array([b.reason for b in rows], pa.string()),
            "raw": pa.array([b.raw for b in rows], pa.string()),
            "quarantined_at": pa.array([now] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


class QuarantineWriter:
    """Writes bad records to a workspace's ``quarantine.duckdb``, opened per write or held
    open for a long run (:meth:`held`)."""

    def __init__(self, ws: Workspace) -> None:
        self.quarantine = ws.quarantine()
        self._held: duckdb.DuckDBPyConnection | None = None

    def write(self, rows: list[Bad]) -> None:
        if not rows:
            return
        table = quarantine_table(rows)
        if self._held is not None:
            _insert(self._held, table)
        else:
            _waiting(self.quarantine.path, lambda: self.quarantine.add(table))

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep the quarantine database open until the block ends.

        A stream quarantines something every few batches, and opening the database costs tens
        of milliseconds each time; the consumer holds it for its run instead. Meanwhile other
        processes cannot open the quarantine (they can read it once the run ends).
        """
        path = self.quarantine.path
        con = _waiting(path, lambda: duckdb.connect(str(path)))
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(schema.QUARANTINE.ddl())
            self._held = con
            yield
        finally:
            self._held = None
            con.close()


def _waiting(path: Path, action: Callable[[], _T]) -> _T:
    """Run ``action`` on the quarantine database, waiting while another process holds it
    (e.g. ``crossrec quarantine list``); a lasting conflict is a :class:`WorkspaceError`."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        try:
            return action()
        except duckdb.IOException as exc:
            if time.monotonic() >= deadline:
                raise WorkspaceError(
                    f"cannot write the quarantine {path}: {str(exc).splitlines()[0]}",
                    hint="another process holds it open; stop it and retry",
                ) from None
            time.sleep(0.05)


def _insert(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """What :meth:`Quarantine.add` does, on an open connection (idempotent per fingerprint,
    kind and line)."""
    cols = schema.QUARANTINE.column_names
    con.register("_bad", table.select(cols))
    try:
        con.execute(
            f"INSERT OR IGNORE INTO quarantine ({', '.join(cols)}) "
            f"SELECT {', '.join(cols)} FROM _bad"
        )
    finally:
        con.unregister("_bad")
