"""Ingest benchmark: crossrec's event ingest against DuckDB's own loader, on the same files.

Generates N synthetic events (seeded, hash-based: no ``random()``) as CSV and as Parquet, then
for each format measures, each step in its own spawned process so that its peak RSS is its own:

1. the reference: DuckDB ``CREATE TABLE t AS SELECT * FROM read_csv/read_parquet(file)`` into a
   fresh database file;
2. ``Workspace.init`` + ``ingest_events`` + close into a fresh workspace;
3. a re-ingest of the same file into that workspace (must add 0 rows; every row a duplicate).

It prints rows, wall and CPU seconds (CPU: every thread of the process; it holds up on a busy
machine), events/s, peak RSS, the ratio crossrec events/s ÷ DuckDB events/s (target >= 0.5),
peak RSS against the file size, and where crossrec's time goes (each SQL statement on the
staging and store connections, and the Python steps around them, timed by wrapping them from
here; nothing in ``crossrec`` is changed).

    .venv/bin/python bench/ingest.py --events 1000000 --json
    .venv/bin/python bench/ingest.py --events 10000000 --bad-fraction 0.001 --json

``--json`` writes the figures to ``bench/out/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

OUT_JSON = Path(__file__).resolve().parent / "out" / "ingest.json"
PLATFORM = "shop"
COLUMNS = {"account": "user_id", "item": "item_id", "timestamp": "ts"}
_U53 = 9007199254740992.0  # 2**53: a hash's top 53 bits as a uniform double in [0, 1)


# -- data ---------------------------------------------------------------------------------------
def _u(k: int, seed: int) -> str:
    """SQL for a uniform [0, 1) draw number ``k`` of row ``i``: deterministic, no random()."""
    return f"(CAST(hash(i, {k}, {seed}) >> 11 AS DOUBLE) / {_U53})"


def events_sql(n: int, accounts: int, items: int, seed: int, bad_fraction: float) -> str:
    """One SELECT over ``range(n)`` giving the events table (plus a ``_bad`` flag column).

    Accounts are uniform (each of ``accounts`` ids gets ~n/accounts events); items follow a
    power law (``floor(items * u**3)``: the top 1% of items get ~22% of events); event types
    are view/like/purchase at 80/15/5%; values are seconds watched (view), NULL (like) or a
    price (purchase); timestamps are epoch seconds rising through 2023 with an hour of jitter.
    A ``bad_fraction`` of rows break one rule each (no account, no item, a NaN value, or a
    timestamp in 2286) so that the quarantine path is timed too.
    """
    u = {k: _u(k, seed) for k in range(1, 8)}
    bad = f"{u[6]} < {bad_fraction}" if bad_fraction > 0 else "false"
    kind = f"CAST(floor({u[7]} * 4) AS INTEGER)"
    return f"""
    WITH g AS (
        SELECT i,
            'u' || CAST(CAST(floor({u[1]} * {accounts}) AS BIGINT) AS VARCHAR) AS user_id,
            'p' || CAST(CAST(floor({items} * pow({u[2]}, 3)) AS BIGINT) AS VARCHAR) AS item_id,
            CASE WHEN {u[3]} < 0.80 THEN 'view' WHEN {u[3]} < 0.95 THEN 'like'
                 ELSE 'purchase' END AS event,
            {u[4]} AS uv,
            1672531200 + CAST(floor(i * (31536000.0 / {n}) + {u[5]} * 3600) AS BIGINT) AS ts,
            {bad} AS _bad, {kind} AS _kind
        FROM range({n}) r(i)
    )
    SELECT
        CASE WHEN _bad AND _kind = 0 THEN NULL ELSE user_id END AS user_id,
        CASE WHEN _bad AND _kind = 1 THEN NULL ELSE item_id END AS item_id,
        event,
        CASE WHEN _bad AND _kind = 2 THEN CAST('NaN' AS DOUBLE)
             WHEN event = 'view' THEN round(uv * 300, 1)
             WHEN event = 'purchase' THEN round(1 + uv * 99, 2) END AS value,
        CASE WHEN _bad AND _kind = 3 THEN CAST(9999999999999 AS BIGINT) ELSE ts END AS ts,
        _bad
    FROM g
    """


def generate(
    root: Path, n: int, accounts: int, items: int, seed: int, bad_fraction: float
) -> dict[str, Any]:
    """Write ``events.csv`` and ``events.parquet`` under ``root``; returns paths and counts."""
    started = time.perf_counter()
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        con.execute(f"CREATE VIEW ev AS {events_sql(n, accounts, items, seed, bad_fraction)}")
        cols = "user_id, item_id, event, value, ts"
        csv_path, pq_path = root / "events.csv", root / "events.parquet"
        con.execute(f"COPY (SELECT {cols} FROM ev) TO '{csv_path}' (HEADER, DELIMITER ',')")
        con.execute(f"COPY (SELECT {cols} FROM ev) TO '{pq_path}' (FORMAT parquet)")
        row = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE _bad), count(DISTINCT user_id), "
            "count(DISTINCT item_id) FROM ev"
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise RuntimeError("the generated events could not be counted")
    return {
        "csv": csv_path,
        "parquet": pq_path,
        "rows": int(row[0]),
        "bad_rows": int(row[1]),
        "distinct_accounts": int(row[2]),
        "distinct_items": int(row[3]),
        "seconds": round(time.perf_counter() - started, 2),
    }


# -- memory -------------------------------------------------------------------------------------
def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` field in MiB (Linux). VmHWM is the peak RSS of this process
    image only, unlike ``ru_maxrss``, which can carry the parent's size across fork+exec."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) / 1024 if m else None


def _peak_rss_mb() -> float:
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return round(hwm, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- phase timing (wraps crossrec from outside) -------------------------------------------------
def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds; CPU counts every thread of this process, so it holds up on a busy
    machine where wall time is mostly waiting for a core."""
    return time.perf_counter(), time.process_time()


