"""Maps between two platforms' CF spaces, learned from known links (PALE / EMCDR style).

Each platform's collaborative-filtering space is its own: coordinates of one platform mean
nothing on another. Known links are pairs of vectors of the same person in both spaces, so a
function ``f_AB`` with ``f_AB(cf_a) ≈ cf_b`` can be fitted on them (Man et al. 2017, EMCDR;
Man et al. 2016, PALE) and a mapped vector compared with B's vectors by cosine.

Two maps per ordered platform pair (A → B):

- ``linear``: ridge regression with an unpenalised intercept, closed form;
- ``mlp``: one hidden layer (tanh), trained with Adam on ``1 − cos(f(x), y)``, seeded.

Both read and predict **unit** vectors: rows are L2-normalised before fitting and mapping,
since the norm of an ALS user vector follows the account's activity, not its taste. Weights
are saved as ``.npz`` (no pickles) with a JSON description.

:func:`ridge_map` and :func:`map_scores` are the bare ridge map, usable as the ``cf_mapping``
baseline: fit on anchor vectors, then score every B account for an A account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from crossrec.errors import InputError, ModelError

if TYPE_CHECKING:
    from crossrec.link.context import LinkContext

MapKind = Literal["linear", "mlp"]
_ARRAYS = "mappings.npz"
_META = "mappings.json"
_FORMAT = 1


# -- the bare ridge map ------------------------------------------------------------------------
def ridge_map(x_a: np.ndarray, x_b: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Ridge regression from A's vectors to B's, with an unpenalised intercept.

    Minimises ``‖x_a W + w0 − x_b‖² + alpha ‖W‖²`` in closed form (centred normal equations).

    Parameters
    ----------
    x_a : np.ndarray, shape (m, f_a)
        Anchor vectors on A (row ``i`` is the same person as row ``i`` of ``x_b``).
    x_b : np.ndarray, shape (m, f_b)
    alpha : float
        Ridge penalty, >= 0 (0 is least squares; then ``m`` must exceed ``f_a``).

    Returns
    -------
    np.ndarray, shape (f_a + 1, f_b), float64
        ``W`` stacked over the intercept ``w0`` (last row); apply with :func:`apply_linear`.
    """
    xa = np.asarray(x_a, dtype=np.float64)
    xb = np.asarray(x_b, dtype=np.float64)
    if xa.ndim != 2 or xb.ndim != 2 or len(xa) != len(xb) or len(xa) == 0:
        raise InputError(
            f"ridge_map needs paired 2-D anchor arrays, got shapes {xa.shape} and {xb.shape}"
        )
    if alpha < 0:
        raise InputError(f"alpha must be >= 0, got {alpha}")
    mean_a, mean_b = xa.mean(axis=0), xb.mean(axis=0)
    ca, cb = xa - mean_a, xb - mean_b
    gram = ca.T @ ca + alpha * np.eye(xa.shape[1])
    try:
        w = np.linalg.solve(gram, ca.T @ cb)
    except np.linalg.LinAlgError:
        w = np.linalg.lstsq(gram, ca.T @ cb, rcond=None)[0]
    return np.vstack([w, mean_b - mean_a @ w])


def apply_linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ W + w0`` for ``w`` from :func:`ridge_map`; shape (n, f_b), float32."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    return (x @ w[:-1].astype(np.float32) + w[-1].astype(np.float32)).astype(np.float32)


def map_scores(x_a: np.ndarray, w: np.ndarray, x_b: np.ndarray) -> np.ndarray:
    """Cosine between each mapped A vector and every B vector (the ``cf_mapping`` baseline).

    Parameters
    ----------
    x_a : np.ndarray, shape (q, f_a) or (f_a,)
        Query accounts' vectors on A.
    w : np.ndarray, shape (f_a + 1, f_b)
        From :func:`ridge_map`.
    x_b : np.ndarray, shape (n_b, f_b)
        Every B account's vector.

    Returns
    -------
    np.ndarray, shape (q, n_b), float32
        Higher is more likely the same person.
    """
    return _unit(apply_linear(x_a, w)) @ _unit(np.asarray(x_b, dtype=np.float32)).T


