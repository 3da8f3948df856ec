"""Cross-platform sequence encoder: one user-interest space for the accounts of every platform.

Trained self-supervised on the events of all platforms at once (next-item InfoNCE, plus a
contrastive term on known links), it turns an account's recent items into an L2-normalised
vector; accounts of different platforms are comparable in that space. See
:mod:`crossrec.represent.sequence_model` for the network and the losses.

Example
-------
>>> enc = SequenceEncoder.fit(events, SequenceConfig(), item_text=vectors, seed=42)
>>> keys = enc.encode_all()          # keys.platforms, keys.accounts, keys.vectors (n, dim)
>>> v = enc.encode_account("music", events_of_one_account)   # online path, (dim,)
>>> enc.save(path); enc = SequenceEncoder.load(path)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from crossrec.config import SequenceConfig
from crossrec.errors import InputError, ModelError, NotFoundError
from crossrec.progress import NullProgress, ProgressHook, step
from crossrec.represent.sequence_data import (
    ItemTextLookup,
    Link,
    SequenceData,
    event_order,
    last_windows,
    prepare_events,
    split_accounts,
    text_matrix,
    text_vector,
)
from crossrec.represent.sequence_model import (
    ItemFeatures,
    SequenceNet,
    Trainer,
    encode_windows,
)

FORMAT_VERSION = 1
WEIGHTS_FILE = "sequence.safetensors"
META_FILE = "sequence.json"
ARRAYS_FILE = "sequence.npz"
#: In-batch negatives drawn per step (from the batch's next items, by popularity).
N_NEGATIVES = 512
#: Accounts encoded per forward pass in :meth:`SequenceEncoder.encode_all`.
ENCODE_BATCH = 1024


class AccountVectors(NamedTuple):
    """Account vectors: ``platforms``, ``accounts`` ``(n,)`` str and ``vectors`` ``(n, dim)``
    float32 (unit length), sorted by platform then account."""

    platforms: np.ndarray
    accounts: np.ndarray
    vectors: np.ndarray


class ItemVectors(NamedTuple):
    """Item representations: ``platforms``, ``items`` ``(n,)`` str and ``vectors``
    ``(n, dim)`` float32 (unit length). ``account_vector @ vectors.T`` scores next items."""

    platforms: np.ndarray
    items: np.ndarray
    vectors: np.ndarray


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads inside the block, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _deterministic_kernels() -> Iterator[None]:
    """Use torch's deterministic kernels inside the block (training only), then restore the
    caller's setting. Without them, gradient sums split across threads (the attention
    biases') add up in a varying order and two trainings on the same inputs and seed drift
    apart; with them, they are equal bit for bit at about the same speed."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _normalise(x: torch.Tensor) -> np.ndarray:
    return F.normalize(x, dim=-1).numpy().astype(np.float32)


