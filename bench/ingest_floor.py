"""What each part of an events ingest costs, against DuckDB loading the same file.

``bench/ingest.py`` times crossrec's ingest as it runs. This script runs the same parts one at a
time on the same generated file (crossrec's own functions, in the same order), and beside the
costly ones a variant without what that part is there for, so that the price of each term of
the ingest contract is measured in the same run as the reference:

* reference: DuckDB ``CREATE TABLE t AS SELECT * FROM read_csv/read_parquet(file)``;
* read + validate into ``checked`` (crossrec's one statement);
* accounts: distinct raw ids with first/last seen and keyed HMAC-SHA256 pseudonyms; variant:
  the same aggregate without the pseudonyms;
* repeats within the file (sorted 64-bit identity hashes);
* good rows joined to their pseudonyms and exported to Arrow (the staging side of the append);
* the store's append of those rows with their 128-bit event keys (``Store.insert_events``);
  variants: the same rows appended with a constant key, and the keys computed alone;
* the file's accounts written into ``accounts`` (its primary key serves the point lookups of
  the HTTP API); variant: the same rows into a copy of the table without the key.

    .venv/bin/python bench/ingest_floor.py --events 10000000 --json

Figures are CPU seconds of this process (every thread) and wall seconds; ``--json`` writes
``bench/out/ingest_floor.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as bench_ingest  # the generator of bench/ingest.py
from crossrec import schema
from crossrec.ingest import events as event_writer
from crossrec.ingest.formats import detect
from crossrec.ingest.pipeline import Ingestor
from crossrec.ingest.readers import stage, staging_connection
from crossrec.store import event_keys
from crossrec.workspace import Workspace

OUT_JSON = Path(__file__).resolve().parent / "out" / "ingest_floor.json"


class Parts:
    """Timed parts in order: ``(label, kind, wall s, CPU s)``; ``kind`` is ``part`` (what the
    ingest runs), ``variant`` (a counterfactual) or ``reference``."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, float]] = []

    @contextmanager
    def time(self, label: str, kind: str = "part") -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.add(label, kind, time.perf_counter() - wall, time.process_time() - cpu)

    def add(self, label: str, kind: str, wall: float, cpu: float) -> None:
        self.rows.append((label, kind, wall, cpu))
        print(f"  {label:<62} {wall:7.2f} wall {cpu:7.2f} cpu", file=sys.stderr)

    def cpu(self, label: str) -> float:
        return next(r[3] for r in self.rows if r[0] == label)


def reference(parts: Parts, path: Path, fmt: str, scratch: Path) -> None:
    """bench/ingest.py's reference step, run in this process."""
    r = bench_ingest._step_duckdb(str(path), fmt, str(scratch / "reference.duckdb"), None)
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    parts.add(f"DuckDB {reader} into a table", "reference", r["seconds"], r["cpu_seconds"])


def crossrec_parts(parts: Parts, path: Path, scratch: Path, memory_limit: str) -> None:
    ws = Workspace.init(scratch / "ws")
    store, ps = ws.store, ws.pseudonymiser
    ingestor = Ingestor(ws)
    spill = scratch / "spill"
    spill.mkdir()
    con = staging_connection(memory_limit, spill)
    columns = bench_ingest.COLUMNS
    platform = bench_ingest.PLATFORM
    with parts.time("read + validate into checked"):
        stage(
            con,
            detect(path, "auto"),
            lambda s: ingestor._validation("events", str(path), s, columns),
        )
    with parts.time("accounts: aggregate without pseudonyms", "variant"):
        con.execute(
            "SELECT count(*) FROM (SELECT account_raw, min(ts), max(ts), count(*) FROM checked "
            "WHERE _reason IS NULL GROUP BY account_raw)"
        ).fetchall()
    with parts.time("accounts: aggregate + HMAC-SHA256 pseudonyms"):
        valid = event_writer.pseudonymise_accounts(con, ps, platform)
    with parts.time("repeats within the file"):
        repeats = event_writer.mark_repeats(con, valid)
    first_seq = store.next_seq()
    with parts.time("good rows joined to pseudonyms, to Arrow"):
        rows = event_writer.stream_events(con, platform, first_seq, 1_000_000, repeats).read_all()
    store.con.register("_rows", rows)
    with parts.time("event keys alone (128-bit md5 of the fields)", "variant"):
        store.con.execute(f"SELECT max({event_keys.key_sql('s')}) FROM _rows s").fetchall()
    with parts.time("append with a constant key", "variant"):
        store.con.execute(dataclasses.replace(schema.EVENTS, name="events_nokey").ddl())
        store.con.execute("INSERT INTO events_nokey SELECT *, 0 FROM _rows")
        store.con.execute("CHECKPOINT")
    store.con.execute("DROP TABLE events_nokey")
    store.con.unregister("_rows")
    with parts.time("store append with event keys, COMMIT"):
        with store.transaction():
            store.insert_events(
                rows.to_reader(max_chunksize=1_000_000), unique=True, platform=platform
            )
        store.con.execute("CHECKPOINT")
    del rows
    seen = event_writer.accounts_seen(con, platform)
    nokey = dataclasses.replace(schema.ACCOUNTS, name="accounts_nokey", primary_key=())
    store.con.execute(nokey.ddl())
    store.con.register("_seen", seen)
    with (
        parts.time("accounts into a table without a primary key", "variant"),
        store.transaction(),
    ):
        store.con.execute(
            "INSERT INTO accounts_nokey (platform, account, first_seen, last_seen) "
            "SELECT * FROM _seen s WHERE NOT EXISTS (SELECT 1 FROM accounts_nokey a "
            "WHERE a.platform = s.platform AND a.account = s.account)"
        )
    store.con.unregister("_seen")
    with parts.time("accounts upsert (primary key), COMMIT"):
        store.upsert_accounts(seen)
    con.close()
    ws.close()


