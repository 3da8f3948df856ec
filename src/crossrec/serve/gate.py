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
