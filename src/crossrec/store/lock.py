"""One writer per workspace: an OS-level lock file that names its holder.

DuckDB already refuses a second read-write process, but with an opaque I/O error that says
nothing about who holds the file. Every command that writes (``crossrec serve``, ``ingest``,
``consume``, ``token``) takes this lock first, so a second writer waits a few seconds
(``CROSSREC_LOCK_WAIT``, default 5) and then fails with one line naming the process to stop.
The lock is ``fcntl.flock`` on ``W/.writer.lock``: the kernel drops it when the holder exits,
even on a crash, so a stale file never blocks anyone.

:func:`open_duckdb` opens the workspace's DuckDB files (store, quarantine) the same way: a
file another process holds is waited for, then its holder named (the pid DuckDB reports, with
its command); a file that is empty, truncated or damaged is refused with what to do.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from crossrec.errors import WorkspaceError

if TYPE_CHECKING:
    import duckdb

LOCK_FILE = ".writer.lock"
#: Seconds a command waits for a DuckDB file another process holds (``CROSSREC_LOCK_WAIT``).
LOCK_WAIT_ENV = "CROSSREC_LOCK_WAIT"
DEFAULT_LOCK_WAIT = 5.0
_LOCKED = "Could not set lock on file"
#: What DuckDB says of a file that is not a whole database (empty, truncated, damaged).
_DAMAGED = (
    "not a valid DuckDB database file",
    "Could not read enough bytes",
    "checksum",
    "Corrupt",
    "corrupt",
)


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
        """Take the lock, waiting up to :func:`lock_wait` seconds for another writer, or
        raise :class:`WorkspaceError` naming the holder."""
        import fcntl

        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        wait = lock_wait()
        deadline = time.monotonic() + wait
        try:
            while True:  # a writer about to finish is waited for (CROSSREC_LOCK_WAIT)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.1)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkspaceError(
                f"{self.path.parent} is being written by {holder}",
                hint=f"waited {wait:g} s ({LOCK_WAIT_ENV}); stop it or wait for it to finish; "
                "one process writes a workspace at a time",
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


def lock_wait() -> float:
    """Seconds to wait for a held database file: ``$CROSSREC_LOCK_WAIT`` or 5."""
    text = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_WAIT
    try:
        value = float(text)
    except ValueError:
        raise WorkspaceError(
            f"{LOCK_WAIT_ENV}={text!r} is not a number of seconds", hint="e.g. 5 or 0.5"
        ) from None
    return max(0.0, value)


def open_duckdb(
    path: Path, *, read_only: bool = False, what: str = "store", wait: float | None = None
) -> duckdb.DuckDBPyConnection:
    """Connect to the DuckDB file ``path`` (the ``what`` of a workspace, for messages).

    A file another process holds is retried for :func:`lock_wait` seconds, then refused
    with a :class:`WorkspaceError` naming the holder; a file that is not a whole database
    (empty, truncated, damaged) is refused with one saying so and what to do.
    """
    import duckdb

    wait = lock_wait() if wait is None else wait
    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if _LOCKED not in text:
                raise damaged(path, what, text) from None
            if time.monotonic() >= deadline:
                raise WorkspaceError(
                    f"the {what} {path} is in use by {holder_of(path, text)}",
                    hint=f"waited {wait:g} s ({LOCK_WAIT_ENV}); stop that process or let it "
                    "finish, then retry",
                ) from None
            time.sleep(0.1)
        except duckdb.Error as exc:
            raise damaged(path, what, str(exc)) from None


def is_damage(message: str) -> bool:
    """Whether a DuckDB error message says its file is not a whole database."""
    return any(d in message for d in _DAMAGED)


def damage_error(exc: BaseException) -> WorkspaceError | None:
    """The one-line error for a DuckDB error that says a workspace file is damaged (it
    opened, a later read failed), naming the file when DuckDB does; None for others."""
    if type(exc).__module__.split(".")[0] not in {"duckdb", "_duckdb"}:
        return None
    text = str(exc)
    if not is_damage(text):
        return None
    found = re.search(r'file "([^"]+)"', text)
    path = Path(found.group(1)) if found else Path("(a database file of the workspace)")
    what = {"crossrec.duckdb": "store", "quarantine.duckdb": "quarantine"}.get(path.name, "file")
    return damaged(path, what, text)


def damaged(path: Path, what: str, message: str) -> WorkspaceError:
    """The error for a ``what`` file that cannot be read as a database."""
    first = message.splitlines()[0] if message else "unreadable"
    size = path.stat().st_size if path.exists() else 0
    state = "empty" if size == 0 else "damaged or truncated"
    return WorkspaceError(
        f"the {what} {path} is {state} ({first})",
        hint="restore it from a backup, or move it aside, run `crossrec init` and ingest again"
        if what == "store"
        else "move it aside (a new one is made on the next write) or restore it from a backup",
    )


def holder_of(path: Path, message: str = "") -> str:
    """Who holds ``path``: the pid DuckDB names, with its command (the workspace writer lock
    or ``/proc``), else the workspace writer lock's holder."""
    found = re.search(r"\(PID (\d+)\)", message)
    writer = _writer_of(Path(path).parent)
    if found is None:
        return writer or "another process"
    pid = found.group(1)
    if writer and writer.startswith(f"pid {pid} "):
        return writer
    return f"pid {pid} ({_cmdline(pid) or 'unknown command'})"


def _writer_of(root: Path) -> str | None:
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        text = _read_holder(fd)
    finally:
        os.close(fd)
    return None if text == "another process" else text


def _cmdline(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    parts = [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]
    if len(parts) > 1 and Path(parts[0]).name.startswith("python"):
        parts = parts[1:]
    if parts:
        parts[0] = Path(parts[0]).name
    return " ".join(" ".join(parts).split())[:120]  # one line, whatever the arguments hold


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"pid {pid} ({command or 'crossrec'})"
