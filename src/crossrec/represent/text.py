"""Item text vectors: what text an item has, a crash-safe embedding cache, and the embedding
of a whole catalogue.

Every platform's items land in one semantic space, so catalogues without shared ids become
comparable (see :mod:`crossrec.represent.alignment`). Items without any text (e.g. Douban) get
a zero row and ``has_text = False``; everything downstream works without text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crossrec.errors import InputError, ModelError

if TYPE_CHECKING:
    import pyarrow as pa

    from crossrec.progress import ProgressHook
    from crossrec.represent.encoders import TextEncoder

#: Composed item texts are cut here: encoders truncate long inputs anyway (MiniLM at 256
#: word pieces) and the cut bounds hashing and encoding time for very long descriptions.
MAX_TEXT_CHARS = 2_000
#: Texts encoded between two cache writes: a crash loses at most this much work.
ENCODE_CHUNK = 8_192
#: Beyond this many shards the cache folds them into one at the end of a run.
MAX_SHARDS = 32
CACHE_SUBDIR = Path("cache") / "text"

_SPACE = re.compile(r"\s+")


def item_text(title: str | None, text: str | None, category: str | None) -> str | None:
    """The text that represents an item: ``"<title>. <categories>. <text>"``, lower-cased.

    Lower case because platforms write the same title in different house styles
    (``"TOY STORY - 1995"``, ``"Toy Story (1995)"``) and cased encoders then drift apart: on the
    9,742 MovieLens movies against re-styled copies, lower-casing lifts alignment precision@1
    (worse direction) from 0.82 to 0.90 for ``multilingual`` and from 0.82 to 0.92 for
    ``static``; ``minilm`` lower-cases its input anyway.

    Parameters
    ----------
    title, text, category : str or None
        ``category`` may hold several categories separated by ``|`` (MovieLens genres,
        ``"Comedy|Drama"``); they are written as ``"Comedy, Drama"``.

    Returns
    -------
    str or None
        ``None`` when every part is empty: the item then has no text vector.

    Examples
    --------
    >>> item_text("Toy Story (1995)", None, "Animation|Comedy")
    'toy story (1995). animation, comedy'
    """
    parts: list[str] = []
    if title:
        parts.append(_clean(title))
    if category:
        cats = [_clean(c) for c in str(category).split("|")]
        parts.append(", ".join(c for c in cats if c))
    if text:
        parts.append(_clean(text))
    parts = [p for p in parts if p]
    # "Title.", "Comedy" -> "Title. Comedy", not "Title.. Comedy".
    last = len(parts) - 1
    joined = ". ".join(p[:-1] if n < last and p.endswith(".") else p for n, p in enumerate(parts))
    return joined.lower()[:MAX_TEXT_CHARS] or None


def _clean(value: object) -> str:
    return _SPACE.sub(" ", str(value)).strip()


def text_keys(encoder_name: str, texts: Sequence[str]) -> np.ndarray:
    """Cache keys: the first 128 bits of sha256(encoder name, text), as hex.

    Returns
    -------
    np.ndarray, shape (n,), dtype ``S32``
    """
    prefix = encoder_name.encode() + b"\x00"
    return np.array(
        [hashlib.sha256(prefix + t.encode()).hexdigest()[:32].encode() for t in texts],
        dtype="S32",
    )


class EmbeddingCache:
    """Text vectors of one encoder on disk, keyed by :func:`text_keys`.

    Layout: ``<directory>/<encoder slug>/shard-<time>-<id>/{keys.npy, vectors.npy}``. A shard is
    written under a temporary name and renamed into place, so a crash mid-write leaves either
    the whole shard or nothing. Several processes may share a cache: each writes its own shards.

    Parameters
    ----------
    directory : Path
        The cache root, normally ``<workspace>/cache/text`` (see :func:`workspace_cache`).
    encoder_name : str
        :attr:`TextEncoder.name`; each encoder has its own sub-folder.
    """

    def __init__(self, directory: Path, encoder_name: str) -> None:
        self.encoder_name = encoder_name
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name)[:60]
        digest = hashlib.sha256(encoder_name.encode()).hexdigest()[:12]
        self.directory = Path(directory) / f"{slug}-{digest}"
        # Sorted keys (m,) S32 and their rows (m, dim); None until first read.
        self._keys: np.ndarray | None = None
        self._vectors: np.ndarray | None = None
        # Written since the index was built; merged on the next read, so a run of writes costs
        # no re-sorting of the whole cache per write.
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    # -- reading -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index()[0].shape[0])

    @property
    def dim(self) -> int | None:
        """Width of the cached vectors; None while the cache is empty."""
        keys, vectors = self._index()
        return int(vectors.shape[1]) if keys.shape[0] else None

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Look up ``keys`` (shape (n,), ``S32``).

        Returns
        -------
        found : np.ndarray, shape (n,), bool
        vectors : np.ndarray, shape (found.sum(), dim), float32
            The cached rows of the found keys, in the order of ``keys``.
        """
        known, vectors = self._index()
        if known.shape[0] == 0 or keys.shape[0] == 0:
            return np.zeros(keys.shape[0], dtype=bool), np.zeros((0, 0), dtype=np.float32)
        pos = np.minimum(np.searchsorted(known, keys), known.shape[0] - 1)
        found = known[pos] == keys
        return found, vectors[pos[found]]

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._keys is None or self._vectors is None:
            parts = [p for p in map(_read_shard, self._shards()) if p is not None]
            self._pending = []
            self._build(parts)
        elif self._pending:
            parts = [(self._keys, self._vectors), *self._pending]
            self._pending = []
            self._build([p for p in parts if p[0].shape[0]])
        assert self._keys is not None and self._vectors is not None
        return self._keys, self._vectors

    def _build(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        dims = {v.shape[1] for _, v in parts}
        if len(dims) > 1:
            raise ModelError(
                f"text cache {self.directory} mixes vector widths {sorted(dims)}",
                hint="delete that folder; it is rebuilt on the next train",
            )
        if not parts:
            self._keys = np.zeros(0, dtype="S32")
            self._vectors = np.zeros((0, 0), dtype=np.float32)
            return
        keys = np.concatenate([k for k, _ in parts])
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._vectors = np.concatenate([v for _, v in parts])[order]

    def _shards(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.startswith("shard-"))

    # -- writing -----------------------------------------------------------------------------
    def put(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Store ``vectors`` (shape (n, dim), float32) under ``keys`` (shape (n,), ``S32``)."""
        if keys.shape[0] == 0:
            return
        keys = np.asarray(keys, dtype="S32")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if keys.shape[0] != vectors.shape[0] or vectors.ndim != 2:
            raise ValueError(f"{keys.shape[0]} keys for vectors of shape {vectors.shape}")
        widths = {v.shape[1] for _, v in self._pending}
        if self._keys is not None and self._keys.shape[0] and self._vectors is not None:
            widths.add(self._vectors.shape[1])
        if widths - {vectors.shape[1]}:
            raise ModelError(
                f"text cache {self.directory} holds {sorted(widths)}-dim vectors, "
                f"got {vectors.shape[1]}",
                hint="delete that folder; it is rebuilt on the next train",
            )
        self._write_shard(keys, vectors)
        if self._keys is not None:  # not yet read: the next read finds the shard on disk
            self._pending.append((keys, vectors))

    def compact(self, max_shards: int = MAX_SHARDS) -> None:
        """Fold every shard into one when there are more than ``max_shards``.

        The new shard exists before the old ones are removed, so a crash in between leaves
        duplicates (harmless), never a gap.
        """
        old = self._shards()
        if len(old) <= max(max_shards, 1):
            return
        self._keys = self._vectors = None  # re-read from disk: what other writers added too
        known, vectors = self._index()
        keys, first = np.unique(known, return_index=True)
        self._write_shard(keys, vectors[first])
        for shard in old:
            shutil.rmtree(shard, ignore_errors=True)
        self._keys, self._vectors = keys, vectors[first]

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sweep_temporaries()
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".tmp-{name}"
        tmp.mkdir()
        np.save(tmp / "keys.npy", np.asarray(keys, dtype="S32"))
        np.save(tmp / "vectors.npy", vectors)
        os.replace(tmp, self.directory / f"shard-{name}")

    def _sweep_temporaries(self) -> None:
        # Left by a crash mid-write; an hour is far beyond any live write, so never a race.
        cutoff = time.time() - 3600
        for p in self.directory.glob(".tmp-*"):
            if p.stat().st_mtime < cutoff:
                shutil.rmtree(p, ignore_errors=True)


def _read_shard(shard: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A shard's keys and vectors, or None when it vanished or is unreadable (its texts are then
    simply encoded again)."""
    try:
        keys = np.load(shard / "keys.npy", allow_pickle=False)
        vectors = np.load(shard / "vectors.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if keys.ndim != 1 or vectors.ndim != 2 or keys.shape[0] != vectors.shape[0]:
        return None
    return keys.astype("S32"), vectors.astype(np.float32, copy=False)


def workspace_cache(workspace_root: Path, encoder_name: str) -> EmbeddingCache:
    """The text cache of a workspace: ``<workspace>/cache/text``."""
    return EmbeddingCache(Path(workspace_root) / CACHE_SUBDIR, encoder_name)


@dataclass
class ItemTextEmbeddings:
    """Text vectors of every item of every platform, rows sorted by (platform, item).

    Attributes
    ----------
    platform, item : np.ndarray, shape (n,), str
    vectors : np.ndarray, shape (n, dim), float32
        Unit rows; rows of items without text are zero.
    has_text : np.ndarray, shape (n,), bool
    encoder_name : str
    encoded, cached : int
        Distinct texts encoded in this run, and served from the cache.
    """

    platform: np.ndarray
    item: np.ndarray
    vectors: np.ndarray
    has_text: np.ndarray
    encoder_name: str
    encoded: int = 0
    cached: int = 0
    _rows: dict[tuple[str, str], int] | None = field(default=None, repr=False, compare=False)

    META_FILE = "item_text.json"
    ARRAYS_FILE = "item_text.npz"

    def __len__(self) -> int:
        return int(self.platform.shape[0])

    def __repr__(self) -> str:
        return (
            f"ItemTextEmbeddings({len(self)} items, {int(self.has_text.sum())} with text, "
            f"dim={self.dim}, encoder={self.encoder_name!r}, encoded={self.encoded}, "
            f"cached={self.cached})"
        )

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def platforms(self) -> list[str]:
        """Platforms present, sorted."""
        return sorted({str(p) for p in np.unique(self.platform)})

    def rows(self, platform: str) -> np.ndarray:
        """Row indices (shape (m,), int64) of ``platform``'s items, in item order."""
        return np.flatnonzero(self.platform == platform)

    def lookup(self, platform: str, items: Sequence[str]) -> np.ndarray:
        """Row index of each item of ``platform``; -1 where the item is unknown.

        Returns
        -------
        np.ndarray, shape (len(items),), int64
        """
        if self._rows is None:
            self._rows = {
                (str(p), str(i)): n
                for n, (p, i) in enumerate(zip(self.platform, self.item, strict=True))
            }
        rows = self._rows
        return np.array([rows.get((platform, str(i)), -1) for i in items], dtype=np.int64)

    def save(self, directory: Path) -> None:
        """Write ``item_text.npz`` (arrays) and ``item_text.json`` (metadata) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{self.ARRAYS_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                platform=self.platform.astype(str),
                item=self.item.astype(str),
                vectors=self.vectors,
                has_text=self.has_text,
            )
        os.replace(tmp, directory / self.ARRAYS_FILE)
        meta = {
            "format": 1,
            "encoder": self.encoder_name,
            "dim": self.dim,
            "items": len(self),
            "with_text": int(self.has_text.sum()),
            "encoded": self.encoded,
            "cached": self.cached,
        }
        (directory / self.META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> ItemTextEmbeddings:
        """Read what :meth:`save` wrote.

        Raises
        ------
        ModelError
            The files are missing or do not agree with each other.
        """
        directory = Path(directory)
        try:
            meta = json.loads((directory / cls.META_FILE).read_text(encoding="utf-8"))
            with np.load(directory / cls.ARRAYS_FILE, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("platform", "item", "vectors", "has_text")}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"item text vectors in {directory} are missing or unreadable: {exc}",
                hint="run `crossrec train` again",
            ) from exc
        if arrays["vectors"].shape != (meta.get("items"), meta.get("dim")):
            raise ModelError(
                f"item text vectors in {directory} do not match their metadata",
                hint="run `crossrec train` again",
            )
        return cls(
            platform=arrays["platform"],
            item=arrays["item"],
            vectors=arrays["vectors"].astype(np.float32, copy=False),
            has_text=arrays["has_text"].astype(bool, copy=False),
            encoder_name=str(meta["encoder"]),
            encoded=int(meta.get("encoded", 0)),
            cached=int(meta.get("cached", 0)),
        )


def embed_items(
    items: pa.Table,
    encoder: TextEncoder,
    cache: EmbeddingCache | None = None,
    progress: ProgressHook | None = None,
    *,
    batch_size: int = 256,
) -> ItemTextEmbeddings:
    """Embed the text of every item; texts already in ``cache`` are not encoded again.

    Parameters
    ----------
    items : pa.Table
        Columns ``platform`` and ``item``; ``title``, ``text`` and ``category`` where present
        (the store's ``items`` table).
    encoder : TextEncoder
    cache : EmbeddingCache or None
        Must belong to ``encoder`` (same name).
    progress : ProgressHook or None
    batch_size : int
        Texts per forward pass of the encoder.

    Returns
    -------
    ItemTextEmbeddings
        Rows sorted by (platform, item). Identical texts share one encoding.

    Raises
    ------
    InputError
        A required column is missing or an item appears twice on one platform.
    """
    from crossrec.progress import NullProgress

    progress = progress or NullProgress()
    if cache is not None and cache.encoder_name != encoder.name:
        raise InputError(
            f"the text cache belongs to {cache.encoder_name!r}, not to encoder {encoder.name!r}"
        )
    missing = [c for c in ("platform", "item") if c not in items.column_names]
    if missing:
        raise InputError(f"items table lacks column(s) {', '.join(missing)}")

    platform = np.array(items.column("platform").to_pylist(), dtype=str)
    item = np.array(items.column("item").to_pylist(), dtype=str)
    order = np.lexsort((item, platform))
    platform, item = platform[order], item[order]
    if len(item) > 1:
        dup = (platform[1:] == platform[:-1]) & (item[1:] == item[:-1])
        if dup.any():
            at = int(np.flatnonzero(dup)[0])
            raise InputError(f"item {item[at]!r} appears twice on platform {platform[at]!r}")

    def column(name: str) -> list[str | None]:
        if name not in items.column_names:
            return [None] * items.num_rows
        values = items.column(name).to_pylist()
        return [values[i] for i in order]

    texts = [
        item_text(*parts)
        for parts in zip(column("title"), column("text"), column("category"), strict=True)
    ]

    # One encoding per distinct text: identical items on two platforms get identical vectors.
    unique: dict[str, int] = {}
    text_row = np.full(len(texts), -1, dtype=np.int64)
    for n, t in enumerate(texts):
        if t is not None:
            text_row[n] = unique.setdefault(t, len(unique))
    distinct = list(unique)

    vectors = np.zeros((len(distinct), encoder.dim), dtype=np.float32)
    keys = text_keys(encoder.name, distinct)
    found = np.zeros(len(distinct), dtype=bool)
    if cache is not None and distinct:
        found, hits = cache.get(keys)
        if found.any():
            vectors[found] = hits
    todo = np.flatnonzero(~found)
    if distinct:
        progress.log(f"item text: {int(found.sum())} cached, {len(todo)} to encode")
    task = progress.task("Encoding item text", total=len(todo))
    for start in range(0, len(todo), ENCODE_CHUNK):
        chunk = todo[start : start + ENCODE_CHUNK]
        out = encoder.encode([distinct[i] for i in chunk], batch_size=batch_size)
        vectors[chunk] = out
        if cache is not None:
            cache.put(keys[chunk], out)
        task.advance(len(chunk))
    task.done()
    if cache is not None and len(todo):
        cache.compact()

    has_text = text_row >= 0
    rows = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    rows[has_text] = vectors[text_row[has_text]]
    return ItemTextEmbeddings(
        platform=platform,
        item=item,
        vectors=rows,
        has_text=has_text,
        encoder_name=encoder.name,
        encoded=len(todo),
        cached=int(found.sum()),
    )
