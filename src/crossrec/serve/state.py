"""What the HTTP service holds while it runs: the workspace, the loaded model, the writer.

Concurrency, in one place:

* **Reads** (recommendations, links, similar, profile) run on request threads, each with its
  own :meth:`Workspace.reader` view (a DuckDB cursor): they see committed data and never wait
  on a write. They pass a :class:`~crossrec.serve.gate.ReadGate` that only erasure closes.
* **Writes** (event ingest, erasure) and the online updates that follow them hold one lock and
  use the workspace's own connection, so store transactions never interleave. Re-scoring the
  links of accounts with new events is queued for one background thread
  (:class:`~crossrec.serve.relink.RelinkQueue`): it searches outside the lock and writes
  under it.
* **The model** is one reference to a :class:`Loaded`. A background thread polls
  ``models/CURRENT`` every ``serve.model_poll_seconds``; a new version is loaded completely off
  to the side, the accounts updated online or erased since that version's data was read are
  brought up to date on it, and then the reference is swapped. A request reads the reference
  once and keeps that object, so it never sees half of one model and half of another.
* **Erasure** replaces the store file and rewrites model files: it waits for reads in flight,
  drops every cursor, evicts the accounts from the served model at once, and then reloads the
  model from the rewritten files before it returns.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from crossrec.errors import InputError, ModelError, NotFoundError
from crossrec.models import ModelRegistry
from crossrec.serve.auth import TokenBook
from crossrec.serve.gate import GuardedIndex, ReadGate
from crossrec.serve.limits import RateLimiter
from crossrec.serve.metrics import Metrics
from crossrec.serve.relink import RelinkQueue
from crossrec.serve.retrain import GatedReads, Interruptible, Retrainer, TrainingInterrupted
from crossrec.serve.warmup import ListWarmer

if TYPE_CHECKING:
    import numpy as np

    from crossrec.idmap import IdMap
    from crossrec.index import VectorIndex
    from crossrec.ingest.records import RecordSummary
    from crossrec.link.online import OnlineLinker
    from crossrec.link.query import SequenceSpace
    from crossrec.progress import ProgressHook
    from crossrec.recommend import Recommender
    from crossrec.store import Store
    from crossrec.workspace import Workspace

log = logging.getLogger("crossrec.serve")

AccountKey = tuple[str, str]  # (platform, account pseudonym)


@dataclass(frozen=True)
class Loaded:
    """A model version as served.

    Attributes
    ----------
    version : the model version (``v0003``).
    recommender : the Recommender over it (account state is updated online in place).
    linker : the version's online linker (None before ``crossrec link`` ran on it).
    data_from : epoch seconds before which every store change is inside the model (its
        training started later); changes after it are replayed on a swap.
    """

    version: str
    recommender: Recommender
    data_from: float
    linker: OnlineLinker | None = None


class ServeState:
    """The service's workspace, token book, rate limiter, metrics and current model."""

    def __init__(
        self, ws: Workspace, *, poll_seconds: float | None = None, ids: IdMap | None = None
    ) -> None:
        cfg = ws.config.serve
        self.ws = ws
        #: raw ids of stored accounts (``crossrec serve --ids``), held in memory only
        self.ids = ids
        self.config = cfg
        self.poll_seconds = poll_seconds if poll_seconds is not None else cfg.model_poll_seconds
        self.registry = ModelRegistry(ws.models_dir)
        self._pseudonymiser = ws.pseudonymiser  # made once: request threads share it
        self.limiter = RateLimiter(cfg.rate_limit_per_second, cfg.rate_limit_burst)
        self._newest_event: float | None = None
        self.metrics = Metrics(newest_event_time=lambda: self._newest_event)
        self._write_lock = threading.Lock()
        self._gate = ReadGate()
        self._generation = 0  # +1 whenever the store connection (and every cursor) is replaced
        self._local = threading.local()
        self._views_lock = threading.Lock()
        # views are made from this one's cursor, never from the connection writes run on
        self._root: Workspace = ws.reader()
        self._model: Loaded | None = None
        self.model_error: str | None = None
        self._failed_version: str | None = None
        # accounts changed since the served model's data was read: replayed on a swap
        self._touched: dict[AccountKey, float] = {}
        self._erased: dict[AccountKey, float] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._closed = False
        # one model check at a time (the poller, a finished training)
        self._check_lock = threading.Lock()
        # held by a training for its whole run; an erasure interrupts it and takes it
        self._train_lock = threading.Lock()
        self._erasures_waiting = 0  # > 0: a training stops at its next step
        self._count_lock = threading.Lock()
        self.tokens = TokenBook(read=self._token_rows, refresh_seconds=cfg.token_refresh_seconds)
        self.retrainer = Retrainer(self, every_seconds=cfg.retrain_every_seconds)
        self.warmer = ListWarmer(cfg.precompute_k, self.metrics)
        self.relinks = RelinkQueue(self)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *, poll: bool = True) -> None:
        """Load the current model (if any) and start watching for new ones."""
        if self._closed:  # started again after close: fresh cursors
            self._renew_views()
            self._closed = False
        self.check_model()
        self.relinks.start()
        if poll and self._poller is None:
            self._stop.clear()
            self._poller = threading.Thread(
                target=self._poll, name="crossrec-model-poll", daemon=True
            )
            self._poller.start()
            self.retrainer.start()  # periodic training and requests from other commands

    def close(self) -> None:
        self._stop.set()
        self.retrainer.stop()
        self.relinks.stop()
        self.warmer.stop(wait=30)
        if self._poller is not None:
            self._poller.join(timeout=30)
            self._poller = None
        self._model = None
        self._root.close()  # closes every cursor made from it
        self._closed = True

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check_model()
            except Exception:  # a broken new version must not stop the service
                log.exception("checking for a new model failed")

    # -- reads ---------------------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[Workspace]:
        """This thread's read view of the workspace, valid for the ``with`` block."""
        with self._gate.read():
            yield self._view()

    def _view(self) -> Workspace:
        view: Workspace | None = getattr(self._local, "view", None)
        if view is None or getattr(self._local, "generation", -1) != self._generation:
            view = self._new_view()
            self._local.view = view
            self._local.generation = self._generation
        return view

    def _new_view(self) -> Workspace:
        with self._views_lock:  # one cursor made at a time from the root
            return self._root.reader()

    def account_id(self, platform: str, raw_id: str) -> str:
        """The pseudonym of a raw account id after the identity rule (thread-safe, no store
        access)."""
        from crossrec.identity import normalize_id

        return self._pseudonymiser.account(platform, normalize_id(raw_id, "account"))

    @property
    def model(self) -> Loaded | None:
        return self._model

    def require_model(self) -> Loaded:
        """The served model, or ModelError when none is loaded (503 to a client)."""
        model = self._model
        if model is None:
            raise ModelError(
                "no model is loaded" + (f": {self.model_error}" if self.model_error else ""),
                hint="run `crossrec train` on the workspace; the service picks it up",
            )
        return model

    def sequence_space(self, model: Loaded) -> SequenceSpace:
        """``model``'s sequence space for similar-account searches: its profiles, its
        guarded indexes (updated online) and each account's current vector."""
        from crossrec.link.query import SequenceSpace

        recommender = model.recommender

        def vector(row: int, platform: str, account: str) -> np.ndarray | None:
            try:
                return recommender.account_vectors(platform, account)[1]
            except NotFoundError:  # a platform without CF: its trained profile vector
                return None

        parts = recommender.parts
        return SequenceSpace(model.version, parts.profiles, parts.seq_index, vector)

    @property
    def newest_event_time(self) -> float | None:
        return self._newest_event

    # -- model swap ----------------------------------------------------------------------------
    def check_model(self) -> bool:
        """Load and swap in ``models/CURRENT`` if it is not the version served; True if
        swapped. Loading happens outside the write lock: requests go on meanwhile."""
        with self._check_lock:
            return self._check_model()

    def _check_model(self) -> bool:
        version = self.registry.current()
        current = self._model
        if version is None or version == self._failed_version:
            return False
        if current is not None and current.version == version:
            return False
        generation = self._generation
        loaded = self._load(version)
        if loaded is None:
            return False
        if current is not None:  # the served model answers meanwhile, from its own lists
            self.warmer.run(loaded.recommender, stop=self._stop.is_set)
        with self._write_lock:
            if generation != self._generation:  # an erasure rewrote the files meanwhile
                return False  # the erasure reloaded the model itself
            self._swap(loaded)
        return True

    def _load(self, version: str) -> Loaded | None:
        from crossrec.recommend import Recommender

        started = time.time()
        try:
            with self._gate.read():
                # its own cursor: the recommender reads the store during online updates
                recommender = Recommender.load(self._new_view(), version)
            parts = recommender.parts
            # online updates change these indexes while request threads search them
            parts.seq_index = {
                name: cast("VectorIndex", GuardedIndex(index))
                for name, index in parts.seq_index.items()
            }
        except Exception as exc:  # keep serving the previous model (or none)
            self._failed_version = version
            self.model_error = f"model {version} failed to load: {exc}"
            log.error(self.model_error)
            return None
        linker = None
        try:
            from crossrec.link.online import OnlineLinker

            with self._gate.read():
                linker = OnlineLinker.load(
                    self.registry.path(version), self._new_view().store, self.ws.config
                )
            if linker is not None:
                linker.warm()  # its indexes open before it serves, never in a request
        except Exception as exc:  # links stay as `crossrec link` wrote them
            log.warning("model %s: online link re-scoring is off: %s", version, exc)
        log.info("loaded model %s in %.1f s", version, time.time() - started)
        return Loaded(version, recommender, self._data_from(version, started), linker)

    def _swap(self, loaded: Loaded) -> None:
        """Replay recent changes on ``loaded`` and serve it (write lock held)."""
        previous = self._model
        self._replay(loaded)
        self._model = loaded
        self.model_error = None
        self.metrics.set_model(loaded.version)
        self.warmer.start(loaded.recommender)
        if previous is not None and previous.version != loaded.version:
            self.metrics.model_swaps.inc()

    def _data_from(self, version: str, fallback: float) -> float:
        """When the version's training read the store: created_at minus its seconds."""
        try:
            meta = self.registry.metadata(version)
            created = datetime.fromisoformat(meta["created_at"]).timestamp()
            # created_at is rounded to the second: one more second of margin
            return created - float(meta.get("seconds", 0.0)) - 1.0
        except (ModelError, KeyError, TypeError, ValueError):
            return fallback if self._model is None else 0.0

    def _replay(self, loaded: Loaded) -> None:
        """Bring accounts changed since ``loaded``'s data was read up to date on it."""
        for key, at in list(self._erased.items()):
            if at < loaded.data_from:
                del self._erased[key]
        if self._erased:
            loaded.recommender.forget(sorted(self._erased))
        for key, at in list(self._touched.items()):
            if at < loaded.data_from:
                del self._touched[key]
            elif key not in self._erased:
                loaded.recommender.update_account(*key)

    # -- writes --------------------------------------------------------------------------------
    def ingest(
        self,
        platform: str,
        records: list[dict[str, Any]],
        *,
        source: str,
        strict: bool = False,
    ) -> RecordSummary:
        """Store events (one transaction), then update the touched accounts online (with
        ``strict``, a batch with a bad event stores nothing: ``summary.rejected``)."""
        with self._write_lock:
            summary = self.ws.ingest_records(platform, records, source=source, strict=strict)
            self.metrics.events.labels(platform).inc(summary.accepted)
            self.metrics.quarantined.labels(platform).inc(summary.quarantined)
            if summary.accepted:
                self.apply_events(platform, list(summary.accounts))
                newest = _newest_time(records)
                if newest is not None and (
                    self._newest_event is None or newest > self._newest_event
                ):
                    self._newest_event = newest
        return summary

    def apply_events(self, platform: str, accounts: list[str]) -> None:
        """The online update after new events of ``accounts`` (pseudonyms) were committed.

        The one hook for everything that follows new events: fresh vectors (CF fold-in,
        sequence encoder, index entry) at once, and the re-scoring of the account's candidate
        links with the served matcher, queued for the background (:class:`RelinkQueue`).
        Called with the write lock held.
        """
        model = self._model
        now = time.time()
        for account in accounts:
            self._touched[(platform, account)] = now
            self._erased.pop((platform, account), None)
            if model is not None:
                model.recommender.update_account(platform, account)
        if model is not None and model.linker is not None:
            self.relinks.submit((platform, account) for account in accounts)
        self.metrics.online_updates.inc(len(accounts))

    # what the background re-scoring of links (serve/relink.py) works with
    @property
    def write_lock(self) -> threading.Lock:
        return self._write_lock

    @property
    def read_gate(self) -> ReadGate:
        return self._gate

    @property
    def generation(self) -> int:
        """+1 whenever an erasure replaced the store (and every cursor made from it)."""
        return self._generation

    def is_erased(self, key: AccountKey) -> bool:
        return key in self._erased

    def forget(self, platform: str, raw_id: str, *, person: bool = False) -> dict[str, Any]:
        """Erase an account (or its whole person) everywhere, then drop every cached trace
        of it: its online state at once, and the whole model, reloaded from the rewritten
        files, before returning.

        A training running in this process is interrupted first (it would publish what it
        read before the erasure; erasure also rewrites its half-written files) and starts
        again afterwards."""
        with self._count_lock:
            self._erasures_waiting += 1
        try:
            self._train_lock.acquire()
        finally:
            with self._count_lock:
                self._erasures_waiting -= 1
        with _Held(self._train_lock), self._write_lock:
            with self._gate.exclusive():
                model = self._model
                try:
                    result: dict[str, Any] = self.ws.forget(platform, raw_id, person=person)
                finally:
                    # the store connection, and every cursor made from it, may be gone
                    self._renew_views()
                    if model is not None:
                        model.recommender.store = self._new_view().store
                accounts = [(str(p), str(a)) for p, a in result.get("accounts", [])]
                now = time.time()
                for key in accounts:
                    self._touched.pop(key, None)
                    self._erased[key] = now
                self.relinks.discard(accounts)
                if model is not None:
                    model.recommender.forget(accounts)
            if model is not None:  # reads go on with the evicted model meanwhile
                version = self.registry.current() or model.version
                loaded = self._load(version)
                if loaded is not None:
                    if loaded.version == model.version:
                        # the other accounts' lists stay valid; the erased ones were dropped
                        loaded.recommender.adopt_lists(model.recommender)
                    self._swap(loaded)
        return result

    # -- training in the server ----------------------------------------------------------------
    def train_now(self, *, progress: ProgressHook | None = None) -> dict[str, Any]:
        """Train a new model version in this process (the caller's thread) and swap it in;
        returns its metadata, as ``crossrec train`` prints it.

        Training reads the store through this thread's own cursor, each read inside the read
        gate, and writes only the new version's files. An erasure interrupts it (at its next
        store read or progress step): :class:`TrainingInterrupted` is raised, its unfinished
        files are removed, and the caller may start again (the Retrainer does).
        """
        from crossrec.train import train
        from crossrec.workspace import Workspace

        with self._train_lock:  # waits for an erasure in progress
            # a fresh view: crossrec.toml as `crossrec train` would read it now
            view = Workspace(self.ws.root)
            view._pseudonymiser = self._pseudonymiser
            view._store = cast("Store", GatedReads(self, self._interrupted))
            try:
                meta = train(view, progress=Interruptible(progress, self._interrupted))
            except TrainingInterrupted:
                for staged in self.registry.root.glob(".tmp-v*"):  # half-written versions
                    shutil.rmtree(staged, ignore_errors=True)
                raise
        self.check_model()
        return meta

    def _interrupted(self) -> bool:
        return self._erasures_waiting > 0

    # -- jobs handed over by other commands (crossrec token) -----------------------------------
    def control(self, op: str, args: dict[str, Any]) -> Any:
        """Run a ``crossrec token`` job for a command that cannot open the store while this
        server holds it; the token book sees the change at once."""
        from crossrec.serve import auth

        if op == "token-list":
            with self.reading() as view:
                return [t.as_dict() for t in auth.list_tokens(view.store)]
        with self._write_lock:
            if op == "token-create":
                scopes = auth.parse_scopes(str(args.get("scopes", "")))
                name = args.get("name")
                secret, info = auth.create_token(
                    self.ws.store, scopes, str(name) if name is not None else None
                )
                result: dict[str, Any] = {"token": secret, **info.as_dict()}
            elif op == "token-revoke":
                result = auth.revoke_token(self.ws.store, str(args.get("token", ""))).as_dict()
            else:
                raise InputError(f"unknown request {op!r}")
        self.tokens.reload()
        return result

    def _token_rows(self) -> list[dict[str, Any]] | None:
        if self._gate.closed:  # an erasure replaces the store: never make a request wait
            return None
        with self.reading() as view:
            return view.store.read("api_tokens").to_pylist()

    def _renew_views(self) -> None:
        self._generation += 1
        with self._views_lock:
            self._root.close()  # closes every cursor made from it
            self._root = self.ws.reader()


class _Held:
    """Releases an already acquired lock when the ``with`` block ends."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _newest_time(records: list[dict[str, Any]]) -> float | None:
    """Epoch seconds of the newest timestamp in ``records`` that is not in the future
    (ISO-8601 text or epoch seconds or milliseconds; others are left to ingest validation)."""
    now = time.time()
    newest: float | None = None
    for r in records:
        t = _epoch(r.get("timestamp")) if isinstance(r, dict) else None
        if t is not None and t <= now + 1.0 and (newest is None or t > newest):
            newest = t
    return newest


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # ms or s
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None