# -- the MLP map --------------------------------------------------------------------------------
def fit_mlp(
    x_a: np.ndarray,
    x_b: np.ndarray,
    *,
    hidden: int = 128,
    weight_decay: float = 1e-4,
    learning_rate: float = 5e-3,
    max_epochs: int = 300,
    patience: int = 20,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """One-hidden-layer map ``tanh(x W1 + b1) W2 + b2`` trained on ``1 − cos(f(x_a), x_b)``.

    With at least 50 anchors a seeded tenth is held out, training stops after ``patience``
    epochs without a better held-out cosine (or at ``max_epochs``), and the weights of the
    best epoch are kept; fewer anchors train for ``max_epochs``. No bound depends on time,
    so the same anchors and seed give the same map on any machine.

    Parameters
    ----------
    x_a : np.ndarray, shape (m, f_a)
    x_b : np.ndarray, shape (m, f_b)

    Returns
    -------
    dict
        ``w1 (f_a, h)``, ``b1 (h,)``, ``w2 (h, f_b)``, ``b2 (f_b,)``, float32; apply with
        :func:`apply_mlp`.
    """
    import torch

    xa = torch.from_numpy(np.ascontiguousarray(x_a, dtype=np.float32))
    xb = torch.from_numpy(np.ascontiguousarray(x_b, dtype=np.float32))
    m, f_a, f_b = xa.shape[0], xa.shape[1], xb.shape[1]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(m, generator=gen)
    n_val = m // 10 if m >= 50 else 0
    val, train = order[:n_val], order[n_val:]
    params = {
        "w1": torch.randn(f_a, hidden, generator=gen) * (1.0 / np.sqrt(f_a)),
        "b1": torch.zeros(hidden),
        "w2": torch.randn(hidden, f_b, generator=gen) * (1.0 / np.sqrt(hidden)),
        "b2": torch.zeros(f_b),
    }
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=learning_rate, weight_decay=weight_decay)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.nn.functional.cosine_similarity(forward(x), y, dim=1).mean()

    # Batches of at most a thousand 64-d rows: one thread is faster than several (no
    # synchronisation cost on a busy machine) and gives the same result everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = 1024
        best = {k: v.detach().clone() for k, v in params.items()}
        best_loss = float("inf")
        since_best = 0
        for _ in range(max_epochs):
            perm = train[torch.randperm(len(train), generator=gen)]
            for start in range(0, len(perm), batch):
                idx = perm[start : start + batch]
                opt.zero_grad()
                loss = loss_of(xa[idx], xb[idx])
                loss.backward()
                opt.step()
            if n_val:
                with torch.no_grad():
                    held = float(loss_of(xa[val], xb[val]))
                if held < best_loss:
                    best_loss, since_best = held, 0
                    best = {k: v.detach().clone() for k, v in params.items()}
                else:
                    since_best += 1
                    if since_best >= patience:
                        break
    finally:
        torch.set_num_threads(threads)
    final = best if n_val else {k: v.detach() for k, v in params.items()}
    return {k: v.numpy().astype(np.float32) for k, v in final.items()}


