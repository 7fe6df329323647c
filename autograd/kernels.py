"""Kernels: the numpy algorithms some primitives call, below the op seam.

Each function here takes and returns plain numpy arrays and knows nothing of tensors or graphs. A
primitive in `autograd.ops` calls one as its forward (``reduce_sum`` calls `sum_array`), and the
vjps reach them through those primitives, so a learner reading a vjp reads the math, and the way
the math is computed fast lives here, once. Why each is faster than the obvious numpy call, and by
how much, is in ``PERFORMANCE.md``.

This is also the seam where another array library (a GPU one) would plug in: these functions and
the numpy ufuncs named in `autograd.ops` are all the array work the engine does.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------


def kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` kept as size 1 (what ``keepdims=True`` gives)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


@functools.lru_cache(maxsize=1024)
def broadcast_axes(broadcast: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of ``broadcast`` that broadcasting ``shape`` to it added (leading) or stretched (size 1).

    Cached: a model asks the same few questions on every step (a bias's gradient, a LayerNorm's)."""
    lead = len(broadcast) - len(shape)
    stretched = tuple(lead + i for i, size in enumerate(shape) if size == 1 and broadcast[lead + i] != 1)
    return tuple(range(lead)) + stretched


@functools.lru_cache(maxsize=256)
def inverse_permutation(axes: tuple[int, ...]) -> tuple[int, ...]:
    """The axes that undo ``transpose(axes)``: ``inverse[axes[i]] = i``."""
    inverse = [0] * len(axes)
    for i, axis in enumerate(axes):
        inverse[axis] = i
    return tuple(inverse)


# ---------------------------------------------------------------------------------------------------
# Sums: a matrix-vector product with ones, where BLAS can do it
# ---------------------------------------------------------------------------------------------------

_BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FLOAT16 = np.dtype(np.float16)  # summed in float32 (`accumulated_sum`)
_BLAS_MIN_SIZE = 1024  # below this, numpy's own reduction is as quick as the call into BLAS
# Longer sums stay with numpy's pairwise summation, whose rounding error grows like log(n) rather than
# like n / (BLAS's handful of running totals): a float32 loss over millions of numbers keeps its digits.
_BLAS_MAX_LENGTH = 8192


@functools.lru_cache(maxsize=64)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False
    return ones


def sum_array(x: np.ndarray, axis: int | tuple[int, ...], keepdims: bool = False) -> np.ndarray:
    """``np.sum(x, axis, keepdims)``; for a contiguous float array summed over its leading or its
    trailing axes, computed as a product with a vector of ones.

    ``x (rows, k) @ ones(k)`` is a dot product per row, which BLAS runs with all its vector units
    (a LayerNorm's mean, a softmax's normaliser); ``ones(rows) @ x`` adds up the rows (a bias's
    gradient). The sum is the same up to rounding order. Sums of more than `_BLAS_MAX_LENGTH`
    numbers stay with numpy's more accurate pairwise summation.

    float16 is added up in float32 and rounded to float16 once, at the end (`accumulated_sum`).
    """
    if x.dtype in _BLAS_DTYPES and x.size >= _BLAS_MIN_SIZE and x.flags.c_contiguous:
        axes = axis if type(axis) is tuple else (int(axis),) if isinstance(axis, (int, np.integer)) else None
        plan = None if axes is None else _blas_sum_plan(x.shape, axes, keepdims)
        if plan is not None:
            trailing, length, out_shape = plan
            if trailing:
                out = x.reshape(-1, length) @ _ones(length, x.dtype)
            else:
                out = _ones(length, x.dtype) @ x.reshape(length, -1)
            return out.reshape(out_shape)
    if x.dtype == FLOAT16:  # (after the BLAS case, so a float32 or float64 sum never asks)
        return accumulated_sum(x, axis, keepdims).astype(FLOAT16)
    return np.add.reduce(x, axis=axis, keepdims=keepdims)  # np.sum without its Python wrapper


