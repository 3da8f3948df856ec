"""Recommendation test sets held out of a built two-platform folder.

From a folder written by ``crossrec datasets movielens|douban`` this writes a copy in which
one platform's interactions are split into what is ingested and two test files (raw ids,
columns ``account,item``) that ``crossrec evaluate recommend --test`` reads:

- ``test_cold.csv``: for a fraction of the platform's accounts that have a known link, *all*
  their interactions on the platform — accounts new to it, known only through their linked
  account elsewhere (cold start);
- ``test_warm.csv``: for every other account with at least ``min_warm`` interactions, a random
  ``warm_fraction`` of them (the classic per-account split).

The known link of a cold account stays in ``known_links.csv``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from crossrec.datasets.ground_truth import write_json
from crossrec.datasets.split import check_fraction
from crossrec.errors import InputError

TEST_COLD = "test_cold.csv"
TEST_WARM = "test_warm.csv"


def build_holdout(
    source: Path | str,
    out: Path | str,
    platform: str,
    *,
    cold_fraction: float = 0.5,
    warm_fraction: float = 0.2,
    min_warm: int = 5,
    seed: int = 42,
) -> dict[str, Any]:
    """Copy ``source`` to ``out`` with ``platform``'s interactions split (module docstring).

    Returns the summary also written to ``out/holdout.json``. Same seed, same bytes.
    """
    check_fraction("cold fraction", cold_fraction)
    check_fraction("warm fraction", warm_fraction)
    src, dst = Path(source), Path(out)
    events_path = src / platform / "events.csv"
    links_path = src / "known_links.csv"
    for path in (events_path, links_path):
        if not path.is_file():
            raise InputError(
                f"{path} not found",
                hint="point --from at a folder made by `crossrec datasets movielens|douban`",
            )
    if dst.resolve() == src.resolve():
        raise InputError("the output folder must differ from the source folder")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    events = pl.read_csv(events_path, infer_schema_length=0).with_row_index("row")
    links = pl.read_csv(links_path, infer_schema_length=0)
    linked = sorted(
        set(links.filter(pl.col("platform_a") == platform)["account_a"].to_list())
        | set(links.filter(pl.col("platform_b") == platform)["account_b"].to_list())
    )
    has_events = set(events["account"].unique().to_list())
    linked = [a for a in linked if a in has_events]
    rng = np.random.default_rng([seed, 0x401D])
    n_cold = round(cold_fraction * len(linked))
    cold = sorted(rng.choice(np.asarray(linked, dtype=object), n_cold, replace=False).tolist())
    is_cold = pl.col("account").is_in(cold)
    cold_rows = events.filter(is_cold)
    rest = events.filter(~is_cold)
    # The warm split: per account, a random warm_fraction of its rows (at least one).
    keys = rng.random(rest.height)
    rest = rest.with_columns(key=pl.Series(keys))
    rest = rest.with_columns(
        n=pl.len().over("account"),
        pos=pl.col("key").rank("ordinal").over("account"),
    )
    n_out = (pl.col("n") * warm_fraction).round().clip(lower_bound=1)
    to_test = (pl.col("n") >= min_warm) & (pl.col("pos") <= n_out)
    warm_rows = rest.filter(to_test)
    kept = rest.filter(~to_test).drop("key", "n", "pos")
    columns = [c for c in events.columns if c != "row"]
    kept.sort("row").select(columns).write_csv(dst / platform / "events.csv", line_terminator="\n")
    for rows, name in ((cold_rows, TEST_COLD), (warm_rows, TEST_WARM)):
        rows.sort("row").select("account", "item").write_csv(
            dst / platform / name, line_terminator="\n"
        )
    summary = {
        "source": str(src),
        "platform": platform,
        "seed": seed,
        "cold_fraction": cold_fraction,
        "warm_fraction": warm_fraction,
        "min_warm": min_warm,
        "cold_accounts": len(cold),
        "cold_interactions": cold_rows.height,
        "warm_accounts": warm_rows["account"].n_unique(),
        "warm_interactions": warm_rows.height,
        "ingested_interactions": kept.height,
        "files": [f"{platform}/events.csv", f"{platform}/{TEST_COLD}", f"{platform}/{TEST_WARM}"],
    }
    write_json(dst / "holdout.json", summary)
    return summary
