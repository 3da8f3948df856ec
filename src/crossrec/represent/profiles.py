"""Account vectors and profiles: one row per (platform, account) across every signal.

Per account: its CF vector (from its platform's model), its sequence vector (shared space of
all platforms), the weighted mean text vector of its items (event-type weight × recency
decay), an activity rhythm (hour-of-day × day-of-week histogram, when timestamps exist),
its active days and its top categories. Saved as .npy/.npz and JSON, never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crossrec.errors import ModelError

RHYTHM_BINS = 7 * 24  # day of week (Monday first) × hour of day, UTC
VALUE_BINS = 10  # deciles of a value's percentile among its platform's values
_META = "accounts.json"
_ARRAYS = "accounts.npz"


@dataclass
class AccountProfiles:
    """Vectors and profile facts of every account, rows sorted by (platform, account).

    Attributes
    ----------
    platform, account : np.ndarray (n,) str
    cf : np.ndarray (n, f) float32 — the CF vector on the account's own platform.
    sequence : np.ndarray (n, d) float32, unit rows — the shared sequence space.
    text : np.ndarray (n, t) float32, unit rows; zero where ``has_text`` is False.
    rhythm : np.ndarray (n, 168) float32, rows sum to 1; zero where ``has_rhythm`` is False.
    active_days : np.ndarray (n,) int32 — distinct UTC dates with events (0 without time).
    values : np.ndarray (n, 10) float32, rows sum to 1 — how the account's values (ratings)
        fall into the deciles of its platform's values: a habit that survives a rescaled
        rating scale; zero where ``has_values`` is False.
    events : np.ndarray (n,) int32 — events per account.
    top_categories : list of list of str — up to 3 per account, most weighted first.
    """

    platform: np.ndarray
    account: np.ndarray
    cf: np.ndarray
    sequence: np.ndarray
    text: np.ndarray
    has_text: np.ndarray
    rhythm: np.ndarray
    has_rhythm: np.ndarray
    active_days: np.ndarray
    events: np.ndarray
    top_categories: list[list[str]]
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, VALUE_BINS), np.float32))
    has_values: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    _rows: dict[tuple[str, str], int] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.platform.shape[0])

    @property
    def value_mask(self) -> np.ndarray:
        """(n,) bool: which rows have a value habit (all False for profiles built without)."""
        if len(self.has_values) != len(self.platform):
            return np.zeros(len(self.platform), bool)
        return np.asarray(self.has_values, bool)

    def row(self, platform: str, account: str) -> int | None:
        if self._rows is None:
            self._rows = {
                (p, a): i for i, (p, a) in enumerate(zip(self.platform, self.account, strict=True))
            }
        return self._rows.get((platform, account))

    def rows_of(self, platform: str) -> np.ndarray:
        return np.flatnonzero(self.platform == platform)

    def erase(self, keys: Iterable[tuple[str, str]]) -> tuple[AccountProfiles, np.ndarray]:
        """The profiles without the accounts ``keys`` (``(platform, account)`` pairs).

        Rows stay sorted by (platform, account), so the rows after an erased one move up:
        whatever stores profile rows (vector index ids, candidate pairs) must be renumbered
        with the returned map.

        Returns
        -------
        profiles : AccountProfiles
            ``n - e`` rows, ``e`` being the number of ``keys`` present.
        row_map : np.ndarray, shape (n,), int64
            New row of each old row; -1 for an erased one.
        """
        drop = np.zeros(len(self), dtype=bool)
        for platform, account in keys:
            row = self.row(platform, account)
            if row is not None:
                drop[row] = True
        keep = np.flatnonzero(~drop)
        row_map = np.full(len(self), -1, dtype=np.int64)
        row_map[keep] = np.arange(len(keep))

        def rows(a: np.ndarray) -> np.ndarray:
            return a[keep] if len(a) == len(self) else a  # absent optional arrays stay empty

        erased = AccountProfiles(
            platform=self.platform[keep],
            account=self.account[keep],
            cf=self.cf[keep],
            sequence=self.sequence[keep],
            text=self.text[keep],
            has_text=self.has_text[keep],
            rhythm=self.rhythm[keep],
            has_rhythm=self.has_rhythm[keep],
            active_days=self.active_days[keep],
            events=self.events[keep],
            top_categories=[self.top_categories[i] for i in keep.tolist()],
            values=rows(self.values),
            has_values=rows(self.has_values),
        )
        return erased, row_map

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / _ARRAYS,
            platform=self.platform.astype(str),
            account=self.account.astype(str),
            cf=self.cf,
            sequence=self.sequence,
            text=self.text,
            has_text=self.has_text,
            rhythm=self.rhythm,
            has_rhythm=self.has_rhythm,
            active_days=self.active_days,
            events=self.events,
            values=self.values,
            has_values=self.has_values,
        )
        meta = {"format": 1, "accounts": len(self), "top_categories": self.top_categories}
        (directory / _META).write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> AccountProfiles:
        try:
            arrays = np.load(directory / _ARRAYS, allow_pickle=False)
            meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(
                f"{directory} holds no account profiles", hint="run `crossrec train`"
            ) from None
        return cls(
            **{k: arrays[k] for k in arrays.files},
            top_categories=[list(c) for c in meta["top_categories"]],
        )


def _keys(events: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct (platform, account) and each event's row among them."""
    combined = pc.binary_join_element_wise(
        events.column("platform"), events.column("account"), "\x1f"
    )
    uniq, inverse = np.unique(
        combined.to_numpy(zero_copy_only=False).astype(str), return_inverse=True
    )
    parts = np.char.partition(uniq, "\x1f")
    return parts[:, 0], parts[:, 2], inverse