def accumulated_sum(x: np.ndarray, axis: int | tuple[int, ...], keepdims: bool = False) -> np.ndarray:
    """The sum of a float16 array in float32. float16 holds 11 significant bits and numbers up to
    65504, so a running float16 total stops growing once each addend is below half its last bit
    (1 + 1 + ... sticks at 2048) and overflows to inf long before a mean would: numpy adds float16
    up in float32 for the same reason. Other dtypes are summed in their own."""
    return np.add.reduce(x, axis=axis, dtype=np.float32 if x.dtype == FLOAT16 else None, keepdims=keepdims)


@functools.lru_cache(maxsize=1024)
def _blas_sum_plan(
    shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool
) -> tuple[bool, int, tuple[int, ...]] | None:
    """How `sum_array` sums ``shape`` over ``axes`` with BLAS: (over the trailing axes?, the length
    of each sum, the result's shape), or None when the axes are not a leading or trailing block."""
    n = len(shape)
    axes = tuple(sorted(a % n for a in axes))
    k = len(axes)
    if not k:
        return None
    out_shape = kept_shape(shape, axes) if keepdims else tuple(s for i, s in enumerate(shape) if i not in axes)
    inner, outer = math.prod(shape[n - k :]), math.prod(shape[:k])
    if axes == tuple(range(n - k, n)) and inner <= _BLAS_MAX_LENGTH:
        return True, inner, out_shape
    if axes == tuple(range(k)) and outer <= _BLAS_MAX_LENGTH:
        return False, outer, out_shape
    return None


# ---------------------------------------------------------------------------------------------------
# Special functions numpy lacks
# ---------------------------------------------------------------------------------------------------

_math_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, entry by entry, by Python's ``math.erf`` (accurate to about 1 ulp in float64):
    numpy has no erf, and a loop at C speed over a Python function beats a hand-written approximation
    for being right. Floats keep their dtype; integers and bools give float64, as numpy's ufuncs do.
    About 0.25 us per entry (a million in a quarter of a second): slow beside a ufunc, fine for a test."""
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    return np.asarray(_math_erf(x), dtype=np.float64).astype(dtype, copy=False)


# ---------------------------------------------------------------------------------------------------
# Broadcasting without numpy's Python-level checks
# ---------------------------------------------------------------------------------------------------


def broadcast_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``np.broadcast_to(a, shape)``: a read-only view in which each stretched axis has stride 0.

    For ``a`` with as many dims as ``shape`` (a reduction's gradient, kept dims), the view is built
    straight from strides, skipping `np.broadcast_to`'s checks, which cost more than the rest of a
    small vjp."""
    if (
        type(a) is not np.ndarray or a.ndim != len(shape) or not a.flags.c_contiguous or a.size == 0
        or any(n != m and n != 1 for n, m in zip(a.shape, shape))
    ):  # fmt: skip
        return np.broadcast_to(a, shape)  # (which also says what is wrong with a shape that does not fit)
    strides = tuple(0 if n != m else stride for n, m, stride in zip(a.shape, shape, a.strides))
    view = np.ndarray(shape, a.dtype, buffer=a, strides=strides)
    view.flags.writeable = False
    return view


# ---------------------------------------------------------------------------------------------------
# Matrix products
# ---------------------------------------------------------------------------------------------------

# Below this many multiply-adds, np.dot beats np.matmul on two matrices (a lighter dispatch for the
# same BLAS call); from about 64^3 on, np.matmul is as fast or faster.
_DOT_MAX_WORK = 1 << 16


