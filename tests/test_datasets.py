"""Platform-split builder and perturbations: known answers on a tiny dataset, and properties."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossrec.datasets.canonical import Dataset
from crossrec.datasets.perturb import (
    PERCENT,
    STARS,
    STARS_HALF,
    TEN_POINT,
    WEEK_SECONDS,
    rescale,
    rewrite_title,
    shift_clock,
    title_words,
)
from crossrec.datasets.split import SplitConfig, build_split, perturb_title, split_dataset
from crossrec.errors import InputError

N_PERSONS, PER_PERSON = 20, 6
GENRES = ("Comedy", "Drama", "Horror")
TITLES = ("Matrix, The (1999)", "Heat (1995)", "American President, The (1995)", "Babylon 5")
DAY = 86_400


def tiny() -> Dataset:
    """20 persons x 6 ratings of distinct items (so person + item identifies an event)."""
    rows = []
    for p in range(N_PERSONS):
        for e in range(PER_PERSON):
            rows.append(
                {
                    "account": f"user{p}",
                    "item": f"m{(p + 2 * e) % 15}",
                    "event": "rating",
                    "value": 0.5 + ((p + e) % 10) * 0.5,
                    "timestamp": 1_000_000_000 + p * 10 * DAY + e * DAY + p * 61,
                }
            )
    events = pl.DataFrame(rows, schema_overrides={"timestamp": pl.Int64})
    items = pl.DataFrame(
        {
            "item": [f"m{i}" for i in range(15)],
            "title": [f"{TITLES[i % 4]} {i}" if i % 4 == 3 else TITLES[i % 4] for i in range(15)],
            "text": [None if i % 2 else f"tag {i}" for i in range(15)],
            "category": [GENRES[i % 3] if i % 5 else "Comedy|Horror" for i in range(15)],
        }
    )
    return Dataset("tiny", events, items)


def read_split(out: Path) -> dict[str, pl.DataFrame]:
    """Output events joined back to their source person and item."""
    owners = pl.read_csv(out / "truth_accounts.csv", infer_schema=False)
    items = pl.read_csv(out / "truth_items.csv", infer_schema=False)
    frames = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        ev = pl.read_csv(
            folder / "events.csv",
            schema={
                "account": pl.String, "item": pl.String, "event": pl.String,
                "value": pl.Float64, "timestamp": pl.Int64,
            },
        )  # fmt: skip
        ev = ev.join(owners.filter(pl.col("platform") == folder.name), on="account", how="left")
        ev = ev.join(items.filter(pl.col("platform") == folder.name), on="item", how="left")
        frames[folder.name] = ev
    return frames


def source_events() -> pl.DataFrame:
    return tiny().events.select(
        person="account", source_item="item", src_value="value", src_ts="timestamp"
    )


# ---------------------------------------------------------------- titles


@pytest.mark.parametrize(
    ("title", "kwargs", "expected"),
    [
        ("Matrix, The (1999)", {"move_article": True, "year": "brackets"}, "The Matrix [1999]"),
        ("The Matrix (1999)", {"move_article": True, "year": "dash"}, "Matrix, The - 1999"),
        ("The Matrix (1999)", {"year": "drop", "case": "lower"}, "the matrix"),
        ("Heat (1995)", {"case": "upper"}, "HEAT (1995)"),
        ("the LORD of the rings", {"case": "title"}, "The Lord Of The Rings"),
        (
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            {"move_article": True},
            "The City of Lost Children (Cité des enfants perdus, La) (1995)",
        ),
        ("Homme, L' (2000)", {"move_article": True}, "L'Homme (2000)"),
        ("Babylon 5", {"year": "drop", "move_article": True}, "Babylon 5"),
        (
            "Death Note: Desu nôto (2006–2007)",
            {"year": "brackets"},
            "Death Note: Desu nôto [2006–2007]",
        ),
        ("Theory of Everything", {"move_article": True}, "Theory of Everything"),
    ],
)
def test_rewrite_title_known_answers(title: str, kwargs: dict, expected: str) -> None:
    assert rewrite_title(title, **kwargs) == expected


_word = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéèüß0123456789'&:-",
    min_size=1,
    max_size=8,
)
_titles = st.builds(
    lambda art, words, alt, year, trailing: (
        (f"{art} " if art and not trailing else "")
        + " ".join(words)
        + (f", {art}" if art and trailing else "")
        + (f" ({' '.join(alt)})" if alt else "")
        + (f" ({year})" if year else "")
    ),
    st.sampled_from(["", "The", "A", "An", "La", "Les"]),
    st.lists(_word, min_size=1, max_size=5),
    st.lists(_word, max_size=3),
    st.one_of(st.none(), st.integers(1900, 2030)),
    st.booleans(),
)


@given(title=_titles, seed=st.integers(0, 2**32 - 1))
def test_perturb_title_keeps_the_words(title: str, seed: int) -> None:
    out = perturb_title(title, random.Random(seed))
    before, after = Counter(title_words(title)), Counter(title_words(out))
    assert after <= before
    # the only words that may go are the year's
    assert all(w.isdigit() and len(w) == 4 for w in before - after)


@given(text=st.text(max_size=40), seed=st.integers(0, 1000))
def test_perturb_title_takes_any_text_and_always_draws_the_same(text: str, seed: int) -> None:
    a, b = random.Random(seed), random.Random(seed)
    assert isinstance(perturb_title(text, a), str)
    perturb_title("Matrix, The (1999)", b)
    assert a.random() == b.random()  # the next title's style does not depend on this one


def test_perturb_title_is_seeded_and_varies() -> None:
    titles = [perturb_title("Matrix, The (1999)", random.Random(s)) for s in range(40)]
    assert titles == [perturb_title("Matrix, The (1999)", random.Random(s)) for s in range(40)]
    assert len(set(titles)) >= 8


# ---------------------------------------------------------------- values and clocks


def test_rescale_known_answers() -> None:
    stars = np.array([0.5, 1.0, 2.5, 5.0, np.nan])
    assert rescale(stars, STARS_HALF, TEN_POINT)[:4].tolist() == [1, 2, 5, 10]
    assert rescale(stars, STARS_HALF, PERCENT)[:4].tolist() == [0, 11, 44, 100]
    assert rescale(stars, STARS_HALF, STARS)[:4].tolist() == [1, 1, 3, 5]
    assert np.isnan(rescale(stars, STARS_HALF, TEN_POINT)[4])


@given(seed=st.integers(0, 2**32 - 1), jitter=st.floats(0, 12), weeks=st.integers(0, 60))
def test_shift_clock_moves_each_account_by_whole_weeks_plus_jitter(
    seed: int, jitter: float, weeks: int
) -> None:
    ts = np.arange(0, 50 * 3600, 3600, dtype=np.int64)
    account = np.arange(50) % 5
    shifted, offset = shift_clock(
        ts, account, 5, np.random.default_rng(seed), max_weeks=weeks, jitter_hours=jitter
    )
    residual = shifted - ts - offset[account] * WEEK_SECONDS
    assert np.all(np.abs(offset) <= weeks)
    assert np.all(np.abs(residual) <= round(jitter * 3600))


# ---------------------------------------------------------------- the split builder


def test_single_and_anchor_fractions_are_exact(tmp_path: Path) -> None:
    cfg = SplitConfig(single_fraction=0.4, anchor_fraction=0.25, seed=7)
    summary = build_split(tiny(), tmp_path, cfg)
    owners = pl.read_csv(tmp_path / "truth_accounts.csv", infer_schema=False)
    per_person = owners.group_by("person").len()
    assert (per_person["len"] == 1).sum() == 8  # round(0.4 * 20)
    assert (per_person["len"] == 2).sum() == 12
    known = pl.read_csv(tmp_path / "known_links.csv", infer_schema=False)
    truth = pl.read_csv(tmp_path / "truth_links.csv", infer_schema=False)
    assert (known.height, truth.height) == (3, 9)  # round(0.25 * 12) anchors
    assert summary["single_platform_persons"] == 8
    assert summary["known_links"] == 3


def test_links_are_exactly_the_pairs_of_one_persons_accounts(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(platforms=3, clock=("keep",), seed=3))
    owners = pl.read_csv(tmp_path / "truth_accounts.csv", infer_schema=False)
    links = pl.concat(
        [
            pl.read_csv(tmp_path / f, infer_schema=False)
            for f in ("known_links.csv", "truth_links.csv")
        ]
    )
    who = dict(
        zip(zip(owners["platform"], owners["account"], strict=True), owners["person"], strict=True)
    )
    pairs = set()
    for pa_, aa, pb, ab in links.iter_rows():
        assert who[(pa_, aa)] == who[(pb, ab)]
        assert pa_ < pb
        pairs.add((pa_, aa, pb, ab))
    expected = sum(n * (n - 1) // 2 for n in owners.group_by("person").len()["len"])
    assert len(pairs) == links.height == expected


def test_every_source_event_lands_once_with_its_value_and_time(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(rescale_values=False, clock=("keep",), seed=1))
    got = pl.concat(read_split(tmp_path).values()).select(
        "person", "source_item", "value", "timestamp"
    )
    src = source_events().rename({"src_value": "value", "src_ts": "timestamp"})
    assert got.sort(pl.all()).equals(src.sort(pl.all()))


def test_ids_are_fresh_and_text_carries_over(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(seed=5))
    frames = read_split(tmp_path)
    items = pl.read_csv(tmp_path / "p1" / "items.csv", infer_schema=False)
    truth = pl.read_csv(tmp_path / "truth_items.csv", infer_schema=False)
    src = tiny().items
    joined = items.join(truth, on="item").join(src, left_on="source_item", right_on="item")
    assert joined.height == items.height
    assert joined.filter(pl.col("title") != pl.col("title_right")).height == 0  # p1 keeps titles
    assert (joined["text"].fill_null("") == joined["text_right"].fill_null("")).all()
    for ev in frames.values():
        assert not set(ev["account"]) & set(src["item"]) and not set(ev["account"]) & {
            f"user{p}" for p in range(N_PERSONS)
        }


def test_second_platform_titles_are_perturbed_keeping_words(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(seed=2))
    items = pl.read_csv(tmp_path / "p2" / "items.csv", infer_schema=False)
    truth = pl.read_csv(tmp_path / "truth_items.csv", infer_schema=False)
    joined = items.join(truth, on="item").join(tiny().items, left_on="source_item", right_on="item")
    changed = 0
    for new, old in zip(joined["title"], joined["title_right"], strict=True):
        assert Counter(title_words(new)) <= Counter(title_words(old))
        changed += new != old
    assert changed > 0


def test_values_rescaled_per_platform(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(platforms=3, seed=4), source_scale=STARS_HALF)
    frames = read_split(tmp_path)
    src = source_events()
    p1 = frames["p1"].join(src, on=["person", "source_item"])
    p2 = frames["p2"].join(src, on=["person", "source_item"])
    p3 = frames["p3"].join(src, on=["person", "source_item"])
    assert (p1["value"] == p1["src_value"]).all()
    assert (p2["value"] == p2["src_value"] * 2).all()  # 0.5-5 -> 1-10
    assert p3["value"].min() >= 0 and p3["value"].max() <= 100


def test_clock_keep_shift_drop(tmp_path: Path) -> None:
    cfg = SplitConfig(
        platforms=3, clock=("keep", "shift", "drop"), jitter_hours=2, shift_weeks=10, seed=9
    )
    build_split(tiny(), tmp_path, cfg)
    frames = {
        k: v.join(source_events(), on=["person", "source_item"])
        for k, v in read_split(tmp_path).items()
    }
    assert (frames["p1"]["timestamp"] == frames["p1"]["src_ts"]).all()
    lines = (tmp_path / "p3" / "events.csv").read_text().splitlines()[1:]
    assert lines and all(line.endswith(",") for line in lines)  # empty timestamp field
    shifted = frames["p2"].with_columns(diff=pl.col("timestamp") - pl.col("src_ts"))
    weeks = (shifted["diff"] / WEEK_SECONDS).round().cast(pl.Int64)
    shifted = shifted.with_columns(weeks=weeks, residual=pl.col("diff") - weeks * WEEK_SECONDS)
    assert shifted.group_by("account").agg(pl.col("weeks").n_unique())["weeks"].max() == 1
    assert shifted["residual"].abs().max() <= 2 * 3600
    assert shifted["weeks"].abs().max() <= 10 and shifted["weeks"].abs().max() > 0
    assert shifted["residual"].abs().max() > 0


def test_drop_keeps_each_accounts_events_in_time_order(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(clock=("drop",), seed=11))
    for ev in read_split(tmp_path).values():
        src = ev.join(source_events(), on=["person", "source_item"])
        assert (
            src.group_by("account", maintain_order=True)
            .agg(ok=pl.col("src_ts").diff().drop_nulls().min().fill_null(1) >= 0)["ok"]
            .all()
        )
        # accounts come in blocks: the file is grouped by account
        assert ev["account"].rle_id().n_unique() == ev["account"].n_unique()


def test_temporal_mode_gives_each_platform_one_stretch_of_time(tmp_path: Path) -> None:
    build_split(tiny(), tmp_path, SplitConfig(mode="temporal", platforms=3, seed=6))
    spans = (
        pl.concat([ev.with_columns(platform=pl.lit(k)) for k, ev in read_split(tmp_path).items()])
        .group_by("person", "platform")
        .agg(lo=pl.col("timestamp").min(), hi=pl.col("timestamp").max())
    )
    for _, group in spans.sort("lo").group_by("person", maintain_order=True):
        lo, hi = group["lo"].to_list(), group["hi"].to_list()
        assert all(hi[i] < lo[i + 1] for i in range(len(lo) - 1))


def test_category_mode_puts_each_item_on_one_platform(tmp_path: Path) -> None:
    summary = build_split(
        tiny(), tmp_path, SplitConfig(mode="category", single_fraction=0.5, seed=8)
    )
    truth = pl.read_csv(tmp_path / "truth_items.csv", infer_schema=False)
    assert truth["source_item"].is_unique().all()
    genres = [c.split("|") for c in tiny().items["category"]]
    freq = Counter(g for gs in genres for g in gs)
    for name in ("p1", "p2"):
        items = pl.read_csv(tmp_path / name / "items.csv", infer_schema=False)
        # an item's rarest genre (fewest items; by name on ties) decides its platform
        keys = {min(c.split("|"), key=lambda g: (freq[g], g)) for c in items["category"]}
        assert {summary["genre_platforms"][k] for k in keys} == {name}
    assert summary["single_platform_persons"] >= 10


def test_same_seed_same_bytes_other_seed_other_links(tmp_path: Path) -> None:
    cfg = SplitConfig(platforms=3, clock=("keep", "shift", "drop"), seed=42)
    build_split(tiny(), tmp_path / "a", cfg)
    build_split(tiny(), tmp_path / "b", cfg)
    build_split(
        tiny(), tmp_path / "c", SplitConfig(platforms=3, clock=("keep", "shift", "drop"), seed=43)
    )
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 11
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "truth_links.csv").read_bytes() != (
        tmp_path / "c" / "truth_links.csv"
    ).read_bytes()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000), k=st.integers(2, 4), mode=st.sampled_from(["random", "temporal"])
)
def test_ids_never_collide_across_platforms(seed: int, k: int, mode: str) -> None:
    result = split_dataset(tiny(), SplitConfig(platforms=k, mode=mode, seed=seed))  # type: ignore[arg-type]
    accounts = [a for s in result.platforms for a in s.events["account"].unique()]
    items = [i for s in result.platforms for i in s.items["item"]]
    assert len(accounts) == len(set(accounts)) == result.accounts.height
    assert len(items) == len(set(items))
    assert not set(accounts) & set(items)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"platforms": 1},
        {"mode": "by-moon"},
        {"single_fraction": 1.5},
        {"anchor_fraction": -0.1},
        {"clock": ("keep", "drop", "keep")},
        {"clock": ("later",)},
        {"names": ("a", "a")},
        {"names": ("a/b", "c")},
    ],
)
def test_bad_config_is_refused_with_a_message(kwargs: dict) -> None:
    with pytest.raises(InputError):
        SplitConfig(**kwargs)


def test_temporal_split_needs_timestamps() -> None:
    ds = tiny()
    no_time = Dataset("nt", ds.events.with_columns(timestamp=pl.lit(None, pl.Int64)), ds.items)
    with pytest.raises(InputError, match="timestamps"):
        split_dataset(no_time, SplitConfig(mode="temporal"))
