"""Checking and normalising what users pass to tensor methods: axes, shapes, indices.

Each function either returns the argument in the one form the primitives take (sorted
non-negative axes, a tuple of ints, an index tuple of ints, slices and integer arrays) or raises
an error that names the op and what was wrong, before any numpy call can fail obscurely.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.exceptions import AxisError


def normalize_axis(op: str, axis: Any, ndim: int, shape: tuple[int, ...] | None = None) -> int:
    """``axis`` as a non-negative int below ``ndim`` (``-1`` is the last axis).

    An axis out of range raises numpy's `AxisError`, as numpy does: a subclass of both ``ValueError``
    and ``IndexError``, so either ``except`` catches it."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -ndim <= axis < ndim:
        of = f"shape {shape}" if shape is not None else "the tensor"
        raise AxisError(f"{op}: axis {axis} is out of range for {of}, which has {ndim} dims")
    return int(axis) % ndim


def scalar_axis(op: str, axis: Any) -> int:
    """The axis of a 0-d tensor for an op that takes it as a vector of one number (softmax, flatten):
    0 or -1, as torch allows."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__} {axis!r}")
    if axis not in (0, -1):
        raise AxisError(f"{op}: axis {axis} is out of range for a 0-d tensor (which takes 0 or -1)")
    return 0


def normalize_axes(op: str, axis: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``None`` -> every axis; an int or a sequence of ints -> sorted non-negative axes."""
    ndim = len(shape)
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) else axis
    if not isinstance(axes, (tuple, list)):
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {type(axis).__name__} {axis!r}")
    normalized = tuple(sorted(normalize_axis(op, a, ndim, shape) for a in axes))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{op}: axis {axis} repeats an axis")
    return normalized


def shape_argument(op: str, args: tuple) -> tuple[int, ...]:
    """``f(2, 3)`` or ``f((2, 3))`` -> ``(2, 3)``, checking that every entry is an int."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    for a in args:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{op}: sizes must be ints, got {type(a).__name__} {a!r} in {args}")
    return tuple(int(a) for a in args)


def count_argument(op: str, name: str, value: Any, minimum: int | None = 0) -> int:
    """A count (a size, a number of pieces, a repetition) as an int of at least ``minimum``; with
    ``minimum=None`` any int (a diagonal's offset, a number of decimals)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be at least {minimum}, got {value}")
    return int(value)


def pad_widths(op: str, pad_width: Any, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """numpy's ``pad_width``: ``n``, ``(before, after)`` or one such pair per axis -> a pair per axis."""
    try:
        widths = np.asarray(pad_width)
    except (ValueError, TypeError):
        widths = np.asarray(None)
    if widths.dtype.kind not in "iu":
        raise TypeError(f"{op}: pad_width must be ints: n, (before, after) or one pair per axis, got {pad_width!r}")
    try:
        pairs = np.broadcast_to(widths, (len(shape), 2))
    except ValueError:
        raise ValueError(
            f"{op}: pad_width {pad_width!r} is not n, (before, after) or one pair per axis of shape {shape}"
        ) from None
    if (pairs < 0).any():
        raise ValueError(f"{op}: pad_width {pad_width!r} is negative (to crop, index the tensor instead)")
    return tuple((int(before), int(after)) for before, after in pairs)


def permutation(op: str, axes: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    perm = tuple(normalize_axis(op, a, ndim) for a in axes)
    if sorted(perm) != list(range(ndim)):
        raise ValueError(f"{op}: axes {axes} are not a permutation of the {ndim} axes of the tensor")
    return perm


def expanded_shape(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...]:
    """Resolve ``-1`` entries of an `expand` target and check that ``shape`` broadcasts to it."""
    if len(target) < len(shape):
        raise ValueError(f"expand: cannot expand shape {shape} to fewer dims {target}")
    lead = len(target) - len(shape)
    resolved = list(target)
    for i, size in enumerate(target):
        own = shape[i - lead] if i >= lead else None
        if size == -1:
            if own is None:
                raise ValueError(f"expand: -1 is not allowed for the new leading axis {i} in {target}")
            resolved[i] = own
        elif size < 0 or (own is not None and own not in (1, size)):
            raise ValueError(f"expand: shape {shape} cannot be expanded to {target} (axis {i}: {own} -> {size})")
    return tuple(resolved)


def index_argument(index: Any, shape: tuple[int, ...]) -> tuple:
    """Normalise ``x[index]`` for a tensor of ``shape``: always a tuple; Tensors and lists become
    arrays of integers; a bool mask, checked against the axes it covers (as numpy does), becomes the
    integer arrays of its True positions."""
    if not isinstance(index, tuple):
        index = (index,)
    parts = []
    for i in index:
        if hasattr(i, "__array__") and not isinstance(i, (np.ndarray, np.generic)):  # a Tensor: its array
            i = np.asarray(i)
        elif isinstance(i, list):
            i = _list_index(i)
        if isinstance(i, np.ndarray):
            if i.dtype.kind == "b" and i.ndim == 0:
                raise IndexError("getitem: a bare True/False index is not supported (a 0-d bool array)")
            if i.dtype.kind not in "biu":
                raise IndexError(f"getitem: index arrays must hold integers or bools, got dtype {i.dtype}")
        elif isinstance(i, (bool, np.bool_)):
            raise IndexError("getitem: a bare True/False index is not supported")
        elif not (isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis):
            raise IndexError(f"getitem: unsupported index {i!r} of type {type(i).__name__}")
        parts.append(i)
    _check_masks(parts, shape)
    normalized = []
    for i in parts:
        if isinstance(i, np.ndarray) and i.dtype.kind == "b":
            normalized.extend(np.nonzero(i))  # a mask selects the positions where it is True
        else:
            normalized.append(i)
    return tuple(normalized)


def _list_index(index: list) -> np.ndarray:
    try:
        array = np.asarray(index)
    except (ValueError, TypeError) as error:
        raise IndexError(f"getitem: the list {index!r} is not a regular array of indices ({error})") from None
    if array.size == 0 and array.dtype.kind == "f":
        array = array.astype(np.intp)  # [] selects nothing, as in numpy
    return array


def _check_masks(index: list, shape: tuple[int, ...]) -> None:
    """A bool mask must have the shape of the axes it indexes (``x[mask]`` with ``mask.shape == x.shape``);
    as in numpy, an axis of size 0 in the mask matches any size."""
    if not any(isinstance(i, np.ndarray) and i.dtype.kind == "b" for i in index):
        return
    width = [0 if i is None or i is Ellipsis else i.ndim if isinstance(i, np.ndarray) and i.dtype.kind == "b" else 1
             for i in index]  # fmt: skip
    axis = 0
    for i, n in zip(index, width):
        if i is Ellipsis:
            axis += max(len(shape) - sum(width), 0)
        elif isinstance(i, np.ndarray) and i.dtype.kind == "b":
            covered = shape[axis : axis + n]  # shorter if there are too many indices: numpy says so
            if len(covered) == n and any(m not in (size, 0) for m, size in zip(i.shape, covered)):
                raise IndexError(
                    f"getitem: a bool mask of shape {i.shape} does not match the axes {covered} it indexes "
                    f"in a tensor of shape {shape}"
                )
        axis += n
