"""Fresh per-platform ids, truth links between a person's accounts, anchors and their files.

Files written into a split's folder:

- ``known_links.csv`` -- links a system may train on (anchors), raw ids;
- ``truth_links.csv`` -- the remaining true links, held out for evaluation;
- ``truth_accounts.csv`` -- ``platform,account,person``: which person owns each account.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from crossrec.datasets.canonical import format_ids, scramble_ids, write_links_csv

IdKind = Literal["account", "item"]
_KIND_BIT = {"account": 0, "item": 1}
_PREFIX = {"account": "u", "item": "i"}


def fresh_ids(n: int, *, platform_index: int, kind: IdKind, seed: int) -> list[str]:
    """``n`` new ids for one platform, distinct from every id of any other platform or kind.

    Parameters
    ----------
    n
        How many ids (local indexes ``0..n-1``; shuffle the owners first, ids keep no order).
    platform_index
        0-based platform number, below 128.
    kind
        ``account`` (ids ``u...``) or ``item`` (ids ``i...``).
    seed
        The split's seed: another seed gives unrelated ids.

    Returns
    -------
    list of str
        ``n`` ids such as ``u3f9a2c81b7d0``.
    """
    codes = (
        (np.uint64(_KIND_BIT[kind]) << np.uint64(47))
        | (np.uint64(platform_index) << np.uint64(40))
        | np.arange(n, dtype=np.uint64)
    )
    return format_ids(scramble_ids(codes, key=0x5DEECE66D * (seed + 1)), _PREFIX[kind])


def person_links(accounts: pl.DataFrame, platforms: list[str]) -> pl.DataFrame:
    """Every pair of accounts that one person holds on two platforms.

    Parameters
    ----------
    accounts
        Frame with ``platform``, ``account``, ``person`` (one account per person and platform).
    platforms
        Platform order: ``platform_a`` comes before ``platform_b`` in it.

    Returns
    -------
    polars.DataFrame
        ``person, platform_a, account_a, platform_b, account_b``, one row per pair.
    """
    order = {p: i for i, p in enumerate(platforms)}
    acc = accounts.select("person", "platform", "account").with_columns(
        rank=pl.col("platform").replace_strict(order, return_dtype=pl.Int32)
    )
    a = acc.rename({"platform": "platform_a", "account": "account_a", "rank": "rank_a"})
    b = acc.rename({"platform": "platform_b", "account": "account_b", "rank": "rank_b"})
    return (
        a.join(b, on="person")
        .filter(pl.col("rank_a") < pl.col("rank_b"))
        .sort("rank_a", "account_a", "rank_b", "account_b")
        .select("person", "platform_a", "account_a", "platform_b", "account_b")
    )


def split_anchors(
    links: pl.DataFrame, anchor_fraction: float, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Choose ``round(anchor_fraction * m)`` of the ``m`` linked persons as known anchors.

    Returns
    -------
    tuple
        ``(known, truth, n_anchor_persons)``: all links of an anchor person are known, all links
        of the others are truth.
    """
    persons = np.sort(links["person"].unique().to_numpy())
    n_anchor = round(anchor_fraction * len(persons))
    chosen = rng.choice(persons, size=n_anchor, replace=False) if n_anchor else persons[:0]
    is_anchor = pl.col("person").is_in(pl.Series(chosen).implode())
    return links.filter(is_anchor), links.filter(~is_anchor), n_anchor


def write_ground_truth(
    out: Path, accounts: pl.DataFrame, known: pl.DataFrame, truth: pl.DataFrame
) -> list[Path]:
    """Write ``known_links.csv``, ``truth_links.csv`` and ``truth_accounts.csv`` into ``out``."""
    owners = accounts.select("platform", "account", "person").sort("platform", "account")
    path = out / "truth_accounts.csv"
    owners.write_csv(path, line_terminator="\n")
    return [
        write_links_csv(known, out / "known_links.csv"),
        write_links_csv(truth, out / "truth_links.csv"),
        path,
    ]


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    """Write a JSON description (stable key order, trailing newline)."""
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
