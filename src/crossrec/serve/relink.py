"""Online re-scoring of links after new events, in a background thread.

Re-scoring an account's candidate links (:mod:`crossrec.link.online`) searches every profile
space's index for the account and for each of its candidates and scores them with the saved
matcher: a few hundred milliseconds at 100,000 accounts per platform. The request that posted
the events must not wait for it, so :class:`RelinkQueue` does it after the response:

* an accepted event refreshes the account's vectors at once (its list changes at once) and
  puts the account in the queue; an account already waiting is not queued twice, so a burst
  of events costs one re-scoring;
* the worker re-scores one account at a time against the model served *then*, outside the
  write lock (the read gate held, so an erasure waits for it), and writes the links and the
  persons under the write lock, with the served recommender's link map;
* a result computed against a model that was swapped out, or before an erasure replaced the
  store, is thrown away and the account queued again; an erased account leaves the queue.

``/metrics`` shows ``crossrec_relink_pending`` (accounts waiting) and
``crossrec_online_relinks`` (accounts re-scored).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from crossrec.serve.state import AccountKey, Loaded, ServeState

log = logging.getLogger("crossrec.serve")


class RelinkQueue:
    """Accounts whose links are to be re-scored, and the one thread that does it."""

    def __init__(self, state: ServeState) -> None:
        self._state = state
        self._pending: OrderedDict[AccountKey, None] = OrderedDict()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- producer side -------------------------------------------------------------------------
    def submit(self, keys: Iterable[AccountKey]) -> None:
        """Queue accounts (each once, however many events it had meanwhile)."""
        with self._cond:
            for key in keys:
                self._pending.setdefault(key, None)
            self._state.metrics.relink_pending.set(len(self._pending))
            self._cond.notify_all()

    def discard(self, keys: Iterable[AccountKey]) -> None:
        """Drop erased accounts from the queue."""
        with self._cond:
            for key in keys:
                self._pending.pop(key, None)
            self._state.metrics.relink_pending.set(len(self._pending))

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending) + int(self._busy)

    def wait(self, timeout: float) -> bool:
        """Wait until every queued account has been re-scored; True if it happened in time."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout
            )

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="crossrec-relink", daemon=True)
            self._thread.start()

    def stop(self, *, wait: float = 30.0) -> None:
        """Stop after the account being re-scored (the others stay queued for a restart)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=wait)
            self._thread = None

    # -- worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                key, _ = self._pending.popitem(last=False)
                self._busy = True
                self._state.metrics.relink_pending.set(len(self._pending))
            try:
                self._relink(key)
            except Exception:  # one account's failure must not stop the others
                log.exception("re-scoring the links of an account on %s failed", key[0])
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _relink(self, key: AccountKey) -> None:
        from crossrec.link.online import link_partners, write_links

        state = self._state
        model = state.model
        if model is None or model.linker is None:
            return
        generation = state.generation
        with state.write_lock:  # the vectors as the last accepted event left them
            if not self._vectors_in(model, key):
                return  # newer than the model: linked by the next `crossrec link`
        table: pa.Table | None = None
        try:
            with state.read_gate.read():  # an erasure waits for this search
                table = model.linker.rescore(*key)
        except Exception:
            if generation == state.generation:
                raise
            # the store was replaced under the search (an erasure): tried again below
        with state.write_lock:
            if state.is_erased(key):
                return
            if state.model is not model or generation != state.generation:
                self.submit([key])  # again, against the model and store as they are now
                return
            if table is None:
                return  # nothing could be re-scored (the model chose no threshold)
            write_links(state.ws.store, key[0], key[1], table, model.linker.version)
            model.recommender.apply_links(key[0], key[1], link_partners(table, *key))
        state.metrics.online_relinks.inc()

    @staticmethod
    def _vectors_in(model: Loaded, key: AccountKey) -> bool:
        """Put the account's current vectors into the model's linker; False if it has no row."""
        assert model.linker is not None
        if model.linker.row(*key) is None:  # before computing vectors the linker cannot take
            return False
        cf, seq = model.recommender.account_vectors(*key)
        return model.linker.update_vectors(*key, cf=cf, sequence=seq) is not None
