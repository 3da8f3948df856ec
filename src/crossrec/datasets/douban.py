"""Loader and two-platform builder for the Douban Book + Music ratings (GA-DTCDR release).

The two files share one user index: user 17 in ``douban_book`` and in ``douban_music`` is the
same person. There are no timestamps and no item text, so systems must cope without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from crossrec.datasets.canonical import (
    Dataset,
    canonical_events,
    canonical_items,
    data_root,
    require_files,
    write_events_csv,
    write_items_csv,
)
from crossrec.datasets.ground_truth import (
    fresh_ids,
    person_links,
    split_anchors,
    write_ground_truth,
    write_json,
)
from crossrec.datasets.perturb import STARS, ValueScale
from crossrec.progress import NullProgress, ProgressHook

FOLDER = "douban-gadtcdr-book-music"
DOMAINS: tuple[str, ...] = ("book", "music")
FILES = [f"douban_{d}/ratings.dat" for d in DOMAINS]
#: Douban stars: whole stars from 1 to 5.
SCALE: ValueScale = STARS


def default_path() -> Path:
    """Where the dataset is looked for when no path is given (see :func:`data_root`)."""
    return data_root() / FOLDER


def _read_ratings(path: Path, domain: str) -> Dataset:
    raw = pl.read_csv(
        path,
        separator="\t",
        has_header=False,
        new_columns=["user", "item", "rating"],
        schema_overrides={"user": pl.String, "item": pl.String, "rating": pl.Float64},
    )
    events = canonical_events(
        raw.select(
            account=pl.col("user"),
            item=pl.col("item"),
            event=pl.lit("rating"),
            value=pl.col("rating"),
            timestamp=pl.lit(None, dtype=pl.Int64),
        )
    )
    # No titles or text exist for these items; the catalogue is the ids that were rated.
    items = canonical_items(
        raw.select(pl.col("item").unique(maintain_order=True)).with_columns(
            title=pl.lit(None), text=pl.lit(None), category=pl.lit(None)
        )
    )
    return Dataset(f"douban-{domain}", events, items)


def load_douban(path: Path | str | None = None) -> dict[str, Dataset]:
    """Load Douban Book and Music ratings as canonical tables, one dataset per domain.

    Parameters
    ----------
    path
        The folder holding ``douban_book/ratings.dat`` and ``douban_music/ratings.dat``
        (tab-separated ``user item rating``, no header); default :func:`default_path`.

    Returns
    -------
    dict
        ``{"book": Dataset, "music": Dataset}``; events in file order (grouped by user),
        event ``rating`` with values 1-5, timestamps null; items hold ids only.

    Raises
    ------
    crossrec.errors.InputError
        When the folder or one of its files is missing.
    """
    folder = Path(path) if path is not None else default_path()
    require_files(folder, FILES, "Douban")
    return {d: _read_ratings(folder / f"douban_{d}" / "ratings.dat", d) for d in DOMAINS}


def build_douban(
    out: Path | str,
    *,
    source: Path | str | None = None,
    anchor_fraction: float = 0.5,
    seed: int = 42,
    progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Write Douban Book and Music as two platforms with fresh ids and ground-truth links.

    Users present in both files are linked; ``anchor_fraction`` of them go to
    ``known_links.csv``, the rest to ``truth_links.csv``. Users on one platform only are kept.
    Events keep their file order (the source's only hint of sequence).

    Parameters
    ----------
    out
        Output folder: ``book/``, ``music/`` (``events.csv``, ``items.csv``), the link files,
        ``truth_accounts.csv``, ``truth_items.csv`` and ``split.json``.
    source
        The Douban folder (default :func:`default_path`).
    anchor_fraction
        Fraction of shared users whose link is known, in ``[0, 1]``.
    seed
        Same seed, same bytes.
    progress
        Optional progress reporting.

    Returns
    -------
    dict
        The summary also written to ``split.json``.
    """
    from crossrec.datasets.split import check_fraction

    check_fraction("anchor fraction", anchor_fraction)
    hook = progress or NullProgress()
    data = load_douban(source)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    task = hook.task("douban: writing platforms", total=len(DOMAINS))
    rng = np.random.default_rng([seed, 0xD0])
    accounts: list[pl.DataFrame] = []
    item_truth: list[pl.DataFrame] = []
    written: list[Path] = []
    platforms: list[dict[str, Any]] = []
    for index, domain in enumerate(DOMAINS):
        ds = data[domain]
        # Shuffle before numbering so an account's id says nothing about its source id.
        users = ds.events["account"].unique(maintain_order=True).to_numpy()
        users = users[rng.permutation(len(users))]
        items = ds.items["item"].to_numpy()
        items = items[rng.permutation(len(items))]
        user_map = pl.DataFrame(
            {
                "account": users,
                "new": fresh_ids(len(users), platform_index=index, kind="account", seed=seed),
            }
        )
        item_map = pl.DataFrame(
            {
                "item": items,
                "new": fresh_ids(len(items), platform_index=index, kind="item", seed=seed),
            }
        )
        # Rows stay grouped by user and in file order within a user, but the users come in
        # the order of their new ids: the source order would line the two platforms up.
        events = (
            ds.events.with_row_index("row")
            .join(user_map, on="account", how="left", maintain_order="left")
            .join(item_map, on="item", how="left", maintain_order="left", suffix="_item")
            .with_columns(account=pl.col("new"), item=pl.col("new_item"))
            .sort("account", "row")
        )
        item_rows = (
            ds.items.join(item_map, on="item", how="left", maintain_order="left")
            .with_columns(item=pl.col("new"))
            .sort("item")
        )
        folder = root / domain
        written += [
            write_events_csv(events, folder / "events.csv"),
            write_items_csv(item_rows, folder / "items.csv"),
        ]
        accounts.append(
            user_map.select(
                platform=pl.lit(domain), account=pl.col("new"), person=pl.col("account")
            )
        )
        item_truth.append(
            item_map.select(platform=pl.lit(domain), item=pl.col("new"), source_item=pl.col("item"))
        )
        platforms.append(
            {
                "name": domain,
                "accounts": len(users),
                "items": len(items),
                "events": events.height,
                "clock": "drop",
                "value_scale": SCALE.label,
            }
        )
        task.advance()
    task.done()
    owners = pl.concat(accounts)
    known, truth, n_anchor = split_anchors(
        person_links(owners, list(DOMAINS)), anchor_fraction, rng
    )
    written += write_ground_truth(root, owners, known, truth)
    items_path = root / "truth_items.csv"
    pl.concat(item_truth).sort("platform", "item").write_csv(items_path, line_terminator="\n")
    written.append(items_path)
    persons = owners["person"].n_unique()
    linked = known.height + truth.height
    summary: dict[str, Any] = {
        "source": FOLDER,
        "builder": "douban",
        "seed": seed,
        "platforms": platforms,
        "persons": persons,
        "single_platform_persons": persons - linked,
        "multi_platform_persons": linked,
        "anchor_fraction": anchor_fraction,
        "anchor_persons": n_anchor,
        "known_links": known.height,
        "truth_links": truth.height,
        "files": [p.relative_to(root).as_posix() for p in written] + ["split.json"],
    }
    write_json(root / "split.json", summary)
    return summary
