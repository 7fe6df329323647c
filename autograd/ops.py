"""Every primitive of the engine: its numpy forward beside its vjps, one line or block each.

Read a row as ``name = Primitive("name", forward, vjps=(vjp for input 0, vjp for input 1, ...))``.
A vjp is ``(g, out, *inputs, **attrs) -> gradient for its input``, written with engine ops (so it
is differentiable again). ``save=`` lists what the vjps read ("out" and/or input positions);
``broadcasts=True`` means gradients are summed back to each input's shape by `unbroadcast`.

Everything else (mean, var, min, stack, division by a number, ...) is composed from these in
`autograd.tensor` and `autograd.functions`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autograd.primitive import Primitive
from autograd.tensor import Tensor

# ---------------------------------------------------------------------------------------------------
# Shared helpers: undoing broadcasting, checking axes and shapes
# ---------------------------------------------------------------------------------------------------


def unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``g`` over the axes that broadcasting added or stretched, giving it ``shape``.

    If ``x`` of shape ``shape`` was broadcast to ``g.shape``, every copy of an entry received
    part of the gradient, so the entry's gradient is their sum.
    """
    if g.shape == shape:
        return g
    axes = broadcast_axes(g.shape, shape)
    summed = reduce_sum(g, axis=axes, keepdims=False) if axes else g
    return summed.reshape(shape) if summed.shape != shape else summed


