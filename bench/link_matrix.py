"""Robustness matrix of the linker: one trained workspace per data regime, run as a user would.

Each cell builds a seeded dataset (`crossrec datasets ...`), then runs the commands a user runs
(`crossrec init`, `ingest` each platform with its items, `ingest-links known_links.csv`,
`train`, `link --json`, `evaluate link --truth truth_links.csv --json`) and collects MRR,
hits@1, truth precision / recall / F1 at the operating point, the calibration error of the
stored link probabilities, the baselines of the same run and whether MRR reaches the best of
them. Cells with more than two platforms are also evaluated per platform pair, and their
persons table is checked for a person holding two accounts of one platform.

Training is the slow part, so every cell keeps its trained workspace in a cache folder
(default ``bench/out/matrix/<cell>/``) and ``--relink`` only re-runs ``link`` and ``evaluate
link`` on it. The one setting changed from a new workspace's defaults is the sequence
encoder's step cap, ``train.sequence.max_steps`` (``--max-steps``, default 200): on the
MovieLens cells 20 epochs end first (~9 steps each), so those cells train with the defaults;
it bounds the Douban and synthetic cells to a few minutes on 2 cores. Every workspace uses one
fixed pseudonymisation key, so a rebuild gives the same model.

    .venv/bin/python bench/link_matrix.py                         # build what is missing, evaluate
    .venv/bin/python bench/link_matrix.py --relink                # link + evaluate again, cached
    .venv/bin/python bench/link_matrix.py --relink --cells ml-base,ml3 --json
    .venv/bin/python bench/link_matrix.py --report                # the cached results as a table

Cells are "tuning" (settings may be chosen on them) or "check" (reported, never tuned on).
Progress goes to stderr; ``--json`` prints one JSON document on stdout, otherwise a Markdown
table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / "bench" / "out" / "matrix"
#: One pseudonymisation key for every cell: accounts are ordered by their pseudonyms, so a
#: random key per workspace would train another model from the same files.
MATRIX_KEY = "crossrec-link-matrix-key-0001"
TEXT_CACHE = "_text_cache"


@dataclass(frozen=True)
class Cell:
    """One regime: how its data is built and whether settings may be tuned on it."""

    name: str
    role: str  # "tuning" or "check"
    what: str
    builder: str  # movielens | douban | synthetic
    args: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)


_ML = ("--names", "cinema,stream", "--seed", "42")
_BASE = {"--clock": "keep,drop", "--anchor-fraction": "0.15", "--single-fraction": "0.4"}


def _ml(**changes: str) -> tuple[str, ...]:
    opts = dict(_BASE)
    opts.update({"--" + k.replace("_", "-"): v for k, v in changes.items()})
    flat = [x for kv in opts.items() for x in kv]
    return _ML + tuple(flat)


CELLS: tuple[Cell, ...] = (
    Cell("ml-base", "tuning", "MovieLens 2 platforms, 2nd without time, 15 % known, 40 % single",
         "movielens", _ml()),
    Cell("ml-known45", "tuning", "base, 45 % known", "movielens", _ml(anchor_fraction="0.45")),
    Cell("ml-shift", "tuning", "base, 2nd clock shifted (weeks + 3 h)", "movielens",
         _ml(clock="keep,shift")),
    Cell("ml-known05", "check", "base, 5 % known", "movielens", _ml(anchor_fraction="0.05")),
    Cell("ml-single0", "check", "base, every person on both", "movielens",
         _ml(single_fraction="0")),
    Cell("ml-same-clock", "check", "base, 2nd clock the same", "movielens",
         _ml(clock="keep,keep")),
    Cell("ml-sparse10", "check", "base, each account cut to ≤ 10 events", "movielens",
         _ml(max_events_per_account="10")),
    Cell("ml-known05-sparse10", "check", "5 % known and ≤ 10 events", "movielens",
         _ml(anchor_fraction="0.05", max_events_per_account="10")),
    Cell("ml-shift-known05", "check", "2nd clock shifted, 5 % known", "movielens",
         _ml(clock="keep,shift", anchor_fraction="0.05")),
    Cell("ml3", "check",
         "MovieLens 3 platforms: time; 10-point no time; implicit watch, days shift, no year",
         "movielens",
         ("--platforms", "3", "--names", "cinema,stream,watch", "--clock",
          "keep,drop,shift_days", "--titles", "source,perturbed,no_year", "--implicit", "watch",
          "--single-fraction", "0.4", "--anchor-fraction", "0.3", "--seed", "42")),
    Cell("douban", "check", "shared Douban Book ↔ Music sample, 50 % known", "douban",
         ("--anchor-fraction", "0.5", "--seed", "42")),
    Cell("synthetic", "check", "synthetic world, 4,000 accounts, 120,000 events", "synthetic",
         ("--accounts", "4000", "--events", "120000", "--platforms", "2", "--format", "csv",
          "--seed", "42")),
)  # fmt: skip
CELL_BY_NAME = {c.name: c for c in CELLS}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def crossrec(*args: str | Path, json_out: bool = False) -> Any:
    """Run one ``crossrec`` command as a user would; its JSON document when ``json_out``."""
    cmd = [sys.executable, "-m", "crossrec", *map(str, args)] + (["--json"] if json_out else [])
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    env.pop("CROSSREC_SECRET", None)  # the workspace's own key file decides
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CellError(f"crossrec {' '.join(map(str, args[:2]))} failed: {tail}")
    return json.loads(done.stdout) if json_out else None


class CellError(RuntimeError):
    """A step of a cell failed; the message is the command's last line."""


