"""One ingest of one file: read + validate (one pass) → quarantine → pseudonymise → dedupe →
store.

Ingest is atomic per file: every store write of a file happens in one transaction, so a crash
part-way leaves the store as it was. Quarantine inserts are idempotent per (file fingerprint,
line), so a retried ingest neither loses nor doubles bad rows. An events file already ingested
(same content, platform and settings: its fingerprint is in ``ingest_log``) is not read again:
every valid row of it is a duplicate, and its bad rows are already in the quarantine.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from crossrec import schema
from crossrec.errors import InputError
from crossrec.ingest import events as event_writer
from crossrec.ingest import links as link_checks
from crossrec.ingest import validate
from crossrec.ingest.formats import detect, fingerprint
from crossrec.ingest.quarantine import PendingRows
from crossrec.ingest.readers import Source, Staged, stage, staging_connection
from crossrec.progress import NullProgress, ProgressHook

if TYPE_CHECKING:
    from crossrec.workspace import Workspace

#: Canonical fields whose JSON type is checked in JSON-lines files (as in POSTs and messages).
_TYPED = {
    "events": schema.EVENT_FIELDS,
    "items": ("item",),
    "links": schema.LINK_FIELDS,
}
_PLATFORM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_platform(name: str) -> str:
    if not _PLATFORM_RE.match(name or ""):
        raise InputError(
            f"platform name {name!r} is invalid",
            hint="use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def check_column_map(columns: dict[str, str]) -> None:
    """``--columns`` maps fields of events or items only (a typo is an error, not ignored)."""
    known = dict.fromkeys((*schema.EVENT_FIELDS, *schema.ITEM_FIELDS))
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise InputError(
            f"--columns maps {', '.join(repr(c) for c in unknown)}, which is not a field",
            hint=f"map these fields: {', '.join(known)} (e.g. --columns account=userId)",
        )


@dataclass
class IngestSummary:
    file: str
    kind: str
    platform: str | None
    accepted: int
    quarantined: int
    duplicates: int
    seconds: float
    reasons: dict[str, int] = field(default_factory=dict)
    #: links files: accounts the accepted links name that no events file has shown
    unknown_accounts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ingestor:
    """Ingests files into a workspace's store."""

    def __init__(self, ws: Workspace, *, progress: ProgressHook | None = None) -> None:
        self.ws = ws
        self.progress: ProgressHook = progress or NullProgress()
        self.cfg = ws.config.ingest
        self._started = time.perf_counter()
        # set by _validation for the file being ingested
        self._cmap = validate.ColumnMap({}, [])
        self._personal: list[str] = []
        self._unknown_accounts = 0  # set by _write_links

    # -- public ---------------------------------------------------------------------------------
    def events(
        self, platform: str, path: Path, *, columns: dict[str, str], fmt: str = "auto"
    ) -> IngestSummary:
        check_platform(platform)
        check_column_map(columns)
        return self._run("events", platform, path, columns, fmt, self._write_events)

    def items(
        self, platform: str, path: Path, *, columns: dict[str, str], fmt: str = "auto"
    ) -> IngestSummary:
        check_platform(platform)
        check_column_map(columns)
        return self._run("items", platform, path, columns, fmt, self._write_items)

    def links(self, path: Path, *, fmt: str = "auto") -> IngestSummary:
        return self._run("links", None, path, {}, fmt, self._write_links)

    # -- shared flow ----------------------------------------------------------------------------
    def _run(
        self,
        kind: str,
        platform: str | None,
        path: Path,
        columns: dict[str, str],
        fmt: str,
        write: Any,
    ) -> IngestSummary:
        started = self._started = time.perf_counter()
        path = Path(path)
        task = self.progress.task(f"{platform or ''} {kind} {path.name}".strip(), total=4)
        f = detect(path, fmt)
        fp = fingerprint(path, kind, platform or "", self._settings(kind, columns))
        if kind == "events":
            again = self._already_ingested(fp, platform, str(path), started)
            if again is not None:
                task.done()
                return again
        spill = Path(tempfile.mkdtemp(prefix="crossrec-staging-"))
        con = staging_connection(self.cfg.memory_limit, spill)
        try:
            staged = stage(
                con,
                f,
                lambda src: self._validation(kind, str(path), src, columns),
                typed={columns.get(c, c): c for c in _TYPED[kind]},
            )
            if kind == "events" and platform is not None:
                suppress_erased(con, self.ws, platform)
            if kind == "links":
                link_checks.mark_conflicts(con, self.ws)
            task.advance()
            task.advance()
            bad = self._bad_rows(con, staged, kind, platform, str(path), fp)
            accepted, duplicates = self._commit(
                bad, lambda: write(con, self._cmap, platform, str(path), fp, bad.num_rows, task)
            )
            task.advance()
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
        task.done()
        return IngestSummary(
            file=str(path),
            kind=kind,
            platform=platform,
            accepted=accepted,
            quarantined=bad.num_rows,
            duplicates=duplicates,
            seconds=round(time.perf_counter() - started, 3),
            reasons=_reason_counts(bad.column("reason").to_pylist()),
            unknown_accounts=self._unknown_accounts,
        )

    def _settings(self, kind: str, columns: dict[str, str]) -> str:
        """What else decides a file's rows besides its bytes (part of its fingerprint)."""
        settings: dict[str, Any] = {"columns": sorted(columns.items())}
        if kind == "events":
            settings["personal"] = sorted(self.ws.config.privacy.personal_columns)
            settings["ts"] = [str(self.cfg.timestamp_min), str(self.cfg.timestamp_max)]
        return json.dumps(settings, sort_keys=True)

    def _already_ingested(
        self, fp: str, platform: str | None, file: str, started: float
    ) -> IngestSummary | None:
        """The summary of re-ingesting an events file whose fingerprint is in the log: its
        valid rows are all stored already (duplicates), its bad rows quarantined already."""
        log = self.ws.store.read(
            "ingest_log", columns=["fingerprint", "kind", "accepted", "quarantined", "duplicates"]
        ).to_pylist()
        prior = [r for r in log if r["fingerprint"] == fp and r["kind"] == "events"]
        if not prior:
            return None
        valid = int(prior[0]["accepted"]) + int(prior[0]["duplicates"])
        quarantined = int(prior[0]["quarantined"])
        if len(self.ws.quarantine().reasons(fp, "events")) < quarantined:
            return None  # its bad rows were lost after its events committed: read it again
        store = self.ws.store
        with store.transaction():
            store.add_duplicates(valid)
            self._log(
                "events",
                platform,
                file,
                fp,
                accepted=0,
                quarantined=quarantined,
                duplicates=valid,
                seconds=round(time.perf_counter() - started, 3),
            )
        return IngestSummary(
            file=file,
            kind="events",
            platform=platform,
            accepted=0,
            quarantined=quarantined,
            duplicates=valid,
            seconds=round(time.perf_counter() - started, 3),
            reasons=_reason_counts(self.ws.quarantine().reasons(fp, "events")),
        )

    def _validation(
        self,
        kind: str,
        file: str,
        src: Source,
        columns: dict[str, str],
    ) -> str:
        """The statement that validates ``src`` into ``checked`` (keeps its column map)."""
        personal = tuple(c for c in self.ws.config.privacy.personal_columns if c in src.columns)
        if kind == "events":
            cmap = validate.map_columns(
                file,
                src.columns,
                schema.EVENT_FIELDS,
                schema.REQUIRED_EVENT_FIELDS,
                columns,
                exclude=personal,
            )
            sql = validate.checked_events_sql(
                cmap, src, self.cfg.timestamp_min, self.cfg.timestamp_max, personal=personal
            )
        elif kind == "items":
            cmap = validate.map_columns(
                file, src.columns, schema.ITEM_FIELDS, ("item",), columns, exclude=personal
            )
            sql = validate.checked_items_sql(cmap, src)
        else:
            cmap = validate.map_columns(
                file, src.columns, schema.LINK_FIELDS, schema.LINK_FIELDS, columns
            )
            sql = validate.checked_links_sql(cmap, src)
        self._cmap = cmap
        self._personal = list(personal)
        return sql

    def _bad_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        staged: Staged,
        kind: str,
        platform: str | None,
        file: str,
        fp: str,
    ) -> pa.Table:
        """Parse rejects plus validation failures, written to the quarantine."""
        failed = con.execute(
            "SELECT rowid, _line, _field, _reason, _raw FROM checked "
            "WHERE _reason IS NOT NULL ORDER BY rowid"
        ).fetchall()
        lines = [r[1] for r in failed]
        if failed and staged.needs_line_resolution:
            lines = staged.resolve_lines(np.array([r[0] for r in failed], dtype=np.int64)).tolist()
        records = [(rj.line, rj.field, rj.reason, rj.raw) for rj in staged.rejects]
        records += [(ln, r[2], r[3], r[4]) for ln, r in zip(lines, failed, strict=True)]
        records.sort(key=lambda r: r[0])
        now = datetime.now(UTC)
        n = len(records)
        table = pa.table(
            {
                "file": pa.array([file] * n, pa.string()),
                "fingerprint": pa.array([fp] * n, pa.string()),
                "line": pa.array([r[0] for r in records], pa.int64()),
                "kind": pa.array([kind] * n, pa.string()),
                "platform": pa.array([platform] * n, pa.string()),
                "field": pa.array([r[1] for r in records], pa.string()),
                "reason": pa.array([r[2] for r in records], pa.string()),
                "raw": pa.array([r[3] for r in records], pa.string()),
                "quarantined_at": pa.array(
                    [int(now.timestamp() * 1_000_000)] * n, pa.timestamp("us", tz="UTC")
                ),
            }
        )
        return table

    def _commit(self, bad: pa.Table, write: Callable[[], tuple[int, int]]) -> tuple[int, int]:
        """Run ``write`` (the file's store writes) and quarantine ``bad`` with it.

        The bad rows are inserted in a quarantine transaction as the last step of the store
        transaction and committed right after it: a crash before the store commits leaves
        neither the events nor the bad rows; a crash between the two commits (one statement)
        leaves the events, and ingesting the file again puts its bad rows back."""
        pending: PendingRows | None = None
        try:
            with self.ws.store.transaction():  # the writer's own transaction joins this one
                result = write()
                pending = self.ws.quarantine().prepare(bad)
        except BaseException:
            if pending is not None:
                pending.rollback()
            raise
        if pending is not None:
            pending.commit()
        return result

    def _log(self, kind: str, platform: str | None, file: str, fp: str, **counts: Any) -> None:
        self.ws.store.log_ingest(
            {
                "file": file,
                "fingerprint": fp,
                "kind": kind,
                "platform": platform,
                "ingested_at": datetime.now(UTC),
                **counts,
            }
        )

    # -- writers --------------------------------------------------------------------------------
    def _write_events(
        self,
        con: duckdb.DuckDBPyConnection,
        cmap: validate.ColumnMap,
        platform: str,
        file: str,
        fp: str,
        quarantined: int,
        task: Any,
    ) -> tuple[int, int]:
        store = self.ws.store
        with store.transaction():
            written = event_writer.write(
                store,
                con,
                self.ws.pseudonymiser,
                platform,
                personal=self._personal,
                batch_rows=self.cfg.batch_rows,
            )
            task.advance()
            self._log(
                "events",
                platform,
                file,
                fp,
                accepted=written.inserted,
                quarantined=quarantined,
                duplicates=written.duplicates,
                seconds=round(time.perf_counter() - self._started, 3),
            )
        return written.inserted, written.duplicates

    def _write_items(
        self,
        con: duckdb.DuckDBPyConnection,
        cmap: validate.ColumnMap,
        platform: str,
        file: str,
        fp: str,
        quarantined: int,
        task: Any,
    ) -> tuple[int, int]:
        store = self.ws.store
        # the last row of an item in the file wins; earlier rows of it count as duplicates
        table = con.sql(
            """
            SELECT ? AS platform, c.item, c.title, c.text, c.category, c.attrs
            FROM checked c
            WHERE c._reason IS NULL
            QUALIFY row_number() OVER (PARTITION BY c.item ORDER BY c.rowid DESC) = 1
            """,
            params=[platform],
        ).to_arrow_table()
        valid = int(
            con.execute("SELECT count(*) FROM checked WHERE _reason IS NULL").fetchall()[0][0]
        )
        task.advance()
        with store.transaction():
            result = store.upsert_items(table)
            duplicates = valid - result.inserted
            store.add_duplicates(duplicates)
            self._log(
                "items",
                platform,
                file,
                fp,
                accepted=result.inserted,
                quarantined=quarantined,
                duplicates=duplicates,
                seconds=round(time.perf_counter() - self._started, 3),
            )
        return result.inserted, duplicates

    def _write_links(
        self,
        con: duckdb.DuckDBPyConnection,
        cmap: validate.ColumnMap,
        platform: None,
        file: str,
        fp: str,
        quarantined: int,
        task: Any,
    ) -> tuple[int, int]:
        store = self.ws.store
        # links files are small: the accounts they name are pseudonymised in Python
        pairs = con.execute(
            """
            SELECT platform_a, account_a FROM checked WHERE _reason IS NULL
            UNION SELECT platform_b, account_b FROM checked WHERE _reason IS NULL
            ORDER BY ALL
            """
        ).fetchall()
        ps = self.ws.pseudonymiser
        con.register(
            "_pseud",
            pa.table(
                {
                    "platform": pa.array([p for p, _ in pairs], pa.string()),
                    "raw": pa.array([r for _, r in pairs], pa.string()),
                    "pseud": pa.array([ps.account(p, r) for p, r in pairs], pa.string()),
                }
            ),
        )
        source = Path(file).name
        table = con.sql(
            """
            SELECT c.platform_a, pa.pseud AS account_a, c.platform_b, pb.pseud AS account_b,
                ? AS source
            FROM checked c
            JOIN _pseud pa ON pa.platform = c.platform_a AND pa.raw = c.account_a
            JOIN _pseud pb ON pb.platform = c.platform_b AND pb.raw = c.account_b
            WHERE c._reason IS NULL
            """,
            params=[source],
        ).to_arrow_table()
        task.advance()
        with store.transaction():
            result = store.insert_known_links(table)
            self._unknown_accounts = link_checks.unknown_accounts(self.ws, table)
            self._log(
                "links",
                None,
                file,
                fp,
                accepted=result.inserted,
                quarantined=quarantined,
                duplicates=result.duplicates,
                seconds=round(time.perf_counter() - self._started, 3),
            )
        return result.inserted, result.duplicates


