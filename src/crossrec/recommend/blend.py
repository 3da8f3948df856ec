"""Blend weights: how much each component counts, per platform and regime, and their tuning.

Weights are tuned by coordinate ascent on NDCG@10 over validation accounts (built by
:mod:`crossrec.recommend.validation` from the training data, never from a test file). To keep
tuning cheap at any catalogue size, each validation account keeps only the union of every
component's top ``POOL`` items (its *pool*) with their standardised scores; an item outside the
pool cannot reach a top 10 under any non-negative blend that ranks it below 200 items in
every component.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossrec.recommend.components import COMPONENTS, standardise

REGIMES: tuple[str, ...] = ("warm", "cold", "anonymous")
#: Items kept per component per validation account.
POOL = 200
#: Values tried for each weight during coordinate ascent.
GRID: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
BLEND_FILE = "blend.json"

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "warm": {
        "own_cf": 1.0,
        "own_items": 1.0,
        "own_seq": 0.25,
        "linked_seq": 0.1,
        "linked_map": 0.1,
        "linked_text": 0.1,
        "linked_neighbours": 0.25,
        "neighbours": 0.25,
        "popularity": 0.1,
    },
    "cold": {
        "linked_seq": 0.5,
        "linked_map": 1.0,
        "linked_text": 0.5,
        "linked_neighbours": 1.0,
        "neighbours": 0.5,
        "popularity": 0.5,
    },
    "anonymous": {"popularity": 1.0},
}


@dataclass
class BlendWeights:
    """``weights[platform][regime][component]``; platforms or regimes without tuned weights
    use :data:`DEFAULT_WEIGHTS`. ``validation`` keeps the tuning figures for reports."""

    weights: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)

    def of(self, platform: str, regime: str) -> dict[str, float]:
        return self.weights.get(platform, {}).get(regime) or DEFAULT_WEIGHTS[regime]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        data = {"weights": self.weights, "validation": self.validation}
        tmp = directory / f".{BLEND_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", "utf-8")
        tmp.replace(directory / BLEND_FILE)

    @classmethod
    def load(cls, directory: Path) -> BlendWeights:
        path = directory / BLEND_FILE
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text("utf-8"))
        return cls(data.get("weights", {}), data.get("validation", {}))


def blend(
    components: dict[str, np.ndarray], weights: dict[str, float]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Weighted sum of standardised component scores.

    Returns
    -------
    total : np.ndarray, shape (n_items,)
    contributions : np.ndarray, shape (C, n_items) — each used component's weighted part
    names : list of C component names, in the order of ``contributions``
    """
    names = [c for c in COMPONENTS if c in components and weights.get(c, 0.0) > 0]
    if not names:  # nothing weighted has evidence: fall back to popularity
        names = ["popularity"]
        weights = {"popularity": 1.0}
    parts = np.stack([weights[c] * standardise(components[c]) for c in names])
    return parts.sum(axis=0), parts, names


@dataclass
class Example:
    """One validation account: standardised component scores over its pool."""

    z: np.ndarray  # (C, pool) float32, rows in COMPONENTS order (zeros where absent)
    relevant: np.ndarray  # (pool,) bool
    n_relevant: int


def make_example(
    components: dict[str, np.ndarray], relevant: np.ndarray, seen: np.ndarray
) -> Example | None:
    """Pool an account's components; None when it has nothing relevant."""
    if len(relevant) == 0:
        return None
    n = len(next(iter(components.values())))
    allowed = np.ones(n, bool)
    allowed[seen] = False
    zs = {c: standardise(s) for c, s in components.items()}
    pool_mask = np.zeros(n, bool)
    cand = np.flatnonzero(allowed)
    for z in zs.values():
        k = min(POOL, len(cand))
        top = cand[np.argpartition(-z[cand], k - 1)[:k]] if k else cand
        pool_mask[top] = True
    pool = np.flatnonzero(pool_mask)
    z_mat = np.zeros((len(COMPONENTS), len(pool)), np.float32)
    for i, c in enumerate(COMPONENTS):
        if c in zs:
            z_mat[i] = zs[c][pool]
    rel = np.isin(pool, relevant)
    return Example(z_mat, rel, len(np.unique(relevant)))


def ndcg_per_example(examples: list[Example], w: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of the blend ``w`` (C,) for each example (items outside a pool miss)."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate([[0.0], np.cumsum(disc)])
    out = np.zeros(len(examples))
    for j, ex in enumerate(examples):
        s = w @ ex.z
        m = min(k, len(s))
        top = np.argpartition(-s, m - 1)[:m] if m else np.zeros(0, np.int64)
        top = top[np.lexsort((top, -s[top]))]
        out[j] = float(disc[:m] @ ex.relevant[top]) / ideal[min(ex.n_relevant, k)]
    return out


def ndcg(examples: list[Example], w: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of the blend ``w`` (C,) over the examples."""
    return float(ndcg_per_example(examples, w, k).mean()) if examples else 0.0


def tune(
    examples: list[Example],
    start: dict[str, float],
    *,
    rounds: int = 3,
    min_z: float = 0.5,
) -> tuple[dict[str, float], float, float]:
    """Coordinate ascent over :data:`GRID`; returns (weights, start NDCG@10, tuned NDCG@10).

    A step is taken only when it beats the current weights by more than ``min_z`` standard
    errors of the per-account differences: with few validation accounts, noise would
    otherwise pick weights that do not carry over to new accounts (0.5: on Douban Book ->
    Music cold start 1.0 kept popularity alone, 0 overfitted the ~200 validation persons).
    Components no example has evidence for keep weight 0. Ties keep the current value, so
    the result is deterministic.
    """
    present = np.array([any(np.any(ex.z[i]) for ex in examples) for i in range(len(COMPONENTS))])
    w = np.array([start.get(c, 0.0) if present[i] else 0.0 for i, c in enumerate(COMPONENTS)])
    current = ndcg_per_example(examples, w)
    first = float(current.mean()) if len(current) else 0.0
    n = len(examples)
    for _ in range(rounds):
        improved = False
        for i in np.flatnonzero(present):
            for value in GRID:
                if value == w[i]:
                    continue
                trial = w.copy()
                trial[i] = value
                if not trial.any():
                    continue
                scores = ndcg_per_example(examples, trial)
                delta = scores - current
                margin = min_z * delta.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
                if delta.mean() > max(margin, 1e-9):
                    w, current, improved = trial, scores, True
        if not improved:
            break
    best = float(current.mean()) if len(current) else 0.0
    return {c: float(w[i]) for i, c in enumerate(COMPONENTS) if w[i] > 0}, first, best