def code_state() -> dict[str, Any]:
    """The commit the code is at and the source files changed since (they ran too)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip("\n")

    changed = git("status", "--porcelain", "--untracked-files=no", "--", "src").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed": [c[3:] for c in changed]}


def _find(folder: Path, stem: str) -> Path | None:
    for ext in ("csv", "parquet", "jsonl"):
        if (folder / f"{stem}.{ext}").is_file():
            return folder / f"{stem}.{ext}"
    return None


def build_cell(cell: Cell, cache: Path, max_steps: int) -> dict[str, Any]:
    """Dataset, workspace, ingest and training of one cell, from scratch."""
    root = cache / cell.name
    if root.exists():
        shutil.rmtree(root)
    data, ws = root / "data", root / "ws"
    started = time.perf_counter()
    log(f"{cell.name}: building the dataset")
    crossrec("datasets", cell.builder, "--out", data, *cell.args)
    ws.mkdir(parents=True)
    key = ws / "crossrec.key"  # init keeps a key file it finds
    key.write_text(MATRIX_KEY + "\n")
    key.chmod(0o600)
    crossrec("init", "--workspace", ws)
    toml = ws / "crossrec.toml"
    text = toml.read_text()
    if "# max_steps = 20000" not in text:
        raise CellError("crossrec.toml no longer has the commented max_steps line")
    toml.write_text(text.replace("# max_steps = 20000", f"max_steps = {max_steps}"))
    shared = cache / TEXT_CACHE
    if shared.is_dir():  # item text vectors are keyed by content: the same vectors, sooner
        shutil.copytree(shared, ws / "cache" / "text", dirs_exist_ok=True)
    log(f"{cell.name}: ingesting")
    platforms = sorted(p.name for p in data.iterdir() if p.is_dir() and _find(p, "events"))
    for name in platforms:
        events, items = data / name / "events.csv", _find(data / name, "items")
        events = _find(data / name, "events") or events
        extra: list[str | Path] = ["--items", items] if items is not None else []
        crossrec("ingest", "--workspace", ws, "--platform", name, "--events", events, *extra)
    links = _find(data, "known_links")
    if links is None:
        raise CellError(f"{data} has no known_links file")
    crossrec("ingest-links", "--workspace", ws, links)
    log(f"{cell.name}: training (sequence max_steps = {max_steps})")
    t = time.perf_counter()
    model = crossrec("train", "--workspace", ws, json_out=True)
    train_s = time.perf_counter() - t
    if cell.builder == "movielens" and (ws / "cache" / "text").is_dir():
        # later cells add their own shards (unique names); an item's vector is the same in all
        shutil.copytree(ws / "cache" / "text", shared, dirs_exist_ok=True)
    seq = model.get("metrics", {}).get("sequence", {})
    doc = {
        "cell": cell.name,
        "platforms": platforms,
        "max_steps": max_steps,
        "train_s": round(train_s, 1),
        "build_s": round(time.perf_counter() - started, 1),
        "sequence_epochs": len(seq.get("epochs", [])),
        "model_version": model.get("version"),
        "train_code": code_state(),
    }
    (root / "trained.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _pair_truth(data: Path, out: Path) -> dict[str, Path]:
    """One truth file per platform pair (only when there are several pairs)."""
    lines = (data / "truth_links.csv").read_text().splitlines()
    by_pair: dict[str, list[str]] = {}
    for line in lines[1:]:
        pa, _, pb, _ = line.split(",")
        by_pair.setdefault(f"{pa}-{pb}", []).append(line)
    if len(by_pair) < 2:
        return {}
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for pair, rows in sorted(by_pair.items()):
        files[pair] = out / f"truth_{pair}.csv"
        files[pair].write_text("\n".join([lines[0], *rows]) + "\n")
    return files


def _best_baseline(ev: dict[str, Any]) -> tuple[str | None, float | None]:
    best: tuple[str | None, float | None] = (None, None)
    for name, b in (ev.get("baselines") or {}).items():
        if b.get("mrr") is not None and (best[1] is None or b["mrr"] > best[1]):
            best = (name, b["mrr"])
    return best


def _store_checks(ws_dir: Path, data: Path) -> dict[str, Any]:
    """Calibration of the stored links against the truth, and persons with two accounts on
    one platform, read through the Python API."""
    import numpy as np

    from crossrec.workspace import Workspace

    with Workspace(ws_dir) as ws:
        links = ws.store.read("links").to_pylist()
        persons = ws.store.read("persons").to_pylist()
        known = ws.store.read("known_links").to_pylist()
        truth = set()
        for line in (data / "truth_links.csv").read_text().splitlines()[1:]:
            pa, aa, pb, ab = line.split(",")
            a, b = (pa, ws.account_id(pa, aa)), (pb, ws.account_id(pb, ab))
            truth.add(frozenset((a, b)))
    in_known = {(r["platform_a"], r["account_a"]) for r in known}
    in_known |= {(r["platform_b"], r["account_b"]) for r in known}
    probs: list[float] = []
    hits: list[bool] = []
    statuses: dict[str, int] = {}
    for r in links:
        a, b = (r["platform_a"], r["account_a"]), (r["platform_b"], r["account_b"])
        status = r.get("status") or "asserted"
        statuses[status] = statuses.get(status, 0) + 1
        if a in in_known or b in in_known or r.get("probability") is None:
            continue
        probs.append(float(r["probability"]))
        hits.append(frozenset((a, b)) in truth)
    doc: dict[str, Any] = {"links_by_status": statuses, "links_evaluated": len(probs)}
    if probs:
        p, y = np.asarray(probs), np.asarray(hits, dtype=float)
        bins = np.minimum((p * 10).astype(int), 9)
        ece = sum(abs(p[bins == k].mean() - y[bins == k].mean()) * (bins == k).sum()
                  for k in range(10) if (bins == k).any()) / len(p)  # fmt: skip
        doc["ece_links"] = round(float(ece), 4)
        doc["brier_links"] = round(float(((p - y) ** 2).mean()), 4)
        doc["links_mean_probability"] = round(float(p.mean()), 4)
        doc["links_true_share"] = round(float(y.mean()), 4)
    per: dict[tuple[Any, str], int] = {}
    for r in persons:
        per[(r["person"], r["platform"])] = per.get((r["person"], r["platform"]), 0) + 1
    doc["persons_with_two_accounts_on_one_platform"] = len(
        {person for (person, _), n in per.items() if n > 1}
    )
    return doc


def _candidate_ece(ws_dir: Path) -> float | None:
    """Expected calibration error over the candidate pairs, from `evaluate link`'s bins."""
    path = ws_dir / "reports" / "evaluation" / "link.json"
    if not path.is_file():
        return None
    cal = json.loads(path.read_text()).get("details", {}).get("calibration") or {}
    counts, pred, obs = cal.get("count") or [], cal.get("mean_predicted"), cal.get("observed")
    total = sum(c for c in counts if c)
    if not total or pred is None or obs is None:
        return None
    err = sum(c * abs(p - o) for c, p, o in zip(counts, pred, obs, strict=True) if c)
    return round(err / total, 4)


