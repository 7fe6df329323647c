"""Numbers, shapes, statistics and op attributes as a few characters, for labels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def describe_attrs(op_name: str, attrs: Mapping[str, Any]) -> str:
    """A short description of an op's attributes: ``axis=1``, ``(0, 2, 1, 3)``, ``[:, -1]``.

    Shapes are left out (the node shows its output shape anyway).
    """
    parts = []
    for key, value in attrs.items():
        if key == "shape":
            continue
        if key == "index":
            parts.append(describe_index(value))
        elif key == "axes":
            parts.append(str(tuple(value)))
        elif key == "axis":
            axis = tuple(value) if isinstance(value, (tuple, list)) else value
            if isinstance(axis, tuple) and len(axis) == 1:
                axis = axis[0]
            parts.append(f"axis={axis}")
        elif key == "keepdims":
            if value:
                parts.append("keepdims")
        elif key == "dtype":
            parts.append(f"to {np.dtype(value)}")
        elif isinstance(value, (bool, int, float, str)):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def describe_index(index: Any) -> str:
    """``x[index]`` as written: ``[:, 1:3]``, ``[array(4, 8)]``."""
    items = index if isinstance(index, tuple) else (index,)
    shown = []
    for item in items:
        if isinstance(item, slice):
            start = "" if item.start is None else str(item.start)
            stop = "" if item.stop is None else str(item.stop)
            step = "" if item.step is None else f":{item.step}"
            shown.append(f"{start}:{stop}{step}")
        elif item is None:
            shown.append("None")
        elif item is Ellipsis:
            shown.append("...")
        elif isinstance(item, np.ndarray):
            shown.append(f"array{item.shape}" if item.size > 4 else str(item.tolist()))
        else:
            shown.append(str(item))
    return "[" + ", ".join(shown) + "]"



# ---------------------------------------------------------------------------------------------------
# Numbers, shapes and statistics as short text
# ---------------------------------------------------------------------------------------------------


def format_number(x: float | np.ndarray) -> str:
    x = float(np.asarray(x).reshape(()))
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.2e}"


def format_shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    if shape == ():
        return "scalar"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_count(n: int) -> str:
    """12 -> "12", 12_345 -> "12.3k", 1_234_567 -> "1.23M"."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.3g}k"
    return f"{n / 1_000_000:.3g}M"


def format_value(value: np.ndarray) -> str:
    """A scalar's value, or mean and standard deviation of an array (with its min and max)."""
    array = np.asarray(value)
    if array.size == 1:
        return f"data {format_number(array)}"
    if array.dtype.kind == "b":
        return f"{int(array.sum())} of {array.size} true"
    data = array.astype(np.float64, copy=False)
    return (
        f"mean {format_number(data.mean())} std {format_number(data.std())} "
        f"[{format_number(data.min())}, {format_number(data.max())}]"
    )
