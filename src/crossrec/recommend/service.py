"""``Recommender``: personal recommendations on one platform from behaviour on every platform.

>>> rec = Recommender.load(ws)                                  # doctest: +SKIP
>>> rec.recommend("music", ws.account_id("music", "u17"), k=10)  # doctest: +SKIP
[Recommendation(item='m42', score=3.1, reason='your linked book account rated “Dune”'), ...]

An account with history on the platform is served by the *warm* blend, one known only through
its linked accounts by the *cold* blend, and one with nothing at all gets popular items
(the *anonymous* blend). Seen items are removed and the item filter applied before the top k.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from crossrec.errors import InputError
from crossrec.recommend.blend import BlendWeights, blend
from crossrec.recommend.components import Maps, Query, component_scores, fit_maps
from crossrec.recommend.parts import RecommendParts
from crossrec.recommend.precompute import ServedLists, compute_lists, top_rows
from crossrec.recommend.reasons import explain

if TYPE_CHECKING:
    from crossrec.config import RecommendConfig
    from crossrec.represent.sequence import SequenceEncoder
    from crossrec.store.base import Store
    from crossrec.workspace import Workspace

#: ``item_filter(platform, item_ids) -> keep mask``: availability, category, business rules.
ItemFilter = Callable[[str, np.ndarray], np.ndarray]


class Recommendation(NamedTuple):
    item: str
    score: float
    reason: str


class Scored(NamedTuple):
    """A query's blended scores over the platform's catalogue, before filtering."""

    query: Query
    total: np.ndarray
    contributions: np.ndarray
    names: list[str]


class Recommender:
    """Blends the components of :mod:`crossrec.recommend.components` with tuned weights."""

    def __init__(
        self,
        parts: RecommendParts,
        weights: BlendWeights,
        *,
        maps: Maps | None = None,
        encoder: SequenceEncoder | None = None,
        config: RecommendConfig | None = None,
        store: Store | None = None,
    ) -> None:
        self.parts = parts
        self.weights = weights
        self.maps = maps if maps is not None else fit_maps(parts)
        self.encoder = encoder
        self.config = config
        self.store = store
        self._own: dict[tuple[str, str], tuple[np.ndarray | None, np.ndarray | None]] = {}
        self._lock = threading.Lock()
        # Served lists until the account, its links or the model change (LRU, bounded).
        self._cache_size = config.cache_size if config is not None else 0
        self._results: OrderedDict[tuple[str, str | None, int], list[Recommendation]] = (
            OrderedDict()
        )
        self._keys: dict[tuple[str, str | None], set[int]] = {}
        # Lists computed ahead per platform (``precompute``), and the accounts changed while
        # a precomputation runs (their lists in it are stale on arrival).
        self._lists: dict[str, ServedLists] = {}
        self._changed: set[tuple[str, str]] | None = None

    @property
    def model_version(self) -> str:
        return self.parts.version

    @classmethod
    def load(cls, ws: Workspace, version: str | None = None) -> Recommender:
        """The recommender of a model version (default: the current one)."""
        from crossrec.models import ModelRegistry

        model_dir = ModelRegistry(ws.models_dir).path(version)
        parts = RecommendParts.load(model_dir, ws.store, ws.config.recommend)
        encoder = None
        if (model_dir / "sequence").is_dir():
            from crossrec.represent.sequence import SequenceEncoder

            encoder = SequenceEncoder.load(model_dir / "sequence")
        weights = BlendWeights.load(model_dir / "recommend")
        return cls(parts, weights, encoder=encoder, config=ws.config.recommend, store=ws.store)

    # -- scoring -----------------------------------------------------------------------------
    def query(self, platform: str, account: str | None) -> Query:
        """What is known of ``account`` (a pseudonym; None for an anonymous visitor)."""
        p = self.parts.platform(platform)
        if account is None:
            return Query(platform=platform)
        own_cf, own_seq = self._own.get((platform, account), (None, None))
        prow = self.parts.profiles.row(platform, account)
        if (platform, account) not in self._own:
            row = p.row(account)
            own_cf = p.cf.user_factors[row] if row is not None else None
            if prow is not None and row is not None and self.parts.profiles.sequence.shape[1]:
                own_seq = self.parts.profiles.sequence[prow]
        seen, _ = p.history(account)
        return Query(
            platform=platform,
            account=account,
            own_cf=own_cf,
            own_seq=own_seq,
            seen=seen.astype(np.int64),
            linked=self.parts.linked(platform, account),
            exclude_rows=frozenset({prow} if prow is not None else ()),
        )

    def score(self, query: Query) -> Scored:
        comps = component_scores(self.parts, query, self.maps)
        weights = self.weights.of(query.platform, query.regime)
        total, contributions, names = blend(comps, weights)
        return Scored(query, total, contributions, names)

    def recommend(
        self,
        platform: str,
        account: str | None,
        k: int | None = None,
        *,
        item_filter: ItemFilter | None = None,
    ) -> list[Recommendation]:
        """The top ``k`` items of ``platform`` for ``account`` (pseudonym or None), each with
        its score and reason; seen items and items the filter rejects are left out."""
        k = k if k is not None else (self.config.k if self.config else 10)
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if item_filter is None:
            hit = self.cached(platform, account, k)
            if hit is not None:
                return hit
        result = self._recommend(platform, account, k, item_filter)
        if item_filter is None and self._cache_size > 0:
            with self._lock:
                self._results[(platform, account, k)] = result
                self._keys.setdefault((platform, account), set()).add(k)
                while len(self._results) > self._cache_size:
                    (p_, a_, k_), _ = self._results.popitem(last=False)
                    self._keys.get((p_, a_), set()).discard(k_)
        return list(result)

    def cached(self, platform: str, account: str | None, k: int) -> list[Recommendation] | None:
        """The account's top ``k`` if it is already known — a served list still valid, or
        a list computed ahead by :meth:`precompute` — else None (nothing is computed)."""
        with self._lock:
            key = (platform, account, k)
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                return list(hit)
            lists = self._lists.get(platform)
            if lists is not None and account is not None:
                return lists.get(account, k)
        return None

    def precompute(
        self,
        k: int,
        *,
        platforms: list[str] | None = None,
        stop: Callable[[], bool] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> int:
        """Compute the top ``k`` of every account with history (per platform, many at a
        time) and answer from them until the account, its links or the model change.
        ``progress(platform, done, total)`` after each batch; ``stop()`` ends it early (the
        platforms finished so far are kept). Returns the number of lists computed."""
        done = 0
        for name in platforms if platforms is not None else sorted(self.parts.platforms):
            total = len(self.parts.platform(name).matrix.accounts)
            with self._lock:
                have = self._lists.get(name)
                held = len(have) if have is not None and have.k >= k else None
                if held is None:
                    self._changed = set()
            if held is not None:  # computed before (or carried over from the same version)
                if progress is not None:
                    progress(name, held, total)
                continue

            def report(n: int, name: str = name, total: int = total) -> None:
                if progress is not None:
                    progress(name, n, total)

            lists = compute_lists(self, name, k=k, stop=stop, progress=report)
            with self._lock:
                changed, self._changed = self._changed or set(), None
                if lists is None:
                    break
                lists.drop(a for p_, a in changed if p_ == name)
                self._lists[name] = lists
            done += len(lists)
        return done

    def adopt_lists(self, other: Recommender) -> None:
        """Take ``other``'s lists computed ahead (the same model version, reloaded), less
        the accounts changed since; they are dropped here as they change."""
        if other.model_version != self.model_version:
            raise InputError(
                f"lists of model {other.model_version} cannot serve model {self.model_version}"
            )
        with other._lock:
            lists = {
                name: replace(found, rows=dict(found.rows)) for name, found in other._lists.items()
            }
        with self._lock:
            self._lists.update(lists)

    def _recommend(
        self, platform: str, account: str | None, k: int, item_filter: ItemFilter | None
    ) -> list[Recommendation]:
        scored = self.score(self.query(platform, account))
        p = self.parts.platform(platform)
        allowed = np.ones(p.n_items, bool)
        allowed[scored.query.seen] = False
        if p.blocked is not None:
            allowed &= ~p.blocked
        if item_filter is not None:
            allowed &= np.asarray(item_filter(platform, p.matrix.items), dtype=bool)
        top = top_rows(np.where(allowed, scored.total, -np.inf)[None, :], k)[0]
        if len(top) == 0:
            return []
        anonymous = scored.query.regime == "anonymous"
        cols = top.tolist()
        drivers = [scored.names[int(np.argmax(scored.contributions[:, c]))] for c in cols]
        reasons = explain(self.parts, scored.query, drivers, cols, anonymous=anonymous)
        return [
            Recommendation(str(p.matrix.items[c]), float(scored.total[c]), reason)
            for c, reason in zip(cols, reasons, strict=True)
        ]

    def describe(self, platform: str, item: str) -> dict[str, str | None]:
        """The catalogue's ``title`` and ``category`` of an item of ``platform`` (None where
        the catalogue has none)."""
        p = self.parts.platform(platform)
        key = ("item_columns", platform)
        columns = self.parts.cache.get(key)
        if columns is None:  # built once per platform; a race only builds it twice
            columns = {str(it): j for j, it in enumerate(p.matrix.items.tolist())}
            self.parts.cache[key] = columns
        j = columns.get(item)
        if j is None:
            return {"title": None, "category": None}
        return {"title": p.titles.get(j), "category": p.categories.get(j)}

    def item_json(self, platform: str, r: Recommendation) -> dict[str, object]:
        """One recommended item as the JSON contract shows it: ``item``, ``score``,
        ``reason``, ``title`` and ``category``."""
        return {**r._asdict(), **self.describe(platform, r.item)}

    def clear_cache(self) -> None:
        """Drop every served list (after changing filters or parts by hand)."""
        with self._lock:
            self._results.clear()
            self._keys.clear()
            self._lists.clear()

    # -- online updates ----------------------------------------------------------------------
    def _invalidate(self, accounts: list[tuple[str, str]]) -> None:
        """Drop the served lists of these accounts (lock held)."""
        for key in accounts:
            for k in self._keys.pop(key, set()):
                self._results.pop((key[0], key[1], k), None)
            lists = self._lists.get(key[0])
            if lists is not None:
                lists.rows.pop(key[1], None)
            if self._changed is not None:
                self._changed.add(key)

    def _drop_link_caches(self) -> None:
        """Forget structures derived from the links (lock held)."""
        for key in [k for k in self.parts.cache if k and k[0] == "bridges"]:
            del self.parts.cache[key]

    def update_account(self, platform: str, account: str) -> None:
        """Refresh one account after new events: its history, CF vector (fold-in) and sequence
        vector are recomputed from its events in the store, without retraining."""
        if self.store is None:
            raise InputError("this recommender was built without a store to read events from")
        p = self.parts.platforms.get(platform)
        if p is None:
            return  # a platform new since training: served by the next model version
        events = self.store.account_events(
            platform, account, columns=["account", "item", "event_type", "value", "ts", "seq"]
        )
        # its own lists, and those of its linked accounts (they borrow from its history)
        touched = [
            (platform, account),
            *[(q, b) for q, b, _ in self.parts.linked(platform, account)],
        ]
        if events.num_rows == 0:
            with self._lock:
                p.updated.pop(account, None)
                self._own.pop((platform, account), None)
                self._invalidate(touched)
            return
        cols, conf = p.matrix.encode_account(events)
        cf_vec = p.cf.fold_in(cols, conf) if len(cols) else None
        seq_vec = None
        if self.encoder is not None and self.parts.profiles.sequence.shape[1]:
            seq_vec = self.encoder.encode_account(platform, events)
        with self._lock:
            p.updated[account] = (cols.astype(np.int32), conf.astype(np.float32))
            self._own[(platform, account)] = (cf_vec, seq_vec)
            prow = self.parts.profiles.row(platform, account)
            index = self.parts.seq_index.get(platform)
            if seq_vec is not None and prow is not None and index is not None:
                index.upsert(seq_vec[None, :], np.asarray([prow], np.int64))
            self._invalidate(touched)

    def account_vectors(
        self, platform: str, account: str
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The account's current (CF, sequence) vectors: refreshed online, else trained."""
        q = self.query(platform, account)
        return q.own_cf, q.own_seq

    def apply_links(self, platform: str, account: str, links: list[tuple[str, str, float]]) -> None:
        """Replace the account's asserted links (weight < 1) by ``links`` — (platform,
        account, probability) of its re-scored partners — on both sides."""
        key = (platform, account)
        with self._lock:
            old = self.parts.links.get(key, [])
            self._invalidate([key, *[(q, b) for q, b, _ in old], *[(q, b) for q, b, _ in links]])
            for q, b, w in old:
                if w < 1.0:
                    other = self.parts.links.get((q, b), [])
                    self.parts.links[(q, b)] = [e for e in other if (e[0], e[1]) != key]
            kept = [e for e in old if e[2] >= 1.0]
            known = {(e[0], e[1]) for e in kept}
            fresh = [(q, b, w) for q, b, w in links if (q, b) not in known]
            self.parts.links[key] = sorted(kept + fresh)
            for q, b, w in fresh:
                other = [e for e in self.parts.links.get((q, b), []) if e[0] != platform]
                self.parts.links[(q, b)] = sorted([*other, (platform, account, w)])
            # The bridges between platforms (persons on both, for cross-platform neighbours)
            # stay as they are until the next model: one re-scored link barely moves them,
            # and rebuilding them costs ~1 s at 100,000 accounts on the request path.
            # (An erasure does drop them: the erased account's history must go.)

    def forget(self, accounts: list[tuple[str, str]]) -> None:
        """Drop every cached trace of erased accounts (their own vectors, history, links)."""
        with self._lock:
            self._invalidate(
                [
                    *accounts,
                    *[(q, b) for pa_, a in accounts for q, b, _ in self.parts.linked(pa_, a)],
                ]
            )
            for platform, account in accounts:
                self._own[(platform, account)] = (None, None)
                p = self.parts.platforms.get(platform)
                if p is not None:
                    p.updated[account] = (np.zeros(0, np.int32), np.zeros(0, np.float32))
                self.parts.links.pop((platform, account), None)
            self._drop_link_caches()
            erased = set(map(tuple, accounts))
            for key, linked in list(self.parts.links.items()):
                kept = [entry for entry in linked if (entry[0], entry[1]) not in erased]
                if len(kept) != len(linked):
                    self.parts.links[key] = kept


def recommend_json(
    ws: Workspace, platform: str, raw_id: str, k: int = 10, *, rec: Recommender | None = None
) -> dict[str, object]:
    """``Workspace.recommend``: the contract's JSON document for a raw account id."""
    from crossrec.ingest.pipeline import check_platform

    check_platform(platform)
    rec = rec or Recommender.load(ws)
    account = ws.account_id(platform, raw_id)
    known = ws.store.has_account(platform, account) or bool(rec.parts.linked(platform, account))
    items = rec.recommend(platform, account if known else None, k)
    return {
        "platform": platform,
        "account": raw_id,
        "items": [rec.item_json(platform, r) for r in items],
        "model_version": rec.model_version,
    }