def evaluate_cell(cell: Cell, cache: Path) -> dict[str, Any]:
    """``crossrec link`` and ``crossrec evaluate link`` on a cell's trained workspace."""
    root = cache / cell.name
    data, ws = root / "data", root / "ws"
    trained = json.loads((root / "trained.json").read_text())
    doc: dict[str, Any] = {"cell": cell.name, "role": cell.role, "what": cell.what, **trained}
    try:
        log(f"{cell.name}: link")
        doc["link_code"] = code_state()
        t = time.perf_counter()
        link = crossrec("link", "--workspace", ws, json_out=True)
        doc["link_s"] = round(time.perf_counter() - t, 1)
        doc["link"] = link
        doc["pairs"] = {}
        for pair, path in _pair_truth(data, root / "pairs").items():
            ev = crossrec("evaluate", "link", "--workspace", ws, "--truth", path, json_out=True)
            name, best = _best_baseline(ev)
            doc["pairs"][pair] = {
                "mrr": ev["mrr"], "hits@1": ev["hits@1"], "precision": ev["precision"],
                "recall": ev["recall"], "n_truth": ev["n_truth"], "best_baseline": name,
                "best_baseline_mrr": best,
                "mrr_ge_best_baseline": best is None or ev["mrr"] >= best,
            }  # fmt: skip
        log(f"{cell.name}: evaluate link")
        ev = crossrec(
            "evaluate", "link", "--workspace", ws, "--truth", data / "truth_links.csv",
            json_out=True,
        )  # fmt: skip
    except CellError as exc:
        doc["error"] = str(exc)
        log(f"{cell.name}: {exc}")
        return doc
    name, best = _best_baseline(ev)
    doc.update({k: ev.get(k) for k in ("mrr", "hits@1", "hits@10", "precision", "recall", "f1")})
    doc.update(n_truth=ev.get("n_truth"), n_predicted=ev.get("n_predicted"))
    doc["baselines"] = {k: v.get("mrr") for k, v in (ev.get("baselines") or {}).items()}
    doc["best_baseline"], doc["best_baseline_mrr"] = name, best
    doc["mrr_ge_best_baseline"] = best is None or (ev["mrr"] or 0.0) >= best
    doc["ece_candidates"] = _candidate_ece(ws)
    doc.update(_store_checks(ws, data))
    doc["targets"] = targets(doc)
    (root / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def targets(doc: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets that every cell must meet."""
    prec = doc.get("precision")
    out = {
        "mrr_ge_best_baseline": bool(doc.get("mrr_ge_best_baseline")),
        "precision_ge_0.9_or_nothing_asserted": not doc.get("n_predicted") or (prec or 0.0) >= 0.9,
        "pairs_mrr_ge_best_baseline": all(
            p["mrr_ge_best_baseline"] for p in doc.get("pairs", {}).values()
        ),
        "one_account_per_platform_per_person": not doc.get(
            "persons_with_two_accounts_on_one_platform"
        ),
    }
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The matrix as a Markdown table (one row per cell)."""
    head = (
        "| cell | role | MRR | hits@1 | precision | recall | F1 | asserted | ECE links "
        "| ECE cands | text_mean | cf_mapping | random | MRR ≥ best baseline | note |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- | --- |"
    )
    lines = [head]
    for r in rows:
        if "error" in r or "mrr" not in r:
            lines.append(f"| {r['cell']} | {r.get('role', '')} | " + " | ".join(["—"] * 12)
                         + f" | {r.get('error', 'not evaluated')} |")  # fmt: skip
            continue
        b = r.get("baselines", {})
        link = r.get("link") or {}
        note = link.get("reason") or ""
        if r.get("pairs"):
            pairs = [f"{k} {_fmt(v['mrr'])}/{_fmt(v['best_baseline_mrr'])}"
                     for k, v in r["pairs"].items()]  # fmt: skip
            note = "; ".join(pairs + ([note] if note else []))
        lines.append(
            f"| {r['cell']} | {r['role']} | {_fmt(r['mrr'])} | {_fmt(r['hits@1'])} "
            f"| {_fmt(r['precision'])} | {_fmt(r['recall'])} | {_fmt(r['f1'])} "
            f"| {_fmt(r['n_predicted'])} | {_fmt(r.get('ece_links'))} "
            f"| {_fmt(r.get('ece_candidates'))} | {_fmt(b.get('text_mean'))} "
            f"| {_fmt(b.get('cf_mapping'))} | {_fmt(b.get('random'))} "
            f"| {_fmt(r['mrr_ge_best_baseline'])} | {note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default=None, help="comma-separated cell names (default: all)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="trained workspaces")
    ap.add_argument("--relink", action="store_true", help="only link + evaluate, cached models")
    ap.add_argument("--rebuild", action="store_true", help="rebuild and retrain the cells")
    ap.add_argument("--report", action="store_true", help="print the cached results only")
    ap.add_argument("--max-steps", type=int, default=200, help="train.sequence.max_steps")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ap.add_argument("--list", action="store_true", help="list the cells and exit")
    args = ap.parse_args(argv)
    if args.list:
        for c in CELLS:
            print(f"{c.name:<22} {c.role:<7} {c.what}")
        return 0
    names = [n.strip() for n in args.cells.split(",")] if args.cells else [c.name for c in CELLS]
    unknown = [n for n in names if n not in CELL_BY_NAME]
    if unknown:
        print(f"error: unknown cells {unknown}; --list shows them", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        cell, root = CELL_BY_NAME[name], args.cache / name
        trained = (root / "trained.json").is_file()
        result = root / "result.json"
        if args.report:
            rows.append(json.loads(result.read_text()) if result.is_file() else {"cell": name})
            continue
        if args.relink and not trained:
            print(f"error: {name} has no trained workspace under {root}; run without --relink",
                  file=sys.stderr)  # fmt: skip
            return 2
        try:
            if args.rebuild or not trained:
                build_cell(cell, args.cache, args.max_steps)
            elif not args.relink and result.is_file():
                rows.append(json.loads(result.read_text()))
                continue
        except CellError as exc:
            log(f"{name}: {exc}")
            rows.append({"cell": name, "role": cell.role, "error": str(exc)})
            continue
        rows.append(evaluate_cell(cell, args.cache))
    if args.json:
        print(json.dumps({"cache": str(args.cache), "cells": rows}, indent=2))
    else:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