def _charge(entry: list[Any], t0: tuple[float, float]) -> None:
    wall, cpu = _clock()
    entry[2] += wall - t0[0]
    entry[3] += cpu - t0[1]


class PhaseLog:
    """Nested timed spans ``[depth, label, wall s, cpu s, peak RSS MiB at its end]`` in start
    order: the span where the peak jumps is the one that holds the memory."""

    def __init__(self) -> None:
        self.spans: list[list[Any]] = []
        self._depth = 0

    @contextmanager
    def span(self, label: str) -> Iterator[None]:
        entry: list[Any] = [self._depth, label, 0.0, 0.0, None]
        self.spans.append(entry)
        self._depth += 1
        t0 = _clock()
        try:
            yield
        finally:
            _charge(entry, t0)
            entry[4] = _status_mb("VmHWM")
            self._depth -= 1


def _sql_label(sql: str) -> str:
    text = " ".join(sql.split())
    for pattern, label in _SQL_LABELS:
        if re.search(pattern, text, re.IGNORECASE):
            return label
    return text[:70]


# Labels for the statements of crossrec's ingest; an unknown statement shows its first words.
_SQL_LABELS: list[tuple[str, str]] = [
    (r"^CREATE TABLE checked AS .*read_csv", "read_csv + validate into checked (one pass)"),
    (r"^CREATE TABLE checked AS .*read_parquet", "read_parquet + validate into checked (one pass)"),
    (r"^CREATE TABLE checked", "validate: raw -> checked"),
    (r"^DESCRIBE SELECT", "parquet: describe columns"),
    (r"FROM csv_rejects", "stage: read CSV rejects"),
    (r"FROM checked WHERE _reason IS NOT NULL ORDER BY rowid", "quarantine: bad rows"),
    (r"^CREATE TABLE _accounts", "accounts: distinct, first/last seen, HMAC pseudonyms"),
    (r"sum\(n\), 0\) FROM _accounts", "accounts: valid rows"),
    (r"lag\(h\) OVER", "repeats: sorted identity hashes"),
    (r"^INSERT INTO _repeats", "repeats: exact identities"),
    (r"^CREATE TABLE _repeats", "repeats: table"),
    (r"^SELECT \? AS platform, a\.pseud", "good rows: join pseudonyms, stream out"),
    (r"^SELECT \? AS platform, pseud AS account", "accounts: first/last seen rows"),
    (r"^CREATE TEMP TABLE _incoming", "store: _incoming <- staged stream"),
    (r"^INSERT INTO events .*NOT EXISTS", "store: dedupe INSERT INTO events (with keys)"),
    (r"^INSERT INTO events", "store: append INSERT INTO events (with keys)"),
    (r"^SELECT 1 FROM events WHERE platform", "store: platform has events?"),
    (r"^INSERT INTO accounts", "store: accounts first/last seen"),
    (r"^SELECT coalesce\(max\(seq\)", "store: next_seq"),
    (r"FROM ingest_log", "store: read ingest_log"),
    (r"^COMMIT", "store: COMMIT"),
    (r"^UPDATE meta SET value", "store: add to the duplicates counter"),
    (r"^INSERT INTO ingest_log", "store: INSERT INTO ingest_log"),
]


