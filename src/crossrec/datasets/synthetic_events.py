"""Events of the synthetic generator, made one chunk of accounts at a time.

A chunk's events depend only on the population, the catalogue and the chunk's own seeded
generator, so memory stays bounded by the chunk and the output does not depend on how many
chunks came before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossrec.datasets.synthetic_people import Catalogue, Population

DAY = 86_400
#: Share of events at a random hour instead of near the person's peak hour.
OFF_PEAK = 0.15


@dataclass(frozen=True)
class Chunk:
    """Events of accounts ``a0..a1`` of one platform, grouped by account, each in time order.

    Attributes
    ----------
    account
        ``(n,)`` local account index on the platform.
    item
        ``(n,)`` item index in the platform's catalogue.
    timestamp
        ``(n,)`` int64 epoch seconds.
    value
        ``(n,)`` float64 values, or ``None`` when the platform records none (plays).
    """

    account: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    value: np.ndarray | None


def _pick(u: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Row-wise inverse-CDF draw: ``u`` ``(n,)`` against ``cdf`` ``(n, m)`` -> ``(n,)`` codes."""
    return (u[:, None] >= cdf[:, :-1]).sum(axis=1)


def _values(kind: str, in_topic: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Values per event: liked topics get better values than exploration."""
    n = len(in_topic)
    if kind == "music":
        return None
    if kind == "video":  # fraction watched
        u2 = rng.random(n) ** 2  # skewed towards 0: liked items are mostly watched to the end
        return np.round(np.where(in_topic, 1.0 - 0.95 * u2, 0.05 + 0.95 * u2), 2)
    if kind == "books":  # 1-5 stars
        liked = np.searchsorted(np.array([0.05, 0.25, 0.65, 1.0]), rng.random(n), side="right") + 2
        other = (
            np.searchsorted(np.array([0.15, 0.4, 0.7, 0.9, 1.0]), rng.random(n), side="right") + 1
        )
        return np.where(in_topic, liked, other).astype(np.float64)
    return np.round(rng.lognormal(3.0, 0.7, size=n), 2)  # shop: price paid


def make_chunk(
    population: Population,
    catalogue: Catalogue,
    account_person: np.ndarray,
    counts: np.ndarray,
    a0: int,
    a1: int,
    *,
    kind: str,
    start: int,
    explore: float,
    rng: np.random.Generator,
) -> Chunk:
    """Generate the events of accounts ``a0..a1`` of one platform.

    Parameters
    ----------
    population, catalogue
        The persons and the platform's items.
    account_person
        ``(A,)`` person code of each account of the platform.
    counts
        ``(A,)`` events per account.
    a0, a1
        The chunk's accounts (local indexes).
    kind
        Platform kind: ``video``, ``music``, ``books`` or ``shop``.
    start
        Epoch seconds of day 0.
    explore
        Share of events on any item (by popularity) rather than a followed topic.
    rng
        The chunk's own seeded generator.
    """
    account = np.repeat(np.arange(a0, a1), counts[a0:a1])
    person = account_person[account]
    n = len(account)
    # What: a followed topic, then an item of that topic by popularity; or anything popular.
    topic = population.topics[person, _pick(rng.random(n), population.topic_cdf[person])]
    u = rng.random(n)
    in_topic = rng.random(n) >= explore
    pos = np.empty(n, dtype=np.int64)
    pos[in_topic] = np.searchsorted(catalogue.topic_cdf, (topic + u)[in_topic], side="right")
    pos[~in_topic] = np.searchsorted(catalogue.global_cdf, u[~in_topic], side="right")
    item = catalogue.by_topic[np.minimum(pos, len(catalogue.by_topic) - 1)]
    # When: a week within the person's active span, their preferred weekday and hour.
    weeks = np.maximum(population.span_days[person] // 7, 1)
    week = (rng.random(n) * weeks).astype(np.int64)
    weekday = _pick(rng.random(n), population.weekday_cdf[person])
    hour = np.rint(
        population.peak_hour[person] + rng.normal(size=n) * population.hour_spread[person]
    )
    hour = (
        np.where(rng.random(n) < OFF_PEAK, rng.integers(0, 24, size=n), hour).astype(np.int64) % 24
    )
    first = population.start_day[person].astype(np.int64)
    day = first - first % 7 + 7 * week + weekday  # day 0 is a Monday: weekday 0 is Monday
    ts = start + day * DAY + hour * 3600 + rng.integers(0, 3600, size=n)
    # Accounts are already in ascending runs: one int64 key sorts each run by time, and is far
    # faster than lexsort. Account < 2**31 and ts - start < 2**32 (days < 49,000).
    order = np.argsort((account.astype(np.int64) << 32) | (ts - start), kind="stable")
    value = _values(kind, in_topic, rng)
    return Chunk(account[order], item[order], ts[order], None if value is None else value[order])
