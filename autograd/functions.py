"""Functions of tensors: joining, selecting, elementwise maximum, clipping, padding, logsumexp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autograd import arguments, ops
from autograd.tensor import Tensor, as_tensor


def _tensors(op: str, tensors: Sequence[Any]) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    return [as_tensor(t, f"{op}: tensors[{i}]") for i, t in enumerate(tensors)]


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (their other axes must match)."""
    ts = _tensors("concatenate", tensors)
    ndim = ts[0].ndim
    if ndim == 0:
        raise ValueError("concatenate: 0-d tensors cannot be concatenated; use stack")
    for i, t in enumerate(ts):
        if t.ndim != ndim:
            raise ValueError(f"concatenate: tensors[{i}] has {t.ndim} dims (shape {t.shape}), tensors[0] has {ndim}")
    return ops.concatenate(*ts, axis=arguments.normalize_axis("concatenate", axis, ndim))


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    ts = _tensors("stack", tensors)
    for i, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise ValueError(f"stack: tensors[{i}] has shape {t.shape}, tensors[0] has {ts[0].shape}; they must match")
    axis = arguments.normalize_axis("stack", axis, ts[0].ndim + 1)
    return concatenate([t.unsqueeze(axis) for t in ts], axis=axis)


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """``x`` where ``condition`` is true, else ``y`` (broadcast together); no gradient for ``condition``."""
    cond = as_tensor(condition, "where: condition")
    if cond.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    x, y = _pair("where", x, y)
    return ops.where(cond, x, y)


def maximum(x: Any, y: Any) -> Tensor:
    """Elementwise maximum; at ties the gradient is split equally (as torch does)."""
    return ops.maximum(*_pair("maximum", x, y))


def minimum(x: Any, y: Any) -> Tensor:
    """Elementwise minimum; at ties the gradient is split equally."""
    return ops.minimum(*_pair("minimum", x, y))


def clip(x: Any, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (numpy's and torch's names)
    """``min(max(x, min), max)``, as numpy's ``clip`` (see `Tensor.clip` for bounds and gradients)."""
    return as_tensor(x, "clip: x").clip(min, max)


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis``, without overflow (see `Tensor.logsumexp`)."""
    return as_tensor(x, "logsumexp: x").logsumexp(axis=axis, keepdims=keepdims)


def pad(x: Any, pad_width: Any, value: Any = 0.0) -> Tensor:
    """``x`` surrounded by ``value``, as numpy's ``pad(x, pad_width, mode="constant")``.

    ``pad_width`` is numpy's: ``n`` (n before and after every axis), ``(before, after)`` (for every
    axis) or one ``(before, after)`` pair per axis, first axis first. (torch's ``F.pad`` lists the last
    axis first, in one flat tuple: ``F.pad(x, (1, 2))`` is ``pad(x, ((0, 0), ..., (1, 2)))`` here.)
    The gradient of ``x`` is the window of the output's gradient it was copied to."""
    t = as_tensor(x, "pad: x")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"pad: value must be a number, got {type(value).__name__} {value!r}")
    return ops.pad(t, widths=arguments.pad_widths("pad", pad_width, t.shape), value=value)


def _pair(op: str, x: Any, y: Any) -> tuple[Tensor, Tensor]:
    """Two operands as tensors; a Python number takes the other operand's dtype, as in operators."""
    from autograd.tensor import lift

    if isinstance(x, Tensor):
        return x, lift(y, x)
    if isinstance(y, Tensor):
        return lift(x, y), y
    return as_tensor(x, f"{op}: x"), as_tensor(y, f"{op}: y")
