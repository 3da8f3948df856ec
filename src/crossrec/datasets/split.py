"""Split one dataset into several platforms with known ground truth.

Each person of the source becomes an account on one or more platforms, each with fresh random
account and item ids, the platform's own title style, rating scale and clock. What a linker
must recover is written beside the platforms: ``known_links.csv`` (anchors it may use),
``truth_links.csv`` (held out), ``truth_accounts.csv`` and ``truth_items.csv``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from crossrec.datasets import assign
from crossrec.datasets.canonical import Dataset, write_events_csv, write_items_csv
from crossrec.datasets.ground_truth import (
    fresh_ids,
    person_links,
    split_anchors,
    write_ground_truth,
    write_json,
)
from crossrec.datasets.perturb import (
    CLOCK_POLICIES,
    DAY_SECONDS,
    RESCALE_CYCLE,
    TITLE_STYLES,
    ClockPolicy,
    TitleStyle,
    ValueScale,
    perturb_title,
    rescale,
    shift_clock,
)
from crossrec.errors import InputError
from crossrec.progress import NullProgress, ProgressHook

__all__ = [
    "PlatformSplit",
    "SplitConfig",
    "SplitResult",
    "build_split",
    "perturb_title",
    "split_dataset",
    "write_split",
]

SplitMode = Literal["random", "temporal", "category"]
SPLIT_MODES: tuple[str, ...] = ("random", "temporal", "category")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Independent random streams, so changing one step does not reshuffle the others.
_MEMBERSHIP, _ASSIGN, _IDS, _CLOCK, _ANCHORS, _SPARSE = 1, 2, 3, 4, 5, 6
#: The event type of an implicit platform's events (they carry no value).
IMPLICIT_EVENT = "watch"


def check_fraction(what: str, value: float) -> None:
    """Refuse a fraction outside ``[0, 1]``."""
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{what} must be between 0 and 1, got {value}")


@dataclass(frozen=True)
class SplitConfig:
    """How to split a dataset into platforms.

    Attributes
    ----------
    platforms
        Number of platforms ``k >= 2``.
    names
        Platform names (folder names); default ``p1..pk``.
    mode
        ``random`` (each event to one of its person's platforms at random), ``temporal`` (each
        person's history cut in time order, one stretch per platform) or ``category`` (each
        item on one platform by its genre; persons follow their items).
    single_fraction
        Fraction of persons present on one platform only.
    anchor_fraction
        Fraction of the persons on 2+ platforms whose links are known (``known_links.csv``).
    perturb_titles
        Rewrite titles on platforms 2..k with :func:`perturb_title` (platform 1 keeps them).
    rescale_values
        Put values on platforms 2..k on another rating scale (1-10, 0-100, 1-5 in turn).
    clock
        One policy for all platforms or one per platform: ``keep``, ``shift`` (per account a
        whole number of weeks, plus jitter per event), ``shift_days`` (per account a whole
        number of days, plus jitter) or ``drop`` (no timestamps exported).
    shift_weeks
        ``shift`` moves each account by a whole number of weeks in ``[-shift_weeks, shift_weeks]``.
    jitter_hours
        ``shift`` and ``shift_days`` move each event by up to this many hours either way.
    shift_days
        ``shift_days`` moves each account by a whole number of days in
        ``[-shift_days, shift_days]``.
    titles
        How each platform writes titles, one style for all or one per platform: ``source``,
        ``perturbed`` (:func:`perturb_title`) or ``no_year`` (perturbed, year always dropped).
        None: ``perturb_titles`` decides (platform 1 keeps the source titles).
    implicit
        Names of platforms that log implicit feedback: their events become ``watch`` events
        without a value (``rescale_values`` does not apply to them).
    max_events_per_account
        Cut every account (one person on one platform) to at most this many events, chosen at
        random and kept in time order; None keeps every event.
    seed
        Same seed, same bytes.
    """

    platforms: int = 2
    names: tuple[str, ...] | None = None
    mode: SplitMode = "random"
    single_fraction: float = 0.4
    anchor_fraction: float = 0.3
    perturb_titles: bool = True
    rescale_values: bool = True
    clock: tuple[ClockPolicy, ...] = ("keep",)
    shift_weeks: int = 52
    jitter_hours: float = 3.0
    shift_days: int = 365
    titles: tuple[TitleStyle, ...] | None = None
    implicit: tuple[str, ...] = ()
    max_events_per_account: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.platforms < 2 or self.platforms > 100:
            raise InputError(f"platforms must be between 2 and 100, got {self.platforms}")
        if self.mode not in SPLIT_MODES:
            raise InputError(f"unknown split mode {self.mode!r}", hint=f"use one of {SPLIT_MODES}")
        check_fraction("single fraction", self.single_fraction)
        check_fraction("anchor fraction", self.anchor_fraction)
        names = self.platform_names
        if len(set(names)) != len(names) or not all(_NAME.match(n) for n in names):
            raise InputError(
                f"platform names must be distinct simple names, got {list(names)}",
                hint="letters, digits, '_', '-', '.'",
            )
        if len(names) != self.platforms:
            raise InputError(f"{len(names)} platform names given for {self.platforms} platforms")
        bad = [c for c in self.clock if c not in CLOCK_POLICIES]
        if bad or len(self.clock) not in (1, self.platforms):
            raise InputError(
                f"clock must be one policy or one per platform ({self.platforms}), "
                f"each of {', '.join(CLOCK_POLICIES)}; got {','.join(self.clock)}"
            )
        if self.shift_weeks < 0 or self.jitter_hours < 0 or self.shift_days < 0:
            raise InputError("shift weeks, shift days and jitter hours must not be negative")
        if self.titles is not None and (
            len(self.titles) not in (1, self.platforms)
            or any(t not in TITLE_STYLES for t in self.titles)
        ):
            raise InputError(
                f"titles must be one style or one per platform ({self.platforms}), each of "
                f"{', '.join(TITLE_STYLES)}; got {','.join(self.titles)}"
            )
        unknown = sorted(set(self.implicit) - set(names))
        if unknown:
            raise InputError(
                f"implicit platforms {unknown} are not among the platforms {list(names)}",
                hint="name platforms of this split (default p1..pk)",
            )
        if self.max_events_per_account is not None and self.max_events_per_account < 1:
            raise InputError(
                f"max events per account must be at least 1, got {self.max_events_per_account}"
            )

    @property
    def platform_names(self) -> tuple[str, ...]:
        return (
            self.names
            if self.names is not None
            else tuple(f"p{i + 1}" for i in range(self.platforms))
        )

    @property
    def clocks(self) -> tuple[ClockPolicy, ...]:
        return self.clock * self.platforms if len(self.clock) == 1 else self.clock

    @property
    def title_styles(self) -> tuple[TitleStyle, ...]:
        """Each platform's title style."""
        if self.titles is None:
            rest: TitleStyle = "perturbed" if self.perturb_titles else "source"
            first: tuple[TitleStyle, ...] = ("source",)
            return first + (rest,) * (self.platforms - 1)
        return self.titles * self.platforms if len(self.titles) == 1 else self.titles


