"""Lists computed ahead for the served model, in a background thread.

A model version that replaces a served one computes its lists before the swap (the served
one answers meanwhile, from its own lists); the first model of a process, and a reload after
an erasure, are swapped in at once and :class:`ListWarmer` has the recommender compute every
list it lacks (:meth:`~crossrec.recommend.Recommender.precompute`) in a background thread,
while requests are answered (on request, until an account's list is ready). A newer model
stops the run for the older one. Progress is on ``/metrics`` (``crossrec_precomputed_lists``,
``crossrec_precompute_running``) and in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossrec.recommend import Recommender
    from crossrec.serve.metrics import Metrics

log = logging.getLogger("crossrec.serve")


class ListWarmer:
    """Runs one precomputation at a time: the one of the model served last."""

    def __init__(self, k: int, metrics: Metrics) -> None:
        self.k = k
        self.metrics = metrics
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self, recommender: Recommender) -> None:
        """Stop the run for the previous model, if any, and start one for ``recommender``."""
        self.stop()
        self.metrics.precomputed.clear()
        if self.k <= 0:
            return
        stop = threading.Event()
        self._stop = stop
        self._thread = threading.Thread(
            target=self._run, args=(recommender, stop), name="crossrec-precompute", daemon=True
        )
        self._thread.start()

    def run(self, recommender: Recommender, *, stop: Callable[[], bool]) -> None:
        """Compute ``recommender``'s lists in the calling thread (a model about to be swapped
        in: it arrives with its lists, so latency does not dip after a retrain)."""
        started = time.perf_counter()
        try:
            n = recommender.precompute(self.k, stop=stop) if self.k > 0 else 0
        except Exception:  # the swap goes on; the lists are computed after it
            log.exception("computing lists ahead before the swap failed")
            return
        if n:
            log.info(
                "model %s: %d lists computed ahead before the swap in %.1f s",
                recommender.model_version,
                n,
                time.perf_counter() - started,
            )

    def wait(self, timeout: float) -> bool:
        """Wait for the current run to end; True if none is running any more."""
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            return not self._thread.is_alive()
        return True

    def stop(self, *, wait: float = 0.0) -> None:
        if self._stop is not None:
            self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=wait)

    def _run(self, recommender: Recommender, stop: threading.Event) -> None:
        started = time.perf_counter()
        gauge = self.metrics.precomputed
        self.metrics.precompute_running.set(1)

        def progress(platform: str, done: int, total: int) -> None:
            if not stop.is_set():
                gauge.labels(platform).set(done)

        try:
            n = recommender.precompute(self.k, stop=stop.is_set, progress=progress)
            if not stop.is_set():
                log.info(
                    "model %s: %d lists of %d items computed ahead in %.1f s",
                    recommender.model_version,
                    n,
                    self.k,
                    time.perf_counter() - started,
                )
        except Exception:  # the lists are an optimisation: requests are answered without them
            log.exception("computing lists ahead failed; they are computed on request")
        finally:
            if not stop.is_set():
                self.metrics.precompute_running.set(0)
