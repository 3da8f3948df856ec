"""The real MovieLens and Douban loaders and their commands (counts as in the MANIFEST files)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from crossrec.datasets.douban import build_douban, load_douban
from crossrec.datasets.movielens import load_movielens
from crossrec.errors import InputError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOVIELENS = DATA / "movielens-ml-latest-small"
DOUBAN = DATA / "douban-gadtcdr-book-music"
needs_movielens = pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"{MOVIELENS} missing")
needs_douban = pytest.mark.skipif(not DOUBAN.is_dir(), reason=f"{DOUBAN} missing")


@needs_movielens
def test_movielens_loader_matches_the_manifest() -> None:
    ds = load_movielens(MOVIELENS)
    ev, items = ds.events, ds.items
    assert ev.columns == ["account", "item", "event", "value", "timestamp"]
    assert ev.height == 100_836
    assert ev["account"].n_unique() == 610
    assert ev["item"].n_unique() == 9_724
    assert items.height == 9_742
    assert items["text"].is_not_null().sum() == 1_572  # movies with tags
    assert items["category"].is_null().sum() == 34  # "(no genres listed)"
    assert ev["value"].min() == 0.5 and ev["value"].max() == 5.0
    assert ev["timestamp"].min() == 828_124_615  # 1996-03-29 18:36:55 UTC
    first = items.filter(pl.col("item") == "1").row(0, named=True)
    assert first["title"] == "Toy Story (1995)"
    assert first["category"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert "pixar" in first["text"]


@needs_douban
def test_douban_loader_matches_the_manifest() -> None:
    data = load_douban(DOUBAN)
    book, music = data["book"].events, data["music"].events
    assert (book.height, book["account"].n_unique(), data["book"].items.height) == (
        96_041,
        2_110,
        6_777,
    )
    assert (music.height, music["account"].n_unique(), data["music"].items.height) == (
        69_709,
        1_672,
        5_567,
    )
    assert len(set(book["account"]) & set(music["account"])) == 1_566
    assert book["timestamp"].null_count() == book.height
    # the last line has no trailing newline and must not be lost
    last = (DOUBAN / "douban_music" / "ratings.dat").read_text().rsplit("\n", 1)[-1].split("\t")
    assert music.row(-1)[:2] == (last[0], last[1])


@needs_douban
def test_douban_builder_links_shared_users(tmp_path: Path) -> None:
    summary = build_douban(tmp_path, source=DOUBAN, anchor_fraction=0.5, seed=1)
    known = pl.read_csv(tmp_path / "known_links.csv", infer_schema=False)
    truth = pl.read_csv(tmp_path / "truth_links.csv", infer_schema=False)
    assert (known.height, truth.height) == (783, 783)
    owners = pl.read_csv(tmp_path / "truth_accounts.csv", infer_schema=False)
    assert owners.height == 2_110 + 1_672  # single-platform users are kept
    assert summary["single_platform_persons"] == 544 + 106
    who = dict(zip(owners["account"], owners["person"], strict=True))
    assert all(who[a] == who[b] for a, b in known.select("account_a", "account_b").iter_rows())
    book = pl.read_csv(tmp_path / "book" / "events.csv", infer_schema=False)
    assert book.height == 96_041
    assert not set(book["account"]) & set(who.values())  # fresh ids, never the source's
    assert book["timestamp"].is_null().all()
    items = pl.read_csv(tmp_path / "book" / "items.csv", infer_schema=False)
    assert items.height == 6_777
    # each user's rows keep their source order (the source's only hint of sequence)
    item_truth = pl.read_csv(tmp_path / "truth_items.csv", infer_schema=False)
    seq = (
        book.join(item_truth.filter(pl.col("platform") == "book"), on="item", maintain_order="left")
        .with_columns(person=pl.col("account").replace_strict(who))
        .group_by("person", maintain_order=True)
        .agg(pl.col("source_item"))
    )
    src = load_douban(DOUBAN)["book"].events.group_by("account", maintain_order=True).agg("item")
    expected = dict(zip(src["account"], src["item"].to_list(), strict=True))
    got = dict(zip(seq["person"], seq["source_item"].to_list(), strict=True))
    assert got == expected


@needs_douban
def test_douban_build_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    build_douban(tmp_path / "a", source=DOUBAN, seed=3)
    build_douban(tmp_path / "b", source=DOUBAN, seed=3)
    for f in (
        "book/events.csv",
        "music/items.csv",
        "known_links.csv",
        "truth_links.csv",
        "split.json",
    ):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_missing_data_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        load_movielens(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"ratings\.dat"):
        load_douban(tmp_path)


@needs_movielens
def test_movielens_command_writes_a_split_and_json_on_stdout_only(tmp_path: Path) -> None:
    out = tmp_path / "ml"
    args = ["datasets", "movielens", "--out", str(out), "--source", str(MOVIELENS),
            "--platforms", "2", "--mode", "temporal", "--clock", "keep,drop", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "temporal" and doc["persons"] == 610
    assert sum(p["events"] for p in doc["platforms"]) == 100_836
    assert [p["clock"] for p in doc["platforms"]] == ["keep", "drop"]
    assert (out / "p2" / "items.csv").is_file() and (out / "split.json").is_file()
    assert json.loads((out / "split.json").read_text())["known_links"] == doc["known_links"]
    # a second run into the same folder is refused rather than mixing files
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "not empty" in again.stderr


def test_commands_report_a_missing_folder_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["datasets", "douban", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    assert str(tmp_path / "x") in result.stderr and "Traceback" not in result.output


def test_default_folder_follows_crossrec_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSREC_DATA", str(tmp_path))
    with pytest.raises(InputError, match="movielens-ml-latest-small"):
        load_movielens()


@needs_movielens
def test_loaded_dataset_writes_canonical_files(tmp_path: Path) -> None:
    paths = load_movielens(MOVIELENS).write(tmp_path)
    assert [p.name for p in paths] == ["events.csv", "items.csv"]
    lines = (tmp_path / "events.csv").read_text().splitlines()
    assert lines[0] == "account,item,event,value,timestamp"
    assert lines[1] == "1,1,rating,4.0,964982703" and len(lines) == 100_837
    items = pl.read_csv(tmp_path / "items.csv", infer_schema=False)
    assert items.columns == ["item", "title", "text", "category"] and items.height == 9_742