@dataclass
class PlatformSplit:
    """One platform of a split: canonical ``events`` and ``items`` frames and how they differ."""

    name: str
    events: pl.DataFrame
    items: pl.DataFrame
    clock: str
    value_scale: str
    titles: str


@dataclass
class SplitResult:
    """A split in memory: platforms, owners of accounts and items, known and truth links."""

    platforms: list[PlatformSplit]
    accounts: pl.DataFrame  # platform, account, person
    item_truth: pl.DataFrame  # platform, item, source_item
    known_links: pl.DataFrame
    truth_links: pl.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def infer_scale(values: np.ndarray) -> ValueScale:
    """The rating scale of observed values: their range and smallest step."""
    v = np.unique(values[~np.isnan(values)])
    if len(v) == 0:
        return ValueScale(0.0, 1.0, 1.0)
    steps = np.diff(v)
    return ValueScale(float(v[0]), float(v[-1]), float(steps.min()) if len(steps) else 1.0)


@dataclass(frozen=True)
class _Source:
    """The source events as integer codes and arrays, ``E`` events."""

    dataset: Dataset
    person: np.ndarray  # (E,) code into persons
    persons: np.ndarray  # source account ids, sorted
    item: np.ndarray  # (E,) code into item_names
    item_names: np.ndarray  # source item ids, sorted
    ts: np.ndarray  # (E,) int64, 0 where null
    ts_null: np.ndarray  # (E,) bool
    values: np.ndarray  # (E,) float64, NaN where null
    meta: pl.DataFrame  # source_item, title, text, category

    @classmethod
    def of(cls, ds: Dataset) -> _Source:
        ev = ds.events
        meta = ds.items.select(
            source_item="item", title="title", text="text", category="category"
        ).unique("source_item", keep="first", maintain_order=True)
        return cls(
            dataset=ds,
            person=ev["account"].rank("dense").to_numpy().astype(np.int64) - 1,
            persons=ev["account"].unique().sort().to_numpy(),
            item=ev["item"].rank("dense").to_numpy().astype(np.int64) - 1,
            item_names=ev["item"].unique().sort().to_numpy(),
            ts=ev["timestamp"].fill_null(0).to_numpy().astype(np.int64),
            ts_null=ev["timestamp"].is_null().to_numpy(),
            values=ev["value"].to_numpy().astype(np.float64),
            meta=meta,
        )


