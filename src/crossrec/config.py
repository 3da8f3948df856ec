"""Typed workspace configuration, validated once at start-up.

The configuration lives in ``crossrec.toml`` at the workspace root. Every key is optional and
every section refuses unknown keys, so a typo is an error rather than a silently ignored
setting. All problems are reported at once.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crossrec.errors import ConfigError

CONFIG_FILE = "crossrec.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrivacyConfig(_Section):
    #: File holding the pseudonymisation key, relative to the workspace unless absolute.
    #: The ``CROSSREC_SECRET`` environment variable takes precedence when set.
    key_file: str = "crossrec.key"
    #: Identifier columns (e.g. ``email_hash``) that are personal: pseudonymised before storage
    #: and kept for deterministic links. Their pseudonyms are equal across platforms.
    personal_columns: list[str] = Field(default_factory=list)


class IngestConfig(_Section):
    #: Rows per batch when streaming accepted rows into the store.
    batch_rows: int = Field(default=500_000, ge=1_000)
    #: Timestamps outside [timestamp_min, timestamp_max) are quarantined as out of range.
    timestamp_min: date = date(1970, 1, 1)
    timestamp_max: date = date(2100, 1, 1)
    #: Memory DuckDB may use while staging a file, e.g. "4GB"; beyond it DuckDB spills to disk.
    memory_limit: str = "4GB"

    @field_validator("timestamp_max")
    @classmethod
    def _range(cls, v: date, info: Any) -> date:
        lo = info.data.get("timestamp_min")
        if lo is not None and v <= lo:
            raise ValueError("must be after timestamp_min")
        return v


class SequenceConfig(_Section):
    dim: int = Field(default=64, ge=8)
    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=2, ge=1)
    max_len: int = Field(default=50, ge=2)
    #: Items with at least this many events get an id embedding besides their text embedding.
    min_item_events: int = Field(default=5, ge=1)
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=256, ge=2)
    learning_rate: float = Field(default=1e-3, gt=0)
    temperature: float = Field(default=0.1, gt=0)
    #: Weight of the contrastive term that pulls known-linked accounts together.
    link_weight: float = Field(default=0.5, ge=0)
    #: Stop when the held-out loss has not improved for this many epochs.
    patience: int = Field(default=3, ge=1)
    #: Fraction of accounts held out for early stopping.
    holdout: float = Field(default=0.1, gt=0, lt=0.5)
    #: Stop after this many optimiser steps (all epochs together): a cap on the work, so a
    #: capped run gives the same model on any machine. None: epochs and patience decide.
    max_steps: int | None = Field(default=None, ge=1)
    #: Stop after this many seconds of training whatever the epoch. Off by default: a run it
    #: cuts short depends on the machine's speed, so the same inputs and seed may give
    #: another model (and other links); prefer ``max_steps``.
    max_seconds: float | None = Field(default=None, gt=0)


class TrainConfig(_Section):
    seed: int = 42
    #: ``minilm`` (all-MiniLM-L6-v2, English), ``multilingual`` (Universal Sentence Encoder),
    #: ``static`` (model2vec, for very large catalogues) or a path to a local
    #: sentence-transformers model directory.
    encoder: str = "minilm"
    cf_model: Literal["als", "bpr"] = "als"
    #: Where ALS is fitted: ``implicit`` (in process) or ``spark`` (``pyspark.ml`` ALS on the
    #: ``[engine]`` master with the ``[spark]`` settings; ALS only). Both save the same files.
    cf_engine: Literal["implicit", "spark"] = "implicit"
    factors: int = Field(default=64, ge=2)
    cf_iterations: int = Field(default=15, ge=1)
    regularization: float = Field(default=0.05, ge=0)
    learning_rate: float = Field(default=0.01, gt=0)
    #: Confidence weight per event type; unknown types get ``default_event_weight``.
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "purchase": 4.0,
            "rating": 3.0,
            "like": 2.0,
            "view": 1.0,
            "interact": 1.0,
        }
    )
    default_event_weight: float = Field(default=1.0, ge=0)
    #: Nearest items on every other platform kept per item (cross-platform item alignment).
    align_k: int = Field(default=10, ge=1)
    #: Half-life in days of the recency weight of events in account text profiles.
    recency_half_life_days: float = Field(default=180.0, gt=0)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)

    @field_validator("cf_engine")
    @classmethod
    def _spark_fits_als(cls, v: str, info: Any) -> str:
        if v == "spark" and info.data.get("cf_model") != "als":
            raise ValueError("cf_engine 'spark' fits ALS only: set cf_model = 'als'")
        return v


class IndexConfig(_Section):
    #: Collections up to this size use the exact index; larger ones use HNSW.
    exact_max: int = Field(default=20_000, ge=1)
    hnsw_m: int = Field(default=32, ge=4)
    ef_construction: int = Field(default=80, ge=8)
    ef_search: int = Field(default=256, ge=8)
    #: Queries sampled to measure the ANN recall against the exact index at build time.
    recall_sample: int = Field(default=1_000, ge=10)
    #: Collections of at least this size use an IVF index (4·√N lists) instead of HNSW.
    ivf_min: int = Field(default=50_000, ge=1)
    #: The IVF index probes the fewest lists whose recall@``recall_k`` against exact search,
    #: on held-out vectors at build time, reaches this.
    ivf_target_recall: float = Field(default=0.95, gt=0, le=1)
    #: Neighbours per query at which ANN recall is measured (the candidate lists' length).
    recall_k: int = Field(default=20, ge=1)


class EngineConfig(_Section):
    #: Where the batch link job's heavy steps run: ``local`` (in process) or ``spark``.
    kind: Literal["local", "spark"] = "local"
    #: Spark master URL (``local[2]``, ``spark://host:7077``, ``yarn``...), for ``kind = "spark"``
    #: and ``[train] cf_engine = "spark"``.
    master: str = "local[2]"
    #: Rows per fixed-size chunk of the chunked steps (search, scoring): the same chunks on
    #: both engines, so both give the same numbers.
    chunk_rows: int = Field(default=4096, ge=1)
    #: Folder for the Parquet files handed to Spark (a fresh temporary folder when empty).
    work_dir: str = ""


def _flatten_spark(data: Any, prefix: str = "") -> dict[str, str]:
    """``{"spark": {"driver": {"memory": "2g"}}}`` → ``{"spark.driver.memory": "2g"}``."""
    if not isinstance(data, dict):
        raise ValueError("must be a table of Spark settings")
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_spark(value, f"{name}."))
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            flat[name] = str(value)
        else:
            raise ValueError(f"{name}: a Spark setting must be a string, number or boolean")
    bad = sorted(k for k in flat if not k.startswith("spark."))
    if bad:
        raise ValueError(f"Spark settings start with 'spark.' (got {', '.join(bad)})")
    return flat


class LinkConfig(_Section):
    top_k: int = Field(default=20, ge=1)
    max_candidates: int = Field(default=50, ge=1)
    max_candidate_pairs: int = Field(default=50_000_000, ge=1)
    #: Each fused candidate list is cut at the fused score below which at most this share of
    #: the known partners lie (0: below every known partner's score; 1: keep the top only).
    candidate_cut_loss: float = Field(default=0.0, ge=0, le=1)
    link_precision: float = Field(default=0.95, gt=0, le=1)
    max_component_size: int = Field(default=10, ge=2)
    #: Text similarity at which two items of different platforms count as the same item in
    #: the aligned-item overlap signal (0.8 keeps ~97% of true pairs at ~80% precision on
    #: re-styled MovieLens titles).
    align_min_similarity: float = Field(default=0.8, ge=-1, le=1)


class RecommendConfig(_Section):
    k: int = Field(default=10, ge=1)
    #: items of these categories are never recommended
    exclude_categories: list[str] = Field(default_factory=list)
    #: an item whose attributes hold this key with a false value ("false", "0", "no", false,
    #: 0) is unavailable and never recommended; "" turns the check off
    availability_attribute: str = "available"
    #: recommendation lists kept per process until the account, its links or the model change
    #: (0 turns the cache off)
    cache_size: int = Field(default=100_000, ge=0)


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: Request bodies larger than this are refused (413) without being read to the end.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: Events per POST at most (413 beyond).
    max_batch: int = Field(default=10_000, ge=1)
    #: Requests per second per token (token bucket refilled at this rate; 429 when empty).
    rate_limit_per_second: float = Field(default=1_000.0, gt=0)
    #: Requests a token may send at once after a quiet spell (the bucket's size).
    rate_limit_burst: int = Field(default=2_000, ge=1)
    #: Seconds between checks of models/CURRENT for a newly trained model to swap in.
    model_poll_seconds: float = Field(default=5.0, gt=0)
    #: Retrain in the server's own process every this many seconds (0: never; ``crossrec
    #: train`` against a running server asks it to retrain at once).
    retrain_every_seconds: float = Field(default=0.0, ge=0)
    #: A revoked API token is refused, at the latest, this many seconds after the change.
    token_refresh_seconds: float = Field(default=1.0, gt=0)
    #: When a model is loaded, compute every account's list ahead (its first this many
    #: items), in the background; requests are answered from them (0: compute on request).
    precompute_k: int = Field(default=20, ge=0, le=1000)


class Config(_Section):
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    link: LinkConfig = Field(default_factory=LinkConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    #: Spark settings passed through as the session's conf (keys ``spark.*``; nested TOML
    #: tables are joined with dots), over crossrec's defaults (``spark.driver.memory = "2g"``).
    spark: dict[str, str] = Field(default_factory=dict)

    @field_validator("spark", mode="before")
    @classmethod
    def _spark_conf(cls, v: Any) -> dict[str, str]:
        return _flatten_spark(v)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = CONFIG_FILE) -> Config:
        """Validate ``data``; every problem is reported in one :class:`ConfigError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(
                f"{source}: {problems}", hint="fix these keys or delete them to use the defaults"
            ) from None

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file is missing") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path))


DEFAULT_CONFIG_TOML = """\
# crossrec workspace configuration.
# Every key is optional: the values below are the defaults. Unknown keys are errors.

[privacy]
# Key of the keyed (HMAC-SHA256) pseudonyms that replace account ids before storage.
# The CROSSREC_SECRET environment variable wins; otherwise this file (0600, outside the store).
key_file = "crossrec.key"
# Identifier columns that are personal (e.g. a hashed e-mail): pseudonymised, kept for
# deterministic links across platforms.
personal_columns = []

[ingest]
batch_rows = 500000
# Timestamps outside [timestamp_min, timestamp_max) are quarantined as out of range.
timestamp_min = 1970-01-01
timestamp_max = 2100-01-01
# Memory DuckDB may use while staging a file (and the store while writing it);
# beyond it, it spills to disk.
memory_limit = "4GB"

[train]
seed = 42
# minilm (English) | multilingual (Universal Sentence Encoder) | static (model2vec) |
# a path to a local sentence-transformers model directory
encoder = "minilm"
cf_model = "als"          # als | bpr
cf_engine = "implicit"    # implicit | spark (ALS fitted by pyspark.ml on the [engine] master)
factors = 64
cf_iterations = 15
regularization = 0.05
learning_rate = 0.01      # BPR only
default_event_weight = 1.0
align_k = 10
recency_half_life_days = 180.0

[train.event_weights]
purchase = 4.0
rating = 3.0
like = 2.0
view = 1.0
interact = 1.0

[train.sequence]
dim = 64
layers = 2
heads = 2
max_len = 50
min_item_events = 5
epochs = 20
batch_size = 256
learning_rate = 0.001
temperature = 0.1
link_weight = 0.5
patience = 3
holdout = 0.1
# Caps, both off by default. max_steps bounds the optimiser steps (the same model on any
# machine); max_seconds bounds wall time (a run it cuts short depends on the machine).
# max_steps = 20000
# max_seconds = 600.0

[index]
# Collections up to exact_max vectors use exact search; from ivf_min on, faiss IVF (4·√N
# lists, nprobe chosen at build time for ivf_target_recall); HNSW in between.
exact_max = 20000
hnsw_m = 32
ef_construction = 80
ef_search = 256
recall_sample = 1000
ivf_min = 50000
ivf_target_recall = 0.95
recall_k = 20

[engine]
# Where the batch link job's heavy steps run: local (in process) | spark.
kind = "local"
master = "local[2]"       # Spark master URL, for kind = "spark" and cf_engine = "spark"
chunk_rows = 4096         # rows per fixed chunk: the same chunks, the same numbers on both
work_dir = ""             # Parquet hand-over folder for Spark ("" = a temporary folder)

[spark]
# Passed through as Spark conf over crossrec's defaults, e.g.
# "spark.driver.memory" = "2g"
# "spark.sql.shuffle.partitions" = 8

[link]
top_k = 20
max_candidates = 50
max_candidate_pairs = 50000000
link_precision = 0.95
max_component_size = 10
# Text similarity at which items of two platforms count as the same (aligned-item overlap).
align_min_similarity = 0.8

[recommend]
k = 10
exclude_categories = []             # never recommend items of these categories
availability_attribute = "available"  # items with available=false are never recommended
cache_size = 100000                 # lists kept until the account, its links or the model change

[serve]
host = "127.0.0.1"
port = 8000
# Larger request bodies are refused (413) without being read to the end.
max_body_bytes = 1048576
# Events per POST at most.
max_batch = 10000
# Per token: a bucket of rate_limit_burst requests, refilled at rate_limit_per_second;
# an empty bucket answers 429 with Retry-After.
rate_limit_per_second = 1000.0
rate_limit_burst = 2000
# Seconds between checks of models/CURRENT for a newly trained model.
model_poll_seconds = 5.0
# Retrain inside the server every this many seconds (0 = never; `crossrec train` against a
# running server asks it to retrain now).
retrain_every_seconds = 0.0
# A revoked token is refused at most this many seconds after `crossrec token revoke`.
token_refresh_seconds = 1.0
# When a model is loaded, every account's list is computed ahead in the background (its
# first precompute_k items) and requests are answered from it; 0 = compute on request.
precompute_k = 20
"""
