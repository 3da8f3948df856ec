"""One writer per workspace: an OS-level lock file that names its holder.

DuckDB already refuses a second read-write process, but with an opaque I/O error that says
nothing about who holds the file. Every command that writes (``crossrec serve``, ``ingest``,
``consume``, ``token``) takes this lock first, so a second writer fails fast with one line
naming the process to stop. The lock is ``fcntl.flock`` on ``W/.writer.lock``: the kernel
drops it when the holder exits, even on a crash, so a stale file never blocks anyone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

from crossrec.errors import WorkspaceError

LOCK_FILE = ".writer.lock"


def _command() -> str:
    """A short name of this process for the message another writer gets."""
    argv = sys.argv
    prog = Path(argv[0]).name if argv and argv[0] else "python"
    if prog in {"crossrec", "__main__.py"}:
        sub = next((a for a in argv[1:] if not a.startswith("-")), "")
        return f"crossrec {sub}".strip()
    return prog


class WriterLock:
    """Exclusive writer lock on a workspace.

    Parameters
    ----------
    path : the workspace directory (the lock file is ``path/.writer.lock``) or the lock
        file itself.
    command : what to call this process in the message a second writer gets; defaults to
        the running command line, e.g. ``crossrec serve``.

    >>> with WriterLock(tmp_path):        # doctest: +SKIP
    ...     ...                           # no other writer can hold it here
    """

    def __init__(self, path: Path | str, *, command: str | None = None) -> None:
        path = Path(path)
        self.path = path / LOCK_FILE if path.is_dir() else path
        self.command = command or _command()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WriterLock:
        """Take the lock now or raise :class:`WorkspaceError` naming the holder."""
        import fcntl

        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkspaceError(
                f"{self.path.parent} is being written by {holder}",
                hint="stop it or wait for it to finish; one process writes a workspace at a time",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # the holder's pid and command, for the message another writer gets
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.command}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; an unlocked file means no writer)."""
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"pid {pid} ({command or 'crossrec'})"