def apply_mlp(x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """The MLP map with numpy; ``x`` shape (n, f_a) → (n, f_b), float32."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    hidden = np.tanh(x @ weights["w1"] + weights["b1"])
    return (hidden @ weights["w2"] + weights["b2"]).astype(np.float32)


# -- the maps of every platform pair --------------------------------------------------------
@dataclass
class CFMappings:
    """Linear and MLP maps between the CF spaces of every ordered platform pair with anchors.

    Attributes
    ----------
    linear : dict of (platform_a, platform_b) → np.ndarray, shape (f_a + 1, f_b)
    mlp : dict of (platform_a, platform_b) → dict of str → np.ndarray
    anchors : dict of (platform_a, platform_b) → int
        Known links each map was fitted on.
    params : dict
        How the maps were fitted (alpha, hidden, seed, ...).
    """

    linear: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    mlp: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    anchors: dict[tuple[str, str], int] = field(default_factory=dict)
    params: dict[str, float | int] = field(default_factory=dict)

    def has(self, platform_a: str, platform_b: str, kind: MapKind = "linear") -> bool:
        """Whether a ``kind`` map from A to B was fitted."""
        return (platform_a, platform_b) in (self.linear if kind == "linear" else self.mlp)

    def map(
        self,
        platform_a: str,
        platform_b: str,
        vectors: np.ndarray,
        kind: MapKind = "linear",
    ) -> np.ndarray:
        """Map A's CF vectors into B's CF space.

        Parameters
        ----------
        vectors : np.ndarray, shape (n, f_a)
            CF vectors on ``platform_a`` (normalised here).
        kind : "linear" or "mlp"

        Returns
        -------
        np.ndarray, shape (n, f_b), float32
            Predicted (unnormalised) B vectors; compare by cosine.
        """
        key = (platform_a, platform_b)
        if kind not in ("linear", "mlp"):
            raise InputError(f"unknown mapping kind {kind!r}", hint="use 'linear' or 'mlp'")
        if not self.has(platform_a, platform_b, kind):
            raise ModelError(
                f"no {kind} CF mapping from {platform_a!r} to {platform_b!r}",
                hint="add known links between the two platforms and refit the mappings",
            )
        x = _unit(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        if kind == "linear":
            return apply_linear(x, self.linear[key])
        return apply_mlp(x, self.mlp[key])

    def save(self, directory: Path) -> None:
        """Write ``mappings.npz`` (weights) and ``mappings.json`` (pairs, anchors, params)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        pairs = []
        for i, key in enumerate(sorted(self.linear)):
            arrays[f"p{i}_linear"] = self.linear[key]
            for name, value in self.mlp.get(key, {}).items():
                arrays[f"p{i}_mlp_{name}"] = value
            pairs.append(
                {
                    "from": key[0],
                    "to": key[1],
                    "anchors": self.anchors.get(key, 0),
                    "mlp": key in self.mlp,
                }
            )
        np.savez(directory / _ARRAYS, **arrays)  # type: ignore[arg-type]
        meta = {"format": _FORMAT, "pairs": pairs, "params": self.params}
        (directory / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> CFMappings:
        directory = Path(directory)
        try:
            meta = json.loads((directory / _META).read_text(encoding="utf-8"))
            with np.load(directory / _ARRAYS, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"{directory}: cannot read the CF mappings: {exc}", hint="refit the mappings"
            ) from None
        if meta.get("format") != _FORMAT:
            raise ModelError(f"{directory}: unknown CF mappings format {meta.get('format')}")
        out = cls(params=dict(meta.get("params", {})))
        for i, pair in enumerate(meta["pairs"]):
            key = (str(pair["from"]), str(pair["to"]))
            out.linear[key] = arrays[f"p{i}_linear"]
            out.mlp[key] = {name: arrays[f"p{i}_mlp_{name}"] for name in ("w1", "b1", "w2", "b2")}
            out.anchors[key] = int(pair["anchors"])
        return out


def fit_mappings(
    ctx: LinkContext,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    alpha: float = 1.0,
    hidden: int = 128,
    min_pairs: int = 10,
    seed: int | None = None,
    mlp: bool = True,
    max_epochs: int = 300,
) -> CFMappings:
    """Fit the linear and MLP CF maps of every ordered platform pair from linked accounts.

    Parameters
    ----------
    ctx : LinkContext
    pairs : (a_rows, b_rows), optional
        Profile rows of linked accounts, any orientation; defaults to the known links
        (``ctx.link_a, ctx.link_b``). Pass a training subset when evaluating.
    alpha : float
        Ridge penalty of the linear maps (on unit vectors).
    hidden : int
        Hidden units of the MLP maps.
    min_pairs : int
        Platform pairs with fewer anchors get no map (their CF signals are NaN).
    max_epochs : int
        Bound of each MLP fit (which also stops early, see :func:`fit_mlp`).
    seed : int, optional
        Defaults to ``train.seed``.
    mlp : bool
        Also fit the MLP maps (seconds per pair); the linear maps alone are instant.

    Returns
    -------
    CFMappings
        Maps A → B and B → A for every platform pair with at least ``min_pairs`` anchors.
    """
    a_rows, b_rows = pairs if pairs is not None else (ctx.link_a, ctx.link_b)
    a_rows = np.asarray(a_rows, dtype=np.int64)
    b_rows = np.asarray(b_rows, dtype=np.int64)
    if a_rows.shape != b_rows.shape:
        raise InputError("pairs must be two row arrays of equal length")
    seed = ctx.config.train.seed if seed is None else seed
    cf = _unit(ctx.profiles.cf.astype(np.float32))
    code_a, code_b = ctx.platform_code[a_rows], ctx.platform_code[b_rows]
    out = CFMappings(
        params={"alpha": alpha, "hidden": hidden, "min_pairs": min_pairs, "seed": seed, "mlp": mlp}
    )
    for p, platform_a in enumerate(ctx.platforms):
        for q, platform_b in enumerate(ctx.platforms):
            if p == q:
                continue
            # anchors in either orientation, source side first
            fwd = (code_a == p) & (code_b == q)
            rev = (code_a == q) & (code_b == p)
            src = np.concatenate([a_rows[fwd], b_rows[rev]])
            dst = np.concatenate([b_rows[fwd], a_rows[rev]])
            order = np.lexsort((dst, src))
            src, dst = src[order], dst[order]
            if len(src) < min_pairs:
                continue
            key = (platform_a, platform_b)
            out.linear[key] = ridge_map(cf[src], cf[dst], alpha)
            if mlp:
                out.mlp[key] = fit_mlp(
                    cf[src],
                    cf[dst],
                    hidden=hidden,
                    seed=seed,
                    max_epochs=max_epochs,
                )
            out.anchors[key] = len(src)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
