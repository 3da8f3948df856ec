"""``crossrec train``: every representation, written as one new model version.

Steps: item text embeddings (pretrained encoder, cached by text) and their cross-platform
alignment; per-platform collaborative filtering; the cross-platform sequence encoder; account
vectors and profiles; vector indexes of the account spaces. The version is published
atomically and marked current.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossrec.errors import ModelError
from crossrec.models import ModelRegistry
from crossrec.progress import NullProgress, ProgressHook

if TYPE_CHECKING:
    from crossrec.represent.profiles import AccountProfiles
    from crossrec.represent.text import ItemTextEmbeddings
    from crossrec.workspace import Workspace

#: Known links the sequence encoder was trained on (pseudonyms), in ``sequence/``.
ANCHORS_FILE = "anchors.json"
EVENT_COLUMNS = ["platform", "account", "item", "event_type", "value", "ts", "seq"]
#: Account spaces indexed per platform for candidate search: name → profile attribute.
INDEX_SPACES = {"sequence": "sequence", "text": "text"}


def _timed(metrics: dict[str, Any], key: str, started: float) -> None:
    metrics.setdefault("seconds", {})[key] = round(time.perf_counter() - started, 2)


def train(ws: Workspace, *, progress: ProgressHook | None = None) -> dict[str, Any]:
    """Train every representation on the workspace's store; returns the version metadata."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    hook = progress or NullProgress()
    cfg = ws.config.train
    started = time.perf_counter()
    store = ws.store
    events = store.read("events", columns=EVENT_COLUMNS, order_by=["seq"])
    if events.num_rows == 0:
        raise ModelError("the store holds no events", hint="ingest some with `crossrec ingest`")
    items = store.read("items")
    links = store.read("known_links")
    registry = ModelRegistry(ws.models_dir)
    version = registry.next_version()
    out = registry.staging_dir(version)
    metrics: dict[str, Any] = {}

    t = time.perf_counter()
    text = _train_text(ws, items, out, metrics, hook)
    _timed(metrics, "text", t)

    t = time.perf_counter()
    cf_vectors = _train_cf(ws, events, out, metrics, hook)
    _timed(metrics, "cf", t)

    t = time.perf_counter()
    seq_vectors = _train_sequence(ws, events, text, links, out, metrics, hook)
    _timed(metrics, "sequence", t)

    t = time.perf_counter()
    profiles = _build_profiles(ws, events, items, text, cf_vectors, seq_vectors, out, hook)
    _timed(metrics, "profiles", t)

    t = time.perf_counter()
    metrics["index"] = _build_indexes(ws, profiles, out, hook)
    _timed(metrics, "index", t)

    t = time.perf_counter()
    metrics["recommend"] = _tune_recommender(ws, events, out, hook)
    _timed(metrics, "recommend", t)

    platforms = sorted(set(profiles.platform.tolist()))
    metadata = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": cfg.seed,
        "config": ws.config.train.model_dump(mode="json"),
        "data": {
            "events": events.num_rows,
            "items": items.num_rows,
            "known_links": links.num_rows,
            "accounts": {p: int((profiles.platform == p).sum()) for p in platforms},
        },
        "metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    }
    registry.publish(version, out, metadata)
    return metadata


def _train_text(
    ws: Workspace, items: pa.Table, out: Path, metrics: dict[str, Any], hook: ProgressHook
) -> ItemTextEmbeddings | None:
    from crossrec.represent.alignment import align_items
    from crossrec.represent.encoders import load_encoder
    from crossrec.represent.text import embed_items, workspace_cache

    cfg = ws.config.train
    if items.num_rows == 0:
        metrics["text"] = {"items_with_text": 0, "note": "no items ingested"}
        return None
    if not any(
        pc.any(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(items.column(c))), 0)).as_py()
        for c in ("title", "text", "category")
    ):  # id-only catalogues (e.g. Douban): no encoder to load
        metrics["text"] = {"items": items.num_rows, "items_with_text": 0, "note": "no item text"}
        return None
    encoder = load_encoder(cfg.encoder)
    t = time.perf_counter()
    emb = embed_items(items, encoder, workspace_cache(ws.root, encoder.name), hook)
    seconds = time.perf_counter() - t
    with_text = int(emb.has_text.sum())
    metrics["text"] = {
        "encoder": encoder.name,
        "items": len(emb),
        "items_with_text": with_text,
        "encoded": emb.encoded,
        "cached": emb.cached,
        "encoded_per_second": round(emb.encoded / seconds, 1) if emb.encoded else None,
    }
    if with_text == 0:
        return None
    emb.save(out / "text")
    alignment = align_items(emb, k=cfg.align_k, progress=hook)
    pq.write_table(alignment, out / "text" / "alignment.parquet")
    metrics["alignment"] = {"pairs": alignment.num_rows}
    return emb