def event_weights(
    events: pa.Table, type_weights: Mapping[str, float], default: float, half_life_days: float
) -> np.ndarray:
    """Weight of each event: its type's weight × 2^(-age / half-life), age counted from the
    newest event of its platform (events without time are not decayed)."""
    types = events.column("event_type").to_numpy(zero_copy_only=False)
    uniq, codes = np.unique(types.astype(str), return_inverse=True)
    w = np.array([type_weights.get(t, default) for t in uniq], dtype=np.float64)[codes]
    ts = _epoch_seconds(events)
    platforms = events.column("platform").to_numpy(zero_copy_only=False).astype(str)
    for p in np.unique(platforms):
        mask = (platforms == p) & ~np.isnan(ts)
        if mask.any():
            age_days = (ts[mask].max() - ts[mask]) / 86_400.0
            w[mask] *= np.exp2(-age_days / half_life_days)
    return w


def _epoch_seconds(events: pa.Table) -> np.ndarray:
    col = events.column("ts")
    micros = pc.cast(pc.cast(col, pa.timestamp("us", tz="UTC")), pa.int64())
    return micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6


def build_profiles(
    events: pa.Table,
    *,
    weights: np.ndarray,
    cf_vectors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    sequence: tuple[np.ndarray, np.ndarray, np.ndarray],
    item_text: tuple[Mapping[tuple[str, str], int], np.ndarray] | None,
    categories: Mapping[tuple[str, str], str] | None = None,
) -> AccountProfiles:
    """Assemble every account's vectors and profile.

    Parameters
    ----------
    events : canonical events (platform, account, item, event_type, ts).
    weights : (n_events,) weight of each event (see :func:`event_weights`).
    cf_vectors : platform → (accounts (m,), vectors (m, f)).
    sequence : (platforms, accounts, vectors (m, d)) of the sequence encoder.
    item_text : ((platform, item) → row, vectors (n_items, t) unit rows) or None.
    categories : (platform, item) → category string ("A|B" lists several) or None.
    """
    platform, account, inverse = _keys(events)
    n = len(platform)
    rows = {(p, a): i for i, (p, a) in enumerate(zip(platform, account, strict=True))}
    # CF (per platform, all of one width)
    f = next((v.shape[1] for _, v in cf_vectors.values()), 0)
    cf = np.zeros((n, f), dtype=np.float32)
    for p, (accs, vecs) in cf_vectors.items():
        idx = np.array([rows[(p, a)] for a in accs], dtype=np.int64)
        cf[idx] = vecs
    sp, sa, sv = sequence
    seq = np.zeros((n, sv.shape[1]), dtype=np.float32)
    idx = np.array([rows.get((p, a), -1) for p, a in zip(sp, sa, strict=True)], dtype=np.int64)
    seq[idx[idx >= 0]] = sv[idx >= 0]
    # text mean
    items = events.column("item").to_numpy(zero_copy_only=False).astype(str)
    ev_platform = events.column("platform").to_numpy(zero_copy_only=False).astype(str)
    if item_text is not None:
        lookup, vectors = item_text
        t_rows = np.array(
            [lookup.get((p, i), -1) for p, i in zip(ev_platform, items, strict=True)],
            dtype=np.int64,
        )
        ok = t_rows >= 0
        text = np.zeros((n, vectors.shape[1]), dtype=np.float64)
        np.add.at(text, inverse[ok], vectors[t_rows[ok]] * weights[ok, None])
        norms = np.linalg.norm(text, axis=1)
        has_text = norms > 0
        text[has_text] /= norms[has_text, None]
        text32 = text.astype(np.float32)
    else:
        text32 = np.zeros((n, 0), dtype=np.float32)
        has_text = np.zeros(n, dtype=bool)
    # rhythm and active days
    ts = _epoch_seconds(events)
    timed = ~np.isnan(ts)
    rhythm = np.zeros((n, RHYTHM_BINS), dtype=np.float64)
    active = np.zeros(n, dtype=np.int32)
    if timed.any():
        secs = ts[timed].astype(np.int64)
        days = np.floor_divide(secs, 86_400)
        dow = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        hour = (secs % 86_400) // 3_600
        np.add.at(rhythm, (inverse[timed], dow * 24 + hour), 1.0)
        pairs = np.unique(np.stack([inverse[timed], days]), axis=1)
        np.add.at(active, pairs[0], 1)
    totals = rhythm.sum(axis=1)
    has_rhythm = totals > 0
    rhythm[has_rhythm] /= totals[has_rhythm, None]
    counts = np.bincount(inverse, minlength=n).astype(np.int32)
    top = _top_categories(inverse, ev_platform, items, weights, categories, n)
    values, has_values = _value_profiles(events, ev_platform, inverse, n)
    return AccountProfiles(
        platform=platform,
        account=account,
        cf=cf,
        sequence=seq,
        text=text32,
        has_text=has_text,
        rhythm=rhythm.astype(np.float32),
        has_rhythm=has_rhythm,
        active_days=active,
        events=counts,
        top_categories=top,
        values=values,
        has_values=has_values,
    )


