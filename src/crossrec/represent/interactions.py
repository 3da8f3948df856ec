"""The account × item confidence matrix of one platform.

Collaborative filtering needs, per platform, how strongly each account is tied to each item.
This module turns canonical events (``platform, account, item, event_type, value, ts, seq``)
into that matrix with stable index maps: accounts and items are sorted, so the same events give
the same matrix, row for row.

Confidence of one event
-----------------------
::

    c(e) = w(type) × (1 + log1p(max(value, 0) / s(type)))     when the event has a value
    c(e) = w(type)                                              when it has none

``w`` is ``train.event_weights`` (purchase > rating > like > view by default; unknown types get
``train.default_event_weight``). ``s(type)`` is the median of the positive values of that
event type on the platform. Dividing by it makes the formula scale-free: a platform that rates
0-100 and one that rates 1-5 give the same confidences for the same relative ratings, and the
logarithm keeps large values (play counts, prices) from exploding — a value a thousand times
the median multiplies the weight by about 7.9. Repeated events of the same (account, item) pair
add up, so ten views count more than one.

The matrix values are the confidences ``C`` of implicit ALS (Hu, Koren & Volinsky 2008); BPR
uses only which entries are non-zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from crossrec.config import TrainConfig
from crossrec.errors import InputError, ModelError, NotFoundError

_REQUIRED = ("account", "item", "event_type", "value")
_META_FILE = "interactions.json"
_FORMAT = 1


@dataclass(frozen=True)
class EventWeighting:
    """How events become confidences (see the module docstring for the formula).

    Parameters
    ----------
    event_weights : mapping of str to float
        Weight per event type; must be >= 0 (0 ignores the type).
    default_weight : float
        Weight of event types missing from ``event_weights``.
    value_scales : mapping of str to float
        Per event type, the value that counts as "typical" (median of positive values).
        Types without positive values use 1.
    """

    event_weights: Mapping[str, float]
    default_weight: float = 1.0
    value_scales: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.event_weights.items() if not v >= 0}
        if bad or not self.default_weight >= 0:
            raise InputError(
                f"event weights must be >= 0, got {bad or {'default': self.default_weight}}",
                hint="set train.event_weights to non-negative numbers (0 ignores a type)",
            )

    @classmethod
    def fit(cls, events: pa.Table, config: TrainConfig) -> EventWeighting:
        """Weights from ``config``, value scales measured on ``events`` of one platform."""
        scales: dict[str, float] = {}
        types = pc.unique(events.column("event_type")).to_pylist()
        for event_type in sorted(t for t in types if t is not None):
            values = events.filter(pc.equal(events.column("event_type"), event_type))
            positive = pc.filter(values.column("value"), pc.greater(values.column("value"), 0))
            if len(positive) > 0:
                median = float(np.median(positive.to_numpy(zero_copy_only=False)))
                if math.isfinite(median) and median > 0:
                    scales[event_type] = median
        return cls(dict(config.event_weights), config.default_event_weight, scales)

    def weight(self, event_type: str) -> float:
        return float(self.event_weights.get(event_type, self.default_weight))

    def confidences(
        self, event_types: pa.Array | pa.ChunkedArray, values: np.ndarray
    ) -> np.ndarray:
        """Confidence of each event.

        Parameters
        ----------
        event_types : arrow string array, shape (n,)
        values : np.ndarray, shape (n,), float64, NaN where the event has no value

        Returns
        -------
        np.ndarray, shape (n,), float64
        """
        encoded = pc.dictionary_encode(event_types).combine_chunks()
        if encoded.null_count:
            raise InputError("events have a null event_type", hint="re-ingest the platform")
        names = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        weights = np.array([self.weight(n) for n in names], dtype=np.float64)[codes]
        scales = np.array([self.value_scales.get(n, 1.0) for n in names], dtype=np.float64)[codes]
        # NaN (no value) and non-positive values both leave the bare weight.
        boost = np.log1p(np.clip(np.nan_to_num(values, nan=0.0), 0.0, None) / scales)
        return weights * (1.0 + boost)

    def to_json(self) -> dict[str, object]:
        return {
            "event_weights": dict(self.event_weights),
            "default_weight": self.default_weight,
            "value_scales": dict(self.value_scales),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> EventWeighting:
        return cls(
            {str(k): float(v) for k, v in dict(data["event_weights"]).items()},  # type: ignore[call-overload]
            float(data["default_weight"]),  # type: ignore[arg-type]
            {str(k): float(v) for k, v in dict(data["value_scales"]).items()},  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class InteractionMatrix:
    """Confidence matrix of one platform and the index maps of its rows and columns.

    Attributes
    ----------
    platform : str
    matrix : scipy.sparse.csr_matrix, shape (n_accounts, n_items), float32
        Summed confidences; sorted column indices; no explicit zeros.
    accounts : np.ndarray, shape (n_accounts,), str
        Account pseudonyms, sorted; row ``i`` is ``accounts[i]``.
    items : np.ndarray, shape (n_items,), str
        Item ids, sorted; column ``j`` is ``items[j]``.
    weighting : EventWeighting
        The weights and value scales used, to encode later events the same way.
    """

    platform: str
    matrix: sp.csr_matrix
    accounts: np.ndarray
    items: np.ndarray
    weighting: EventWeighting

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.accounts), len(self.items))

    def account_index(self, account: str) -> int:
        """Row of ``account``; raises :class:`NotFoundError` when it has no events here."""
        return _lookup(self.accounts, account, "account", self.platform)

    def item_index(self, item: str) -> int:
        """Column of ``item``; raises :class:`NotFoundError` when no event names it."""
        return _lookup(self.items, item, "item", self.platform)

    def encode_account(self, events: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Item columns and summed confidences of one account's events, for ``CFModel.fold_in``.

        Items this matrix does not know (new since training) are skipped: the CF model has no
        factors for them.

        Parameters
        ----------
        events : pyarrow.Table
            Canonical events of one account on this platform (``account``, ``item``,
            ``event_type``, ``value``; other columns are ignored).

        Returns
        -------
        item_indices : np.ndarray, shape (m,), int32, sorted and unique
        confidences : np.ndarray, shape (m,), float32
        """
        _check_columns(events)
        if len(pc.unique(events.column("account"))) > 1:
            raise InputError(
                "encode_account takes the events of one account",
                hint="filter the events to one account first",
            )
        columns = pc.index_in(_as_string(events.column("item")), value_set=pa.array(self.items))
        cols = columns.to_numpy(zero_copy_only=False)
        known = ~np.isnan(cols.astype(np.float64))
        conf = self.weighting.confidences(events.column("event_type"), _values(events))
        item_indices = cols[known].astype(np.int64)
        sums = np.bincount(item_indices, weights=conf[known], minlength=len(self.items))
        out = np.flatnonzero(sums)
        return out.astype(np.int32), sums[out].astype(np.float32)

    def erase(self, accounts: Iterable[str]) -> tuple[InteractionMatrix, np.ndarray]:
        """The matrix without the rows of ``accounts`` (pseudonyms; absent ones are ignored).

        Rows stay sorted; the CF model's user factors must drop the same rows
        (:meth:`crossrec.represent.cf.CFModel.erase`). Items and the weighting are kept.

        Returns
        -------
        matrix : InteractionMatrix
            ``(n_accounts - e, n_items)``.
        erased_rows : np.ndarray, shape (e,), int64
            Old rows removed, ascending.
        """
        wanted = np.asarray(sorted(set(accounts)), dtype=str)
        erased_rows = np.flatnonzero(np.isin(self.accounts, wanted)).astype(np.int64)
        keep = np.ones(len(self.accounts), dtype=bool)
        keep[erased_rows] = False
        matrix = self.matrix[keep]
        matrix.sort_indices()
        out = InteractionMatrix(
            self.platform, matrix, self.accounts[keep], self.items, self.weighting
        )
        return out, erased_rows

    def save(self, directory: str | Path) -> None:
        """Write the index maps (.npy), the matrix (.npz) and the weighting (JSON)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "accounts.npy", self.accounts.astype(str))
        np.save(path / "items.npy", self.items.astype(str))
        m = self.matrix
        np.savez(
            path / "matrix.npz", data=m.data, indices=m.indices, indptr=m.indptr, shape=m.shape
        )
        meta = {"format": _FORMAT, "platform": self.platform, "weighting": self.weighting.to_json()}
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), "utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> InteractionMatrix:
        path = Path(directory)
        try:
            meta = json.loads((path / _META_FILE).read_text("utf-8"))
            accounts = np.load(path / "accounts.npy", allow_pickle=False)
            items = np.load(path / "items.npy", allow_pickle=False)
            with np.load(path / "matrix.npz", allow_pickle=False) as z:
                matrix = sp.csr_matrix(
                    (z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])
                )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"{path}: cannot read the interaction matrix: {exc}",
                hint="retrain the models of this platform",
            ) from None
        if meta.get("format") != _FORMAT:
            raise ModelError(f"{path}: unknown interaction-matrix format {meta.get('format')}")
        return cls(
            meta["platform"], matrix, accounts, items, EventWeighting.from_json(meta["weighting"])
        )


def build_interactions(events: pa.Table, config: TrainConfig) -> InteractionMatrix:
    """Build the confidence matrix of one platform from its canonical events.

    Parameters
    ----------
    events : pyarrow.Table
        Canonical events of ONE platform: ``platform, account, item, event_type, value`` (and
        possibly ``ts, seq, event_id, attrs``, which are ignored here). Row order does not
        matter.
    config : TrainConfig
        ``event_weights`` and ``default_event_weight`` are used.

    Returns
    -------
    InteractionMatrix
        ``matrix`` has shape (n_accounts, n_items), float32, CSR with sorted indices.
    """
    _check_columns(events)
    platforms = (
        pc.unique(events.column("platform")).to_pylist()
        if "platform" in events.column_names
        else []
    )
    if len(platforms) > 1:
        raise InputError(
            f"events of several platforms ({', '.join(sorted(map(str, platforms)))})",
            hint="build one interaction matrix per platform",
        )
    if events.num_rows == 0:
        raise ModelError(
            "no events to build an interaction matrix from", hint="ingest events first"
        )
    if events.column("account").null_count or events.column("item").null_count:
        raise InputError("events have null account or item ids", hint="re-ingest the platform")
    account_col = _as_string(events.column("account"))
    item_col = _as_string(events.column("item"))
    accounts = _sorted_unique(account_col)
    items = _sorted_unique(item_col)
    # Hash lookups into the sorted uniques: O(n), instead of sorting every event's strings.
    rows = pc.index_in(account_col, value_set=accounts).to_numpy(zero_copy_only=False)
    cols = pc.index_in(item_col, value_set=items).to_numpy(zero_copy_only=False)
    weighting = EventWeighting.fit(events, config)
    conf = weighting.confidences(events.column("event_type"), _values(events))
    # COO -> CSR sums repeated (account, item) pairs.
    matrix = sp.csr_matrix(
        (conf, (rows.astype(np.int32), cols.astype(np.int32))),
        shape=(len(accounts), len(items)),
        dtype=np.float64,
    )
    matrix.sum_duplicates()
    matrix = matrix.astype(np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    platform = str(platforms[0]) if platforms else ""
    return InteractionMatrix(
        platform,
        matrix,
        np.asarray(accounts.to_pylist(), dtype=str),
        np.asarray(items.to_pylist(), dtype=str),
        weighting,
    )


def _check_columns(events: pa.Table) -> None:
    missing = [c for c in _REQUIRED if c not in events.column_names]
    if missing:
        raise InputError(
            f"events lack column(s) {', '.join(missing)}",
            hint="read them with store.read('events', columns=[...]) including these",
        )


def _values(events: pa.Table) -> np.ndarray:
    values = pc.cast(events.column("value"), pa.float64())
    return pc.fill_null(values, float("nan")).to_numpy(zero_copy_only=False)


def _as_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _sorted_unique(column: pa.ChunkedArray) -> pa.Array:
    unique = pc.unique(column)
    return pc.take(unique, pc.sort_indices(unique))


def _lookup(values: np.ndarray, key: str, what: str, platform: str) -> int:
    pos = int(np.searchsorted(values, key))
    if pos >= len(values) or values[pos] != key:
        raise NotFoundError(
            f"{what} {key!r} has no events on platform {platform!r}",
            hint=f"ingest events of this {what} and retrain, or fold it in online",
        )
    return pos