def matmul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``np.matmul(x, y)``, with a batch of rows times one matrix done as one big product (numpy
    would loop over the batch, one small BLAS call each), and small matrix products by np.dot."""
    if y.ndim == 2:
        if x.ndim == 2 and x.shape[0] * x.shape[1] * y.shape[1] <= _DOT_MAX_WORK:
            return np.dot(x, y)
        if x.ndim > 2 and x.shape[-1] == y.shape[0]:
            rows = math.prod(x.shape[:-1])  # not -1: that cannot be inferred when a size is 0
            return np.matmul(x.reshape(rows, x.shape[-1]), y).reshape(*x.shape[:-1], y.shape[1])
    return np.matmul(x, y)


def is_transposed(y: object) -> bool:
    """Whether ``y`` is a matrix stored column by column: a transposed view such as ``W.T``."""
    return isinstance(y, np.ndarray) and y.ndim == 2 and y.flags.f_contiguous and not y.flags.c_contiguous


# ---------------------------------------------------------------------------------------------------
# Reusing a gradient's memory for the result computed from it
# ---------------------------------------------------------------------------------------------------

# Ufuncs whose result has the dtype numpy's promotion gives their inputs (comparisons do not).
_ARITHMETIC = frozenset({np.add, np.subtract, np.multiply, np.divide, np.negative})
REUSE_MIN_BYTES = 1 << 18  # below 256 KiB (where numpy starts eliding temporaries) a new array is cheaper


class Reusable(np.ndarray):
    """An array whose memory the first arithmetic ufunc that reads it may take for its result.

    numpy does this by itself for temporaries (``a * b * c`` computes the second product into the
    first's array), but never for an array a variable still names. The backward walk hands a vjp
    its ``g`` as a `Reusable` when nothing will read ``g`` after that vjp and the vjp is one
    expression that reads ``g`` once (`Primitive.reuses_g`): ``g * x * 2.0`` is then computed into
    ``g``, and the result, reusable in turn, takes ``* 2.0`` in place too: no new array at all.
    Views of it, and results of other shapes or dtypes, are plain arrays.
    """

    reusable: bool

    @staticmethod
    def of(array: np.ndarray) -> Reusable:
        view = array.view(Reusable)
        view.reusable = True
        return view

    def __array_finalize__(self, obj: object) -> None:
        self.reusable = False  # a view or a copy of it: never reused

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: object, **kwargs: object) -> object:
        plain = tuple(x.view(np.ndarray) if isinstance(x, Reusable) else x for x in inputs)
        if self.reusable and method == "__call__" and not kwargs and ufunc in _ARITHMETIC and _fits(plain, self):
            self.reusable = False
            return Reusable.of(ufunc(*plain, out=self.view(np.ndarray)))  # the next op of the expression may reuse it
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, Reusable) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)


def _fits(inputs: tuple, target: np.ndarray) -> bool:
    """Whether an arithmetic ufunc of ``inputs`` gives ``target``'s shape and dtype, so that it can
    be written into ``target``: every array broadcasts to ``target`` without widening it, and none
    promotes its dtype (Python numbers never do, by NEP 50)."""
    for x in inputs:
        if isinstance(x, (np.ndarray, np.generic)):
            if x.ndim > target.ndim or np.result_type(x.dtype, target.dtype) != target.dtype:
                return False
            if any(a != b and a != 1 for a, b in zip(x.shape[::-1], target.shape[::-1])):
                return False
        elif not isinstance(x, (int, float)):
            return False
    return True


# ---------------------------------------------------------------------------------------------------
# Scattering: out[index] += g, with repeated indices adding up
# ---------------------------------------------------------------------------------------------------

_ADD_AT_MAX_SIZE = 2048  # np.add.at wins below about this many numbers picked as rows


def is_basic_index(index: tuple) -> bool:
    """Basic indexing (ints, slices, None, ...) selects each entry at most once, as a view."""
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in index)


class Scattered(np.lib.mixins.NDArrayOperatorsMixin):
    """``zeros(shape)`` with ``values`` added at ``[index]``, not yet written out: what `scatter_add`
    returns on plain arrays, so what the vjp of ``x[index]`` gives in a plain backward.

    That gradient is zero except at ``index``. Kept in this form, adding it into a gradient that
    already exists touches only the picked entries (`add_at`) instead of building an array of
    zeros the size of ``x`` and adding all of it: for attention's q, k and v, three slices of one
    array, two zero-filled arrays and two whole additions fewer per layer. Anything that uses it as
    an array (``np.asarray``, arithmetic, a Tensor) gets the dense array, `dense()`.
    """

    __slots__ = ("values", "shape", "index")

    def __init__(self, values: np.ndarray, shape: tuple[int, ...], index: tuple) -> None:
        self.values, self.shape, self.index = values, shape, index

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dense(self) -> np.ndarray:
        """The array itself: zeros, with the values added at the index (a new array)."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        if is_basic_index(self.index):
            out[self.index] = self.values  # each entry is picked at most once: a copy into the zeros
        elif len(self.index) < out.ndim and self.values.size > _ADD_AT_MAX_SIZE and all(
            isinstance(i, np.ndarray) for i in self.index
        ):
            segment_sum(out, self.index, self.values)  # whole rows (an embedding's): a sorted segment sum
        else:  # single entries (cross-entropy's picks), or few: numpy's add.at is quicker
            np.add.at(out, self.index, self.values)
        return out

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self.dense()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: object, **kwargs: object) -> object:
        inputs = tuple(x.dense() if isinstance(x, Scattered) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __repr__(self) -> str:
        return f"Scattered(shape={self.shape}, dtype={self.dtype}, picked={self.values.shape})"


def scatter_add(g: np.ndarray, shape: tuple[int, ...], index: tuple) -> Scattered:
    """zeros(shape) with ``g`` added at ``[index]`` (repeated indices accumulate), as a `Scattered`
    that is written out only when used as an array."""
    return Scattered(g, shape, index)


def add_at(out: np.ndarray, index: tuple, g: np.ndarray) -> None:
    """``out[index] += g`` in place, adding once per time an entry is picked."""
    if is_basic_index(index):
        target = out[index]
        if type(target) is np.ndarray:  # a view (a single element comes back as a scalar copy)
            add_in_memory_order(target, g)
        else:
            out[index] += g
    elif out.flags.c_contiguous and all(isinstance(i, np.ndarray) for i in index):
        segment_sum(out, index, g)  # rows or entries picked by integer arrays
    else:
        np.add.at(out, index, g)


def segment_sum(out: np.ndarray, index: tuple[np.ndarray, ...], g: np.ndarray) -> None:
    """``out[index] += g`` for integer-array indices of the leading axes (an embedding's backward),
    as a sorted segment sum: sort the rows by where they go, add up each run with one `reduceat`,
    and add each total once. Several times faster than ``np.add.at`` for rows.

    The index arrays broadcast to the shape of the rows they pick; each row of ``g`` (its trailing
    axes flattened) is added to the row of ``out`` that its flat index names. ``out`` must be
    C-contiguous: its rows are added through a reshaped view.
    """
    lead = len(index)
    if lead == 1:  # one index array (an embedding's ids): its entries are the row numbers
        flat = index[0].reshape(-1)
        if flat.size and flat.min() < 0:
            flat = flat % out.shape[0]
    else:
        flat = np.ravel_multi_index(np.broadcast_arrays(*index), out.shape[:lead], mode="wrap").reshape(-1)
    if flat.size == 0 or g.size == 0:
        return
    rows = g.reshape(flat.size, -1)
    target = out.reshape(-1, rows.shape[1])
    order = np.argsort(flat, kind="stable")
    sorted_flat = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_flat[1:] != sorted_flat[:-1])))
    target[sorted_flat[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def add_in_memory_order(target: np.ndarray, g: np.ndarray) -> None:
    """``target += g``, walking both in the order ``g`` lies in memory when neither is C-ordered
    (attention's gradient of one head, a transposed view, into a strided slice of the q/k/v
    gradient): numpy would follow the target's axis order and read ``g`` in short scattered runs."""
    if g.ndim > 1 and not g.flags.c_contiguous and not target.flags.c_contiguous:
        order = _memory_order(g.strides)
        target, g = target.transpose(order), g.transpose(order)
    np.add(target, g, out=target)


@functools.lru_cache(maxsize=256)
def _memory_order(strides: tuple[int, ...]) -> tuple[int, ...]:
    """The axes from the largest stride to the smallest: the transpose that is (nearly) C-ordered."""
    return tuple(sorted(range(len(strides)), key=lambda axis: -abs(strides[axis])))