def _value_profiles(
    events: pa.Table, platforms: np.ndarray, inverse: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per account, the share of its values in each decile of its platform's values."""
    raw = events.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    hist = np.zeros((n, VALUE_BINS), dtype=np.float64)
    for p in np.unique(platforms):
        mask = (platforms == p) & ~np.isnan(raw)
        if not mask.any():
            continue
        vals = raw[mask]
        order = np.sort(vals)
        # mid-rank percentile: tied values share one, so a rescaled scale gives the same bins
        ranks = np.searchsorted(order, vals, "left") + np.searchsorted(order, vals, "right")
        pct = ranks / (2.0 * len(order))
        bins = np.minimum((pct * VALUE_BINS).astype(np.int64), VALUE_BINS - 1)
        np.add.at(hist, (inverse[mask], bins), 1.0)
    totals = hist.sum(axis=1)
    has = totals > 0
    hist[has] /= totals[has, None]
    return hist.astype(np.float32), has


def _top_categories(
    inverse: np.ndarray,
    platforms: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    categories: Mapping[tuple[str, str], str] | None,
    n: int,
    k: int = 3,
) -> list[list[str]]:
    scores: list[dict[str, float]] = [{} for _ in range(n)]
    if categories:
        for row, p, i, w in zip(inverse.tolist(), platforms, items, weights.tolist(), strict=True):
            cat = categories.get((p, i))
            if not cat:
                continue
            for c in cat.split("|"):
                c = c.strip()
                if c:
                    scores[row][c] = scores[row].get(c, 0.0) + w
    return [[c for c, _ in sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))[:k]] for s in scores]
