"""How far cold-start recommendation can go beyond popularity on a Book → Music holdout.

Outside the product on purpose: it asks whether *any* simple cross-platform method gets far
above popularity on this data, so that the product's cold-start figure can be read against
that ceiling. Input: a folder written by ``crossrec datasets holdout --platform music`` over
``crossrec datasets douban`` (``book/events.csv``, ``music/events.csv``, ``music/items.csv``,
``known_links.csv``, ``music/test_cold.csv``).

Validation: every known-linked person whose music account has history, made pseudo-cold in
``--folds`` folds × 2 seeds (their music rows removed, popularity and neighbours computed
without them); the methods' settings below were chosen on this validation. Test: the
holdout's cold accounts, scored once per method. NDCG@10 over the full music catalogue
(binary relevance), each person's figure averaged over the seeds, and the mean per-person
difference against popularity with its standard error. The oracle — popularity weighted by
how close each music account's activity and mean rating are to the held-out person's *true*
music activity and mean rating — is a diagnostic no method can use (validation only).

    .venv/bin/python bench/cold_start_ceiling.py --data douban-ho     # ~10 s here
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

Scores = Callable[[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
DISCOUNT = 1 / np.log2(np.arange(2, 12))


def load(folder: Path) -> dict[str, object]:
    book = pd.read_csv(folder / "book" / "events.csv")
    music = pd.read_csv(folder / "music" / "events.csv")
    m_items = pd.read_csv(folder / "music" / "items.csv").item.to_numpy()
    b_items = np.sort(book.item.unique())
    b_users, m_users = np.sort(book.account.unique()), np.sort(music.account.unique())

    def matrix(ev: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
        r = np.searchsorted(users, ev.account.to_numpy())
        c = pd.Index(items).get_indexer(ev.item)
        return sp.csr_matrix((ev.value.to_numpy(np.float64), (r, c)), (len(users), len(items)))

    links = pd.read_csv(folder / "known_links.csv")
    flip = links.platform_a == "music"
    pairs = np.where(
        flip.to_numpy()[:, None],
        links[["account_b", "account_a"]].to_numpy(),
        links[["account_a", "account_b"]].to_numpy(),
    )
    b_idx, m_idx = pd.Index(b_users), pd.Index(m_users)
    bi, mi = b_idx.get_indexer(pairs[:, 0]), m_idx.get_indexer(pairs[:, 1])
    test = pd.read_csv(folder / "music" / "test_cold.csv")
    truth = test.groupby("account").item.apply(lambda s: pd.Index(m_items).get_indexer(s))
    cold = [
        (b, truth[m])
        for b, m, j in zip(bi, pairs[:, 1], mi, strict=True)
        if b >= 0 and j < 0 and m in truth.index
    ]
    return {
        "B": matrix(book, b_users, b_items),
        "M": matrix(music, m_users, m_items),
        "warm": np.array([(i, j) for i, j in zip(bi, mi, strict=True) if i >= 0 and j >= 0]),
        "cold": cold,
    }


def ndcg10(S: np.ndarray, truth: list[np.ndarray]) -> np.ndarray:
    top = np.argpartition(-S, 10, axis=1)[:, :10]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), 1, kind="stable"), 1)
    out = np.zeros(len(truth))
    for k, rel in enumerate(truth):
        ideal = DISCOUNT[: min(10, len(rel))].sum()
        out[k] = (np.isin(top[k], rel) * DISCOUNT).sum() / ideal if ideal else 0.0
    return out


def _z_log(X: np.ndarray) -> np.ndarray:
    X = np.log(X / (X.mean(1, keepdims=True) + 1e-12) + 1e-3)
    return (X - X.mean(1, keepdims=True)) / (X.std(1, keepdims=True) + 1e-12)


def popularity(B, Mt, lb, lm, targets):
    return np.tile(np.asarray((Mt > 0).sum(0), np.float64).ravel(), (len(targets), 1))


def knn(B, Mt, lb, lm, targets, *, k: int = 30, power: float = 1.0, mode: str = "idf"):
    """Music of the K linked persons whose Book history is most like the target's."""
    if mode == "idf":
        binary = (B > 0).astype(np.float64)
        df = np.asarray(binary.sum(0)).ravel()
        W = sp.csr_matrix(binary @ sp.diags(np.log((B.shape[0] + 1) / (df + 1))))
    else:  # rating-centred: each rating minus the person's mean, plus the interaction itself
        W = B.astype(np.float64).tocsr(copy=True)
        n = np.diff(W.indptr)
        W.data -= np.repeat(np.asarray(W.sum(1)).ravel() / np.maximum(n, 1), n) - 0.5
    W = sp.diags(1 / (np.sqrt(np.asarray(W.multiply(W).sum(1)).ravel()) + 1e-9)) @ W
    S = np.maximum((W[targets] @ W[lb].T).toarray(), 0)
    if k < S.shape[1]:
        S = np.where(-np.partition(-S, k - 1, axis=1)[:, k - 1 : k] <= S, S, 0)
    return (S**power) @ (Mt[lm] > 0).astype(np.float64).toarray()


def _profile(X: sp.csr_matrix) -> np.ndarray:
    n = np.diff(X.indptr).astype(np.float64)
    return np.stack([np.log1p(n), np.asarray(X.sum(1)).ravel() / np.maximum(n, 1)], 1)


def oracle(M: sp.csr_matrix, true_rows: np.ndarray) -> Scores:
    """Popularity weighted by closeness to the target's TRUE music profile (diagnostic)."""

    def score(B, Mt, lb, lm, targets):
        F = _profile(Mt)
        mu, sd = F.mean(0), F.std(0)
        t = (_profile(M[true_rows[targets]]) - mu) / sd
        D = (((F - mu) / sd)[None] - t[:, None]) ** 2
        return np.exp(-D.sum(-1) / (2 * 0.5**2)) @ (Mt > 0).astype(np.float64).toarray()

    return score


def splits(data: dict, folds: int, test: bool):
    """(music training matrix, linked book rows, their music rows, targets, truth) per fold."""
    M, warm = data["M"], data["warm"]
    if test:
        cold = data["cold"]
        yield M, warm[:, 0], warm[:, 1], np.array([b for b, _ in cold]), [t for _, t in cold]
        return
    for seed in (0, 1):
        for part in np.array_split(np.random.default_rng(seed).permutation(len(warm)), folds):
            hold = np.zeros(len(warm), bool)
            hold[part] = True
            keep = np.ones(M.shape[0], bool)
            keep[warm[hold, 1]] = False
            new = np.cumsum(keep) - 1
            truth = [M[m].indices for m in warm[hold, 1]]
            yield M[keep], warm[~hold, 0], new[warm[~hold, 1]], warm[hold, 0], truth


def evaluate(data: dict, score: Scores, folds: int, test: bool) -> dict[str, float]:
    own: dict[int, list[float]] = {}
    pop: dict[int, list[float]] = {}
    for Mt, lb, lm, targets, truth in splits(data, folds, test):
        P = popularity(data["B"], Mt, lb, lm, targets)
        # popularity ties broken by item position, the same for every method's baseline
        a = ndcg10(score(data["B"], Mt, lb, lm, targets), truth)
        p = ndcg10(P - 1e-9 * np.arange(P.shape[1]), truth)
        for t, x, y in zip(targets.tolist(), a, p, strict=True):
            own.setdefault(t, []).append(x)
            pop.setdefault(t, []).append(y)
    a = np.array([np.mean(v) for v in own.values()])
    p = np.array([np.mean(pop[t]) for t in own])
    d = a - p
    return {
        "ndcg@10": round(float(a.mean()), 4),
        "popularity": round(float(p.mean()), 4),
        "ratio": round(float(a.mean() / p.mean()), 3),
        "diff": round(float(d.mean()), 4),
        "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4),
        "n": len(d),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="crossrec datasets holdout folder")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="write bench/out/cold_start_ceiling.json")
    args = ap.parse_args(argv)
    data = load(args.data)
    idf = lambda *x: knn(*x, k=30, power=2.0, mode="idf")  # noqa: E731
    centred = lambda *x: knn(*x, k=30, mode="centred")  # noqa: E731
    methods: dict[str, Scores] = {
        "popularity (log count)": lambda *x: _z_log(popularity(*x)),
        "log popularity + 0.2 · kNN (rating-centred, K 30)": lambda *x: (
            _z_log(popularity(*x)) + 0.2 * _z_log(centred(*x))
        ),
        "log popularity + 0.5 · kNN (IDF cosine², K 30)": lambda *x: (
            _z_log(popularity(*x)) + 0.5 * _z_log(idf(*x))
        ),
        "log popularity + 0.1 · both kNN": lambda *x: (
            _z_log(popularity(*x)) + 0.1 * _z_log(centred(*x)) + 0.1 * _z_log(idf(*x))
        ),
    }
    results: dict[str, dict[str, object]] = {}
    for name, fn in methods.items():
        results[name] = {
            "validation": evaluate(data, fn, args.folds, test=False),
            "test": evaluate(data, fn, args.folds, test=True),
        }
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    true_rows = np.full(data["B"].shape[0], -1)
    true_rows[data["warm"][:, 0]] = data["warm"][:, 1]
    name = "oracle: popularity by the true music activity and mean rating"
    results[name] = {"validation": evaluate(data, oracle(data["M"], true_rows), args.folds, False)}
    print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if args.json:
        out = Path(__file__).resolve().parent / "out"
        out.mkdir(exist_ok=True)
        (out / "cold_start_ceiling.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