def suppress_erased(con: duckdb.DuckDBPyConnection, ws: Workspace, platform: str) -> int:
    """Turn the valid rows of ``checked`` whose account was erased (its pseudonym's mark is
    in the store's suppression list) into bad rows with reason ``erased``; their raw row is
    not kept. Returns how many rows that was (0 at no cost when nothing was ever erased)."""
    marks = ws.store.erasure_marks(platform)
    if not marks:
        return 0
    ps = ws.pseudonymiser
    pseud, pseud_params = ps.account_sql(platform, "raw")
    mark, mark_params = ps.erasure_mark_sql(f"({pseud})")
    con.register("_erased_marks", pa.table({"mark": pa.array(marks, pa.string())}))
    try:
        # one mark per distinct account of the file, not per row
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _erased_raw AS
            SELECT raw FROM (
                SELECT DISTINCT account_raw AS raw FROM checked WHERE _reason IS NULL)
            WHERE {mark} IN (SELECT mark FROM _erased_marks)
            """,
            mark_params + pseud_params,
        )
    finally:
        con.unregister("_erased_marks")
    n = con.execute(
        "UPDATE checked SET _field = 'account', _reason = 'erased', _raw = NULL "
        "WHERE _reason IS NULL AND account_raw IN (SELECT raw FROM _erased_raw)"
    ).fetchall()
    con.execute("DROP TABLE _erased_raw")
    return int(n[0][0]) if n else 0


def _reason_counts(reasons: list[str]) -> dict[str, int]:
    """Bad rows per kind of reason (the text before its first colon)."""
    counts: dict[str, int] = {}
    for r in reasons:
        key = r.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts
