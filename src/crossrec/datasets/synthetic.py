"""A synthetic multi-platform world with ground truth, for scale.

Persons follow a few topics (popular topics more often) and have an activity rhythm (a peak
hour, preferred weekdays, an active span). Each platform (video, music, books, shop, ...) has
its own catalogue whose titles are built from shared topic words, with power-law popularity
within a topic. Some persons are on one platform, the rest on several; their accounts are linked
in ``known_links.csv`` (anchors) and ``truth_links.csv`` (held out).

Events are streamed per platform in chunks of accounts (Parquet row groups, or CSV appended
chunk by chunk), so memory is bounded by a chunk plus per-person and per-item arrays: 1M
accounts and 50M events fit in a few GB.

Files: ``<platform>/events.{parquet,csv}``, ``<platform>/items.{parquet,csv}``,
``truth_accounts.{parquet,csv}``, ``known_links.csv``, ``truth_links.csv``, ``synthetic.json``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from crossrec.datasets.canonical import write_links_csv
from crossrec.datasets.ground_truth import fresh_ids, person_links, split_anchors, write_json
from crossrec.datasets.synthetic_events import Chunk, make_chunk
from crossrec.datasets.synthetic_people import (
    TOPIC_NAMES,
    Catalogue,
    make_catalogue,
    make_population,
)
from crossrec.datasets.synthetic_words import KIND_ORDER, KINDS
from crossrec.errors import InputError
from crossrec.progress import NullProgress, ProgressHook

OutputFormat = Literal["parquet", "csv"]
_DICT = pa.dictionary(pa.int32(), pa.string())
#: Id columns are written dictionary-encoded (each row group holds its own small dictionary),
#: about twice as fast as plain strings; readers see plain strings.
EVENTS_ARROW = pa.schema(
    [
        ("account", _DICT),
        ("item", _DICT),
        ("event", _DICT),
        ("value", pa.float64()),
        ("timestamp", pa.int64()),
    ]
)
ITEMS_ARROW = pa.schema([(c, pa.string()) for c in ("item", "title", "text", "category")])
_POPULATION, _COUNTS, _IDS, _ANCHORS = 1, 2, 3, 4


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of a synthetic world.

    Attributes
    ----------
    accounts
        Accounts over all platforms (exact).
    events
        Events over all platforms (exact; at least one per account).
    platforms
        Number of platforms, named by kind: video, music, books, shop, video2, ...
    items_per_platform
        Catalogue size per platform; default ``max(200, 5 * sqrt(events))``.
    single_fraction
        Chance that a person is on one platform only (others are on 2..k).
    anchor_fraction
        Fraction of multi-platform persons whose links are known.
    zipf
        Power-law exponent of item popularity within a topic.
    explore
        Share of events on any popular item rather than a followed topic.
    start, days
        Epoch seconds of day 0 (a Monday) and the number of days covered.
    chunk_events
        Events per chunk (one Parquet row group); bounds memory.
    format
        ``parquet`` or ``csv``.
    seed
        Same seed, same bytes.
    """

    accounts: int
    events: int
    platforms: int = 2
    items_per_platform: int | None = None
    single_fraction: float = 0.4
    anchor_fraction: float = 0.3
    zipf: float = 1.0
    explore: float = 0.1
    start: int = 1_704_067_200  # 2024-01-01 00:00 UTC, a Monday
    days: int = 365
    chunk_events: int = 500_000
    format: OutputFormat = "parquet"
    seed: int = 42

    def __post_init__(self) -> None:
        if self.accounts < 1:
            raise InputError(f"accounts must be at least 1, got {self.accounts}")
        if self.events < self.accounts:
            raise InputError(
                f"events ({self.events}) must be at least accounts ({self.accounts})",
                hint="every account has at least one event",
            )
        if not 1 <= self.platforms <= 64:
            raise InputError(f"platforms must be between 1 and 64, got {self.platforms}")
        fractions = {
            "single fraction": self.single_fraction,
            "anchor fraction": self.anchor_fraction,
            "explore": self.explore,
        }
        for what, v in fractions.items():
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{what} must be between 0 and 1, got {v}")
        if self.items_per_platform is not None and self.items_per_platform < len(TOPIC_NAMES):
            raise InputError(
                f"items per platform must be at least {len(TOPIC_NAMES)} (one per topic)"
            )
        if self.format not in ("parquet", "csv"):
            raise InputError(f"unknown format {self.format!r}", hint="use parquet or csv")
        if self.days < 7 or self.chunk_events < 1 or self.zipf < 0:
            raise InputError("days must be >= 7, chunk events >= 1 and zipf >= 0")

    @property
    def n_items(self) -> int:
        return self.items_per_platform or max(200, round(5 * self.events**0.5))

    @property
    def platform_names(self) -> list[str]:
        names = []
        for j in range(self.platforms):
            kind = KIND_ORDER[j % len(KIND_ORDER)]
            names.append(kind if j < len(KIND_ORDER) else f"{kind}{j // len(KIND_ORDER) + 1}")
        return names


class _Sink:
    """Appends chunks to one events file (Parquet row groups or CSV)."""

    def __init__(self, path: Path, fmt: OutputFormat) -> None:
        self.path, self.fmt, self.row_groups = path, fmt, 0
        self._pq = (
            pq.ParquetWriter(path, EVENTS_ARROW, compression="zstd", store_schema=False)
            if fmt == "parquet"
            else None
        )
        self._fh = None if fmt == "parquet" else path.open("wb")

    def write(self, table: pa.Table) -> None:
        if self._pq is not None:
            self._pq.write_table(table, row_group_size=max(table.num_rows, 1))
        else:
            assert self._fh is not None
            pl.from_arrow(table).write_csv(  # type: ignore[union-attr]
                self._fh, include_header=self.row_groups == 0, null_value="", line_terminator="\n"
            )
        self.row_groups += 1

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        elif self._fh is not None:
            if self.row_groups == 0:
                self._fh.write(b"account,item,event,value,timestamp\n")
            self._fh.close()


def _write_table(table: pa.Table, path: Path, fmt: OutputFormat) -> Path:
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        pl.from_arrow(table).write_csv(path, null_value="", line_terminator="\n")  # type: ignore[union-attr]
    return path


def _chunk_table(
    chunk: Chunk, account_ids: pa.Array, a0: int, item_ids: pa.Array, event: str
) -> pa.Table:
    n = len(chunk.account)
    # Only the items this chunk uses go into its dictionary (a catalogue can be large).
    used = np.zeros(len(item_ids), dtype=bool)
    used[chunk.item] = True
    present = np.flatnonzero(used)
    slot = np.cumsum(used, dtype=np.int32) - 1
    value = pa.nulls(n, pa.float64()) if chunk.value is None else pa.array(chunk.value)
    columns = [
        pa.DictionaryArray.from_arrays(pa.array(chunk.account - a0, pa.int32()), account_ids),
        pa.DictionaryArray.from_arrays(
            pa.array(slot[chunk.item]), item_ids.take(pa.array(present))
        ),
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([event])),
        value,
        pa.array(chunk.timestamp, pa.int64()),
    ]
    return pa.Table.from_arrays(columns, schema=EVENTS_ARROW)


def _chunk_edges(counts: np.ndarray, chunk_events: int) -> list[int]:
    """Account boundaries of chunks of about ``chunk_events`` events (whole accounts each)."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    targets = np.arange(chunk_events, total, chunk_events)
    cuts = np.searchsorted(ends, targets) + 1  # a chunk ends after the account reaching a target
    return [int(e) for e in np.unique(np.r_[0, cuts, len(counts)])]


def _catalogue_table(cat: Catalogue, ids: list[str]) -> pa.Table:
    columns = [
        pa.array(ids, pa.string()),
        pa.array(cat.titles, pa.string()),
        pa.array(cat.texts, pa.string()),
        pa.array([TOPIC_NAMES[t] for t in cat.topic.tolist()], pa.string()),
    ]
    order = np.argsort(np.array(ids))  # catalogue order would hint at popularity
    return pa.Table.from_arrays(columns, schema=ITEMS_ARROW).take(pa.array(order))


def generate_synthetic(
    out: Path | str, config: SyntheticConfig, *, progress: ProgressHook | None = None
) -> dict[str, Any]:
    """Generate a synthetic world into ``out`` (see the module docstring for the files).

    Parameters
    ----------
    out
        Output folder (created if needed).
    config
        Sizes and shape.
    progress
        Optional progress: one task per platform, advanced by events.

    Returns
    -------
    dict
        The summary written to ``synthetic.json``, plus ``seconds`` and ``events_per_second``
        (measured, so not written to the file).
    """
    started = time.perf_counter()
    hook = progress or NullProgress()
    cfg = config
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    ext = cfg.format
    names = cfg.platform_names
    topic_weights = np.random.default_rng([cfg.seed, 0x70]).dirichlet(
        np.full(len(TOPIC_NAMES), 2.0)
    )
    pop = make_population(
        cfg.accounts, cfg.platforms, cfg.single_fraction, topic_weights, cfg.days,
        np.random.default_rng([cfg.seed, _POPULATION]),
    )  # fmt: skip
    # Accounts per platform: its persons in random order (so file order reveals nothing).
    id_rng = np.random.default_rng([cfg.seed, _IDS])
    members = [np.flatnonzero(pop.on[:, j]) for j in range(cfg.platforms)]
    members = [m[id_rng.permutation(len(m))].astype(np.int32) for m in members]
    sizes = [len(m) for m in members]
    # Events per account: one each, the rest by activity times a per-account taste for the platform.
    count_rng = np.random.default_rng([cfg.seed, _COUNTS])
    weight = np.concatenate([pop.activity[m] for m in members]).astype(np.float64)
    weight *= count_rng.lognormal(0.0, 0.5, size=len(weight))
    counts_all = 1 + count_rng.multinomial(cfg.events - cfg.accounts, weight / weight.sum())
    bounds = np.cumsum([0, *sizes])
    written: list[Path] = []
    platforms: list[dict[str, Any]] = []
    owners: list[pl.DataFrame] = []
    for j, name in enumerate(names):
        kind = KIND_ORDER[j % len(KIND_ORDER)]
        event = KINDS[kind][0]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        cat = make_catalogue(cfg.n_items, kind, topic_weights, cfg.zipf, cfg.seed, j)
        item_ids = fresh_ids(cfg.n_items, platform_index=j, kind="item", seed=cfg.seed)
        written.append(_write_table(_catalogue_table(cat, item_ids), folder / f"items.{ext}", ext))
        item_arr = pa.array(item_ids, pa.string())
        account_ids = fresh_ids(sizes[j], platform_index=j, kind="account", seed=cfg.seed)
        counts = counts_all[bounds[j] : bounds[j + 1]]
        edges = _chunk_edges(counts, cfg.chunk_events)
        task = hook.task(f"synthetic {name}: events", total=int(counts.sum()))
        sink = _Sink(folder / f"events.{ext}", ext)
        try:
            for c, (a0, a1) in enumerate(itertools.pairwise(edges)):
                chunk = make_chunk(
                    pop, cat, members[j], counts, a0, a1, kind=kind, start=cfg.start,
                    explore=cfg.explore, rng=np.random.default_rng([cfg.seed, 0xE0, j, c]),
                )  # fmt: skip
                sink.write(
                    _chunk_table(
                        chunk, pa.array(account_ids[a0:a1], pa.string()), a0, item_arr, event
                    )
                )
                task.advance(len(chunk.account))
        finally:
            sink.close()
        task.done()
        written.append(sink.path)
        platforms.append(
            {"name": name, "kind": kind, "event": event, "accounts": sizes[j], "items": cfg.n_items,
             "events": int(counts.sum()), "chunks": sink.row_groups}
        )  # fmt: skip
        owners.append(
            pl.DataFrame(
                {
                    "platform": name,
                    "account": account_ids,
                    "person": [f"{p}" for p in members[j].tolist()],
                },
                schema={"platform": pl.String, "account": pl.String, "person": pl.String},
            )
        )
    accounts = pl.concat(owners)
    written.append(
        _write_table(
            accounts.sort("platform", "account").to_arrow(), root / f"truth_accounts.{ext}", ext
        )
    )
    known, truth, n_anchor = split_anchors(
        person_links(accounts, names),
        cfg.anchor_fraction,
        np.random.default_rng([cfg.seed, _ANCHORS]),
    )
    written += [
        write_links_csv(known, root / "known_links.csv"),
        write_links_csv(truth, root / "truth_links.csv"),
    ]
    on = pop.on.sum(axis=1)
    summary: dict[str, Any] = {
        "builder": "synthetic",
        "config": asdict(cfg) | {"items_per_platform": cfg.n_items},
        "topics": list(TOPIC_NAMES),
        "platforms": platforms,
        "persons": pop.size,
        "single_platform_persons": int((on == 1).sum()),
        "multi_platform_persons": int((on > 1).sum()),
        "anchor_persons": n_anchor,
        "known_links": known.height,
        "truth_links": truth.height,
        "files": [p.relative_to(root).as_posix() for p in written] + ["synthetic.json"],
    }
    write_json(root / "synthetic.json", summary)
    seconds = time.perf_counter() - started
    return summary | {
        "seconds": round(seconds, 3),
        "events_per_second": round(cfg.events / seconds),
    }
