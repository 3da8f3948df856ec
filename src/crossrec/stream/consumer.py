"""Kafka → store, exactly once.

The consumer reads JSON events from one topic, takes each message's platform from a field of
the message (``platform`` by default) and ingests a batch at a time through
:class:`crossrec.ingest.records.RecordIngestor` (the file-ingest rules). Exactly once comes
from the store, not from Kafka: the next offset of every partition is written to the
``stream_offsets`` table in the same DuckDB transaction as the batch's events, and on start
the consumer ``assign()``\\ s each partition at its stored offset (Kafka's committed offsets
are never read or written). A crash before the commit loses the whole batch and its offsets
together, so the restarted consumer reads it again; after the commit, neither is read again.

Malformed messages (not UTF-8, not JSON, not an object, no valid platform, bad fields) go to
the quarantine as ``kafka:<topic>/<partition>`` with their offset as the line and the raw
payload, once per offset however often a batch is replayed; they never stop the stream.

>>> consumer = StreamConsumer(ws, brokers="127.0.0.1:9092", topic="events")  # doctest: +SKIP
>>> consumer.run(idle_timeout=5).accepted                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from crossrec.errors import CrossrecError, InputError, NotFoundError
from crossrec.ingest import jsonsafe
from crossrec.ingest.pipeline import check_platform
from crossrec.ingest.record_quarantine import Bad, source_fingerprint

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

    from crossrec.workspace import Workspace


class BrokerError(CrossrecError):
    """The stream broker cannot be reached, or it refused the consumer."""

    exit_code = 7


@dataclass
class ConsumeSummary:
    """What a run of the consumer did (running totals while it runs)."""

    topic: str
    group: str
    messages: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    batches: int = 0
    seconds: float = 0.0
    #: Why the run ended: ``max-messages``, ``idle``, ``stopped`` (Ctrl-C / :meth:`stop`).
    stopped: str = ""
    #: ``{partition: next offset}`` as stored after the last batch.
    offsets: dict[int, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchReport:
    """One committed batch: its counts, the ``(platform, pseudonym)`` accounts it touched
    (for an online update of their vectors) and the offsets stored with it."""

    messages: int
    accepted: int
    quarantined: int
    duplicates: int
    accounts: list[tuple[str, str]]
    offsets: dict[int, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


class StreamConsumer:
    """Consumes one Kafka topic into a workspace's store, a batch per transaction.

    Parameters
    ----------
    ws : Workspace
        The workspace written to (the caller holds its writer lock).
    brokers : str
        Bootstrap servers, ``HOST:PORT[,HOST:PORT...]``.
    topic : str
        The topic read; every partition it has at start is assigned.
    group : str
        Name under which offsets are stored in ``stream_offsets`` (and the client's
        ``group.id``; no Kafka group membership or commits are used).
    platform_field : str
        The message field holding the event's platform (removed before ingest).
    batch_size : int
        Messages per batch (one store transaction each).
    connect_timeout : float
        Seconds to wait for the broker's metadata at start; an unreachable broker fails at
        once when the client sees every broker down.
    client_config : dict, optional
        Extra confluent-kafka settings (e.g. security), applied last.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        brokers: str,
        topic: str,
        group: str = "crossrec",
        platform_field: str = "platform",
        batch_size: int = 1000,
        connect_timeout: float = 10.0,
        poll_timeout: float = 0.5,
        client_config: dict[str, Any] | None = None,
    ) -> None:
        for name, value in (("brokers", brokers), ("topic", topic), ("group", group)):
            if not value or not value.strip():
                raise InputError(f"--{name} is empty", hint=f"give the Kafka {name} to read")
        if not platform_field:
            raise InputError("--platform-field is empty", hint="e.g. --platform-field platform")
        if batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, not {batch_size}")
        self.ws = ws
        self.brokers = brokers.strip()
        self.topic = topic
        self.group = group
        self.platform_field = platform_field
        self.batch_size = batch_size
        self.connect_timeout = connect_timeout
        self.poll_timeout = poll_timeout
        self.client_config = dict(client_config or {})
        self._stop = threading.Event()
        self._errors: list[Any] = []
        self._sources: dict[int, tuple[str, str]] = {}
        self._platforms: set[str] = set()  # names already found valid

    def stop(self) -> None:
        """Stop after the batch in progress (safe from a signal handler or another thread)."""
        self._stop.set()

    # -- run ------------------------------------------------------------------------------------
    def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
        on_batch: Callable[[ConsumeSummary, BatchReport], None] | None = None,
    ) -> ConsumeSummary:
        """Consume until ``max_messages`` were read, nothing arrived for ``idle_timeout``
        seconds, or :meth:`stop`; each batch is committed before the next is read.

        Raises
        ------
        BrokerError
            The broker cannot be reached (within ``connect_timeout``) or fails fatally.
        NotFoundError
            The topic does not exist.
        """
        if max_messages is not None and max_messages < 0:
            raise InputError(f"--max-messages must be at least 0, not {max_messages}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise InputError(f"--idle-timeout must be positive, not {idle_timeout}")
        started = time.perf_counter()
        summary = ConsumeSummary(topic=self.topic, group=self.group)
        ingestor = self.ws.record_ingestor
        self.ws.store  # noqa: B018 -- open the store before the broker: its errors come first
        consumer = self._client()
        try:
            partitions = self._partitions(consumer)
            with ingestor.quarantine_held():
                self._loop(consumer, partitions, summary, max_messages, idle_timeout, on_batch)
        finally:
            consumer.close()
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

    def _loop(
        self,
        consumer: Consumer,
        partitions: list[int],
        summary: ConsumeSummary,
        max_messages: int | None,
        idle_timeout: float | None,
        on_batch: Callable[[ConsumeSummary, BatchReport], None] | None,
    ) -> None:
        """Read, ingest and commit batches until a stop condition; updates ``summary``."""
        started = time.perf_counter()
        summary.offsets = self._assign(consumer, partitions)
        poll = min(self.poll_timeout, idle_timeout) if idle_timeout else self.poll_timeout
        last_message = time.monotonic()
        while True:
            if self._stop.is_set():
                summary.stopped = "stopped"
                return
            want = self.batch_size
            if max_messages is not None:
                want = min(want, max_messages - summary.messages)
                if want <= 0:
                    summary.stopped = "max-messages"
                    return
            messages = self._read(consumer, want, poll)
            if not messages:
                if idle_timeout and time.monotonic() - last_message >= idle_timeout:
                    summary.stopped = "idle"
                    return
                continue
            last_message = time.monotonic()
            batch = self._commit(messages)
            summary.messages += batch.messages
            summary.accepted += batch.accepted
            summary.quarantined += batch.quarantined
            summary.duplicates += batch.duplicates
            summary.batches += 1
            summary.offsets.update(batch.offsets)
            for reason, n in batch.reasons.items():
                summary.reasons[reason] = summary.reasons.get(reason, 0) + n
            summary.seconds = round(time.perf_counter() - started, 3)
            if on_batch is not None:
                on_batch(summary, batch)

    def _commit(self, messages: list[Message]) -> BatchReport:
        """Ingest one batch; its events, quarantined messages and offsets commit together."""
        store = self.ws.store
        platforms, records, raws, origins, bad, offsets = self._parse(messages)

        def save() -> None:
            store.save_stream_offsets(self.group, self.topic, offsets)

        # the offsets commit with the events: a replay of this batch adds nothing
        result = self.ws.record_ingestor.ingest_mixed(
            platforms, records, origins=origins, bad=bad, raws=raws, extra=save
        )
        return BatchReport(
            messages=len(messages),
            accepted=result.accepted,
            quarantined=result.quarantined,
            duplicates=result.duplicates,
            accounts=result.accounts,
            offsets=offsets,
            reasons=result.reasons,
        )

    # -- Kafka ----------------------------------------------------------------------------------
    def _client(self) -> Consumer:
        from confluent_kafka import Consumer

        config: dict[str, Any] = {
            "bootstrap.servers": self.brokers,
            "group.id": self.group,
            # offsets live in the store, written with the events: Kafka's are never used
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "error_cb": self._errors.append,
            "logger": _client_logger(),
        }
        config.update(self.client_config)
        try:
            return Consumer(config)
        except Exception as exc:  # KafkaException for a bad setting
            raise InputError(f"Kafka client settings refused: {exc}") from None

    def _partitions(self, consumer: Consumer) -> list[int]:
        """The topic's partitions; fails fast when no broker answers."""
        from confluent_kafka import KafkaError, KafkaException

        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                meta = consumer.list_topics(
                    self.topic, timeout=max(0.05, min(0.25, deadline - time.monotonic()))
                )
                break
            except KafkaException as exc:
                consumer.poll(0)  # serves the error callback: why the broker cannot be reached
                down = [
                    e
                    for e in self._errors
                    if e.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE)
                ]
                if down or time.monotonic() >= deadline:
                    why = _why(self._errors, exc)
                    raise BrokerError(
                        f"cannot reach the Kafka broker at {self.brokers}: {why}",
                        hint="check --brokers and that the broker is running",
                    ) from None
        topic = meta.topics.get(self.topic)
        error = topic.error if topic is not None else None
        if topic is None or (
            error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            raise NotFoundError(
                f"topic {self.topic!r} does not exist on {self.brokers}",
                hint="create it first, or check --topic",
            )
        if error is not None:
            raise BrokerError(f"topic {self.topic!r} cannot be read: {error.str()}")
        if not topic.partitions:
            raise NotFoundError(f"topic {self.topic!r} has no partitions on {self.brokers}")
        return sorted(topic.partitions)

    def _assign(self, consumer: Consumer, partitions: list[int]) -> dict[int, int]:
        """Assign every partition at its stored next offset (the beginning when none)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        stored = self.ws.store.stream_offsets(self.group, self.topic)
        consumer.assign(
            [TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING)) for p in partitions]
        )
        for p in partitions:
            source = f"kafka:{self.topic}/{p}"
            self._sources[p] = (source, source_fingerprint(source))
        return {p: stored[p] for p in partitions if p in stored}

    def _read(self, consumer: Consumer, want: int, timeout: float) -> list[Message]:
        """Up to ``want`` messages; broker errors of single messages are skipped, fatal ones
        raised."""
        from confluent_kafka import KafkaError

        messages = []
        for m in consumer.consume(num_messages=want, timeout=timeout):
            error = m.error()
            if error is None:
                messages.append(m)
            elif error.fatal():
                raise BrokerError(f"the Kafka client failed: {error.str()}")
            elif error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise NotFoundError(f"topic {self.topic!r} disappeared: {error.str()}")
        fatal = [e for e in self._errors if e.fatal()]
        if fatal:
            raise BrokerError(f"the Kafka client failed: {fatal[-1].str()}")
        del self._errors[:]  # transient ones (a broker restarting) are retried by the client
        return messages

    # -- messages -------------------------------------------------------------------------------
    def _parse(
        self, messages: list[Message]
    ) -> tuple[
        list[str], list[Any], list[str], list[tuple[str, str, int]], list[Bad], dict[int, int]
    ]:
        """Split a batch into ingestable records (with their platforms, payloads and origins)
        and quarantined messages; the next offset of each partition."""
        platforms: list[str] = []
        records: list[Any] = []
        raws: list[str] = []
        origins: list[tuple[str, str, int]] = []
        bad: list[Bad] = []
        offsets: dict[int, int] = {}
        key = self.platform_field
        for m in messages:
            partition, offset = int(m.partition() or 0), int(m.offset() or 0)
            offsets[partition] = max(offsets.get(partition, 0), offset + 1)
            source, fp = self._sources[partition]
            value = m.value()
            record, fld, reason = _decode(value)
            platform = None
            if record is not None:
                platform = record.pop(key, None)
                # a name is checked once (a JSON array or object is no name: never cached)
                if type(platform) is not str or platform not in self._platforms:
                    fld, reason = key, _platform_problem(key, platform)
                    if reason is None:
                        self._platforms.add(platform)
            if reason is not None:
                shown = platform if isinstance(platform, str) else None
                bad.append(Bad(source, fp, offset, shown, fld, reason, _raw(value)))
                continue
            platforms.append(str(platform))
            records.append(record)
            raws.append(_raw(value))
            origins.append((source, fp, offset))
        return platforms, records, raws, origins, bad, offsets


def _decode(value: bytes | None) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """``(record, None, None)``, or ``(None, field, reason)`` for a malformed message (the
    bounded decoder of every path: :func:`crossrec.ingest.jsonsafe.decode`)."""
    if not value:
        return None, None, "empty message"
    try:
        obj = jsonsafe.decode(value)
    except jsonsafe.JsonRejected as exc:
        return None, exc.field, exc.reason
    if not isinstance(obj, dict):
        return None, None, "not a JSON object"
    return obj, None, None


def _platform_problem(key: str, platform: Any) -> str | None:
    if platform is None or (isinstance(platform, str) and not platform.strip()):
        return f"missing {key}"
    if not isinstance(platform, str):
        return f"wrong type: {key} must be a string"
    try:
        check_platform(platform)
    except InputError as exc:
        return f"invalid {key}: {platform[:60]!r} ({exc.hint})"
    return None


def _raw(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")


def _why(errors: list[Any], exc: Exception) -> str:
    """The most telling reason a broker could not be reached."""
    from confluent_kafka import KafkaError

    for e in reversed(errors):
        if e.code() in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
            return str(e.str())
    return str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)


def _client_logger() -> logging.Logger:
    """The logger librdkafka writes to: quiet unless the application configures it (the
    broker's reconnect chatter must not reach stderr as raw log lines)."""
    logger = logging.getLogger("crossrec.stream.kafka")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger
