"""``crossrec evaluate recommend``: full-catalogue ranking metrics against baselines.

For each account of the test file, every item of the platform's catalogue that the account
has not interacted with in the store is ranked (a full sort, no sampled negatives), and
Recall@K, NDCG@K and HR@K are averaged over the accounts. Baselines, computed in the same run
on the same store:

- ``popularity``: items by how many accounts of the platform touched them;
- ``als``: implicit ALS fitted on this platform alone (accounts it never saw get popularity);
- ``cf_mapping`` (EMCDR): ALS on every platform, a ridge map from the linked accounts' ALS
  vectors on their other platform into this platform's ALS user space, learned on known links
  whose two accounts both have history; an account without a linked account keeps its own ALS
  vector (or popularity when it has none).

Test items outside the catalogue (no account ever touched them) count as relevant and can be
retrieved by no method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crossrec.errors import InputError

if TYPE_CHECKING:
    from crossrec.recommend.service import Recommender
    from crossrec.workspace import Workspace

BASELINES = ("popularity", "als", "cf_mapping")


def metric_keys(k: int) -> list[str]:
    return [f"recall@{k}", f"ndcg@{k}", f"hit@{k}", "n_accounts"]


def read_test(ws: Workspace, platform: str, path: Path) -> dict[str, list[str]]:
    """``account -> items`` of a test file (CSV with ``account,item``; raw ids on P), keyed by
    the account's pseudonym, in file order."""
    import polars as pl

    if not path.is_file():
        raise InputError(f"{path}: no such test file")
    try:
        table = pl.read_csv(path, infer_schema_length=0)
    except Exception as exc:  # polars raises several kinds for a non-CSV file
        raise InputError(f"{path}: not a CSV file ({exc.__class__.__name__})") from None
    missing = {"account", "item"} - set(table.columns)
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}",
            hint="the test file has columns account,item (raw ids on the platform)",
        )
    nulls = table.with_row_index("line", offset=2).filter(
        pl.col("account").is_null() | pl.col("item").is_null()
    )
    if nulls.height:
        row = nulls.row(0, named=True)
        field = "account" if row["account"] is None else "item"
        raise InputError(f"{path}: line {row['line']}: field {field!r} is empty")
    raw = table["account"].to_list()
    pseud = ws.pseudonymiser.accounts(platform, raw) if raw else []
    out: dict[str, list[str]] = {}
    for account, item in zip(pseud, table["item"].to_list(), strict=True):
        out.setdefault(account, []).append(item)
    return out


def evaluate_recommend(
    ws: Workspace,
    platform: str,
    test_path: Path,
    *,
    k: int = 10,
    label: str | None = None,
    rec: Recommender | None = None,
) -> dict[str, Any]:
    """Metrics of the system and its baselines; also saved under ``reports/evaluation/``."""
    from crossrec.evaluate.metrics import per_user_ranking_metrics
    from crossrec.recommend.service import Recommender

    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    rec = rec or Recommender.load(ws)
    p = rec.parts.platform(platform)
    test = read_test(ws, platform, test_path)
    if not test:
        raise InputError(f"{test_path}: the test file holds no rows")
    accounts = sorted(test)
    items = p.matrix.items
    seen = _store_history(ws, platform, accounts, items)
    relevant = [_columns(items, test[a]) for a in accounts]
    baseline_scores = _Baselines(ws, platform, rec)

    rankings: dict[str, list[np.ndarray]] = {"system": []}
    for name in BASELINES:
        rankings[name] = []
    for a in accounts:
        q = rec.query(platform, a)
        scores = rec.score(q).total
        rankings["system"].append(_top(scores, seen.get(a), k))
        for name in BASELINES:
            rankings[name].append(_top(baseline_scores.scores(name, a), seen.get(a), k))

    def summary(ranked: list[np.ndarray]) -> dict[str, Any]:
        m = per_user_ranking_metrics(np.stack(ranked), relevant, k)
        return {
            f"recall@{k}": _mean(m.recall),
            f"ndcg@{k}": _mean(m.ndcg),
            f"hit@{k}": _mean(m.hit),
            "n_accounts": len(accounts),
        }

    result = summary(rankings["system"])
    result["baselines"] = {name: summary(rankings[name]) for name in BASELINES}
    _save(ws, platform, k, label, test_path, rec.model_version, result)
    return result


def _mean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return round(float(kept.mean()), 6) if kept.size else 0.0


def _columns(items: np.ndarray, wanted: list[str]) -> np.ndarray:
    """Catalogue columns of ``wanted``; items outside the catalogue get distinct negative
    ids (relevant, never retrievable)."""
    pos = np.searchsorted(items, wanted)
    pos = np.minimum(pos, max(len(items) - 1, 0))
    found = items[pos] == np.asarray(wanted, dtype=items.dtype) if len(items) else pos < 0
    out = np.where(found, pos, -1 - np.arange(len(wanted)))
    return np.unique(out.astype(np.int64))


def _top(scores: np.ndarray, seen: np.ndarray | None, k: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).copy()
    if seen is not None and len(seen):
        s[seen] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))  # full sort; ties to the lower column
    top = order[:k]
    top = top[np.isfinite(s[top])]
    out = np.full(k, -(10**12), np.int64)  # padding that is never relevant
    out[: len(top)] = top
    return out


def _store_history(
    ws: Workspace, platform: str, accounts: list[str], items: np.ndarray
) -> dict[str, np.ndarray]:
    """Catalogue columns each test account interacted with in the store."""
    events = ws.store.read("events", platform=platform, columns=["account", "item"])
    sub = events.filter(pc.is_in(events["account"], value_set=pa.array(accounts)))
    out: dict[str, list[str]] = {}
    for a, it in zip(sub["account"].to_pylist(), sub["item"].to_pylist(), strict=True):
        out.setdefault(a, []).append(it)
    return {a: _columns(items, its) for a, its in out.items()}


class _Baselines:
    """Popularity, P-only ALS and EMCDR ridge mapping, fitted on the store in this run."""

    def __init__(self, ws: Workspace, platform: str, rec: Recommender) -> None:
        from crossrec.link.mapping import apply_linear, ridge_map
        from crossrec.recommend.parts import read_links
        from crossrec.represent.cf import CFModel
        from crossrec.represent.interactions import build_interactions

        cfg = ws.config.train.model_copy(update={"cf_model": "als"})
        self.platform = platform
        target_items = rec.parts.platform(platform).matrix.items
        self.matrices = {}
        self.models = {}
        for name in ws.store.platforms():
            ev = ws.store.read(
                "events",
                platform=name,
                columns=["platform", "account", "item", "event_type", "value", "ts", "seq"],
            )
            if ev.num_rows == 0:
                continue
            inter = build_interactions(ev, cfg)
            self.matrices[name] = inter
            self.models[name] = CFModel.from_config(cfg).fit(inter.matrix)
        target = self.matrices[platform]
        # Scores live on the recommender's catalogue columns.
        self.cols = np.searchsorted(target.items, target_items)
        self.valid = (self.cols < len(target.items)) & (
            target.items[np.minimum(self.cols, len(target.items) - 1)] == target_items
        )
        counts = np.diff(target.matrix.tocsc().indptr).astype(np.float64)
        self.popularity = self._on_catalogue(counts)
        links = read_links(ws.store, known_only=True)
        self.links = links
        self.maps: dict[str, np.ndarray] = {}
        for name, inter in self.matrices.items():
            if name == platform:
                continue
            xs, ys = [], []
            for (pa_, a), others in links.items():
                if pa_ != name:
                    continue
                ra = _row(inter.accounts, a)
                for pb, b, _ in others:
                    rb = _row(target.accounts, b) if pb == platform else None
                    if ra is not None and rb is not None:
                        xs.append(ra)
                        ys.append(rb)
            if len(xs) >= 10:
                x = self.models[name].user_factors[np.asarray(xs)]
                y = self.models[platform].user_factors[np.asarray(ys)]
                self.maps[name] = ridge_map(x, y, 1.0)
        self._apply = apply_linear

    def _on_catalogue(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.cols), np.float64)
        out[self.valid] = values[self.cols[self.valid]]
        return out

    def scores(self, name: str, account: str) -> np.ndarray:
        if name == "popularity":
            return self.popularity
        target = self.matrices[self.platform]
        model = self.models[self.platform]
        row = _row(target.accounts, account)
        own = model.user_factors[row] if row is not None else None
        if name == "cf_mapping":
            mapped = []
            for q, b, _ in self.links.get((self.platform, account), []):
                if q in self.maps:
                    rb = _row(self.matrices[q].accounts, b)
                    if rb is not None:
                        vec = self.models[q].user_factors[rb][None, :]
                        mapped.append(self._apply(vec, self.maps[q])[0])
            if mapped:
                own = np.mean(mapped, axis=0).astype(np.float32)
        if own is None:
            return self.popularity
        # popularity breaks ties (e.g. a zero vector) without changing any other order
        scores = self._on_catalogue(model.item_factors @ own)
        return scores + 1e-9 * self.popularity / max(self.popularity.max(), 1.0)


def _row(sorted_accounts: np.ndarray, account: str) -> int | None:
    i = int(np.searchsorted(sorted_accounts, account))
    return i if i < len(sorted_accounts) and sorted_accounts[i] == account else None


def _save(
    ws: Workspace,
    platform: str,
    k: int,
    label: str | None,
    test_path: Path,
    version: str,
    result: dict[str, Any],
) -> Path:
    directory = ws.reports_dir / "evaluation"
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"recommend-{platform}" + (f"-{_slug(label)}" if label else "")
    doc = {
        "platform": platform,
        "k": k,
        "label": label or test_path.stem,
        "test": test_path.name,
        "model_version": version,
        **result,
    }
    path = directory / f"{stem}.json"
    tmp = directory / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    tmp.replace(path)
    return path


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "test"
