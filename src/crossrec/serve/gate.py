"""A gate between store reads and the rare operations that replace the store under them.

Reads pass the gate together and never wait on one another or on ordinary writes (those run
on the workspace's own connection while reads use cursors). Erasure is different: it closes
the store connection, with every cursor made from it, and replaces the database file. It
holds the gate exclusively: it waits for the reads in flight, and new reads wait for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadGate:
    """Many readers at once, or one exclusive holder (who goes first once waiting).

    >>> gate = ReadGate()
    >>> with gate.read():
    ...     pass
    >>> with gate.exclusive():
    ...     pass
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._exclusive = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True while an exclusive holder has the gate or waits for it."""
        return self._exclusive

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True  # from here new readers wait
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class GuardedIndex:
    """A vector index shared by request threads and online updates.

    faiss releases the GIL, so an online update's ``upsert`` (which reallocates the index's
    storage and its id arrays) could run in the middle of another thread's ``search``. Searches
    share a gate; changes hold it alone, for the microseconds a change takes. Everything else
    is passed through to the wrapped index.
    """

    _MUTATORS = frozenset({"upsert", "add", "remove", "erase", "compact"})

    def __init__(self, index: object) -> None:
        self._index = index
        self._gate = ReadGate()

    def __len__(self) -> int:
        with self._gate.read():
            return len(self._index)  # type: ignore[arg-type]

    def search(self, *args: object, **kwargs: object) -> object:
        with self._gate.read():
            return self._index.search(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._index, name)
        if name not in self._MUTATORS:
            return attr

        def guarded(*args: object, **kwargs: object) -> object:
            with self._gate.exclusive():
                return attr(*args, **kwargs)

        return guarded