class TimedConnection:
    """A DuckDB connection whose statements are timed into a :class:`PhaseLog`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, name: str, log: PhaseLog) -> None:
        self._con, self._name, self._log = con, name, log
        self._pending: dict[str, list[Any]] = {}

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        with self._log.span(f"[{self._name}] {_sql_label(sql)}"):
            entry = self._log.spans[-1]
            for name in [n for n in self._pending if n in sql]:
                pulls = self._pending.pop(name)  # a registered stream read by this statement
                pulls[0] = self._log._depth
                self._log.spans.append(pulls)
            result = self._con.execute(sql, *args, **kwargs)
        return _TimedResult(result, entry)

    def sql(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        """A lazy relation: its time is charged when it is fetched."""
        with self._log.span(f"[{self._name}] {_sql_label(sql)}"):
            entry = self._log.spans[-1]
            rel = self._con.sql(sql, *args, **kwargs)
        return _TimedResult(rel, entry)

    def register(self, name: str, obj: Any) -> Any:
        if isinstance(obj, pa.RecordBatchReader):
            obj = self._timed_reader(name, obj)
        return self._con.register(name, obj)

    def close(self) -> None:
        with self._log.span(f"[{self._name}] close (checkpoint)"):
            self._con.close()

    def _timed_reader(self, name: str, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        """Time the pulls of a batch stream: the producing query's share of the copy."""
        entry: list[Any] = [0, f"pulling batches of {name} from the staging database", 0, 0, None]
        self._pending[name] = entry

        def batches() -> Iterator[pa.RecordBatch]:
            while True:
                t0 = _clock()
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                finally:
                    _charge(entry, t0)
                yield batch

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._con, attr)


class _TimedResult:
    """A result or relation: a query may stream, so its fetches count to its statement."""

    def __init__(self, result: Any, entry: list[Any]) -> None:
        self._result, self._entry = result, entry

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._result, attr)
        if not (attr.startswith("fetch") or attr.startswith("to_arrow_table") or attr == "pl"):
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = _clock()
            try:
                return value(*args, **kwargs)
            finally:
                _charge(self._entry, t0)

        return timed


def _instrument(log: PhaseLog) -> Callable[[Any], None]:
    """Wrap the ingest pipeline's steps; returns a function that instruments a workspace."""
    from crossrec.ingest import events, pipeline
    from crossrec.ingest.quarantine import Quarantine

    real_conn = pipeline.staging_connection

    def staging_connection(*args: Any, **kwargs: Any) -> Any:
        with log.span("staging connection"):
            return TimedConnection(real_conn(*args, **kwargs), "staging", log)

    pipeline.staging_connection = staging_connection

    def timed(owner: Any, name: str, label: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with log.span(label):
                return real(*args, **kwargs)

        setattr(owner, name, wrapper)

    timed(pipeline, "detect", "detect format")
    timed(pipeline, "fingerprint", "fingerprint (blake2b of the file)")
    timed(pipeline, "stage", "read + validate (stage)")
    timed(pipeline.Ingestor, "_already_ingested", "re-ingest check (ingest_log)")
    timed(pipeline.Ingestor, "_bad_rows", "quarantine (fetch, resolve lines, write)")
    timed(pipeline.Ingestor, "_log", "ingest log")
    timed(pipeline.Ingestor, "_write_events", "write events")
    timed(events, "pseudonymise_accounts", "accounts + pseudonyms (DuckDB HMAC)")
    timed(events, "mark_repeats", "repeats within the file")
    timed(events, "identifiers", "personal identifiers")
    timed(events, "accounts_seen", "accounts first/last seen (fetch)")
    timed(Quarantine, "add", "quarantine.duckdb: open, INSERT OR IGNORE, close")

    def on_workspace(ws: Any) -> None:
        ws.store.con = TimedConnection(ws.store.con, "store", log)

    return on_workspace


# -- measured steps (each runs in a fresh spawned process) --------------------------------------
def _step_duckdb(path: str, fmt: str, db: str, memory_limit: str | None) -> dict[str, Any]:
    base = _status_mb("VmRSS")
    t0 = _clock()
    con = duckdb.connect(db)
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}(?)", [path])
    row = con.execute("SELECT count(*) FROM t").fetchone()
    con.close()
    wall, cpu = _clock()
    return {
        "rows": int(row[0]) if row else 0,
        "seconds": round(wall - t0[0], 3),
        "cpu_seconds": round(cpu - t0[1], 3),
        "base_rss_mb": base,
    }


def _step_crossrec(
    path: str, fmt: str, ws_dir: str, memory_limit: str | None, phases: bool
) -> dict[str, Any]:
    os.chdir(Path(ws_dir).parent)  # DuckDB spills an in-memory database to ./.tmp
    from crossrec.workspace import Workspace

    log = PhaseLog()
    on_workspace = _instrument(log) if phases else None
    base = _status_mb("VmRSS")
    t0 = _clock()
    with log.span("Workspace.init"):
        ws = Workspace.init(ws_dir)
    if memory_limit:
        _set_memory_limit(ws, memory_limit)
    before = ws.store.count("events")
    if on_workspace is not None:
        on_workspace(ws)
    with log.span("ingest_events"):
        [summary] = ws.ingest_events(PLATFORM, Path(path), columns=COLUMNS, fmt=fmt)
    ws.close()
    wall, cpu = _clock()
    ws = Workspace(ws_dir)
    after = ws.store.count("events")
    ws.close()
    return {
        "rows": summary.accepted + summary.quarantined + summary.duplicates,
        "seconds": round(wall - t0[0], 3),
        "cpu_seconds": round(cpu - t0[1], 3),
        "base_rss_mb": base,
        "accepted": summary.accepted,
        "quarantined": summary.quarantined,
        "duplicates": summary.duplicates,
        "reasons": summary.reasons,
        "events_added": after - before,
        "events_in_store": after,
        "phases": [[d, label, round(w, 3), round(c, 3), hwm] for d, label, w, c, hwm in log.spans]
        if phases
        else [],
    }


def _set_memory_limit(ws: Any, limit: str) -> None:
    """Set ``[ingest] memory_limit`` in the workspace's crossrec.toml."""
    from crossrec.config import CONFIG_FILE, Config

    cfg_path = ws.root / CONFIG_FILE
    text, n = re.subn(
        r'^memory_limit = ".*"$', f'memory_limit = "{limit}"', cfg_path.read_text(), flags=re.M
    )
    if n != 1:
        raise SystemExit(f"cannot set memory_limit in {cfg_path}")
    cfg_path.write_text(text)
    ws.config = Config.load(cfg_path)


