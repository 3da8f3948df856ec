"""Jobs other processes hand to a running server: ``crossrec train`` and ``crossrec token``.

DuckDB admits one process per store file and ``crossrec serve`` holds it, so a command that
needs the store while a server runs cannot open it. Instead it drops a request file in
``W/.control/`` and waits for the answer file the server writes beside it:

* ``<id>.request.json`` — ``{"op": "train" | "token-create" | "token-revoke" |
  "token-list", "args": {...}, "pid": ...}``, written under a temporary name and renamed, so
  the server never reads half of one;
* ``<id>.answer.json`` — ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ...,
  "kind": "NotFoundError", "hint": ...}``; the command reads it and removes it;
* ``training.json`` — while the server trains: the progress of its steps, which a waiting
  ``crossrec train`` draws on its own stderr.

Files are created with mode 0600 (an answer to ``token create`` holds the new token until the
command reads it). The server checks the folder every ``CHECK_SECONDS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossrec import errors
from crossrec.progress import TaskHandle

CONTROL_DIR = ".control"
TRAINING_STATUS = "training.json"
SERVER_COMMAND = "crossrec serve"
#: Seconds between the server's looks for requests (and the command's for answers).
CHECK_SECONDS = 0.25
OPS = ("train", "token-create", "token-revoke", "token-list")


def control_dir(root: Path) -> Path:
    path = Path(root) / CONTROL_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _write_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, default=str)
    os.replace(tmp, path)


# -- the command's side ----------------------------------------------------------------------
def server_holds_lock(root: Path) -> bool:
    """Whether some process holds the workspace's writer lock now (the lock file is only
    probed with a shared lock, never written)."""
    import fcntl

    from crossrec.store.lock import LOCK_FILE

    path = Path(root) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock if it was taken
    return False


def serving_pid(root: Path) -> int | None:
    """The pid of the ``crossrec serve`` that holds the workspace's writer lock, or None
    when the lock is free or held by another command."""
    from crossrec.store.lock import LOCK_FILE

    if not server_holds_lock(root):
        return None
    try:
        text = (Path(root) / LOCK_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    pid, _, command = text.partition(" ")
    return int(pid) if pid.isdigit() and command == SERVER_COMMAND else None


def submit(root: Path, op: str, args: dict[str, Any] | None = None) -> str:
    """Hand ``op`` to the running server; returns the request id to wait on."""
    if op not in OPS:
        raise ValueError(f"unknown control op {op!r}")
    request_id = f"{time.time_ns():020d}-{secrets.token_hex(4)}"  # sorts in arrival order
    doc = {"op": op, "args": args or {}, "pid": os.getpid()}
    _write_atomic(control_dir(root) / f"{request_id}.request.json", doc)
    return request_id


def wait_answer(
    root: Path,
    request_id: str,
    *,
    alive: Callable[[], bool],
    on_wait: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> Any:
    """The server's answer to ``request_id``: its result, or its error raised here as the
    same :class:`~crossrec.errors.CrossrecError` class. ``alive`` is asked between looks;
    when the server has gone, or after ``timeout`` seconds, a WorkspaceError says so."""
    directory = control_dir(root)
    answer = directory / f"{request_id}.answer.json"
    request = directory / f"{request_id}.request.json"
    deadline = None if timeout is None else time.monotonic() + timeout
    checks = 0
    while not answer.exists():
        if on_wait is not None:
            on_wait()
        checks += 1
        if checks % 4 == 0 and not alive():
            if answer.exists():
                break
            request.unlink(missing_ok=True)
            raise errors.WorkspaceError(
                "the server stopped before answering", hint="run the command again"
            )
        if deadline is not None and time.monotonic() > deadline:
            raise errors.WorkspaceError(
                f"no answer from the server after {timeout:.0f} s",
                hint="see the server's log; the request stays queued",
            )
        time.sleep(CHECK_SECONDS)
    doc = json.loads(answer.read_text(encoding="utf-8"))
    answer.unlink(missing_ok=True)
    if doc.get("ok"):
        return doc.get("result")
    cls = getattr(errors, str(doc.get("kind")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.CrossrecError)):
        cls = errors.CrossrecError
    raise cls(str(doc.get("error")), hint=doc.get("hint"))


def training_status(root: Path) -> dict[str, Any] | None:
    """What the server's training is doing now (None when it is not training)."""
    try:
        doc: dict[str, Any] = json.loads(
            (Path(root) / CONTROL_DIR / TRAINING_STATUS).read_text(encoding="utf-8")
        )
    except (OSError, json.JSONDecodeError):
        return None
    return doc


# -- the server's side -----------------------------------------------------------------------
def take_requests(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every waiting request, oldest first, removed from the folder (unreadable ones are
    answered with an error at once)."""
    directory = Path(root) / CONTROL_DIR
    if not directory.is_dir():
        return []
    taken = []
    for path in sorted(directory.glob("*.request.json")):
        request_id = path.name.removesuffix(".request.json")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            path.unlink()
        except FileNotFoundError:  # withdrawn by its command
            continue
        except (OSError, json.JSONDecodeError) as exc:
            path.unlink(missing_ok=True)
            answer_error(root, request_id, errors.InputError(f"unreadable request: {exc}"))
            continue
        if not isinstance(doc, dict) or doc.get("op") not in OPS:
            answer_error(root, request_id, errors.InputError(f"unknown request {doc!r}"))
            continue
        taken.append((request_id, doc))
    return taken


def answer(root: Path, request_id: str, result: Any) -> None:
    _write_atomic(control_dir(root) / f"{request_id}.answer.json", {"ok": True, "result": result})


def answer_error(root: Path, request_id: str, exc: BaseException) -> None:
    doc = {
        "ok": False,
        "error": str(exc),
        "kind": type(exc).__name__ if isinstance(exc, errors.CrossrecError) else "CrossrecError",
        "hint": getattr(exc, "hint", None),
    }
    _write_atomic(control_dir(root) / f"{request_id}.answer.json", doc)


class StatusProgress:
    """A :class:`~crossrec.progress.ProgressHook` that keeps ``training.json`` up to date
    (at most every half second) for the commands waiting on the training."""

    def __init__(self, root: Path, version: str | None = None) -> None:
        self.path = control_dir(root) / TRAINING_STATUS
        self._tasks: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._written = 0.0
        self._started = time.time()
        self._write(force=True)

    def task(self, description: str, total: float | None = None) -> TaskHandle:
        entry = {"description": description, "completed": 0.0, "total": total, "done": False}
        with self._lock:
            self._tasks.append(entry)
        self._write(force=True)
        return _StatusTask(self, entry)

    def log(self, message: str) -> None:
        pass

    def _write(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < 0.5:
            return
        self._written = now
        with self._lock:
            doc = {"started_at": self._started, "tasks": [dict(t) for t in self._tasks]}
        with contextlib.suppress(OSError):  # progress is best effort
            _write_atomic(self.path, doc)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


class _StatusTask:
    def __init__(self, owner: StatusProgress, entry: dict[str, Any]) -> None:
        self._owner, self._entry = owner, entry

    def advance(self, amount: float = 1) -> None:
        self._entry["completed"] += amount
        self._owner._write()

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        if completed is not None:
            self._entry["completed"] = completed
        if total is not None:
            self._entry["total"] = total
        self._owner._write()

    def done(self) -> None:
        if self._entry["total"] is not None:
            self._entry["completed"] = self._entry["total"]
        self._entry["done"] = True
        self._owner._write(force=True)