def report(parts: Parts) -> dict[str, Any]:
    ref = next(r for r in parts.rows if r[1] == "reference")
    done = [r for r in parts.rows if r[1] == "part"]
    total = sum(r[3] for r in done)
    budget = 2 * ref[3]
    print(f"\n{'part':<62} {'cpu s':>7} {'wall s':>7} {'x ref cpu':>9}")
    for label, kind, wall, cpu in parts.rows:
        name = label if kind == "part" else f"({kind}) {label}"
        print(f"{name:<62} {cpu:7.2f} {wall:7.2f} {cpu / ref[3]:9.2f}")
    key_cpu = parts.cpu("store append with event keys, COMMIT") - parts.cpu(
        "append with a constant key"
    )
    hmac_cpu = parts.cpu("accounts: aggregate + HMAC-SHA256 pseudonyms") - parts.cpu(
        "accounts: aggregate without pseudonyms"
    )
    pk_cpu = parts.cpu("accounts upsert (primary key), COMMIT") - parts.cpu(
        "accounts into a table without a primary key"
    )
    print(
        f"\nparts: {total:.2f} CPU s = {total / ref[3]:.2f}x the reference "
        f"(ratio {ref[3] / total:.2f}; target >= 0.5 means at most {budget:.2f} CPU s)"
    )
    print(
        f"price of: event keys {key_cpu:.2f}, HMAC pseudonyms {hmac_cpu:.2f}, "
        f"accounts primary key {pk_cpu:.2f} CPU s; without all three: "
        f"{total - key_cpu - hmac_cpu - pk_cpu:.2f} CPU s "
        f"(ratio {ref[3] / (total - key_cpu - hmac_cpu - pk_cpu):.2f})"
    )
    return {
        "reference_cpu_s": round(ref[3], 2),
        "parts_cpu_s": round(total, 2),
        "ratio_cpu": round(ref[3] / total, 3),
        "price_cpu_s": {
            "event_keys": round(key_cpu, 2),
            "hmac_pseudonyms": round(hmac_cpu, 2),
            "accounts_primary_key": round(pk_cpu, 2),
        },
        "rows": [
            {"part": label, "kind": kind, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
            for label, kind, wall, cpu in parts.rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bad-fraction", type=float, default=0.001)
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ap.add_argument("--memory-limit", default="4GB", help="the staging database's limit")
    ap.add_argument("--json", action="store_true", help=f"write {OUT_JSON}")
    args = ap.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="crossrec-bench-floor-"))
    try:
        print(f"generating {args.events:,} events ...", file=sys.stderr)
        data = bench_ingest.generate(
            scratch, args.events, args.events // 10, args.events // 50, args.seed, args.bad_fraction
        )
        path = data[args.format]
        parts = Parts()
        reference(parts, path, args.format, scratch)
        crossrec_parts(parts, path, scratch, args.memory_limit)
        out = {"events": args.events, "format": args.format, **report(parts)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
