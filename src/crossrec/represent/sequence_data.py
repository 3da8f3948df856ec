"""Events → per-account item sequences for the sequence encoder (numpy only, no torch).

Accounts are ``(platform, account)`` pairs and items are ``(platform, item)`` pairs: the same
item id on two platforms is two items. Vocabularies are sorted (platform, then id), so the
same events give the same indices whatever the row order of the input table.

An account's events are ordered by timestamp; events without one come first and keep their
ingest order (``seq``, else the row order), so a platform that logs no timestamps (Douban)
uses its file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crossrec.config import SequenceConfig
from crossrec.errors import InputError

REQUIRED_COLUMNS = ("platform", "account", "item")
#: A known link: ``((platform, account), (platform, account))`` of one person.
Link = tuple[tuple[str, str], tuple[str, str]]


class ItemTextLookup(Protocol):
    """Text vectors of items: ``get((platform, item))`` is a float vector of one fixed
    dimension ``(d_text,)``, or ``None`` when the item has no text. A plain ``dict`` works."""

    def get(self, key: tuple[str, str], /) -> Any: ...


@dataclass(frozen=True)
class SequenceData:
    """Events grouped into ordered per-account sequences.

    Attributes
    ----------
    platforms : list of str, sorted; other arrays index into it.
    account_platform : (n_accounts,) int32
    account_names : (n_accounts,) str, sorted within each platform.
    offsets : (n_accounts + 1,) int64; account ``a`` owns ``tokens[offsets[a]:offsets[a+1]]``.
    tokens : (n_events,) int64, item index of each event, oldest first within an account.
    item_platform : (n_items,) int32
    item_names : (n_items,) str
    item_counts : (n_items,) int64, events per item.
    """

    platforms: list[str]
    account_platform: np.ndarray
    account_names: np.ndarray
    offsets: np.ndarray
    tokens: np.ndarray
    item_platform: np.ndarray
    item_names: np.ndarray
    item_counts: np.ndarray

    @property
    def n_accounts(self) -> int:
        return len(self.account_names)

    @property
    def n_items(self) -> int:
        return len(self.item_names)

    @property
    def lengths(self) -> np.ndarray:
        """(n_accounts,) int64 events per account."""
        return np.diff(self.offsets)


def _string_column(events: pa.Table, name: str) -> pa.Array:
    col = events[name].combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    elif not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    if col.null_count:
        raise InputError(
            f"events: column '{name}' has {col.null_count} null values",
            hint="drop or fill those rows before training",
        )
    return col


def _sorted_codes(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``col`` in the sorted order of its distinct values, and those values."""
    enc = pc.dictionary_encode(col)
    order = pc.sort_indices(enc.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    values = enc.dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False).astype(str)
    return rank[enc.indices.to_numpy(zero_copy_only=False)], values


