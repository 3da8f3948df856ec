"""The synthetic population and catalogues: who likes what, when they are active, what exists.

Everything here is small (per person or per item); events are made chunk by chunk from it in
:mod:`crossrec.datasets.synthetic_events`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from crossrec.datasets.synthetic_words import KINDS, TEMPLATES, TOPICS

TOPIC_NAMES: tuple[str, ...] = tuple(TOPICS)
#: Most persons follow up to this many topics.
MAX_TOPICS = 3
#: Hours at which people are most often active (evenings dominate), as sampling weights.
_PEAK_HOURS = np.array(
    [1, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 3, 3, 3, 4, 3, 3, 3, 3, 4, 5, 7, 8, 8, 6, 3],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Population:
    """Per person (``P`` persons): interests, rhythm, activity and platforms.

    Attributes
    ----------
    topics
        ``(P, 3)`` topic codes a person follows.
    topic_cdf
        ``(P, 3)`` cumulative weights over those topics (last column 1).
    peak_hour, hour_spread
        ``(P,)`` the hour of day a person is most active and how far they stray (hours).
    weekday_cdf
        ``(P, 7)`` cumulative weekday preference (Monday first).
    start_day, span_days
        ``(P,)`` first active day (from the generator's start) and length of activity.
    activity
        ``(P,)`` relative amount of activity.
    on
        ``(P, k)`` boolean: the person has an account on platform ``j``.
    """

    topics: np.ndarray
    topic_cdf: np.ndarray
    peak_hour: np.ndarray
    hour_spread: np.ndarray
    weekday_cdf: np.ndarray
    start_day: np.ndarray
    span_days: np.ndarray
    activity: np.ndarray
    on: np.ndarray

    @property
    def size(self) -> int:
        return len(self.activity)


def platform_counts(
    accounts: int, platforms: int, single_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Platforms per person such that the total is exactly ``accounts``.

    A person is on one platform with probability ``single_fraction``, else on 2..k; the
    last person takes what is left.

    Returns
    -------
    numpy.ndarray
        ``(P,)`` counts summing to ``accounts``.
    """
    size = np.where(
        rng.random(accounts) < single_fraction, 1, rng.integers(2, platforms + 1, size=accounts)
    )
    total = np.cumsum(size)
    n = int(np.searchsorted(total, accounts)) + 1
    size = size[:n]
    size[-1] -= int(total[n - 1]) - accounts
    return size


def make_population(
    accounts: int,
    platforms: int,
    single_fraction: float,
    topic_weights: np.ndarray,
    days: int,
    rng: np.random.Generator,
) -> Population:
    """Draw persons until they hold exactly ``accounts`` accounts across ``platforms``."""
    size = platform_counts(accounts, platforms, single_fraction, rng)
    n = len(size)
    # Popular topics more often; a topic drawn twice simply weighs more.
    topics = rng.choice(len(topic_weights), size=(n, MAX_TOPICS), p=topic_weights).astype(np.int16)
    follows = rng.integers(1, MAX_TOPICS + 1, size=n)
    w = rng.dirichlet(np.ones(MAX_TOPICS), size=n) * (
        np.arange(MAX_TOPICS)[None, :] < follows[:, None]
    )
    topic_cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1).astype(np.float32)
    topic_cdf[:, -1] = 1.0
    peak = rng.choice(24, size=n, p=_PEAK_HOURS / _PEAK_HOURS.sum()).astype(np.int8)
    spread = rng.uniform(0.5, 3.0, size=n).astype(np.float32)
    weekday = np.cumsum(rng.dirichlet(np.full(7, 1.5), size=n), axis=1).astype(np.float32)
    weekday[:, -1] = 1.0
    span = rng.integers(min(14, days), days + 1, size=n).astype(np.int32)
    start = (rng.random(n) * (days - span + 1)).astype(np.int32)
    activity = rng.lognormal(0.0, 1.0, size=n).astype(np.float32)
    order = np.argsort(rng.random((n, platforms)), axis=1)
    on = np.zeros((n, platforms), dtype=bool)
    for s in range(platforms):
        rows = np.flatnonzero(size > s)
        on[rows, order[rows, s]] = True
    return Population(topics, topic_cdf, peak, spread, weekday, start, span, activity, on)


@dataclass(frozen=True)
class Catalogue:
    """One platform's items (``n``) and how popular they are.

    Attributes
    ----------
    topic
        ``(n,)`` topic code per item.
    by_topic
        ``(n,)`` item indexes grouped by topic, most popular first within a topic.
    topic_cdf
        ``(n,)`` cumulative popularity along ``by_topic``; topic ``t``'s block runs from ``t``
        to ``t + 1``, so ``searchsorted(topic_cdf, t + u)`` draws an item of topic ``t``.
    global_cdf
        ``(n,)`` cumulative popularity over all items (topic weight times in-topic weight).
    titles, texts
        ``n`` strings each.
    """

    topic: np.ndarray
    by_topic: np.ndarray
    topic_cdf: np.ndarray
    global_cdf: np.ndarray
    titles: list[str]
    texts: list[str]


def make_catalogue(
    n_items: int, kind: str, topic_weights: np.ndarray, zipf: float, seed: int, index: int
) -> Catalogue:
    """Items of one platform: every topic has at least one, popularity falls as a power law."""
    n_topics = len(topic_weights)
    rng = np.random.default_rng([seed, 0xCA7, index])
    topic = np.concatenate(
        [np.arange(n_topics), rng.choice(n_topics, size=n_items - n_topics, p=topic_weights)]
    ).astype(np.int16)
    topic = topic[rng.permutation(n_items)]
    by_topic = np.argsort(topic, kind="stable")
    t_sorted = topic[by_topic].astype(np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(t_sorted)) + 1]
    lengths = np.diff(np.r_[starts, n_items])
    rank = np.arange(n_items) - np.repeat(starts, lengths)
    weight = (rank + 1.0) ** -zipf
    within = weight / np.repeat(np.add.reduceat(weight, starts), lengths)
    csum = np.cumsum(within)
    topic_cdf = t_sorted + (csum - np.repeat(csum[starts] - within[starts], lengths))
    ends = np.r_[starts[1:], n_items] - 1
    topic_cdf[ends] = t_sorted[ends] + 1.0  # exact block ends, so a draw never spills over
    global_w = topic_weights[t_sorted] * within
    global_cdf = np.cumsum(global_w / global_w.sum())
    global_cdf[-1] = 1.0
    titles, texts = _names(topic, kind, random.Random(f"{seed}:titles:{index}"))
    return Catalogue(topic, by_topic, topic_cdf, global_cdf, titles, texts)


def _names(topic: np.ndarray, kind: str, rng: random.Random) -> tuple[list[str], list[str]]:
    templates = TEMPLATES[kind]
    opening = KINDS[kind][1]
    titles: list[str] = []
    texts: list[str] = []
    words = [TOPICS[name] for name in TOPIC_NAMES]
    for t in topic.tolist():
        a, b, c = rng.sample(words[t], 3)
        titles.append(rng.choice(templates).format(a=a, b=b, n=rng.randint(1, 9)))
        texts.append(f"{opening} {a}, {b} and {c}.")
    return titles, texts
