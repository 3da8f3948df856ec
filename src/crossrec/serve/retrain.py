"""Training inside the running server, and the jobs other commands hand it.

DuckDB admits one process per store, so while ``crossrec serve`` runs no other process can
read the store to train. The server trains itself instead, in a background thread of its own
process (:meth:`ServeState.train_now`: reads through its own cursor, writes a new model
version; the model poller then swaps it in):

* every ``serve.retrain_every_seconds`` (0: never), counted from the end of the previous
  training, so trainings never pile up;
* when ``crossrec train`` asks (a request file, see :mod:`crossrec.serve.control`): a
  request that arrives while a training runs gets the next one, which reads its data;
* when :meth:`Retrainer.request` is called in-process.

At most one training runs at a time. A failed training is logged and counted in /metrics
(``crossrec_retrains_total{result="failed"}``); the served model stays. The same thread also
answers ``crossrec token`` requests, at once (they never wait for a training).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crossrec import errors
from crossrec.progress import NullProgress
from crossrec.serve import control

if TYPE_CHECKING:
    from crossrec.progress import ProgressHook, TaskHandle
    from crossrec.serve.state import ServeState

log = logging.getLogger("crossrec.serve")


class TrainingInterrupted(Exception):
    """An erasure stopped the training (what it read may hold the erased account); the
    Retrainer starts it again, and the commands waiting on it get the new one."""


class Retrainer:
    """Background training for a :class:`ServeState`.

    Parameters
    ----------
    state : the server's state (trains through :meth:`ServeState.train_now`).
    every_seconds : periodic retraining (0: only on request).
    """

    def __init__(self, state: ServeState, *, every_seconds: float = 0.0) -> None:
        self.state = state
        self.root = state.ws.root
        self.every_seconds = every_seconds
        self._lock = threading.Lock()
        self._wanted = False  # a training was asked for and has not started yet
        self._waiting: list[str] = []  # request ids answered by the next training
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._idle = threading.Condition(self._lock)
        self._started = 0  # trainings started so far
        self._finished = 0  # trainings ended (ok or failed); they end in the order they start
        self.last_error: str | None = None
        self.last_version: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._loop_thread is not None:
            return
        self._stop.clear()
        self._loop_thread = threading.Thread(
            target=self._loop, name="crossrec-retrain", daemon=True
        )
        self._loop_thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop looking for requests; a training in progress is waited for ``timeout`` s."""
        self._stop.set()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=timeout)
            self._loop_thread = None
        worker = self._worker
        if worker is not None:
            worker.join(timeout=timeout)

    @property
    def running(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()

    # -- requests ------------------------------------------------------------------------------
    def request(self, request_id: str | None = None) -> int:
        """Ask for a training (started by the loop within a fraction of a second; one in
        progress read its data earlier, so the next one serves this request). Returns the
        ticket to :meth:`wait` on."""
        with self._lock:
            self._wanted = True
            if request_id is not None:
                self._waiting.append(request_id)
            return self._started + 1

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        """Wait until the training of ``ticket`` has ended; False on timeout."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._finished < ticket:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 1.0))
        return True

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_due = self._next_due()
        while not self._stop.wait(control.CHECK_SECONDS):
            try:
                self._take_requests()
            except Exception:  # a broken request must not stop the loop
                log.exception("reading control requests failed")
            if time.monotonic() >= next_due:
                with self._lock:
                    self._wanted = True
            if self._start_if_wanted():
                next_due = math.inf  # set again when this training ends
            elif not self.running and next_due == math.inf:
                next_due = self._next_due()

    def _next_due(self) -> float:
        return time.monotonic() + self.every_seconds if self.every_seconds > 0 else math.inf

    def _take_requests(self) -> None:
        for request_id, doc in control.take_requests(self.root):
            op, args = doc["op"], doc.get("args") or {}
            if op == "train":
                log.info("training requested by pid %s", doc.get("pid"))
                self.request(request_id)
                continue
            try:
                result = self.state.control(op, args)
            except Exception as exc:
                if not isinstance(exc, errors.CrossrecError):
                    log.exception("control request %s failed", op)
                control.answer_error(self.root, request_id, exc)
            else:
                control.answer(self.root, request_id, result)

    def _start_if_wanted(self) -> bool:
        with self._lock:
            if not self._wanted or self.running:
                return False
            self._wanted = False
            self._started += 1
            waiting, self._waiting = self._waiting, []
            self._worker = threading.Thread(
                target=self._train, args=(waiting,), name="crossrec-train", daemon=True
            )
            self._worker.start()
        return True

    def _train(self, waiting: list[str]) -> None:
        metrics = self.state.metrics
        metrics.retrain_running.set(1)
        started = time.monotonic()
        progress = control.StatusProgress(self.root)
        interrupted = False
        try:
            meta: dict[str, Any] = self.state.train_now(progress=progress)
        except TrainingInterrupted:
            interrupted = True
            log.info("an erasure interrupted the training; it starts again")
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("training in the server failed; model %s stays", self._served())
            metrics.retrains.labels("failed").inc()
            for request_id in waiting:
                control.answer_error(self.root, request_id, exc)
        else:
            self.last_error = None
            self.last_version = str(meta["version"])
            metrics.retrains.labels("ok").inc()
            for request_id in waiting:
                control.answer(self.root, request_id, meta)
        finally:
            progress.close()
            metrics.retrain_running.set(0)
            metrics.retrain_seconds.set(round(time.monotonic() - started, 3))
            with self._idle:
                if interrupted:  # the restart answers the same requests and tickets
                    self._wanted = True
                    self._waiting = waiting + self._waiting
                    self._started -= 1
                else:
                    self._finished += 1
                self._idle.notify_all()

    def _served(self) -> str | None:
        model = self.state.model
        return model.version if model is not None else None


# -- what a training inside the server reads and reports through ---------------------------------
class GatedReads:
    """The store as a training inside the server reads it: every call runs on the calling
    thread's own cursor inside the read gate; none starts once an erasure is waiting."""

    def __init__(self, state: ServeState, interrupted: Callable[[], bool]) -> None:
        self._state = state
        self._interrupted = interrupted

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self._interrupted():
                raise TrainingInterrupted("an erasure interrupted the training")
            with self._state.reading() as view:
                return getattr(view.store, name)(*args, **kwargs)

        return call

    def close(self) -> None:
        pass  # the cursors belong to the server


class Interruptible:
    """A progress hook that stops the training at its next step once an erasure waits."""

    def __init__(self, inner: ProgressHook | None, interrupted: Callable[[], bool]) -> None:
        self._inner = inner or NullProgress()
        self._interrupted = interrupted

    def check(self) -> None:
        if self._interrupted():
            raise TrainingInterrupted("an erasure interrupted the training")

    def task(self, description: str, total: float | None = None) -> TaskHandle:
        self.check()
        return _InterruptibleTask(self, self._inner.task(description, total))

    def log(self, message: str) -> None:
        self._inner.log(message)


class _InterruptibleTask:
    def __init__(self, owner: Interruptible, inner: TaskHandle) -> None:
        self._owner, self._inner = owner, inner

    def advance(self, amount: float = 1) -> None:
        self._owner.check()
        self._inner.advance(amount)

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        self._owner.check()
        self._inner.update(completed=completed, total=total)

    def done(self) -> None:
        self._inner.done()