class SequenceEncoder:
    """A trained sequence encoder; build it with :meth:`fit` or :meth:`load`.

    ``history`` (JSON-ready) records the run: ``epochs`` (per epoch: train_loss, link_loss,
    valid_loss = the early-stopping score, valid_next_loss, valid_link_loss, seconds, steps),
    ``best_epoch`` (whose weights are kept), ``stopped`` (epochs | patience | max_steps |
    max_seconds), ``seconds``, data counts (events, accounts, items, items_with_id,
    items_with_text, train_windows, valid_windows, holdout_accounts), links used (links_train,
    links_valid, links_unknown) and ``seed``.
    """

    def __init__(
        self,
        *,
        config: SequenceConfig,
        net: SequenceNet,
        platforms: list[str],
        item_platform: np.ndarray,
        item_names: np.ndarray,
        item_table: torch.Tensor,
        accounts: AccountVectors,
        history: dict[str, Any],
        d_text: int,
    ) -> None:
        self.config = config
        self.net = net.eval()
        self.platforms = platforms
        self.item_platform = item_platform
        self.item_names = item_names
        #: (n_items + 1, dim) input representations, row 0 padding; rows ``1 + i`` per item.
        self.item_table = item_table
        self.accounts = accounts
        self.history = history
        self.d_text = d_text
        self._platform_index = {p: i for i, p in enumerate(platforms)}
        self._item_index: dict[tuple[str, str], int] | None = None

    # -- training ------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        events: pa.Table,
        config: SequenceConfig | None = None,
        *,
        item_text: ItemTextLookup | None = None,
        links: Sequence[Link] | None = None,
        seed: int = 42,
        progress: ProgressHook | None = None,
        threads: int | None = 2,
        n_negatives: int = N_NEGATIVES,
    ) -> SequenceEncoder:
        """Train on the events of all platforms at once.

        Parameters
        ----------
        events : canonical events (platform, account, item, optional ts and seq).
        config : model and training settings (``[train.sequence]``).
        item_text : text vectors ``(d_text,)`` per ``(platform, item)``; items without one
            rely on their id / rare-item embedding.
        links : known ``((platform, account), (platform, account))`` pairs of one person;
            pairs naming an account without events are skipped (counted in ``history``).
        seed : seeds numpy and torch (the caller's torch RNG state is left untouched); the
            same inputs, seed and ``threads`` give the same weights (``max_steps`` keeps
            that; ``max_seconds``, off by default, may cut training short at another step).
        threads : torch intra-op threads while training (None: leave torch's setting).
        n_negatives : in-batch negatives drawn per step.
        """
        config = config or SequenceConfig()
        if config.dim % config.heads:
            raise InputError(
                f"train.sequence.dim ({config.dim}) is not a multiple of heads ({config.heads})",
                hint="choose dim and heads so that dim % heads == 0",
            )
        progress = progress or NullProgress()
        with step(progress, "sequence encoder: ordering events"):
            data = prepare_events(events)
        lengths = data.lengths
        if not (lengths >= 2).any():
            raise ModelError(
                "sequence encoder: no account has two or more events",
                hint="ingest more events; next-item training needs sequences",
            )
        rng = np.random.default_rng(seed)
        text, has_text = text_matrix(data.platforms, data.item_platform, data.item_names, item_text)
        ts, link_info = split_accounts(data, config, links, rng)
        with _torch_threads(threads), _deterministic_kernels(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            feats, n_id_rows, n_frequent = _features(data, config, text, has_text)
            net = SequenceNet(
                n_platforms=len(data.platforms),
                n_id_rows=n_id_rows,
                d_text=0 if text is None else text.shape[1],
                dim=config.dim,
                layers=config.layers,
                heads=config.heads,
                max_len=config.max_len,
            )
            trainer = Trainer(
                net, feats, config, item_counts=data.item_counts, rng=rng, n_negatives=n_negatives
            )
            history = trainer.fit(ts, progress=progress, valid_seed=seed + 1)
            with torch.no_grad():
                table = feats.reprs(net, torch.arange(data.n_items + 1))
            history.update(
                link_info,
                events=len(data.tokens),
                accounts=data.n_accounts,
                items=data.n_items,
                items_with_id=n_frequent,
                items_with_text=int(has_text.sum()),
                train_windows=len(ts.train_windows[0]),
                valid_windows=len(ts.valid_windows[0]),
                seed=seed,
            )
            vectors = _encode_accounts(net, data, table, config.max_len)
        accounts = AccountVectors(
            np.asarray(data.platforms, dtype=str)[data.account_platform],
            data.account_names,
            vectors,
        )
        return cls(
            config=config,
            net=net,
            platforms=data.platforms,
            item_platform=data.item_platform,
            item_names=data.item_names,
            item_table=table,
            accounts=accounts,
            history=history,
            d_text=0 if text is None else text.shape[1],
        )

    # -- encoding ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.config.dim

    def encode_all(self) -> AccountVectors:
        """Vectors of every account seen in training (held-out accounts included)."""
        return self.accounts

    def item_vectors(self, platform: str | None = None) -> ItemVectors:
        """Unit-length item representations (of one platform, or all): the next-item scores
        of an account are ``account_vector @ vectors.T``."""
        rows = np.arange(len(self.item_names))
        if platform is not None:
            rows = rows[self.item_platform == self._platform(platform)]
        vecs = _normalise(self.item_table[torch.from_numpy(rows + 1)])
        names = np.asarray(self.platforms, dtype=str)
        return ItemVectors(names[self.item_platform[rows]], self.item_names[rows], vecs)

    def encode_account(
        self,
        platform: str,
        events: pa.Table | Sequence[str],
        *,
        item_text: ItemTextLookup | None = None,
        threads: int | None = 1,
    ) -> np.ndarray:
        """The vector ``(dim,)`` float32 of one account from its events, without retraining.

        ``events`` is that account's events table (column item, optional ts and seq; ordered
        like training) or its item ids oldest first. Items unseen in training use their text
        vector from ``item_text`` (if any) and the platform's rare-item embedding. One
        sequence is too small to share among threads: ``threads=1`` (the default) keeps the
        call at a few milliseconds even on a busy machine; None leaves torch's setting.
        """
        p = self._platform(platform)
        items = _ordered_items(events)[-self.config.max_len :]
        if not items:
            raise InputError(
                f"encode_account: no events for an account of {platform!r}",
                hint="pass at least one event",
            )
        index = self._items()
        known = [index.get((platform, it), -1) for it in items]
        with torch.no_grad(), _torch_threads(threads):
            reprs = self.item_table[torch.tensor([k + 1 for k in known])]
            unknown = [j for j, k in enumerate(known) if k < 0]
            if unknown:
                reprs = reprs.clone()
                reprs[unknown] = self._unknown_items(
                    platform, p, [items[j] for j in unknown], item_text
                )
            hidden = self.net.encode(reprs[None])[0, -1]
        return _normalise(hidden)

    def _unknown_items(
        self, platform: str, p: int, items: list[str], lookup: ItemTextLookup | None
    ) -> torch.Tensor:
        n = len(items)
        text = has = None
        if lookup is not None and self.d_text > 0:
            vecs = [text_vector(lookup, platform, it, self.d_text) for it in items]
            has = torch.tensor([v is not None for v in vecs], dtype=torch.float32)
            text = torch.from_numpy(
                np.stack([np.zeros(self.d_text, np.float32) if v is None else v for v in vecs])
            )
        ids = torch.full((n,), 1 + p, dtype=torch.long)
        return self.net.item_repr(ids, torch.full((n,), p, dtype=torch.long), text, has)

    def _platform(self, platform: str) -> int:
        try:
            return self._platform_index[platform]
        except KeyError:
            raise NotFoundError(
                f"platform {platform!r} was not in the sequence encoder's training data "
                f"(known: {', '.join(self.platforms)})",
                hint="retrain after ingesting that platform's events",
            ) from None

    def _items(self) -> dict[tuple[str, str], int]:
        if self._item_index is None:
            names = [self.platforms[p] for p in self.item_platform.tolist()]
            self._item_index = {
                (p, it): i
                for i, (p, it) in enumerate(zip(names, self.item_names.tolist(), strict=True))
            }
        return self._item_index

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``sequence.safetensors`` (weights, item table), ``sequence.json`` (config,
        platforms, history) and ``sequence.npz`` (vocabularies, account vectors)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        tensors["item_table"] = self.item_table.contiguous()
        save_file(tensors, str(d / WEIGHTS_FILE))
        np.savez(
            d / ARRAYS_FILE,
            item_platform=self.item_platform,
            item_names=self.item_names,
            account_platforms=self.accounts.platforms,
            account_names=self.accounts.accounts,
            account_vectors=self.accounts.vectors,
        )
        meta = {
            "format": FORMAT_VERSION,
            "config": self.config.model_dump(),
            "platforms": self.platforms,
            "d_text": self.d_text,
            "n_id_rows": int(self.net.id_emb.num_embeddings),
            "history": self.history,
        }
        (d / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> SequenceEncoder:
        """Read an encoder written by :meth:`save`."""
        from safetensors.torch import load_file

        d = Path(directory)
        missing = [f for f in (WEIGHTS_FILE, META_FILE, ARRAYS_FILE) if not (d / f).is_file()]
        if missing:
            raise ModelError(
                f"no sequence encoder in {d} (missing {', '.join(missing)})",
                hint="train one first",
            )
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise ModelError(
                f"{d / META_FILE}: sequence encoder format {meta.get('format')!r}, "
                f"this version reads {FORMAT_VERSION}",
                hint="retrain the model",
            )
        config = SequenceConfig.model_validate(meta["config"])
        net = SequenceNet(
            n_platforms=len(meta["platforms"]),
            n_id_rows=meta["n_id_rows"],
            d_text=meta["d_text"],
            dim=config.dim,
            layers=config.layers,
            heads=config.heads,
            max_len=config.max_len,
        )
        tensors = load_file(str(d / WEIGHTS_FILE))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        with np.load(d / ARRAYS_FILE, allow_pickle=False) as arrays:
            a = {k: arrays[k] for k in arrays.files}
        return cls(
            config=config,
            net=net,
            platforms=list(meta["platforms"]),
            item_platform=a["item_platform"],
            item_names=a["item_names"],
            item_table=tensors["item_table"],
            accounts=AccountVectors(
                a["account_platforms"], a["account_names"], a["account_vectors"]
            ),
            history=meta["history"],
            d_text=meta["d_text"],
        )


# -- helpers ---------------------------------------------------------------------------------
def _features(
    data: SequenceData, config: SequenceConfig, text: np.ndarray | None, has_text: np.ndarray
) -> tuple[ItemFeatures, int, int]:
    """Per-item inputs with padding row 0; frequent items get their own id row."""
    n_p = len(data.platforms)
    frequent = data.item_counts >= config.min_item_events
    id_rows = np.where(frequent, n_p + 1 + np.cumsum(frequent) - 1, 1 + data.item_platform)
    pad = np.zeros(1, dtype=np.int64)
    feats = ItemFeatures(
        id_rows=torch.from_numpy(np.concatenate([pad, id_rows]).astype(np.int64)),
        platforms=torch.from_numpy(np.concatenate([pad, data.item_platform]).astype(np.int64)),
        text=None
        if text is None
        else torch.from_numpy(np.concatenate([np.zeros((1, text.shape[1]), np.float32), text])),
        has_text=torch.from_numpy(np.concatenate([[0.0], has_text]).astype(np.float32)),
    )
    return feats, n_p + 1 + int(frequent.sum()), int(frequent.sum())


def _encode_accounts(
    net: SequenceNet, data: SequenceData, table: torch.Tensor, max_len: int
) -> np.ndarray:
    """Unit vectors ``(n_accounts, dim)`` float32 from each account's newest window."""
    out = np.zeros((data.n_accounts, net.pos_emb.embedding_dim), dtype=np.float32)
    accounts = np.arange(data.n_accounts)
    with torch.no_grad():
        for i in range(0, len(accounts), ENCODE_BATCH):
            chunk = accounts[i : i + ENCODE_BATCH]
            starts, lengths = last_windows(data.offsets, chunk, max_len)
            hidden = encode_windows(net, data.tokens, starts, lengths, lambda rows: table[rows])
            out[chunk] = _normalise(hidden)
    return out


def _ordered_items(events: pa.Table | Sequence[str]) -> list[str]:
    if not isinstance(events, pa.Table):
        if isinstance(events, str):
            raise InputError("encode_account: pass a list of item ids, not one string")
        return [str(e) for e in events]
    if "item" not in events.column_names:
        raise InputError("encode_account: events need an 'item' column")
    ts_key, seq_key = event_order(events)
    order = np.lexsort((seq_key, ts_key))
    return [str(x) for x in events["item"].to_numpy(zero_copy_only=False)[order]]
