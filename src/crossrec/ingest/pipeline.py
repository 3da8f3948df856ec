"""One ingest of one file: stage → validate → quarantine → pseudonymise → dedupe → store.

Ingest is atomic per file: every store write of a file happens in one transaction, so a crash
part-way leaves the store as it was. Quarantine inserts are idempotent per (file fingerprint,
line), so a retried ingest neither loses nor doubles bad rows.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from crossrec import schema
from crossrec.errors import InputError
from crossrec.ingest import validate
from crossrec.ingest.formats import detect, fingerprint
from crossrec.ingest.readers import Staged, quote_ident, stage, staging_connection
from crossrec.progress import NullProgress, ProgressHook

if TYPE_CHECKING:
    from crossrec.workspace import Workspace

_PLATFORM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_platform(name: str) -> str:
    if not _PLATFORM_RE.match(name or ""):
        raise InputError(
            f"platform name {name!r} is invalid",
            hint="use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ingestor:
    """Ingests files into a workspace's store."""

    def __init__(self, ws: Workspace, *, progress: ProgressHook | None = None) -> None:
        self.ws = ws
        self.progress: ProgressHook = progress or NullProgress()
        self.cfg = ws.config.ingest
        self._started = time.perf_counter()

    # -- public ---------------------------------------------------------------------------------
    def events(
        self, platform: str, path: Path, *, columns: dict[str, str], fmt: str = "auto"
    ) -> IngestSummary:
        check_platform(platform)
        return self._run("events", platform, path, columns, fmt, self._write_events)

    def items(
        self, platform: str, path: Path, *, columns: dict[str, str], fmt: str = "auto"
    ) -> IngestSummary:
        check_platform(platform)
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
        fp = fingerprint(path, kind, platform or "")
        spill = Path(tempfile.mkdtemp(prefix="crossrec-staging-"))
        con = staging_connection(self.cfg.memory_limit, spill)
        try:
            staged = stage(con, f)
            task.advance()
            has_line = not staged.needs_line_resolution
            cmap, sql = self._validation(kind, str(path), staged, columns, has_line)
            con.execute(sql)
            task.advance()
            bad = self._bad_rows(con, staged, cmap, kind, platform, str(path), fp)
            accepted, duplicates = write(con, cmap, platform, str(path), fp, bad.num_rows, task)
            task.advance()
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
        task.done()
        reasons: dict[str, int] = {}
        for r in bad.column("reason").to_pylist():
            key = r.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        summary = IngestSummary(
            file=str(path),
            kind=kind,
            platform=platform,
            accepted=accepted,
            quarantined=bad.num_rows,
            duplicates=duplicates,
            seconds=round(time.perf_counter() - started, 3),
            reasons=reasons,
        )
        return summary

    def _validation(
        self, kind: str, file: str, staged: Staged, columns: dict[str, str], has_line: bool
    ) -> tuple[validate.ColumnMap, str]:
        personal = tuple(c for c in self.ws.config.privacy.personal_columns if c in staged.columns)
        if kind == "events":
            cmap = validate.map_columns(
                file,
                staged.columns,
                schema.EVENT_FIELDS,
                schema.REQUIRED_EVENT_FIELDS,
                columns,
                exclude=personal,
            )
            return cmap, validate.events_sql(
                cmap, self.cfg.timestamp_min, self.cfg.timestamp_max, has_line=has_line
            )
        if kind == "items":
            cmap = validate.map_columns(
                file, staged.columns, schema.ITEM_FIELDS, ("item",), columns, exclude=personal
            )
            return cmap, validate.items_sql(cmap, has_line=has_line)
        cmap = validate.map_columns(
            file, staged.columns, schema.LINK_FIELDS, schema.LINK_FIELDS, columns
        )
        return cmap, validate.links_sql(cmap, has_line=has_line)

    def _bad_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        staged: Staged,
        cmap: validate.ColumnMap,
        kind: str,
        platform: str | None,
        file: str,
        fp: str,
    ) -> pa.Table:
        """Parse rejects plus validation failures, written to the quarantine."""
        failed = con.execute(
            f"""
            SELECT c._row, c._line, c._field, c._reason, {validate.raw_json_expr(staged.columns)}
            FROM checked c JOIN raw r ON r.rowid = c._row
            WHERE c._reason IS NOT NULL ORDER BY c._row
            """
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
                "quarantined_at": pa.array([int(now.timestamp() * 1_000_000)] * n, pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            }
        )
        self.ws.quarantine().add(table)
        return table

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
    def _pseudonyms(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        sql: str,
        platform_col: str | None,
        platform: str | None,
    ) -> None:
        """Register table ``name`` (platform, raw, pseud) for the distinct raw ids of ``sql``."""
        rows = con.execute(sql).fetchall()
        ps = self.ws.pseudonymiser
        plats = [str(r[0]) if platform_col else str(platform) for r in rows]
        raws = [r[1] if platform_col else r[0] for r in rows]
        pseud: list[str] = [""] * len(rows)
        for p in sorted(set(plats)):  # the keyed state is set up once per platform
            idx = [i for i, q in enumerate(plats) if q == p]
            for i, value in zip(idx, ps.accounts(p, [raws[i] for i in idx]), strict=True):
                pseud[i] = value
        con.register(
            name,
            pa.table(
                {
                    "platform": pa.array(plats, pa.string()),
                    "raw": pa.array(raws, pa.string()),
                    "pseud": pa.array(pseud, pa.string()),
                }
            ),
        )

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
        self._pseudonyms(
            con,
            "_pseud",
            "SELECT DISTINCT account_raw FROM checked WHERE _reason IS NULL",
            None,
            platform,
        )
        personal = [c for c in self.ws.config.privacy.personal_columns if c in _raw_columns(con)]
        idents = self._identifiers(con, platform, personal)
        first_seq = store.next_seq()
        value_txt = "coalesce(CAST(c.value AS VARCHAR), '')"
        ts_txt = "coalesce(CAST(epoch_us(c.ts) AS VARCHAR), '')"
        con.execute(
            f"""
            CREATE TABLE good AS
            SELECT ? AS platform, p.pseud AS account, c.item, c.event_type, c.value, c.ts,
                coalesce(c.event_id, 'h' || md5(concat_ws(chr(31), ?, p.pseud, c.item,
                    c.event_type, {value_txt}, {ts_txt}))) AS event_id,
                ? + c._row AS seq,
                {validate.attrs_expr(cmap.extras)} AS attrs
            FROM checked c JOIN _pseud p ON c.account_raw = p.raw
            WHERE c._reason IS NULL
            """,
            [platform, platform, first_seq],
        )
        offered, distinct = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM good"
        ).fetchall()[0]
        if distinct < offered:  # repeats within the file: the first occurrence stays
            con.execute(
                "CREATE TABLE good_once AS SELECT * FROM good "
                "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY seq) = 1"
            )
            con.execute("DROP TABLE good")
            con.execute("ALTER TABLE good_once RENAME TO good")
        seen = con.sql(
            "SELECT platform, account, min(ts) AS first_seen, max(ts) AS last_seen "
            "FROM good GROUP BY platform, account"
        ).to_arrow_table()
        reader = con.sql("SELECT * FROM good").to_arrow_reader(self.cfg.batch_rows)
        task.advance()
        with store.transaction():
            inserted = store.insert_events(reader, unique=True, platform=platform).inserted
            duplicates = int(offered) - inserted
            store.add_duplicates(duplicates)
            if idents.num_rows:
                store.insert_identifiers(idents)
            store.upsert_accounts(seen)
            self._log(
                "events",
                platform,
                file,
                fp,
                accepted=inserted,
                quarantined=quarantined,
                duplicates=duplicates,
                seconds=round(time.perf_counter() - self._started, 3),
            )
        return inserted, duplicates

    def _identifiers(
        self, con: duckdb.DuckDBPyConnection, platform: str, personal: list[str]
    ) -> pa.Table:
        ps = self.ws.pseudonymiser
        plats: list[str] = []
        accounts: list[str] = []
        kinds: list[str] = []
        values: list[str] = []
        for col in personal:
            rows = con.execute(
                f"""
                SELECT DISTINCT c.account_raw, nullif(trim(r.{quote_ident(col)}), '')
                FROM checked c JOIN raw r ON r.rowid = c._row
                WHERE c._reason IS NULL AND nullif(trim(r.{quote_ident(col)}), '') IS NOT NULL
                """
            ).fetchall()
            for acc, val in rows:
                plats.append(platform)
                accounts.append(ps.account(platform, acc))
                kinds.append(col)
                values.append(ps.identifier(col, val))
        return pa.table(
            {
                "platform": pa.array(plats, pa.string()),
                "account": pa.array(accounts, pa.string()),
                "kind": pa.array(kinds, pa.string()),
                "value": pa.array(values, pa.string()),
            }
        )

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
            f"""
            SELECT ? AS platform, c.item, c.title, c.text, c.category,
                {validate.attrs_expr(cmap.extras)} AS attrs
            FROM checked c
            WHERE c._reason IS NULL
            QUALIFY row_number() OVER (PARTITION BY c.item ORDER BY c._row DESC) = 1
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
        self._pseudonyms(
            con,
            "_pseud",
            """
            SELECT platform_a, account_a FROM checked WHERE _reason IS NULL
            UNION SELECT platform_b, account_b FROM checked WHERE _reason IS NULL
            """,
            "platform",
            None,
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


def _raw_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("DESCRIBE raw").fetchall()}
