"""Loader for the GroupLens MovieLens ``ml-latest-small`` release.

``ratings.csv`` becomes the events (event ``rating``, value 0.5-5 stars, epoch seconds),
``movies.csv`` the items (title with year, genres as ``Comedy|Drama``) and ``tags.csv`` the item
text: each movie's distinct tags, most used first.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from crossrec.datasets.canonical import (
    Dataset,
    canonical_events,
    canonical_items,
    data_root,
    require_files,
)
from crossrec.datasets.perturb import STARS_HALF, ValueScale

FOLDER = "movielens-ml-latest-small"
NAME = "movielens-ml-latest-small"
FILES = ["ratings.csv", "movies.csv", "tags.csv"]
#: The rating scale of MovieLens: half stars from 0.5 to 5.
SCALE: ValueScale = STARS_HALF
NO_GENRES = "(no genres listed)"


def default_path() -> Path:
    """Where the dataset is looked for when no path is given (see :func:`data_root`)."""
    return data_root() / FOLDER


def _tag_text(tags: pl.DataFrame) -> pl.DataFrame:
    """One text per movie: its distinct tags (case-insensitive), most used first."""
    return (
        tags.with_columns(tag=pl.col("tag").str.strip_chars())
        .filter(pl.col("tag").str.len_chars() > 0)
        .with_columns(key=pl.col("tag").str.to_lowercase())
        .group_by("movieId", "key")
        # the most used spelling of a tag, alphabetical on ties, so the text is reproducible
        .agg(n=pl.len(), tag=pl.col("tag").sort().mode().sort().first())
        .sort(["movieId", "n", "key"], descending=[False, True, False])
        .group_by("movieId", maintain_order=True)
        .agg(text=pl.col("tag").str.join("; "))
    )


def load_movielens(path: Path | str | None = None) -> Dataset:
    """Load MovieLens ratings, movies and tags as canonical tables.

    Parameters
    ----------
    path
        The folder holding ``ratings.csv``, ``movies.csv`` and ``tags.csv``; default
        :func:`default_path`.

    Returns
    -------
    Dataset
        ``events`` (100,836 ratings in the 2018 release) in file order, account = ``userId``,
        item = ``movieId``, event ``rating``; ``items`` (9,742 movies) with title, tag text
        (null for untagged movies) and genres (null for "(no genres listed)").

    Raises
    ------
    crossrec.errors.InputError
        When the folder or one of its files is missing.
    """
    folder = Path(path) if path is not None else default_path()
    require_files(folder, FILES, "MovieLens")
    ratings = pl.read_csv(
        folder / "ratings.csv",
        schema={
            "userId": pl.String,
            "movieId": pl.String,
            "rating": pl.Float64,
            "timestamp": pl.Int64,
        },
    )
    movies = pl.read_csv(
        folder / "movies.csv",
        schema={"movieId": pl.String, "title": pl.String, "genres": pl.String},
    )
    tags = pl.read_csv(
        folder / "tags.csv",
        schema={"userId": pl.String, "movieId": pl.String, "tag": pl.String, "timestamp": pl.Int64},
    )
    events = canonical_events(
        ratings.select(
            account=pl.col("userId"),
            item=pl.col("movieId"),
            event=pl.lit("rating"),
            value=pl.col("rating"),
            timestamp=pl.col("timestamp"),
        )
    )
    items = canonical_items(
        movies.join(_tag_text(tags), on="movieId", how="left", maintain_order="left").select(
            item=pl.col("movieId"),
            title=pl.col("title").str.strip_chars(),
            text=pl.col("text"),
            category=pl.when(pl.col("genres") == NO_GENRES).then(None).otherwise(pl.col("genres")),
        )
    )
    return Dataset(NAME, events, items)
