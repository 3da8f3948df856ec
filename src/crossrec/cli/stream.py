"""``consume``: JSON events from a Kafka topic into the store, exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from crossrec.cli.common import JsonOpt, WorkspaceOpt, err, open_workspace, print_json

_LOG_EVERY_S = 1.0  # progress lines when stderr is not a terminal


def _counts(s: Any) -> str:
    return (
        f"{s.messages:,} messages in {s.batches:,} batches: accepted {s.accepted:,}, "
        f"quarantined {s.quarantined:,}, duplicates {s.duplicates:,}"
    )


@contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """Ctrl-C / SIGTERM stop the consumer after its current batch; a second Ctrl-C aborts
    (the batch in progress is rolled back, so nothing is lost either way)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: FrameType | None) -> None:
        err.print("stopping after the current batch (Ctrl-C again to abort it)")
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Reporter:
    """Per-batch progress on stderr: a live line on a terminal, else a line a second."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._last = 0.0
        self._status: Any = None

    def __enter__(self) -> _Reporter:
        if err.is_terminal:
            self._status = err.status(f"consuming {self.topic}: waiting for messages")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)

    def __call__(self, summary: Any, batch: Any) -> None:
        line = f"{self.topic}: {_counts(summary)}"
        if self._status is not None:
            self._status.update(line)
            return
        now = time.monotonic()
        if now - self._last >= _LOG_EVERY_S:
            self._last = now
            err.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def consume(
        brokers: Annotated[
            str, typer.Option("--brokers", help="Kafka bootstrap servers, HOST:PORT[,...].")
        ],
        topic: Annotated[str, typer.Option("--topic", help="Topic to read JSON events from.")],
        workspace: WorkspaceOpt = Path("."),
        group: Annotated[
            str, typer.Option("--group", help="Name the stored offsets are kept under.")
        ] = "crossrec",
        platform_field: Annotated[
            str,
            typer.Option("--platform-field", help="Message field naming the event's platform."),
        ] = "platform",
        batch_size: Annotated[
            int, typer.Option("--batch-size", help="Messages per store transaction.", min=1)
        ] = 1000,
        max_messages: Annotated[
            int | None, typer.Option("--max-messages", help="Stop after this many.", min=0)
        ] = None,
        idle_timeout: Annotated[
            float | None,
            typer.Option("--idle-timeout", help="Stop when nothing arrives for S seconds."),
        ] = None,
        connect_timeout: Annotated[
            float,
            typer.Option("--connect-timeout", help="Seconds to wait for the broker at start."),
        ] = 10.0,
        json_out: JsonOpt = False,
    ) -> None:
        """Consume JSON events from Kafka into the store, exactly once (offsets are stored
        with the events); malformed messages go to the quarantine."""
        from crossrec.store.lock import WriterLock
        from crossrec.stream.consumer import StreamConsumer

        ws = open_workspace(workspace)
        with WriterLock(ws.root, command="crossrec consume"), ws:
            consumer = StreamConsumer(
                ws,
                brokers=brokers,
                topic=topic,
                group=group,
                platform_field=platform_field,
                batch_size=batch_size,
                connect_timeout=connect_timeout,
            )
            with _stop_on_signals(consumer.stop), _Reporter(topic) as report:
                summary = consumer.run(
                    max_messages=max_messages, idle_timeout=idle_timeout, on_batch=report
                )
        rate = summary.messages / summary.seconds if summary.seconds else 0.0
        err.print(
            f"consumed {topic} ({summary.stopped or 'done'}): {_counts(summary)}; "
            f"{summary.seconds:.1f} s, {rate:,.0f} messages/s",
            highlight=False,
        )
        if json_out:
            print_json(summary.as_dict())
