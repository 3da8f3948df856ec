"""The synthetic generator: exact sizes, ground truth, the signals it promises, bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.datasets.synthetic import SyntheticConfig, generate_synthetic
from crossrec.datasets.synthetic_words import TOPICS
from crossrec.errors import InputError


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic")
    cfg = SyntheticConfig(accounts=3_000, events=120_000, platforms=3, chunk_events=20_000, seed=5)
    return out, generate_synthetic(out, cfg)


def _events(out: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / name / "events.parquet")


def test_sizes_are_exact_and_files_are_chunked(world: tuple[Path, dict]) -> None:
    out, summary = world
    names = [p["name"] for p in summary["platforms"]]
    assert names == ["video", "music", "books"]
    events = {n: _events(out, n) for n in names}
    assert sum(e.height for e in events.values()) == 120_000
    assert sum(e["account"].n_unique() for e in events.values()) == 3_000
    for n, e in events.items():
        assert e.columns == ["account", "item", "event", "value", "timestamp"]
        assert pq.ParquetFile(out / n / "events.parquet").metadata.num_row_groups > 1
        items = pl.read_parquet(out / n / "items.parquet")
        assert e["item"].is_in(items["item"].implode()).all()
    assert events["music"]["value"].is_null().all()  # plays carry no value
    assert events["books"]["value"].is_between(1, 5).all()
    owners = pl.read_parquet(out / "truth_accounts.parquet")
    assert owners.height == 3_000 and owners["account"].is_unique().all()
    assert summary["persons"] == owners["person"].n_unique()
    assert json.loads((out / "synthetic.json").read_text())["persons"] == summary["persons"]


def test_links_join_the_accounts_of_one_person(world: tuple[Path, dict]) -> None:
    out, summary = world
    owners = pl.read_parquet(out / "truth_accounts.parquet")
    who = dict(zip(owners["account"], owners["person"], strict=True))
    known = pl.read_csv(out / "known_links.csv", infer_schema=False)
    truth = pl.read_csv(out / "truth_links.csv", infer_schema=False)
    both = pl.concat([known, truth])
    assert all(who[a] == who[b] for a, b in both.select("account_a", "account_b").iter_rows())
    per_person = owners.group_by("person").len()["len"]
    assert both.height == int(sum(n * (n - 1) // 2 for n in per_person))
    multi = int((per_person > 1).sum())
    assert summary["multi_platform_persons"] == multi
    assert summary["anchor_persons"] == round(0.3 * multi)
    assert 0.3 < summary["single_platform_persons"] / summary["persons"] < 0.5


def test_titles_are_made_of_their_topics_words(world: tuple[Path, dict]) -> None:
    out, _ = world
    for name in ("video", "music", "books"):
        items = pl.read_parquet(out / name / "items.parquet")
        for title, topic in items.select("title", "category").iter_rows():
            assert any(w in title for w in TOPICS[topic]), (title, topic)


def _profile(events: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    return (
        events.join(items.select("item", "category"), on="item")
        .with_columns(hour=(pl.col("timestamp") // 3600) % 24)
        .group_by("account")
        .agg(
            hour=pl.col("hour").mode().min(),
            topic=pl.col("category").mode().min(),
        )
    )


def test_linked_accounts_share_rhythm_and_interests(world: tuple[Path, dict]) -> None:
    out, _ = world
    prof = {
        n: _profile(_events(out, n), pl.read_parquet(out / n / "items.parquet"))
        for n in ("video", "music")
    }
    links = pl.concat(
        [pl.read_csv(out / f, infer_schema=False) for f in ("known_links.csv", "truth_links.csv")]
    ).filter((pl.col("platform_a") == "video") & (pl.col("platform_b") == "music"))
    pairs = links.join(prof["video"], left_on="account_a", right_on="account").join(
        prof["music"], left_on="account_b", right_on="account", suffix="_b"
    )
    shuffled = pairs.with_columns(
        pl.col("hour_b", "topic_b").shuffle(seed=0)
    )  # same accounts, wrong partners

    def agree(df: pl.DataFrame, col: str) -> float:
        return float((df[col] == df[f"{col}_b"]).mean())  # type: ignore[arg-type]

    assert pairs.height > 100
    assert agree(pairs, "hour") > 3 * agree(shuffled, "hour")
    assert agree(pairs, "topic") > 3 * agree(shuffled, "topic")


def test_item_popularity_is_skewed(world: tuple[Path, dict]) -> None:
    out, _ = world
    counts = _events(out, "books").group_by("item").len()["len"].sort(descending=True).to_numpy()
    n_items = pl.read_parquet(out / "books" / "items.parquet").height
    top = counts[: n_items // 10].sum() / counts.sum()
    assert top > 0.4  # a tenth of the catalogue takes a large share of the events


def test_same_seed_same_bytes_and_csv_matches_parquet(tmp_path: Path) -> None:
    cfg = SyntheticConfig(accounts=300, events=6_000, platforms=2, chunk_events=1_000, seed=2)
    generate_synthetic(tmp_path / "a", cfg)
    generate_synthetic(tmp_path / "b", cfg)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 8
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    csv_cfg = SyntheticConfig(**{**cfg.__dict__, "format": "csv"})
    generate_synthetic(tmp_path / "c", csv_cfg)
    for name in ("video", "music"):
        got = pl.read_csv(
            tmp_path / "c" / name / "events.csv",
            schema_overrides={"value": pl.Float64, "timestamp": pl.Int64},
        )
        assert got.equals(pl.read_parquet(tmp_path / "a" / name / "events.parquet"))
        header = (tmp_path / "c" / name / "events.csv").read_text().splitlines()[0]
        assert header == "account,item,event,value,timestamp"


def test_memory_is_bounded_by_the_chunk_not_the_total(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "warm", SyntheticConfig(accounts=50, events=500))  # imports

    def peak(chunk_events: int) -> int:
        cfg = SyntheticConfig(accounts=2_000, events=200_000, chunk_events=chunk_events, seed=1)
        tracemalloc.start()
        try:
            generate_synthetic(tmp_path / str(chunk_events), cfg)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, whole = peak(10_000), peak(200_000)
    assert small < whole / 3
    assert small < 8_000_000  # 200,000 events would need ~16 MB at once


@pytest.mark.parametrize(
    "kwargs",
    [
        {"accounts": 10, "events": 5},
        {"accounts": 0, "events": 5},
        {"accounts": 10, "events": 50, "format": "xlsx"},
        {"accounts": 10, "events": 50, "items_per_platform": 3},
        {"accounts": 10, "events": 50, "single_fraction": 2.0},
    ],
)
def test_bad_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(InputError):
        SyntheticConfig(**kwargs)


def test_synthetic_command_prints_json_and_writes_csv(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = CliRunner().invoke(
        app,
        ["datasets", "synthetic", "--out", str(out), "--accounts", "200", "--events", "4000",
         "--platforms", "4", "--format", "csv", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["name"] for p in doc["platforms"]] == ["video", "music", "books", "shop"]
    assert sum(p["events"] for p in doc["platforms"]) == 4_000
    assert (out / "shop" / "events.csv").is_file() and (out / "truth_accounts.csv").is_file()
    assert "events/s" in result.stderr
