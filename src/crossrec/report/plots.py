"""The report's figures: matplotlib (Agg) figures turned into ``data:image/png`` URIs.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so
no global backend or figure registry is touched and nothing needs closing. Each function
takes plain arrays or dicts and returns a data URI for an ``<img src=...>``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Platform / method colours (matplotlib's tab10), in order of appearance.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_SIZE = (6.4, 3.8)
_DPI = 100


def _figure(size: tuple[float, float] = _SIZE, *, left: float = 0.7) -> tuple[Figure, Axes]:
    """A figure with fixed margins in inches (``left`` holds the y tick labels): a layout
    engine would draw every figure twice, and drawing is most of a report's time."""
    from matplotlib.figure import Figure

    w, h = size
    fig = Figure(figsize=size, dpi=_DPI)
    fig.subplots_adjust(left=left / w, right=1 - 0.15 / w, bottom=0.5 / h, top=1 - 0.35 / h)
    return fig, fig.add_subplot()


def to_data_uri(fig: Figure) -> str:
    """PNG bytes of ``fig`` as a ``data:image/png;base64,...`` URI (no timestamps inside,
    so the same figure gives the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def events_per_account(counts: Mapping[str, np.ndarray]) -> str:
    """Histogram of events per account, one outline per platform, log-spaced bins.

    ``counts`` maps a platform to its ``(accounts,)`` events-per-account array.
    """
    fig, ax = _figure()
    from matplotlib.ticker import FuncFormatter

    top = max((int(c.max()) for c in counts.values() if c.size), default=1)
    low = min((int(c.min()) for c in counts.values() if c.size), default=1)
    # half-integer edges: every whole count falls inside one bin, none between two
    edges = np.unique(np.geomspace(1, top + 1, 40).round()) - 0.5
    for i, (name, c) in enumerate(counts.items()):
        if c.size:
            ax.hist(c, bins=edges.tolist(), histtype="step", lw=1.8, color=_colour(i), label=name)
    ax.set_xscale("log")
    ax.set_xlim(max(low, 1) - 0.5, top + 0.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # plain numbers at 2 and 5 of each decade, so a narrow range still has labels
    ax.xaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if _leading(v) in (2, 5) else "")
    )
    ax.set_xlabel("events per account")
    ax.set_ylabel("accounts")
    _legend(ax, frameon=False)
    ax.set_title("Events per account")
    return to_data_uri(fig)


def score_histogram(
    true_scores: Sequence[float], false_scores: Sequence[float], threshold: float | None
) -> str:
    """Distributions of the matcher's probabilities for true and false candidate pairs, each
    normalised to its own total (the false pairs far outnumber the true ones)."""
    fig, ax = _figure()
    bins = np.linspace(0.0, 1.0, 26)
    for scores, colour, label in (
        (false_scores, PALETTE[3], f"false pairs (n={len(false_scores):,} shown)"),
        (true_scores, PALETTE[2], f"true pairs (n={len(true_scores):,})"),
    ):
        values = np.asarray(scores, dtype=np.float64)
        if values.size:
            weights = np.full(values.size, 1.0 / values.size)
            ax.hist(
                values, bins=bins.tolist(), weights=weights, alpha=0.55, color=colour, label=label
            )
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set_xlabel("linkage probability")
    ax.set_ylabel("share of pairs")
    _legend(ax, frameon=False)
    ax.set_title("Scores of true and false candidate pairs")
    return to_data_uri(fig)


def pr_curve(
    curve: Mapping[str, Sequence[float]],
    operating: tuple[float, float] | None,
    baselines: Mapping[str, tuple[float, float]],
) -> str:
    """Precision against recall of the asserted links as the threshold moves.

    ``operating`` is the linker's (recall, precision) at its chosen threshold; ``baselines``
    maps a baseline's name to its (recall, precision).
    """
    fig, ax = _figure()
    recall = np.asarray(curve.get("recall", []), dtype=np.float64)
    precision = np.asarray(curve.get("precision", []), dtype=np.float64)
    if recall.size:
        ax.plot(recall, precision, color=PALETTE[0], lw=2, drawstyle="steps-post", label="crossrec")
    if operating is not None:
        ax.scatter(*operating, color="black", zorder=3, label="crossrec at its threshold")
    for i, (name, point) in enumerate(baselines.items()):
        ax.scatter(*point, marker="s", color=_colour(i + 1), zorder=3, label=name)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    _legend(ax, frameon=False, loc="best", fontsize=8)
    ax.set_title("Precision-recall of asserted links")
    return to_data_uri(fig)


def calibration(bins: Mapping[str, Sequence[Any]]) -> str:
    """Observed share of true pairs against the mean predicted probability per bin; marker
    area grows with the bin's pair count."""
    fig, ax = _figure((4.8, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfect calibration")
    rows = [
        (p, o, n)
        for p, o, n in zip(
            bins.get("mean_predicted", []),
            bins.get("observed", []),
            bins.get("count", []),
            strict=False,
        )
        if p is not None and o is not None and n
    ]
    if rows:
        p, o, n = (np.asarray(c, dtype=np.float64) for c in zip(*rows, strict=True))
        size = 20 + 180 * np.sqrt(n / n.max())
        ax.plot(p, o, color=PALETTE[0], lw=1.5)
        ax.scatter(p, o, s=size, color=PALETTE[0], zorder=3, label="bins (area: pairs)")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share of true pairs")
    _legend(ax, frameon=False, loc="lower right", fontsize=8)
    ax.set_title("Calibration")
    return to_data_uri(fig)


def metric_bars(
    title: str, methods: Mapping[str, Mapping[str, float | None]], metrics: Sequence[str]
) -> str:
    """Grouped bars: one group per metric, one bar per method (crossrec first)."""
    fig, ax = _figure()
    names = list(methods)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(metrics))
    for i, name in enumerate(names):
        values = [methods[name].get(m) for m in metrics]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, heights, width, color=_colour(i))
        bars.set_label(name)
        for bar, v in zip(bars, values, strict=True):
            text = "n/a" if v is None else f"{v:.3f}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(x, list(metrics))
    ax.set_ylabel("value")
    ax.set_ylim(0, max(1e-9, *(v or 0.0 for d in methods.values() for v in d.values())) * 1.2)
    _legend(ax, frameon=False, fontsize=8)
    ax.set_title(title)
    return to_data_uri(fig)