def event_order(events: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Ordering keys of events within an account: ``(ts_key, seq_key)`` float64/int64 arrays.

    Undated events get ``-inf`` (they come first); without a ``seq`` column the row order is
    the ingest order.
    """
    n = events.num_rows
    if "ts" in events.column_names:
        ts = events["ts"].combine_chunks()
        if pa.types.is_timestamp(ts.type):
            ts = ts.cast(pa.int64())
        elif pa.types.is_date(ts.type):
            ts = ts.cast(pa.date32()).cast(pa.int32())
        elif not (
            pa.types.is_integer(ts.type)
            or pa.types.is_floating(ts.type)
            or pa.types.is_null(ts.type)
        ):
            raise InputError(
                f"events: column 'ts' has type {ts.type}",
                hint="use a timestamp or a number of seconds",
            )
        ts_key = pc.fill_null(pc.cast(ts, pa.float64()), -np.inf).to_numpy(zero_copy_only=False)
    else:
        ts_key = np.full(n, -np.inf)
    if "seq" in events.column_names:
        seq = events["seq"].combine_chunks()
        if seq.null_count or not pa.types.is_integer(seq.type):
            raise InputError("events: column 'seq' must be integers without nulls")
        seq_key = seq.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        seq_key = np.arange(n, dtype=np.int64)
    return ts_key, seq_key


def prepare_events(events: pa.Table) -> SequenceData:
    """Group canonical events into ordered per-account sequences.

    Parameters
    ----------
    events : pyarrow Table with columns platform, account, item and optionally ts, seq
        (other columns are ignored).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in events.column_names]
    if missing:
        raise InputError(
            f"events: missing column(s) {', '.join(missing)}",
            hint="pass the canonical events table (platform, account, item, ts, seq)",
        )
    if events.num_rows == 0:
        raise InputError("events: the table is empty", hint="ingest events before training")
    p_codes, platforms = _sorted_codes(_string_column(events, "platform"))
    a_codes, a_values = _sorted_codes(_string_column(events, "account"))
    i_codes, i_values = _sorted_codes(_string_column(events, "item"))

    # (platform, id) pairs as one int64 key; np.unique keeps the sorted (platform, id) order.
    acc_keys, acc_index = np.unique(p_codes * len(a_values) + a_codes, return_inverse=True)
    item_keys, item_index = np.unique(p_codes * len(i_values) + i_codes, return_inverse=True)

    ts_key, seq_key = event_order(events)
    # lexsort is stable, so full ties keep the row order.
    order = np.lexsort((seq_key, ts_key, acc_index))
    counts = np.bincount(acc_index, minlength=len(acc_keys))
    offsets = np.zeros(len(acc_keys) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return SequenceData(
        platforms=[str(p) for p in platforms],
        account_platform=(acc_keys // len(a_values)).astype(np.int32),
        account_names=a_values[acc_keys % len(a_values)],
        offsets=offsets,
        tokens=item_index[order].astype(np.int64),
        item_platform=(item_keys // len(i_values)).astype(np.int32),
        item_names=i_values[item_keys % len(i_values)],
        item_counts=np.bincount(item_index, minlength=len(item_keys)).astype(np.int64),
    )


def windows(
    offsets: np.ndarray, accounts: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the sequences of ``accounts`` into windows of at most ``max_len`` events.

    Windows are laid from the newest event backwards, so the most recent window is full;
    windows with fewer than two events teach nothing and are dropped.

    Returns
    -------
    starts, lengths : (n_windows,) int64 each, positions in the token array.
    """
    accounts = np.asarray(accounts, dtype=np.int64)
    n = offsets[accounts + 1] - offsets[accounts]
    per = -(-n // max_len)
    acc = np.repeat(accounts, per)
    j = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    ends = offsets[acc + 1] - j * max_len
    starts = np.maximum(offsets[acc], ends - max_len)
    keep = ends - starts >= 2
    return starts[keep], (ends - starts)[keep]


def last_windows(
    offsets: np.ndarray, accounts: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """The newest window (at most ``max_len`` events) of each account: ``starts, lengths``."""
    accounts = np.asarray(accounts, dtype=np.int64)
    ends = offsets[accounts + 1]
    starts = np.maximum(offsets[accounts], ends - max_len)
    return starts, ends - starts


def batch_tokens(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Right-padded ``(B, L)`` int64 token rows, ``L = max(lengths)``; item ``i`` → ``i + 1``,
    padding → 0 (with a causal encoder, right padding never changes the real positions)."""
    width = int(lengths.max())
    idx = starts[:, None] + np.arange(width)[None, :]
    mask = np.arange(width)[None, :] < lengths[:, None]
    return np.where(mask, tokens[np.minimum(idx, len(tokens) - 1)] + 1, 0)


def text_matrix(
    platforms: list[str],
    item_platform: np.ndarray,
    item_names: np.ndarray,
    lookup: ItemTextLookup | None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Text vectors of the items that have one.

    Returns
    -------
    matrix : (n_items, d_text) float32 (zero rows where there is no text), or None when no
        item has text.
    has_text : (n_items,) bool
    """
    n = len(item_names)
    has = np.zeros(n, dtype=bool)
    if lookup is None:
        return None, has
    rows: dict[int, np.ndarray] = {}
    dim = None
    for i, (p, name) in enumerate(zip(item_platform.tolist(), item_names.tolist(), strict=True)):
        vec = text_vector(lookup, platforms[p], name, dim)
        if vec is not None:
            dim = len(vec)
            rows[i] = vec
    if dim is None:
        return None, has
    matrix = np.zeros((n, dim), dtype=np.float32)
    for i, vec in rows.items():
        matrix[i] = vec
        has[i] = True
    return matrix, has


def text_vector(
    lookup: ItemTextLookup, platform: str, item: str, dim: int | None
) -> np.ndarray | None:
    """One item's text vector ``(d_text,)`` float32, checked, or None."""
    vec = lookup.get((platform, item))
    if vec is None:
        return None
    vec = np.asarray(vec, dtype=np.float32)
    if vec.ndim != 1 or (dim is not None and len(vec) != dim) or not np.isfinite(vec).all():
        raise InputError(
            f"item text vector of ({platform!r}, {item!r}) has shape {vec.shape}"
            f"{'' if dim is None else f', expected ({dim},)'} or non-finite values",
            hint="give every item a finite vector from the same text encoder",
        )
    return vec


#: Most held-out windows (a seeded sample) and link pairs scored after each epoch: bounds
#: the cost of the early-stopping check on large data.
MAX_VALID_WINDOWS = 5_000
MAX_VALID_LINKS = 2_048


@dataclass
class TrainSet:
    """What one training run sees: windows and link pairs (account indices ``(n, 2)``)."""

    data: SequenceData
    train_windows: tuple[np.ndarray, np.ndarray]
    valid_windows: tuple[np.ndarray, np.ndarray]
    train_links: np.ndarray
    valid_links: np.ndarray


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, chunk: int = 32
) -> list[np.ndarray]:
    """Shuffled batches of window indices whose lengths are alike.

    Windows are shuffled, sorted by length within chunks of ``chunk`` batches and cut into
    batches, whose order is shuffled again: right padding (wasted work) shrinks while every
    batch still mixes accounts and platforms.
    """
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    span = chunk * batch_size
    for c in range(0, len(order), span):
        part = order[c : c + span]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def split_accounts(
    data: SequenceData,
    config: SequenceConfig,
    links: Sequence[Link] | None,
    rng: np.random.Generator,
) -> tuple[TrainSet, dict[str, int]]:
    """Hold out a seeded fraction of the accounts (those with 2+ events) for early stopping;
    links touching a held-out account are validation links."""
    candidates = np.flatnonzero(data.lengths >= 2)
    n_hold = round(config.holdout * len(candidates)) if len(candidates) >= 10 else 0
    held = np.sort(rng.permutation(candidates)[:n_hold])
    is_held = np.zeros(data.n_accounts, dtype=bool)
    is_held[held] = True
    train_acc = np.flatnonzero(~is_held)
    v_starts, v_lengths = windows(data.offsets, held, config.max_len)
    keep = np.arange(len(v_starts))
    if len(keep) > MAX_VALID_WINDOWS:
        keep = rng.permutation(len(keep))[:MAX_VALID_WINDOWS]
    # Sorted by length so that validation batches carry little padding.
    keep = keep[np.argsort(v_lengths[keep], kind="stable")]
    v_starts, v_lengths = v_starts[keep], v_lengths[keep]

    pairs, unknown = link_pairs(data, links or [])
    pair_held = is_held[pairs[:, 0]] | is_held[pairs[:, 1]] if len(pairs) else np.zeros(0, bool)
    valid_links = pairs[pair_held][:MAX_VALID_LINKS]
    train_set = TrainSet(
        data=data,
        train_windows=windows(data.offsets, train_acc, config.max_len),
        valid_windows=(v_starts, v_lengths),
        train_links=pairs[~pair_held],
        valid_links=valid_links,
    )
    info = {
        "holdout_accounts": int(n_hold),
        "links_train": int((~pair_held).sum()),
        "links_valid": len(valid_links),
        "links_unknown": unknown,
    }
    return train_set, info


def link_pairs(data: SequenceData, links: Sequence[Link]) -> tuple[np.ndarray, int]:
    """Account index pairs ``(n, 2)`` int64 of the links whose both accounts have events."""
    platforms = np.asarray(data.platforms, dtype=str)
    keys = {
        (p, a): i
        for i, (p, a) in enumerate(
            zip(platforms[data.account_platform].tolist(), data.account_names.tolist(), strict=True)
        )
    }
    pairs, unknown = [], 0
    for link in links:
        try:
            (pa_, aa), (pb, ab) = link
        except (TypeError, ValueError):
            raise InputError(
                f"links: {link!r} is not ((platform, account), (platform, account))"
            ) from None
        ia, ib = keys.get((pa_, aa)), keys.get((pb, ab))
        if ia is None or ib is None or ia == ib:
            unknown += 1
        else:
            pairs.append((ia, ib))
    arr = np.asarray(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)
    return arr, unknown
