"""Progress reporting that long jobs (ingest, train, link) call without knowing the UI.

The library reports through a :class:`ProgressHook`; the CLI passes a Rich implementation that
draws on stderr, tests and the HTTP layer pass nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressHook(Protocol):
    def task(self, description: str, total: float | None = None) -> TaskHandle: ...

    def log(self, message: str) -> None: ...


class TaskHandle(Protocol):
    def advance(self, amount: float = 1) -> None: ...

    def update(self, *, completed: float | None = None, total: float | None = None) -> None: ...

    def done(self) -> None: ...


class _NullTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        pass

    def done(self) -> None:
        pass


class NullProgress:
    """Reports nothing."""

    def task(self, description: str, total: float | None = None) -> TaskHandle:
        return _NullTask()

    def log(self, message: str) -> None:
        pass


@contextmanager
def step(progress: ProgressHook | None, description: str) -> Iterator[None]:
    """A one-step task: shown while the block runs, completed when it ends."""
    handle = (progress or NullProgress()).task(description, total=1)
    try:
        yield
    finally:
        handle.update(completed=1)
        handle.done()
