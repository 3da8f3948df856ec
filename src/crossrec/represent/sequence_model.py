"""The sequence network and its self-supervised training loop (SASRec / UniSRec style).

An item enters as ``adaptor(text) + id embedding + platform embedding``: the text adaptor
(linear + LayerNorm, as in UniSRec) carries items of every platform into one space, the id
embedding (frequent items only; rare items share one row per platform) learns what text
misses. A small causal transformer with learned positions reads an account's items oldest
first; its hidden state at step ``t`` is trained to pick item ``t + 1`` among in-batch
negatives (InfoNCE on cosine similarities, logQ-corrected), and, when known links exist, the
final states of linked accounts are pulled together with the same loss; that term trains the
encoder only, not the item embeddings, so it must learn a mapping rather than memorise anchors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossrec.config import SequenceConfig
from crossrec.progress import ProgressHook
from crossrec.represent.sequence_data import TrainSet, batch_tokens, last_windows, length_batches

#: Dropout on the encoder input. The blocks have none: on CPU the dropout masks cost as much
#: as the matrix products of a model this small, and early stopping already regularises.
DROPOUT = 0.1


class _Block(nn.Module):
    """Pre-LayerNorm causal self-attention block."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.ff(self.norm2(x))


class SequenceNet(nn.Module):
    """Item input representations and the causal encoder over them.

    Parameters
    ----------
    n_platforms : platforms known at training time.
    n_id_rows : rows of the id embedding: 0 padding, ``1 + p`` the rare item of platform
        ``p``, then one row per frequent item.
    d_text : dimension of item text vectors; 0 when no item had text (no adaptor).
    """

    def __init__(
        self,
        *,
        n_platforms: int,
        n_id_rows: int,
        d_text: int,
        dim: int,
        layers: int,
        heads: int,
        max_len: int,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        self.id_emb = nn.Embedding(n_id_rows, dim, padding_idx=0)
        self.platform_emb = nn.Embedding(n_platforms, dim)
        self.text_adaptor = (
            nn.Sequential(nn.Linear(d_text, dim), nn.LayerNorm(dim)) if d_text > 0 else None
        )
        self.pos_emb = nn.Embedding(max_len, dim)
        self.in_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.out_norm = nn.LayerNorm(dim)
        for emb in (self.id_emb, self.platform_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.1)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()

    def item_repr(
        self,
        id_rows: torch.Tensor,
        platforms: torch.Tensor,
        text: torch.Tensor | None = None,
        has_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Input representation of items: ``(N,)`` indices (+ ``(N, d_text)`` text and
        ``(N,)`` float 0/1 text flags) → ``(N, dim)``."""
        x = self.id_emb(id_rows) + self.platform_emb(platforms)
        if self.text_adaptor is not None and text is not None and has_text is not None:
            x = x + self.text_adaptor(text) * has_text[:, None]
        return x

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, dim)`` of right-padded item representations ``(B, L, dim)``;
        position ``t`` sees items ``0..t`` only."""
        x = items + self.pos_emb.weight[: items.shape[1]]
        x = self.drop(self.in_norm(x))
        for block in self.blocks:
            x = block(x)
        return self.out_norm(x)


@dataclass
class ItemFeatures:
    """Per-item inputs, row 0 is padding: id rows, platforms ``(n_items + 1,)`` long, text
    ``(n_items + 1, d_text)`` float32 or None, text flags ``(n_items + 1,)`` float32."""

    id_rows: torch.Tensor
    platforms: torch.Tensor
    text: torch.Tensor | None
    has_text: torch.Tensor

    def reprs(self, net: SequenceNet, rows: torch.Tensor) -> torch.Tensor:
        """``(N,)`` token rows → ``(N, dim)`` representations, padding rows zero."""
        text = None if self.text is None else self.text[rows]
        out = net.item_repr(self.id_rows[rows], self.platforms[rows], text, self.has_text[rows])
        return out * (rows != 0).to(out.dtype)[:, None]


def next_item_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    reprs: torch.Tensor,
    candidates: torch.Tensor,
    correction: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sampled-softmax InfoNCE of hidden states ``(P, dim)`` against their next items.

    ``targets`` ``(P,)`` and ``candidates`` ``(K,)`` index rows of ``reprs`` ``(N, dim)``.
    Negatives drawn from the batch's own targets come with the popularity of the catalogue;
    ``correction`` ``(K,)`` = log(times drawn / (draws * item frequency)) turns their sum into
    an estimate of the full softmax over all items (logQ correction), so that popular items
    are not pushed down merely for being drawn often. A candidate equal to a row's own target
    is not a negative for that row.
    """
    h = F.normalize(hidden, dim=-1)
    table = F.normalize(reprs, dim=-1)
    pos = (h * table[targets]).sum(-1) / temperature
    neg = (h @ table[candidates].T) / temperature + correction[None, :]
    neg = neg.masked_fill(candidates[None, :] == targets[:, None], float("-inf"))
    return (torch.logaddexp(pos, torch.logsumexp(neg, dim=1)) - pos).mean()


def link_loss(
    ua: torch.Tensor, ub: torch.Tensor, ida: torch.Tensor, idb: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric InfoNCE pulling linked account vectors ``ua[i]``, ``ub[i]`` ``(B, dim)``
    together; other pairs of the batch are the negatives, except rows that share an account
    (``ida``/``idb`` ``(B,)``), which are masked."""
    logits = F.normalize(ua, dim=-1) @ F.normalize(ub, dim=-1).T / temperature
    same = (ida[:, None] == ida[None, :]) | (idb[:, None] == idb[None, :])
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(len(ua))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def encode_windows(
    net: SequenceNet,
    tokens: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    reprs_of: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Final hidden states ``(B, dim)`` (not normalised) of windows ``starts, lengths``."""
    rows = torch.from_numpy(batch_tokens(tokens, starts, lengths))
    uniq, inv = torch.unique(rows, return_inverse=True)
    hidden = net.encode(reprs_of(uniq)[inv])
    return hidden[torch.arange(len(rows)), torch.from_numpy(lengths - 1)]


class Adam:
    """Plain Adam (Kingma & Ba, 2015), as ``torch.optim.Adam`` with default settings.

    ``torch.optim`` optimizers import ``torch._dynamo`` (and sympy) on first use: seconds of
    start-up and ~100 MB for a model that never compiles. This loop over a dozen tensors
    costs nothing next to the forward pass.
    """

    def __init__(
        self, params: list[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, 1e-8, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        step = self.lr / (1 - b1**self.t)
        bias2 = math.sqrt(1 - b2**self.t)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, v.sqrt().div_(bias2).add_(self.eps), value=-step)


class Trainer:
    """Adam over shuffled windows, early stopping on the held-out accounts' loss."""

    def __init__(
        self,
        net: SequenceNet,
        feats: ItemFeatures,
        config: SequenceConfig,
        *,
        item_counts: np.ndarray,
        rng: np.random.Generator,
        n_negatives: int,
    ) -> None:
        self.net, self.feats, self.config = net, feats, config
        self.rng = rng
        self.n_negatives = n_negatives
        # log frequency of each token row (row 0, padding, never a target).
        freq = np.concatenate([[1.0], item_counts / item_counts.sum()])
        self.log_freq = torch.from_numpy(np.log(freq).astype(np.float32))
        self.opt = Adam(list(net.parameters()), lr=config.learning_rate)

    def _reprs(self, rows: torch.Tensor) -> torch.Tensor:
        return self.feats.reprs(self.net, rows)

    def _seq_loss(
        self, ts: TrainSet, starts: np.ndarray, lengths: np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor:
        rows = torch.from_numpy(batch_tokens(ts.data.tokens, starts, lengths))
        uniq, inv = torch.unique(rows, return_inverse=True)
        reprs = self._reprs(uniq)
        hidden = self.net.encode(reprs[inv])
        mask = rows[:, 1:] != 0
        targets = inv[:, 1:][mask]
        # In-batch negatives: draws from the batch's targets, i.e. by popularity.
        draws = torch.from_numpy(rng.integers(0, len(targets), size=self.n_negatives))
        cand, times = torch.unique(targets[draws], return_counts=True)
        correction = torch.log(times / self.n_negatives) - self.log_freq[uniq[cand]]
        return next_item_loss(
            hidden[:, :-1][mask], targets, reprs, cand, correction, self.config.temperature
        )

    def _frozen_reprs(self, rows: torch.Tensor) -> torch.Tensor:
        return self._reprs(rows).detach()

    def _link_loss(self, ts: TrainSet, pairs: np.ndarray) -> torch.Tensor:
        both = np.concatenate([pairs[:, 0], pairs[:, 1]])
        starts, lengths = last_windows(ts.data.offsets, both, self.config.max_len)
        # The link term shapes only how a sequence is summarised, never the items themselves:
        # with item embeddings free, a few hundred anchors are memorised through their items'
        # ids (the links stop generalising and next-item quality drops); through the encoder
        # alone they teach a mapping that carries over to unlinked people.
        u = encode_windows(self.net, ts.data.tokens, starts, lengths, self._frozen_reprs)
        n = len(pairs)
        ids = torch.from_numpy(pairs)
        return link_loss(u[:n], u[n:], ids[:, 0], ids[:, 1], self.config.temperature)

    def _validate(self, ts: TrainSet, seed: int) -> tuple[float | None, float | None]:
        """Held-out next-item loss and held-out link loss (None where there is nothing)."""
        starts, lengths = ts.valid_windows
        next_loss = link = None
        # Fresh, fixed negatives every epoch so that epochs are compared on the same draw.
        rng = np.random.default_rng(seed)
        self.net.eval()
        with torch.no_grad():
            bs = self.config.batch_size
            total = 0.0
            for i in range(0, len(starts), bs):
                loss = self._seq_loss(ts, starts[i : i + bs], lengths[i : i + bs], rng)
                total += float(loss) * len(starts[i : i + bs])
            if len(starts):
                next_loss = total / len(starts)
            if len(ts.valid_links) >= 2 and self.config.link_weight > 0:
                link = float(self._link_loss(ts, ts.valid_links))
        self.net.train()
        return next_loss, link

    def _criterion(self, next_loss: float | None, link: float | None) -> float | None:
        """The early-stopping score: the training objective on held-out accounts."""
        if next_loss is None:
            return None
        return next_loss + (0.0 if link is None else self.config.link_weight * link)

    def fit(self, ts: TrainSet, *, progress: ProgressHook, valid_seed: int) -> dict[str, object]:
        cfg = self.config
        starts, lengths = ts.train_windows
        n_links = len(ts.train_links)
        use_links = n_links >= 2 and cfg.link_weight > 0
        # A quarter of a batch in link pairs: +50% work per step, enough in-batch negatives.
        link_bs = min(n_links, max(2, cfg.batch_size // 4))
        link_perm, link_pos = self.rng.permutation(n_links), 0
        history: list[dict[str, float | int | None]] = []
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        stopped, bad_epochs, total_steps = "epochs", 0, 0
        t0 = time.perf_counter()
        task = progress.task("sequence encoder: epochs", total=cfg.epochs)
        self.net.train()
        for epoch in range(1, cfg.epochs + 1):
            te = time.perf_counter()
            seq_sum = link_sum = 0.0
            steps = 0
            for idx in length_batches(lengths, cfg.batch_size, self.rng):
                loss = self._seq_loss(ts, starts[idx], lengths[idx], self.rng)
                seq_sum += float(loss.detach())
                if use_links:
                    if link_pos + link_bs > n_links:
                        link_perm, link_pos = self.rng.permutation(n_links), 0
                    pairs = ts.train_links[link_perm[link_pos : link_pos + link_bs]]
                    link_pos += link_bs
                    lloss = self._link_loss(ts, pairs)
                    link_sum += float(lloss.detach())
                    loss = loss + cfg.link_weight * lloss
                self.opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                self.opt.step()
                steps += 1
                total_steps += 1
                if cfg.max_steps is not None and total_steps >= cfg.max_steps:
                    stopped = "max_steps"
                    break
                if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                    stopped = "max_seconds"
                    break
            v_next, v_link = self._validate(ts, valid_seed)
            valid = self._criterion(v_next, v_link)
            train_loss = seq_sum / max(steps, 1)
            row: dict[str, float | int | None] = {
                "epoch": epoch,
                "train_loss": round(train_loss, 6),
                "link_loss": round(link_sum / max(steps, 1), 6) if use_links else None,
                "valid_loss": None if valid is None else round(valid, 6),
                "valid_next_loss": None if v_next is None else round(v_next, 6),
                "valid_link_loss": None if v_link is None else round(v_link, 6),
                "seconds": round(time.perf_counter() - te, 3),
                "steps": steps,
            }
            history.append(row)
            progress.log(
                f"sequence epoch {epoch}: train {train_loss:.4f}"
                + (f", link {link_sum / max(steps, 1):.4f}" if use_links else "")
                + (f", held-out {valid:.4f}" if valid is not None else "")
                + f" ({row['seconds']:.1f} s)"
            )
            task.advance(1)
            score = valid if valid is not None else train_loss
            if best is None or score < best[0] - 1e-4:
                state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                best, bad_epochs = (score, epoch, state), 0
            else:
                bad_epochs += 1
            if stopped in ("max_steps", "max_seconds"):
                break
            if valid is not None and bad_epochs >= cfg.patience:
                stopped = "patience"
                break
        task.done()
        assert best is not None  # at least one epoch ran
        self.net.load_state_dict(best[2])
        self.net.eval()
        return {
            "epochs": history,
            "best_epoch": best[1],
            "stopped": stopped,
            "seconds": round(time.perf_counter() - t0, 3),
        }