def _call(job: tuple[Callable[..., dict[str, Any]], dict[str, Any], str]) -> dict[str, Any]:
    func, kwargs, output_path = job
    # DuckDB draws progress bars; keep them out of the report (errors still come back)
    with open(output_path, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
    out = func(**kwargs)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def measure(func: Callable[..., dict[str, Any]], output: Path, **kwargs: Any) -> dict[str, Any]:
    """Run ``func(**kwargs)`` in a fresh spawned process; its peak RSS is its own."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_call, ((func, kwargs, str(output)),))


# -- report -------------------------------------------------------------------------------------
def _rates(r: dict[str, Any], file_mb: float) -> None:
    r["events_per_s"] = round(r["rows"] / r["seconds"]) if r["seconds"] else 0
    r["events_per_cpu_s"] = round(r["rows"] / r["cpu_seconds"]) if r["cpu_seconds"] else 0
    r["peak_rss_over_file"] = round(r["peak_rss_mb"] / file_mb, 2)


def _row(fmt: str, step: str, r: dict[str, Any]) -> list[str]:
    return [
        fmt,
        step,
        f"{r['rows']:,}",
        f"{r['seconds']:.2f}",
        f"{r['events_per_s']:,}",
        f"{r['cpu_seconds']:.2f}",
        f"{r['events_per_cpu_s']:,}",
        f"{r['peak_rss_mb']:,.0f}",
        f"{r['peak_rss_over_file']:.1f}",
    ]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _phase_table(r: dict[str, Any]) -> str:
    wall, cpu = r["seconds"], r["cpu_seconds"]
    rows = [
        [
            "  " * depth + label,
            f"{w:.2f}",
            f"{100 * w / wall:.0f}%" if wall else "-",
            f"{c:.2f}",
            f"{100 * c / cpu:.0f}%" if cpu else "-",
            "" if hwm is None else f"{hwm:,.0f}",
        ]
        for depth, label, w, c, hwm in r["phases"]
        if w >= 0.005 or depth == 0
    ]
    return _table(rows, ["phase", "wall s", "share", "cpu s", "share", "peak RSS MiB"])


def _ratios(res: dict[str, Any], key: str) -> dict[str, float]:
    ref, ours = res["duckdb"], res[key]
    return {
        "wall": round(ours["events_per_s"] / ref["events_per_s"], 3),
        "cpu": round(ours["events_per_cpu_s"] / ref["events_per_cpu_s"], 3),
    }


def run_format(fmt: str, path: Path, scratch: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Reference, ingest and re-ingest of one file, each in its own process."""
    log = scratch / "steps.log"
    file_mb = path.stat().st_size / 2**20
    print(f"{fmt}: duckdb ...", flush=True)
    db = scratch / f"ref_{fmt}.duckdb"
    res = {
        "duckdb": measure(
            _step_duckdb, log, path=str(path), fmt=fmt, db=str(db), memory_limit=args.memory_limit
        )
    }
    db.unlink(missing_ok=True)
    kw = {
        "path": str(path),
        "fmt": fmt,
        "ws_dir": str(scratch / f"ws_{fmt}"),
        "memory_limit": args.memory_limit,
        "phases": not args.no_phases,
    }
    steps = ["crossrec"] if args.no_reingest else ["crossrec", "reingest"]
    for key in steps:
        print(f"{fmt}: {key} ...", flush=True)
        res[key] = measure(_step_crossrec, log, **kw)
    for key in ["duckdb", *steps]:
        _rates(res[key], file_mb)
    for key in steps:
        res[f"ratio_{key}"] = _ratios(res, key)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--accounts", type=int, help="distinct accounts (default: events / 10)")
    ap.add_argument("--items", type=int, help="distinct items (default: events / 50)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bad-fraction", type=float, default=0.0)
    ap.add_argument("--formats", default="csv,parquet", help="comma-separated: csv, parquet")
    ap.add_argument("--dir", type=Path, help="scratch directory (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--no-reingest", action="store_true")
    ap.add_argument("--no-phases", action="store_true", help="don't time crossrec's phases")
    ap.add_argument("--memory-limit", help="the reference's and [ingest] memory_limit, e.g. 1GB")
    ap.add_argument("--json", action="store_true", help=f"write {OUT_JSON}")
    args = ap.parse_args(argv)
    args.accounts = args.accounts or max(1, args.events // 10)
    args.items = args.items or max(1, args.events // 50)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not set(formats) <= {"csv", "parquet"} or not 0 <= args.bad_fraction < 1:
        ap.error("--formats takes csv and/or parquet; --bad-fraction is in [0, 1)")

    scratch = args.dir or Path(tempfile.mkdtemp(prefix="crossrec-bench-ingest-"))
    scratch.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": " ".join(["bench/ingest.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        },
        "config": {k: v for k, v in vars(args).items() if k not in ("dir", "json")},
    }
    try:
        print(f"generating {args.events:,} events in {scratch} ...", flush=True)
        data = generate(
            scratch, args.events, args.accounts, args.items, args.seed, args.bad_fraction
        )
        sizes = {f: data[f].stat().st_size / 2**20 for f in ("csv", "parquet")}
        report["data"] = {
            **{k: v for k, v in data.items() if k not in ("csv", "parquet")},
            "file_mb": {f: round(s, 1) for f, s in sizes.items()},
        }
        print(
            f"  {data['rows']:,} rows ({data['bad_rows']:,} bad), "
            f"{data['distinct_accounts']:,} accounts, {data['distinct_items']:,} items; "
            f"csv {sizes['csv']:.0f} MiB, parquet {sizes['parquet']:.0f} MiB; "
            f"{data['seconds']:.1f}s",
            flush=True,
        )
        report["results"] = {fmt: run_format(fmt, data[fmt], scratch, args) for fmt in formats}
        report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        _print_report(report)
        if args.json:
            OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
            OUT_JSON.write_text(json.dumps(report, indent=2) + "\n")
            print(f"\nwrote {OUT_JSON}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


_STEP_NAMES = {"crossrec": "crossrec ingest", "reingest": "crossrec re-ingest"}


def _print_report(report: dict[str, Any]) -> None:
    data, sizes = report["data"], report["data"]["file_mb"]
    rows = []
    for fmt, res in report["results"].items():
        ref_name = "duckdb read_csv" if fmt == "csv" else "duckdb read_parquet"
        rows.append(_row(fmt, ref_name, res["duckdb"]))
        rows += [_row(fmt, name, res[k]) for k, name in _STEP_NAMES.items() if k in res]
    header = [
        "format",
        "step",
        "rows",
        "wall s",
        "events/s",
        "cpu s",
        "events/cpu-s",
        "peak RSS MiB",
        "RSS/file",
    ]
    print()
    print(_table(rows, header))
    print()
    for fmt, res in report["results"].items():
        first, ratio = res["crossrec"], res["ratio_crossrec"]
        print(
            f"{fmt}: ratio crossrec/duckdb = {ratio['wall']:.2f} wall, {ratio['cpu']:.2f} cpu "
            f"(target >= 0.5); accepted {first['accepted']:,}, quarantined "
            f"{first['quarantined']:,} (expected {data['bad_rows']:,}) {first['reasons']}"
        )
        if "reingest" in res:
            again, ratio = res["reingest"], res["ratio_reingest"]
            print(
                f"{fmt}: re-ingest added {again['events_added']:,} rows, counted "
                f"{again['duplicates']:,} duplicates, quarantined {again['quarantined']:,}; "
                f"ratio {ratio['wall']:.2f} wall, {ratio['cpu']:.2f} cpu"
            )
        print(
            f"{fmt}: peak RSS {first['peak_rss_mb']:,.0f} MiB (process base "
            f"{first['base_rss_mb'] or 0:,.0f} MiB) for a {sizes[fmt]:,.1f} MiB file"
        )
    for fmt, res in report["results"].items():
        for key, name in _STEP_NAMES.items():
            if key in res and res[key]["phases"]:
                print(f"\n{fmt} {name}: where the time goes")
                print(_phase_table(res[key]))
    m = report["machine"]
    print(f"\nload average {m['loadavg_start']} -> {m['loadavg_end']} on {m['cpus']} CPUs")


if __name__ == "__main__":
    sys.exit(main())
