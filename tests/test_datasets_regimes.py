"""Split-builder regimes of the robustness matrix: sparse accounts, implicit platforms, titles
without the year and clocks shifted by whole days, on the tiny dataset of test_datasets."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from crossrec.datasets.perturb import DAY_SECONDS, title_words
from crossrec.datasets.split import SplitConfig, build_split, split_dataset
from crossrec.errors import InputError
from tests.test_datasets import read_split, source_events, tiny

THREE = SplitConfig(
    platforms=3,
    names=("cinema", "stream", "watch"),
    clock=("keep", "drop", "shift_days"),
    titles=("source", "perturbed", "no_year"),
    implicit=("watch",),
    shift_days=30,
    jitter_hours=1,
    seed=13,
)


def test_max_events_per_account_caps_every_account_and_keeps_time_order(
    tmp_path: Path,
) -> None:
    summary = build_split(tiny(), tmp_path, SplitConfig(max_events_per_account=2, seed=3))
    frames = read_split(tmp_path)
    uncapped = split_dataset(tiny(), SplitConfig(seed=3))
    for name, ev in frames.items():
        counts = ev.group_by("account").len()["len"]
        assert counts.max() <= 2 and counts.min() >= 1
        # the same accounts as without the cap: nobody disappears
        full = next(p for p in uncapped.platforms if p.name == name)
        assert ev["account"].n_unique() == full.events["account"].n_unique()
        src = ev.join(source_events(), on=["person", "source_item"])
        ok = src.group_by("account").agg(pl.col("src_ts").diff().drop_nulls().min() >= 0)
        assert ok["src_ts"].fill_null(True).all()
    kept = sum(f.height for f in frames.values())
    assert summary["events_cut"] == tiny().events.height - kept > 0
    assert summary["max_events_per_account"] == 2


def test_cap_is_seeded(tmp_path: Path) -> None:
    for d in ("a", "b"):
        build_split(tiny(), tmp_path / d, SplitConfig(max_events_per_account=3, seed=4))
    for f in ("p1/events.csv", "p2/events.csv", "split.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_three_platforms_with_implicit_no_year_and_day_shift(tmp_path: Path) -> None:
    summary = build_split(tiny(), tmp_path, THREE)
    frames = read_split(tmp_path)
    watch = frames["watch"]
    assert set(watch["event"]) == {"watch"} and watch["value"].is_null().all()
    assert frames["stream"]["value"].max() > 5  # the 10-point scale
    assert frames["stream"]["timestamp"].is_null().all()
    # whole days plus at most an hour of jitter, one shift per account
    src = watch.join(source_events(), on=["person", "source_item"])
    diff = src["timestamp"] - src["src_ts"]
    days = (diff / DAY_SECONDS).round().cast(pl.Int64)
    assert (diff - days * DAY_SECONDS).abs().max() <= 3600
    per_account = src.with_columns(days=days).group_by("account").agg(pl.col("days").n_unique())
    assert per_account["days"].max() == 1 and days.abs().max() <= 30
    assert days.abs().max() > 0 and (days % 7 != 0).any()  # not whole weeks
    # titles: the watch catalogue never shows a year, its words are the source's otherwise
    items = pl.read_csv(tmp_path / "watch" / "items.csv", infer_schema=False)
    truth = pl.read_csv(tmp_path / "truth_items.csv", infer_schema=False)
    source = tiny().items.select(source_item="item", src_title="title")
    titles = items.join(truth.filter(pl.col("platform") == "watch"), on="item").join(
        source, on="source_item"
    )
    assert not any(re.search(r"\d{4}", t) for t in titles["title"])
    for title, src_title in zip(titles["title"], titles["src_title"], strict=True):
        words = title_words(re.sub(r"\s*\(\d{4}\)$", "", src_title))
        assert title_words(title) == words or set(title_words(title)) == set(words)
    cinema = pl.read_csv(tmp_path / "cinema" / "items.csv", infer_schema=False)
    assert set(cinema["title"]) <= set(tiny().items["title"])
    plats = {p["name"]: p for p in summary["platforms"]}
    assert plats["watch"]["value_scale"] == "none" and plats["watch"]["titles"] == "no_year"
    assert plats["watch"]["clock"] == "shift_days" and summary["implicit"] == ["watch"]


def test_one_title_style_for_all_platforms(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(titles=("source",), seed=2))
    p2 = pl.read_csv(tmp_path / "p2" / "items.csv", infer_schema=False)
    assert set(p2["title"]) <= set(tiny().items["title"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_events_per_account": 0},
        {"implicit": ("p9",)},
        {"titles": ("source", "perturbed", "no_year")},
        {"titles": ("fancy",)},
        {"shift_days": -1},
        {"clock": ("keep", "shift_hours")},
    ],
)
def test_bad_regime_options_are_refused(kwargs: dict) -> None:
    with pytest.raises(InputError):
        SplitConfig(**kwargs)
