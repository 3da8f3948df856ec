"""The canonical dataset tables in memory and the files that ``crossrec ingest`` reads.

Files written here:

- events CSV ``account,item,event,value,timestamp`` (epoch seconds, empty when not exported);
- items CSV ``item,title,text,category``;
- links CSV ``platform_a,account_a,platform_b,account_b`` (raw ids).

Writers sort nothing and add nothing: the same frame always gives the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from crossrec.errors import InputError

EVENT_COLUMNS: tuple[str, ...] = ("account", "item", "event", "value", "timestamp")
ITEM_COLUMNS: tuple[str, ...] = ("item", "title", "text", "category")
LINK_COLUMNS: tuple[str, ...] = ("platform_a", "account_a", "platform_b", "account_b")

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "account": pl.String(),
    "item": pl.String(),
    "event": pl.String(),
    "value": pl.Float64(),
    "timestamp": pl.Int64(),
}
ITEM_SCHEMA: dict[str, pl.DataType] = {c: pl.String() for c in ITEM_COLUMNS}
LINK_SCHEMA: dict[str, pl.DataType] = {c: pl.String() for c in LINK_COLUMNS}

#: Environment variable naming the folder that holds the public datasets.
DATA_ENV = "CROSSREC_DATA"


@dataclass(frozen=True)
class Dataset:
    """One platform's canonical tables.

    Attributes
    ----------
    name
        A short name, e.g. ``movielens-ml-latest-small``.
    events
        ``(n_events, 5)`` frame with :data:`EVENT_COLUMNS`; ``timestamp`` is epoch seconds or
        null, ``value`` a float or null.
    items
        ``(n_items, 4)`` frame with :data:`ITEM_COLUMNS`; ``text``/``category`` may be null.
    """

    name: str
    events: pl.DataFrame
    items: pl.DataFrame

    @property
    def has_timestamps(self) -> bool:
        return bool(self.events["timestamp"].null_count() < self.events.height)

    def write(self, out: Path | str) -> list[Path]:
        """Write ``events.csv`` and ``items.csv`` into ``out`` (created if needed)."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        return [
            write_events_csv(self.events, folder / "events.csv"),
            write_items_csv(self.items, folder / "items.csv"),
        ]


def canonical_events(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast and order ``frame``'s columns as the canonical events table."""
    return frame.select([pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])


def canonical_items(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast and order ``frame``'s columns as the canonical items table."""
    return frame.select([pl.col(c).cast(t) for c, t in ITEM_SCHEMA.items()])


def canonical_links(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast and order ``frame``'s columns as the canonical links table."""
    return frame.select([pl.col(c).cast(t) for c, t in LINK_SCHEMA.items()])


def _write_csv(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Nulls become empty fields; "\n" line ends everywhere so bytes match across machines.
    frame.write_csv(path, null_value="", line_terminator="\n")
    return path


def write_events_csv(events: pl.DataFrame, path: Path) -> Path:
    """Write an events table as CSV with header ``account,item,event,value,timestamp``."""
    return _write_csv(canonical_events(events), path)


def write_items_csv(items: pl.DataFrame, path: Path) -> Path:
    """Write an items table as CSV with header ``item,title,text,category``."""
    return _write_csv(canonical_items(items), path)


def write_links_csv(links: pl.DataFrame, path: Path) -> Path:
    """Write links as CSV with header ``platform_a,account_a,platform_b,account_b``."""
    return _write_csv(canonical_links(links), path)


def data_root() -> Path:
    """The folder holding the public datasets.

    ``$CROSSREC_DATA`` when set; else ``../shared/data`` from the current directory, or beside
    the source checkout this package runs from, whichever exists (the former when neither does).
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    candidates = [Path("..") / "shared" / "data"]
    here = Path(__file__).resolve().parents
    if len(here) > 4:
        candidates.append(here[4] / "shared" / "data")  # <checkout>/src/crossrec/datasets
    return next((c for c in candidates if c.is_dir()), candidates[0])


def require_files(folder: Path, names: list[str], what: str) -> None:
    """Refuse a data folder that is missing or lacks one of ``names``, naming the path."""
    if not folder.is_dir():
        raise InputError(
            f"{what} data folder not found: {folder}",
            hint=f"pass the folder that holds {', '.join(names)} (or set {DATA_ENV})",
        )
    for name in names:
        if not (folder / name).is_file():
            raise InputError(
                f"{what} file not found: {folder / name}",
                hint=f"the folder must hold {', '.join(names)}",
            )


def scramble_ids(codes: np.ndarray, key: int) -> np.ndarray:
    """Turn distinct integer codes into distinct random-looking 48-bit integers.

    A bijection of ``[0, 2**48)`` (odd multipliers and xor-shifts), so distinct codes never
    collide, and ids carry no trace of the order they were made in.

    Parameters
    ----------
    codes
        ``(n,)`` non-negative integers below ``2**48``.
    key
        Any integer; different keys give unrelated ids.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` uint64 values below ``2**48``.
    """
    mask = np.uint64((1 << 48) - 1)
    k = np.uint64(key & ((1 << 48) - 1))
    x = (np.asarray(codes, dtype=np.uint64) ^ k) & mask
    for mult in (0x9E3779B97F4B, 0xBF58476D1CE5):  # odd, so multiplication is a bijection
        x = (x * np.uint64(mult)) & mask
        x ^= x >> np.uint64(23)
        x = (x + k) & mask
    return x


def format_ids(values: np.ndarray, prefix: str) -> list[str]:
    """Format scrambled integers as fixed-width ids, e.g. ``u3f9a2c81b7d0``."""
    return [f"{prefix}{v:012x}" for v in values.tolist()]
