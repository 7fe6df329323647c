"""Plots people would rather see than read: attention heatmaps and loss curves (matplotlib, headless).

Both use matplotlib's object API with the Agg canvas, never pyplot, so they work on a machine with no
display and leave any pyplot state of a notebook alone. Each returns the `matplotlib.figure.Figure`
and, given ``path``, saves it there as PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autograd import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Curve = Sequence[tuple[float, float]] | Sequence[float] | Mapping[float, float] | tuple[Sequence, Sequence]


def plot_attention(
    weights: Any,
    tokens: Sequence[str],
    path: str | Path | None = None,
    *,
    title: str | None = None,
    max_cols: int = 4,
    split: int | None = None,
) -> Figure:
    """A heatmap per head of attention weights: row = query position, column = key position.

    ``weights``: ``(T, T)``, ``(n_head, T, T)`` or ``(1, n_head, T, T)`` (a Tensor or an array),
    each row a probability distribution over keys. ``tokens``: the ``T`` token strings, written on
    both axes. ``split``: a position where something new begins (the answer after a question, say):
    a line is drawn before it on both axes.
    """
    array = _array(weights)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise ValueError(f"plot_attention: weights must be (T, T) or (n_head, T, T), got shape {np.shape(weights)}")
    n_head, T, _ = array.shape
    tokens = [str(t) for t in tokens]
    if len(tokens) != T:
        raise ValueError(f"plot_attention: {len(tokens)} tokens for weights over {T} positions")
    if split is not None and not (isinstance(split, (int, np.integer)) and 0 < split < T):
        raise ValueError(f"plot_attention: split must be a position in 1..{T - 1}, got {split!r}")

    cols = min(n_head, max_cols)
    rows = math.ceil(n_head / cols)
    cell = max(0.22, min(0.45, 5.0 / T))  # inches per token
    side = max(2.6, cell * T + 0.9)
    fig = _figure((cols * side + 1.0, rows * side + (0.9 if title else 0.5)))
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= n_head:
            ax.set_visible(False)
            continue
        image = ax.imshow(array[h], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(T), labels=tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(T), labels=tokens, fontsize=8)
        ax.set_title(f"head {h}" if n_head > 1 else "attention", fontsize=10)
        if split is not None:  # between the cells split - 1 and split, across and down
            ax.axvline(split - 0.5, color="white", linewidth=1.5)
            ax.axhline(split - 0.5, color="white", linewidth=1.5)
        if h % cols == 0:
            ax.set_ylabel("query", fontsize=9)
        if h // cols == rows - 1 or h + cols >= n_head:
            ax.set_xlabel("key", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    if title:
        fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def plot_losses(
    train: Curve | None = None,
    eval: Curve | None = None,  # noqa: A002 (the word users expect)
    path: str | Path | None = None,
    *,
    floor: float | None = None,
    floor_label: str = "floor",
    title: str | None = None,
    log_y: bool = False,
) -> Figure:
    """Train and eval loss against step.

    Each curve is a list of ``(step, loss)`` pairs, a ``{step: loss}`` dict, a list of losses (one per
    step from 0), or a ``(steps, losses)`` pair of sequences. ``floor``: a horizontal dashed line,
    e.g. the entropy of the data, the lowest loss a model can reach.
    """
    curves = [(label, _curve(c, label)) for label, c in (("train", train), ("eval", eval)) if c is not None]
    if not curves:
        raise ValueError("plot_losses: give train= and/or eval= losses")
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot()
    styles = {"train": dict(color="#1f77b4", lw=1.4), "eval": dict(color="#d62728", lw=1.8, marker="o", ms=3)}
    for label, (steps, losses) in curves:
        ax.plot(steps, losses, label=label, **styles[label])
    if floor is not None:
        ax.axhline(floor, color="#555555", ls="--", lw=1.0, label=f"{floor_label} ({floor:.3g})")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _curve(curve: Curve, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Any accepted form of a loss curve -> (steps, losses)."""
    if isinstance(curve, Mapping):
        steps, losses = list(curve.keys()), list(curve.values())
    elif isinstance(curve, tuple) and len(curve) == 2 and all(isinstance(c, (Sequence, np.ndarray)) for c in curve):
        steps, losses = list(curve[0]), list(curve[1])
    else:
        items = list(curve)
        if items and isinstance(items[0], (tuple, list)):
            steps, losses = [s for s, _ in items], [v for _, v in items]
        else:
            steps, losses = list(range(len(items))), items
    steps_array = np.asarray(steps, dtype=np.float64)
    losses_array = np.asarray([float(v) for v in losses], dtype=np.float64)
    if steps_array.shape != losses_array.shape or steps_array.ndim != 1:
        raise ValueError(f"plot_losses: {label} needs as many steps as losses")
    return steps_array, losses_array


def _array(weights: Any) -> np.ndarray:
    if isinstance(weights, Tensor):
        weights = weights.data
    return np.asarray(weights, dtype=np.float64)


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    return fig