def _platform_of_events(
    src: _Source, cfg: SplitConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Platform code per event and the mask of events kept (only ``category`` drops any)."""
    person, n, k = src.person, len(src.persons), cfg.platforms
    rng = np.random.default_rng([cfg.seed, _ASSIGN])
    if cfg.mode == "category":
        cat = dict(zip(src.meta["source_item"], src.meta["category"], strict=True))
        genres = [[g for g in (cat.get(i) or "").split("|") if g] for i in src.item_names]
        item_plat, genre_plat = assign.category_platforms(
            genres, np.bincount(src.item, minlength=len(src.item_names)), k
        )
        platform = item_plat[src.item]
        keep = assign.keep_one_platform(person, platform, n, k, cfg.single_fraction, rng)
        names = cfg.platform_names
        doc = {"genre_platforms": {g or "(none)": names[j] for g, j in sorted(genre_plat.items())}}
        return platform, keep, doc
    member = assign.choose_membership(
        n, k, cfg.single_fraction, np.bincount(person),
        np.random.default_rng([cfg.seed, _MEMBERSHIP]),
    )  # fmt: skip
    if cfg.mode == "temporal":
        if src.ts_null.any():
            raise InputError(
                f"{src.dataset.name} has events without timestamps: temporal split needs them",
                hint="use --mode random or category",
            )
        platform = assign.assign_temporal(person, src.ts, member, rng)
    else:
        platform = assign.assign_random(person, member, rng)
    return platform, np.ones(len(person), dtype=bool), {}


def cap_events(
    person: np.ndarray,
    platform: np.ndarray,
    keep: np.ndarray,
    cap: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The mask of kept events once every account holds at most ``cap`` of them.

    Parameters
    ----------
    person, platform
        ``(E,)`` int codes of each event's person and platform: an account is one pair.
    keep
        ``(E,)`` bool, the events still in the split; the others stay out.
    cap
        Most events per account; which ones stay is drawn at random.
    rng
        Seeded generator (one draw per event, whatever ``keep`` holds).

    Returns
    -------
    numpy.ndarray
        ``(E,)`` bool, a subset of ``keep``.
    """
    draw = rng.random(len(person))
    n_plat = int(platform.max()) + 1 if len(platform) else 1
    account = person.astype(np.int64) * n_plat + platform
    idx = np.flatnonzero(keep)
    order = idx[np.lexsort((draw[idx], account[idx]))]
    grouped = account[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1]
    lengths = np.diff(np.r_[starts, len(grouped)])
    rank = np.arange(len(grouped)) - np.repeat(starts, lengths)
    out = np.zeros(len(person), dtype=bool)
    out[order[rank < cap]] = True
    return out


def _shuffled_codes(
    values: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct codes in ``values`` in random order, and each code's position in that order."""
    present = np.unique(values)
    shuffled = present[rng.permutation(len(present))]
    position = np.full(size, -1, dtype=np.int64)
    position[shuffled] = np.arange(len(shuffled))
    return shuffled, position


def _catalogue(
    src: _Source, item_ids: list[str], item_order: np.ndarray, j: int, cfg: SplitConfig
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One platform's items (sorted by id) and its ``item -> source_item`` truth."""
    truth = pl.DataFrame(
        {"item": item_ids, "source_item": src.item_names[item_order].tolist()},
        schema={"item": pl.String, "source_item": pl.String},
    )
    items = truth.join(src.meta, on="source_item", how="left")
    style = cfg.title_styles[j]
    if style != "source":
        # Walk items in source order so a title's style does not depend on the random ids.
        items = items.sort("source_item")
        rng = random.Random(f"{cfg.seed}:titles:{j}")
        drop = style == "no_year"
        styled = [
            None if t is None else perturb_title(t, rng, drop_year=drop) for t in items["title"]
        ]
        items = items.with_columns(title=pl.Series(styled, dtype=pl.String))
    return items.sort("item").drop("source_item"), truth


def _platform(
    src: _Source,
    sel: np.ndarray,
    j: int,
    cfg: SplitConfig,
    scale: ValueScale,
    id_rng: np.random.Generator,
    clock_rng: np.random.Generator,
) -> tuple[PlatformSplit, pl.DataFrame, pl.DataFrame]:
    """Platform ``j`` from the source events ``sel``: the split, its owners, its item truth."""
    name, clock = cfg.platform_names[j], cfg.clocks[j]
    p, q = src.person[sel], src.item[sel]
    acc_order, acc_pos = _shuffled_codes(p, len(src.persons), id_rng)
    item_order, item_pos = _shuffled_codes(q, len(src.item_names), id_rng)
    acc_ids = fresh_ids(len(acc_order), platform_index=j, kind="account", seed=cfg.seed)
    item_ids = fresh_ids(len(item_order), platform_index=j, kind="item", seed=cfg.seed)
    acode, icode = acc_pos[p], item_pos[q]
    t = src.ts[sel]
    if clock == "shift":
        t, _ = shift_clock(
            t, acode, len(acc_order), clock_rng,
            max_weeks=cfg.shift_weeks, jitter_hours=cfg.jitter_hours,
        )  # fmt: skip
    elif clock == "shift_days":
        t, _ = shift_clock(
            t, acode, len(acc_order), clock_rng, max_weeks=cfg.shift_days,
            jitter_hours=cfg.jitter_hours, unit_seconds=DAY_SECONDS,
        )  # fmt: skip
    v, target = src.values[sel], scale
    implicit = name in cfg.implicit
    scale_label = scale.label
    if implicit:
        v, scale_label = np.full(len(sel), np.nan), "none"
    elif cfg.rescale_values and j > 0:
        target = RESCALE_CYCLE[(j - 1) % len(RESCALE_CYCLE)]
        v = rescale(v, scale, target)
        scale_label = target.label
    # Account by account (ids are random, so this order leaks nothing), each in time order:
    # with the clock dropped the file order is all that is left of the sequence.
    acc_rank = np.argsort(np.argsort(np.array(acc_ids)))
    order = np.lexsort((sel, src.ts[sel], acc_rank[acode]))
    if clock == "drop":
        ts_out = pl.Series("timestamp", [None] * len(order), dtype=pl.Int64)
    else:
        ts_out = pl.Series("timestamp", t[order], dtype=pl.Int64)
        ts_out = ts_out.scatter(np.flatnonzero(src.ts_null[sel][order]), None)
    events = pl.DataFrame(
        {
            "account": pl.Series(acc_ids, dtype=pl.String).gather(acode[order]),
            "item": pl.Series(item_ids, dtype=pl.String).gather(icode[order]),
            "event": (
                pl.Series("event", [IMPLICIT_EVENT] * len(order), dtype=pl.String)
                if implicit
                else src.dataset.events["event"].gather(sel[order])
            ),
            "value": pl.Series(v[order], dtype=pl.Float64).fill_nan(None),
            "timestamp": ts_out,
        }
    )
    items, item_truth = _catalogue(src, item_ids, item_order, j, cfg)
    owners = pl.DataFrame(
        {"platform": name, "account": acc_ids, "person": src.persons[acc_order].tolist()},
        schema={"platform": pl.String, "account": pl.String, "person": pl.String},
    )
    split = PlatformSplit(name, events, items, clock, scale_label, cfg.title_styles[j])
    return split, owners, item_truth.select(pl.lit(name).alias("platform"), "item", "source_item")


def split_dataset(
    dataset: Dataset,
    config: SplitConfig,
    *,
    source_scale: ValueScale | None = None,
    progress: ProgressHook | None = None,
) -> SplitResult:
    """Split ``dataset`` into ``config.platforms`` platforms with ground truth.

    Parameters
    ----------
    dataset
        Canonical events (``E`` rows) and items; ``account`` is the person.
    config
        The split's parameters.
    source_scale
        The source's rating scale (default: inferred from the values).
    progress
        Optional progress reporting.

    Returns
    -------
    SplitResult
        Per platform, events grouped by account, each in source time order; items sorted by id.
    """
    if dataset.events.height == 0:
        raise InputError(f"{dataset.name} has no events to split")
    hook = progress or NullProgress()
    src = _Source.of(dataset)
    platform, keep, extra = _platform_of_events(src, config)
    events_dropped = int((~keep).sum())
    if config.max_events_per_account is not None:
        capped = cap_events(
            src.person, platform, keep, config.max_events_per_account,
            np.random.default_rng([config.seed, _SPARSE]),
        )  # fmt: skip
        extra["max_events_per_account"] = config.max_events_per_account
        extra["events_cut"] = int((keep & ~capped).sum())
        keep = capped
    scale = source_scale or infer_scale(src.values)
    id_rng = np.random.default_rng([config.seed, _IDS])
    clock_rng = np.random.default_rng([config.seed, _CLOCK])
    task = hook.task(f"{dataset.name}: splitting", total=config.platforms)
    splits, owners, item_owners = [], [], []
    for j in range(config.platforms):
        sel = np.flatnonzero((platform == j) & keep)
        split, own, items = _platform(src, sel, j, config, scale, id_rng, clock_rng)
        splits.append(split)
        owners.append(own)
        item_owners.append(items)
        task.advance()
    task.done()
    accounts = pl.concat(owners)
    links = person_links(accounts, list(config.platform_names))
    known, truth, n_anchor = split_anchors(
        links, config.anchor_fraction, np.random.default_rng([config.seed, _ANCHORS])
    )
    per_person = accounts.group_by("person").len()["len"]
    summary: dict[str, Any] = {
        "source": dataset.name,
        "builder": "split",
        "seed": config.seed,
        "mode": config.mode,
        "platforms": [
            {
                "name": s.name,
                "accounts": s.events["account"].n_unique(),
                "items": s.items.height,
                "events": s.events.height,
                "clock": s.clock,
                "value_scale": s.value_scale,
                "titles": s.titles,
            }
            for s in splits
        ],
        "source_value_scale": scale.label,
        "persons": len(src.persons),
        "single_fraction": config.single_fraction,
        "single_platform_persons": int((per_person == 1).sum()),
        "multi_platform_persons": int((per_person > 1).sum()),
        "persons_dropped": len(src.persons) - len(per_person),
        "events_dropped": events_dropped,
        "anchor_fraction": config.anchor_fraction,
        "anchor_persons": n_anchor,
        "known_links": known.height,
        "truth_links": truth.height,
        "shift_weeks": config.shift_weeks,
        "jitter_hours": config.jitter_hours,
        **({"shift_days": config.shift_days} if "shift_days" in config.clocks else {}),
        **({"implicit": list(config.implicit)} if config.implicit else {}),
        **extra,
    }
    return SplitResult(splits, accounts, pl.concat(item_owners), known, truth, summary)


def write_split(result: SplitResult, out: Path | str) -> list[Path]:
    """Write a split into ``out``; returns the paths written.

    Files: ``<platform>/events.csv`` and ``<platform>/items.csv`` per platform,
    ``known_links.csv``, ``truth_links.csv``, ``truth_accounts.csv``, ``truth_items.csv``
    (``platform,item,source_item``) and ``split.json`` (parameters and counts).
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for s in result.platforms:
        written.append(write_events_csv(s.events, root / s.name / "events.csv"))
        written.append(write_items_csv(s.items, root / s.name / "items.csv"))
    written += write_ground_truth(root, result.accounts, result.known_links, result.truth_links)
    truth_items = root / "truth_items.csv"
    result.item_truth.sort("platform", "item").write_csv(truth_items, line_terminator="\n")
    written.append(truth_items)
    files = [p.relative_to(root).as_posix() for p in written] + ["split.json"]
    result.summary["files"] = files
    written.append(write_json(root / "split.json", result.summary))
    return written


def build_split(
    dataset: Dataset,
    out: Path | str,
    config: SplitConfig,
    *,
    source_scale: ValueScale | None = None,
    progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Split ``dataset`` (see :func:`split_dataset`), write it into ``out``, return the summary."""
    result = split_dataset(dataset, config, source_scale=source_scale, progress=progress)
    write_split(result, out)
    return result.summary
