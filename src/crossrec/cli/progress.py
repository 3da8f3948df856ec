"""Rich implementation of :class:`crossrec.progress.ProgressHook`, drawing on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from crossrec.cli.common import err


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._p = progress
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        self._p.advance(self._id, amount)

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        self._p.update(self._id, completed=completed, total=total)

    def done(self) -> None:
        task = self._p.tasks[self._p.task_ids.index(self._id)]
        if task.total is not None:
            self._p.update(self._id, completed=task.total)
        self._p.stop_task(self._id)


class RichProgress:
    def __init__(self, progress: Progress) -> None:
        self._p = progress

    def task(self, description: str, total: float | None = None) -> _RichTask:
        return _RichTask(self._p, self._p.add_task(description, total=total))

    def log(self, message: str) -> None:
        self._p.console.print(message, highlight=False)


@contextmanager
def rich_progress() -> Iterator[RichProgress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        yield RichProgress(progress)