@functools.lru_cache(maxsize=1024)
def broadcast_axes(broadcast: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of ``broadcast`` that broadcasting ``shape`` to it added (leading) or stretched (size 1).

    Cached: a model asks the same few questions on every step (a bias's gradient, a LayerNorm's)."""
    lead = len(broadcast) - len(shape)
    stretched = tuple(lead + i for i, size in enumerate(shape) if size == 1 and broadcast[lead + i] != 1)
    return tuple(range(lead)) + stretched


def kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` kept as size 1 (what ``keepdims=True`` gives)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def normalize_axis(op: str, axis: Any, ndim: int, shape: tuple[int, ...] | None = None) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -ndim <= axis < ndim:
        of = f"shape {shape}" if shape is not None else "the tensor"
        raise ValueError(f"{op}: axis {axis} is out of range for {of}, which has {ndim} dims")
    return int(axis) % ndim


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


def _explain_broadcast(op: str, error: Exception, *tensors: Tensor, **attrs: Any) -> str | None:
    try:
        np.broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        shapes = " and ".join(str(tuple(t.shape)) for t in tensors)
        return f"{op}: shapes {shapes} do not broadcast"
    return None


def _expand_reduced(g: Tensor, shape: tuple[int, ...], axis: tuple[int, ...], keepdims: bool) -> Tensor:
    """Give a reduction's gradient back its reduced axes (as size 1), then broadcast to ``shape``."""
    if not keepdims:
        g = g.reshape(kept_shape(shape, axis))
    return g.expand(shape)


def _zeros_like(g: Tensor) -> Tensor:
    return Tensor._make(np.zeros((), dtype=g.dtype), None, False)


def _constant(array: np.ndarray) -> Tensor:
    return Tensor._make(array, None, False)


# ---------------------------------------------------------------------------------------------------
# Elementwise, one input
# ---------------------------------------------------------------------------------------------------

neg = Primitive("neg", np.negative, vjps=(lambda g, out, x: -g,), save=())
exp = Primitive("exp", np.exp, vjps=(lambda g, out, x: g * out,), save=("out",))
log = Primitive("log", np.log, vjps=(lambda g, out, x: g / x,), save=(0,))
sqrt = Primitive("sqrt", np.sqrt, vjps=(lambda g, out, x: g / (out * 2.0),), save=("out",))
square = Primitive("square", np.square, vjps=(lambda g, out, x: g * x * 2.0,), save=(0,))  # d(x^2) = 2x dx
tanh = Primitive("tanh", np.tanh, vjps=(lambda g, out, x: g * (1.0 - out * out),), save=("out",))


def _rsqrt(x: np.ndarray) -> np.ndarray:
    """1 / sqrt(x), the reciprocal taken in place on sqrt's result."""
    root = np.asarray(np.sqrt(x))  # an array even for 0-d input (numpy returns a scalar there)
    return np.divide(1.0, root, out=root)


rsqrt = Primitive(  # y = x^(-1/2):  dy/dx = -1/2 x^(-3/2) = -1/2 y^3
    "rsqrt", _rsqrt, vjps=(lambda g, out, x: g * (out * out * out) * -0.5,), save=("out",)
)  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) in place on one temporary; e^-x may overflow to inf, giving exactly 0."""
    e = np.asarray(np.negative(x, dtype=x.dtype if x.dtype.kind == "f" else np.float64))  # fresh, also 0-d
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1.0
    np.divide(1.0, e, out=e)
    return e


sigmoid = Primitive("sigmoid", _sigmoid, vjps=(lambda g, out, x: g * (out * (1.0 - out)),), save=("out",))
relu = Primitive("relu", lambda x: np.maximum(x, 0), vjps=(lambda g, out, x: g * (out > 0),), save=("out",))
absolute = Primitive("abs", np.abs, vjps=(lambda g, out, x: g * sign(x),), save=(0,))
cast = Primitive("cast", lambda x, dtype: x.astype(dtype), vjps=(lambda g, out, x, dtype: g.astype(x.dtype),), save=())

# Piecewise-constant or boolean results: no gradient.
sign = Primitive("sign", np.sign)
less = Primitive("less", np.less, explain=_explain_broadcast)
less_equal = Primitive("less_equal", np.less_equal, explain=_explain_broadcast)
greater = Primitive("greater", np.greater, explain=_explain_broadcast)
greater_equal = Primitive("greater_equal", np.greater_equal, explain=_explain_broadcast)
equal = Primitive("equal", np.equal, explain=_explain_broadcast)
not_equal = Primitive("not_equal", np.not_equal, explain=_explain_broadcast)


# ---------------------------------------------------------------------------------------------------
# Elementwise, two or three inputs (numpy broadcasting; gradients unbroadcast by the engine)
# ---------------------------------------------------------------------------------------------------


def _binary(
    name: str, forward: Any, vjp_x: Any, vjp_y: Any, save: Sequence[str | int] | Mapping[int, Sequence[str | int]]
) -> Primitive:
    return Primitive(name, forward, vjps=(vjp_x, vjp_y), save=save, broadcasts=True, explain=_explain_broadcast)


add = _binary("add", np.add, lambda g, out, x, y: g, lambda g, out, x, y: g, save=())
sub = _binary(  # dy = -g, negated after summing out broadcast axes (a pass over y's shape, not g's)
    "sub", np.subtract, lambda g, out, x, y: g, lambda g, out, x, y: -unbroadcast(g, y.shape), save=()
)
mul = _binary("mul", np.multiply, lambda g, out, x, y: g * y, lambda g, out, x, y: g * x, save={0: (1,), 1: (0,)})
div = _binary(  # out = x / y:  dx = g / y,  dy = -g x / y^2 = -g out / y
    "div", np.divide, lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y, save={0: (1,), 1: ("out", 1)}
)


def _pow_vjp_x(g: Tensor, out: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """dx = g y x^(y-1), and 0 where y == 0 (x^0 is constant, even at x == 0), as torch."""
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = g * y * x ** (y - 1.0)
    zero_power = y.data == 0
    return where(_constant(zero_power), _zeros_like(grad), grad) if zero_power.any() else grad


def _pow_vjp_y(g: Tensor, out: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """dy = g out log(x), and 0 where x == 0 and y >= 0 (out is 0 or 1 there), as torch."""
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = g * out * log(x)
    flat = (x.data == 0) & (y.data >= 0)
    return where(_constant(flat), _zeros_like(grad), grad) if flat.any() else grad


power = _binary("pow", np.power, _pow_vjp_x, _pow_vjp_y, save={0: (0, 1), 1: ("out", 0, 1)})  # out = x^y


def _tie_weight(x: Tensor, y: Tensor) -> Tensor:
    """1 where x wins, 0 where y wins, 1/2 at ties (the gradient is shared, as in torch)."""
    return _constant(np.where(x.data > y.data, 1.0, np.where(x.data == y.data, 0.5, 0.0)).astype(x.dtype))


maximum = _binary(
    "maximum", np.maximum,
    lambda g, out, x, y: g * _tie_weight(x, y),
    lambda g, out, x, y: g * _tie_weight(y, x),
    save=(0, 1),
)  # fmt: skip
minimum = _binary(
    "minimum", np.minimum,
    lambda g, out, x, y: g * _tie_weight(y, x),
    lambda g, out, x, y: g * _tie_weight(x, y),
    save=(0, 1),
)  # fmt: skip

where = Primitive(  # out = cond ? x : y
    "where", np.where,
    vjps=(
        None,
        lambda g, out, c, x, y: where(c, g, _zeros_like(g)),
        lambda g, out, c, x, y: where(c, _zeros_like(g), g),
    ),
    save=(0,), broadcasts=True, explain=_explain_broadcast,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Matrix product: (..., n, k) @ (..., k, m) -> (..., n, m), batch axes broadcast
# ---------------------------------------------------------------------------------------------------


def _matrix_transpose(t: Tensor) -> Tensor:
    """Swap the last two axes (a view): ``t.transpose(-1, -2)`` without re-checking the axes."""
    n = t.ndim
    return permute(t, axes=(*range(n - 2), n - 1, n - 2))


def _matmul_vjp_x(g: Tensor, out: Tensor, x: Tensor, y: Tensor) -> Tensor:
    return _matmul(g, _matrix_transpose(y))  # dx = g y^T


def is_transposed(y: Any) -> bool:
    """Whether ``y`` is a matrix stored column by column: a transposed view such as ``W.T``."""
    return isinstance(y, np.ndarray) and y.ndim == 2 and y.flags.f_contiguous and not y.flags.c_contiguous


def _matmul_vjp_y(g: Tensor, out: Tensor, x: Tensor, y: Tensor) -> Tensor:
    if y.ndim == 2 and x.ndim >= 2:  # a shared weight: one (k, rows) @ (rows, m) product, no batch sum
        n = math.prod(x.shape[:-1])  # the number of rows (explicit: -1 fails for empty batches)
        x2, g2 = x.reshape(n, x.shape[-1]), g.reshape(n, g.shape[-1])
        if is_transposed(getattr(y, "data", None)):  # y = W.T: make dy^T = g^T x, in W's own layout
            return _matrix_transpose(_matmul(_matrix_transpose(g2), x2))
        return _matmul(_matrix_transpose(x2), g2)
    return _matmul(_matrix_transpose(x), g)  # dy = x^T g


def _explain_matmul(op: str, error: Exception, x: Tensor, y: Tensor) -> str:
    if x.shape[-1] != y.shape[-2]:
        return f"matmul: shapes {x.shape} and {y.shape} do not align ({x.shape[-1]} != {y.shape[-2]})"
    return f"matmul: batch shapes {x.shape[:-2]} and {y.shape[:-2]} do not broadcast (shapes {x.shape} and {y.shape})"


# Below this many multiply-adds, np.dot beats np.matmul on two matrices: its dispatch is 0.4 us lighter
# (0.7x the time at 16^3). From about 64^3 on, matmul is as fast or faster: 1.26x for (512, 64) @ W.T.
_DOT_MAX_WORK = 1 << 16


def _matmul_forward(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """np.matmul, with a batch of rows times one matrix done as one big product (numpy would loop
    over the batch, one small BLAS call each); small matrix products go to np.dot (the same product)."""
    if y.ndim == 2:
        if x.ndim == 2 and x.shape[0] * x.shape[1] * y.shape[1] <= _DOT_MAX_WORK:
            return np.dot(x, y)
        if x.ndim > 2 and x.shape[-1] == y.shape[0]:
            rows = math.prod(x.shape[:-1])  # not -1: that cannot be inferred when a size is 0
            return np.matmul(x.reshape(rows, x.shape[-1]), y).reshape(*x.shape[:-1], y.shape[1])
    return np.matmul(x, y)


_matmul = Primitive(
    "matmul", _matmul_forward, vjps=(_matmul_vjp_x, _matmul_vjp_y), save={0: (1,), 1: (0,)}, broadcasts=True,
    explain=_explain_matmul,
)  # fmt: skip


def matmul(x: Tensor, y: Tensor) -> Tensor:
    """numpy's ``@``: 1-D operands are promoted to a row or a column and the axis dropped again."""
    if x.data.ndim >= 2 and y.data.ndim >= 2:
        return _matmul(x, y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(
            f"matmul: operands must have at least 1 dim, got shapes {x.shape} and {y.shape}; use * for scalars"
        )
    k_y = y.shape[0] if y.ndim == 1 else y.shape[-2]
    if x.shape[-1] != k_y:  # say it with the shapes as given, before 1-D operands are promoted
        raise ValueError(f"matmul: shapes {x.shape} and {y.shape} do not align ({x.shape[-1]} != {k_y})")
    out = _matmul(x.reshape(1, -1) if x.ndim == 1 else x, y.reshape(-1, 1) if y.ndim == 1 else y)
    if x.ndim == 1:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if y.ndim == 1:
        out = out.reshape(out.shape[:-1])
    return out


# ---------------------------------------------------------------------------------------------------
# Reductions (axis: a sorted tuple of non-negative ints, from normalize_axes)
# ---------------------------------------------------------------------------------------------------

_BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_BLAS_MIN_SIZE = 1024  # below this, numpy's sum is as quick as the call into BLAS
# Longer sums stay with numpy's pairwise summation, whose rounding error grows like log(n) rather than
# like n / (BLAS's handful of running totals): a float32 loss over millions of numbers keeps its digits.
_BLAS_MAX_LENGTH = 8192


@functools.lru_cache(maxsize=64)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False
    return ones


def sum_array(x: np.ndarray, axis: int | tuple[int, ...], keepdims: bool = False) -> np.ndarray:
    """``np.sum(x, axis, keepdims)``, as a matrix-vector product with a vector of ones when ``x`` is
    a contiguous float array summed over its leading or its trailing axes.

    ``x (rows, k) @ ones(k)`` runs in BLAS, 3 to 7 times faster than numpy's reduction along the
    last axis for rows of 32 to 1536 numbers (a LayerNorm's mean, a softmax's normaliser), and
    ``ones(rows) @ x`` likewise for a bias's gradient. The sum is the same up to rounding order;
    sums of more than `_BLAS_MAX_LENGTH` numbers each stay with numpy's more accurate pairwise sum.
    """
    if x.dtype in _BLAS_DTYPES and x.size >= _BLAS_MIN_SIZE and x.flags.c_contiguous:
        axes = axis if type(axis) is tuple else (int(axis),) if isinstance(axis, (int, np.integer)) else None
        plan = None if axes is None else _blas_sum_plan(x.shape, axes, keepdims)
        if plan is not None:
            trailing, length, out_shape = plan
            if trailing:  # a dot product per row
                out = x.reshape(-1, length) @ _ones(length, x.dtype)
            else:  # the rows added up
                out = _ones(length, x.dtype) @ x.reshape(length, -1)
            return out.reshape(out_shape)
    return np.add.reduce(x, axis=axis, keepdims=keepdims)  # np.sum without its Python wrapper


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


reduce_sum = Primitive(
    "sum", sum_array,
    vjps=(lambda g, out, x, axis, keepdims: _expand_reduced(g, x.shape, axis, keepdims),), save=(),
)  # fmt: skip


def reduced_count(shape: tuple[int, ...], axis: tuple[int, ...]) -> int:
    """How many entries of ``shape`` each sum over ``axis`` adds up."""
    return math.prod([shape[a] for a in axis])


def mean_scale(shape: tuple[int, ...], axis: tuple[int, ...]) -> float:
    """``1 / n`` for a mean of ``n`` entries (NaN for none, as numpy's mean of nothing)."""
    count = reduced_count(shape, axis)
    return 1.0 / count if count else math.nan


def _mean_array(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """The sum over ``axis`` divided by the count, scaled in place (in the sum's own dtype)."""
    total = np.asarray(sum_array(x, axis, keepdims))  # an array even when numpy returns a scalar
    return np.multiply(total, mean_scale(x.shape, axis), out=total)


reduce_mean = Primitive(  # y = sum(x) / n:  every entry of x gets g / n
    "mean", _mean_array,
    vjps=(lambda g, out, x, axis, keepdims: _expand_reduced(g * mean_scale(x.shape, axis), x.shape, axis, keepdims),),
    save=(),
)  # fmt: skip


def _max_vjp(g: Tensor, out: Tensor, x: Tensor, axis: tuple[int, ...], keepdims: bool) -> Tensor:
    winners = x.data == (out.data if keepdims else np.expand_dims(out.data, axis))
    share = winners / winners.sum(axis=axis, keepdims=True)  # ties split the gradient
    return _expand_reduced(g, x.shape, axis, keepdims) * _constant(share.astype(x.dtype, copy=False))


reduce_max = Primitive(
    "max", lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims),
    vjps=(_max_vjp,), save=("out", 0),
)  # fmt: skip
reduce_min = Primitive(  # the same vjp: the winners are the entries equal to the output
    "min", lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims),
    vjps=(_max_vjp,), save=("out", 0),
)  # fmt: skip


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """e^(x - max) / sum e^(x - max), in place on one temporary (the shift keeps exp from overflowing).

    Integers and bools give float64 probabilities, as ``np.exp`` (and scipy's softmax) would.
    """
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    e = x - x.max(axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= sum_array(e, axis, keepdims=True)
    return e


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """(x - max) - log sum e^(x - max) (float64 for integers and bools)."""
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(sum_array(np.exp(shifted), axis, keepdims=True))


softmax = Primitive(  # y = softmax(x):  dx = y (g - sum(g y))
    "softmax", _softmax,
    vjps=(lambda g, out, x, axis: out * (g - (g * out).sum(axis=axis, keepdims=True)),), save=("out",),
)  # fmt: skip
log_softmax = Primitive(  # y = log_softmax(x):  dx = g - e^y sum(g)
    "log_softmax", _log_softmax,
    vjps=(lambda g, out, x, axis: g - exp(out) * g.sum(axis=axis, keepdims=True),), save=("out",),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Shapes: views of the same data, whose vjps undo the view
# ---------------------------------------------------------------------------------------------------


def _explain_reshape(op: str, error: Exception, x: Tensor, shape: tuple[int, ...]) -> str:
    return f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}"


reshape = Primitive(
    "reshape", lambda x, shape: x.reshape(shape),
    vjps=(lambda g, out, x, shape: g.reshape(x.shape),), save=(), explain=_explain_reshape,
)  # fmt: skip


@functools.lru_cache(maxsize=256)
def inverse_permutation(axes: tuple[int, ...]) -> tuple[int, ...]:
    """The axes that undo ``transpose(axes)``: ``inverse[axes[i]] = i`` (cached: models reuse a few)."""
    inverse = [0] * len(axes)
    for i, axis in enumerate(axes):
        inverse[axis] = i
    return tuple(inverse)


permute = Primitive(
    "permute", lambda x, axes: x.transpose(axes),
    vjps=(lambda g, out, x, axes: g.permute(*inverse_permutation(tuple(axes))),), save=(),
)  # fmt: skip
expand = Primitive(
    "expand", lambda x, shape: np.broadcast_to(x, shape),
    vjps=(lambda g, out, x, shape: unbroadcast(g, x.shape),), save=(),
)  # fmt: skip


def _concatenate_vjp(i: int, g: Tensor, out: Tensor, *inputs: Any, axis: int) -> Tensor:
    start = sum(x.shape[axis] for x in inputs[:i])
    window = (slice(None),) * axis + (slice(start, start + inputs[i].shape[axis]),)
    return g[window]


def _explain_concatenate(op: str, error: Exception, *tensors: Tensor, axis: int) -> str:
    shapes = ", ".join(str(t.shape) for t in tensors)
    return f"concatenate: shapes {shapes} must match except along axis {axis}"


concatenate = Primitive(
    "concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis),
    vjps=_concatenate_vjp, save=(), explain=_explain_concatenate,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Indexing: x[index] and its transpose, scattering a gradient back (each is the other's vjp)
# ---------------------------------------------------------------------------------------------------


def _is_basic(index: tuple) -> bool:
    """Basic indexing (ints, slices, None, ...) selects each entry at most once."""
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in index)


def _scatter_add(g: np.ndarray, shape: tuple[int, ...], index: tuple) -> np.ndarray:
    """zeros(shape) with ``g`` added at ``[index]``; repeated indices accumulate."""
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g
    elif len(index) < len(shape) and g.size > _ADD_AT_MAX_SIZE and all(isinstance(i, np.ndarray) for i in index):
        _segment_sum(out, index, g)  # whole rows (an embedding's): a sorted segment sum is quicker
    else:  # single entries (cross-entropy's picks), or few: numpy's add.at is quicker (same sums, same order)
        np.add.at(out, index, g)
    return out


_ADD_AT_MAX_SIZE = 2048  # measured: np.add.at wins below about 3000 numbers picked as rows


def _segment_sum(out: np.ndarray, index: tuple[np.ndarray, ...], g: np.ndarray) -> None:
    """``out[index] += g`` for integer-array indices of the leading axes (an embedding's backward,
    a gather's), as a sorted segment sum: several times faster than ``np.add.at``.

    The index arrays broadcast to the shape of the rows they pick; each row of ``g`` (the trailing
    axes flattened) is added to the row of ``out`` that its flat index names.
    """
    if not out.flags.c_contiguous:
        raise ValueError("_segment_sum: out must be C-contiguous (its rows are added through a reshaped view)")
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


def _explain_getitem(op: str, error: Exception, x: Tensor, index: tuple) -> str:
    return f"getitem: index {_show_index(index)} is invalid for a tensor of shape {x.shape}: {error}"


def _show_index(index: tuple) -> str:
    parts = [f"array{i.shape}" if isinstance(i, np.ndarray) and i.size > 8 else repr(i) for i in index]
    return "[" + ", ".join(parts) + "]"


getitem = Primitive(
    "getitem", lambda x, index: x[index],
    vjps=(lambda g, out, x, index: scatter_add(g, shape=x.shape, index=index),), save=(), explain=_explain_getitem,
)  # fmt: skip
scatter_add = Primitive(
    "scatter_add", lambda g, shape, index: _scatter_add(g, shape, index),
    vjps=(lambda g, out, x, shape, index: getitem(g, index=index),), save=(),
)  # fmt: skip


def index_argument(index: Any, shape: tuple[int, ...]) -> tuple:
    """Normalise ``x[index]`` for a tensor of ``shape``: always a tuple; Tensors and lists become
    arrays of integers; a bool mask, checked against the axes it covers (as numpy does), becomes the
    integer arrays of its True positions."""
    if not isinstance(index, tuple):
        index = (index,)
    parts = []
    for i in index:
        if isinstance(i, Tensor):
            i = i.data
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


for _primitive in [value for value in list(globals().values()) if isinstance(value, Primitive)]:
    _primitive.trusted = True