def _train_cf(
    ws: Workspace, events: pa.Table, out: Path, metrics: dict[str, Any], hook: ProgressHook
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from crossrec.represent.cf import CFModel
    from crossrec.represent.interactions import build_interactions
    from crossrec.represent.itemknn import fit_item_knn, save_item_knn

    cfg = ws.config.train
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    platforms = sorted(pc.unique(events.column("platform")).to_pylist())
    task = hook.task(f"collaborative filtering ({cfg.cf_model})", total=len(platforms))
    metrics["cf"] = {}
    for platform in platforms:
        t = time.perf_counter()
        sub = events.filter(pc.equal(events.column("platform"), platform))
        inter = build_interactions(sub, cfg)
        model = CFModel.from_config(
            cfg, spark_master=ws.config.engine.master, spark_conf=ws.config.spark
        ).fit(inter.matrix)
        directory = out / "cf" / platform
        inter.save(directory)
        model.save(directory)
        save_item_knn(fit_item_knn(inter.matrix), directory)
        vectors[platform] = (inter.accounts, model.user_factors)
        metrics["cf"][platform] = {
            "accounts": int(inter.matrix.shape[0]),
            "items": int(inter.matrix.shape[1]),
            "nnz": int(inter.matrix.nnz),
            "seconds": round(time.perf_counter() - t, 2),
        }
        task.advance()
    task.done()
    return vectors


def _train_sequence(
    ws: Workspace,
    events: pa.Table,
    text: ItemTextEmbeddings | None,
    links: pa.Table,
    out: Path,
    metrics: dict[str, Any],
    hook: ProgressHook,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from crossrec.represent.sequence import SequenceEncoder

    cfg = ws.config.train
    lookup = None
    if text is not None:
        rows = np.flatnonzero(text.has_text)
        lookup = {(str(text.platform[i]), str(text.item[i])): text.vectors[i] for i in rows}
    pairs = [
        ((r["platform_a"], r["account_a"]), (r["platform_b"], r["account_b"]))
        for r in links.to_pylist()
    ]
    # The encoder pulls only half of the known links together (seeded): the other half stays
    # unseen, so the linkage matcher can learn how much the shared space says about a person.
    order = np.random.default_rng(cfg.seed).permutation(len(pairs))
    anchors = sorted(pairs[i] for i in order[: len(pairs) // 2])
    model = SequenceEncoder.fit(
        events, cfg.sequence, item_text=lookup, links=anchors, seed=cfg.seed, progress=hook
    )
    model.save(out / "sequence")
    (out / "sequence" / ANCHORS_FILE).write_text(json.dumps(anchors) + "\n", encoding="utf-8")
    metrics["sequence"] = model.history
    vecs = model.encode_all()
    return vecs.platforms, vecs.accounts, vecs.vectors


def _build_profiles(
    ws: Workspace,
    events: pa.Table,
    items: pa.Table,
    text: ItemTextEmbeddings | None,
    cf_vectors: dict[str, tuple[np.ndarray, np.ndarray]],
    seq_vectors: tuple[np.ndarray, np.ndarray, np.ndarray],
    out: Path,
    hook: ProgressHook,
) -> AccountProfiles:
    from crossrec.represent.profiles import build_profiles, event_weights

    cfg = ws.config.train
    task = hook.task("account vectors and profiles", total=1)
    weights = event_weights(
        events, cfg.event_weights, cfg.default_event_weight, cfg.recency_half_life_days
    )
    item_text = None
    if text is not None:
        pairs = zip(text.platform, text.item, strict=True)
        rows = {(str(p), str(i)): k for k, (p, i) in enumerate(pairs)}
        item_text = (rows, text.vectors)
    categories = {
        (r["platform"], r["item"]): r["category"]
        for r in items.select(["platform", "item", "category"]).to_pylist()
        if r["category"]
    }
    profiles = build_profiles(
        events,
        weights=weights,
        cf_vectors=cf_vectors,
        sequence=seq_vectors,
        item_text=item_text,
        categories=categories,
    )
    profiles.save(out / "accounts")
    task.advance()
    task.done()
    return profiles


def _build_indexes(
    ws: Workspace, profiles: AccountProfiles, out: Path, hook: ProgressHook
) -> dict[str, Any]:
    from crossrec.index import build_index

    cfg = ws.config
    platforms = sorted(set(profiles.platform.tolist()))
    report: dict[str, Any] = {}
    task = hook.task("vector indexes", total=len(platforms) * len(INDEX_SPACES))
    for space, attr in INDEX_SPACES.items():
        matrix: np.ndarray = getattr(profiles, attr)
        for platform in platforms:
            rows = profiles.rows_of(platform)
            if space == "text":
                rows = rows[profiles.has_text[rows]]
            if matrix.shape[1] == 0 or len(rows) == 0:
                task.advance()
                continue
            index = build_index(matrix[rows], rows.astype(np.int64), cfg.index, seed=cfg.train.seed)
            index.save(out / "index" / space / platform)
            report.setdefault(space, {})[platform] = dict(index.metadata)
            task.advance()
    task.done()
    return report


def _tune_recommender(
    ws: Workspace, events: pa.Table, out: Path, hook: ProgressHook
) -> dict[str, Any]:
    """Blend weights of the recommender, tuned on validation accounts of the training data
    (known links only: asserted links come later, from ``crossrec link``)."""
    from crossrec.recommend.parts import RecommendParts, read_links
    from crossrec.recommend.validation import tune_blend
    from crossrec.represent.sequence import SequenceEncoder

    parts = RecommendParts.load(out, ws.store)
    parts.links = read_links(ws.store, known_only=True)
    anchors: set[tuple[str, str]] = set()
    anchor_file = out / "sequence" / ANCHORS_FILE
    if anchor_file.is_file():
        for side_a, side_b in json.loads(anchor_file.read_text("utf-8")):
            anchors.update({(side_a[0], side_a[1]), (side_b[0], side_b[1])})
    encoder = SequenceEncoder.load(out / "sequence") if (out / "sequence").is_dir() else None
    return tune_blend(
        parts,
        events,
        ws.config.train,
        encoder=encoder,
        anchors=anchors,
        out=out / "recommend",
        progress=hook,
    )
