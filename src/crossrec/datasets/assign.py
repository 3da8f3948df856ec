"""Which platforms each person uses, and which platform each of their events lands on.

Pure numpy on integer codes: persons ``0..n-1``, platforms ``0..k-1``, events ``0..E-1``.
Every function takes its own seeded generator, so each step is reproducible on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Membership:
    """The platforms each person is on.

    Attributes
    ----------
    order
        ``(n, k)`` a random order of the platforms per person; the person is on the first
        ``size[p]`` of them.
    size
        ``(n,)`` number of platforms per person, ``1 <= size <= k``.
    """

    order: np.ndarray
    size: np.ndarray


def _rank_within(group: np.ndarray, sort_order: np.ndarray) -> np.ndarray:
    """Rank of each element within its group, following ``sort_order`` (sorted by group)."""
    g = group[sort_order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    rank = np.empty(len(g), dtype=np.int64)
    rank[sort_order] = np.arange(len(g)) - run_start
    return rank


def choose_membership(
    n_persons: int,
    n_platforms: int,
    single_fraction: float,
    events_per_person: np.ndarray,
    rng: np.random.Generator,
) -> Membership:
    """Put ``round(single_fraction * n)`` persons on one platform and the rest on 2..k.

    A person on several platforms is on a uniformly random number of them (at least two, at
    most ``k`` and at most their number of events), chosen at random.

    Parameters
    ----------
    n_persons, n_platforms
        ``n`` and ``k``.
    single_fraction
        Fraction of persons on one platform only.
    events_per_person
        ``(n,)`` event counts (a person cannot be on more platforms than they have events).
    rng
        Seeded generator.
    """
    order = np.argsort(rng.random((n_persons, n_platforms)), axis=1, kind="stable")
    size = rng.integers(2, n_platforms + 1, size=n_persons)
    singles = rng.choice(n_persons, size=round(single_fraction * n_persons), replace=False)
    size[singles] = 1
    size = np.minimum(size, np.maximum(events_per_person, 1))
    return Membership(order=order, size=size)


def assign_random(
    person: np.ndarray, membership: Membership, rng: np.random.Generator
) -> np.ndarray:
    """Send each event to one of its person's platforms at random, each platform at least once.

    Returns
    -------
    numpy.ndarray
        ``(E,)`` platform code per event.
    """
    key = rng.random(len(person))
    rank = _rank_within(person, np.lexsort((key, person)))
    size = membership.size[person]
    slot = np.where(rank < size, rank, rng.integers(0, size))
    return membership.order[person, np.minimum(slot, size - 1)]


def assign_temporal(
    person: np.ndarray, timestamps: np.ndarray, membership: Membership, rng: np.random.Generator
) -> np.ndarray:
    """Cut each person's history in time order into contiguous stretches, one per platform.

    A person on two platforms used the first for the earlier half of their events and the
    second for the later half, as when someone moves from one service to another.

    Returns
    -------
    numpy.ndarray
        ``(E,)`` platform code per event.
    """
    key = rng.random(len(person))  # breaks ties between events at the same second
    rank = _rank_within(person, np.lexsort((key, timestamps, person)))
    count = np.bincount(person)[person]
    segment = rank * membership.size[person] // count
    return membership.order[person, segment]


def category_platforms(
    item_genres: list[list[str]], item_events: np.ndarray, n_platforms: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Place every item on one platform by its most specific genre, balancing events.

    Each item's key genre is its rarest one (fewest items), ties by name; the key genres are
    dealt to platforms largest first, each to the platform with the fewest events so far.

    Parameters
    ----------
    item_genres
        Per item code, its genres (empty list: no genre).
    item_events
        ``(n_items,)`` events per item.
    n_platforms
        ``k``.

    Returns
    -------
    tuple
        ``(n_items,)`` platform code per item, and ``{genre: platform}`` for the key genres.
    """
    frequency: dict[str, int] = {}
    for genres in item_genres:
        for g in set(genres):
            frequency[g] = frequency.get(g, 0) + 1
    keys = [
        min(genres, key=lambda g: (frequency[g], g)) if genres else "" for genres in item_genres
    ]
    volume: dict[str, int] = {}
    for key, n in zip(keys, item_events.tolist(), strict=True):
        volume[key] = volume.get(key, 0) + n
    load = [0] * n_platforms
    genre_platform: dict[str, int] = {}
    for genre in sorted(volume, key=lambda g: (-volume[g], g)):
        target = min(range(n_platforms), key=lambda j: (load[j], j))
        genre_platform[genre] = target
        load[target] += volume[genre]
    return np.array([genre_platform[k] for k in keys], dtype=np.int64), genre_platform


def keep_one_platform(
    person: np.ndarray,
    platform: np.ndarray,
    n_persons: int,
    n_platforms: int,
    single_fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Make ``round(single_fraction * n)`` persons single-platform by dropping events.

    For a split whose platform per event is fixed (by category): persons already on one
    platform count first; more are chosen at random and keep only the platform where they
    have the most events.

    Returns
    -------
    numpy.ndarray
        ``(E,)`` boolean mask of the events kept.
    """
    counts = np.zeros((n_persons, n_platforms), dtype=np.int64)
    np.add.at(counts, (person, platform), 1)
    on = (counts > 0).sum(axis=1)
    target = round(single_fraction * n_persons)
    multi = np.flatnonzero(on > 1)
    extra = max(0, min(target - int((on == 1).sum()), len(multi)))
    chosen = np.zeros(n_persons, dtype=bool)
    chosen[rng.choice(multi, size=extra, replace=False)] = True
    home = counts.argmax(axis=1)
    return ~chosen[person] | (platform == home[person])