def account_map(xy: np.ndarray, platform: np.ndarray, explained: tuple[float, float]) -> str:
    """Scatter of ``(m, 2)`` projected account vectors coloured by ``(m,)`` platform."""
    fig, ax = _figure((6.4, 5.2))
    size = 12 if len(xy) <= 1_000 else 4
    for i, name in enumerate(sorted(set(platform.tolist()))):
        sel = platform == name
        ax.scatter(
            xy[sel, 0], xy[sel, 1], s=size, alpha=0.6, color=_colour(i), lw=0, label=str(name)
        )
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    _legend(ax, frameon=False, markerscale=2)
    ax.set_title("Accounts in the shared sequence space")
    return to_data_uri(fig)


def stage_seconds(seconds: Mapping[str, float]) -> str:
    """Horizontal bars: seconds per training stage."""
    fig, ax = _figure((6.4, 1.0 + 0.3 * max(len(seconds), 1)), left=1.1)
    names = list(seconds)
    ax.barh(names, [float(seconds[n]) for n in names], color=PALETTE[0])
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Training time per stage")
    return to_data_uri(fig)


def loss_curves(epochs: Sequence[Mapping[str, Any]]) -> str:
    """Every ``*_loss`` series of the sequence encoder's epoch records against the epoch."""
    fig, ax = _figure()
    keys = [k for k in epochs[0] if k.endswith("loss")] if epochs else []
    x = [e.get("epoch", i + 1) for i, e in enumerate(epochs)]
    for i, key in enumerate(keys):
        y = np.array([e.get(key) for e in epochs], dtype=np.float64)  # None → NaN: a gap
        ax.plot(x, y, marker="o", ms=3, color=_colour(i), label=key)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    _legend(ax, frameon=False, fontsize=8)
    ax.set_title("Sequence encoder training")
    return to_data_uri(fig)


def _leading(v: float) -> int:
    """Leading digit of a positive number (2 for 200, 5 for 0.5)."""
    return int(np.round(v / 10 ** np.floor(np.log10(v)))) if v > 0 else 0


def _legend(ax: Axes, **kwargs: Any) -> None:
    """A legend when something is labelled (an empty one only draws a warning)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]
