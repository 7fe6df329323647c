"""Every primitive of the engine: its numpy forward beside its vjps, one line or block each.

Read a row as ``name = Primitive("name", forward, vjps=(vjp for input 0, vjp for input 1, ...))``.
A vjp is ``(g, out, *inputs, **attrs) -> gradient for its input``: given ``g = dL/d(out)``, it
returns ``dL/d(input)``. ``save=`` lists what the vjps read ("out" and/or input positions);
``broadcasts=True`` means gradients are summed back to each input's shape by `unbroadcast`;
``reuses_g=True`` that each vjp is one expression reading ``g`` once, so the walk may let it
compute in ``g``'s memory (`kernels.Reusable`): the same numbers, one array fewer.

Each vjp is written once, with operators and the primitives of this file, and runs in two ways:

- in a plain ``backward()`` its arguments are numpy arrays, so ``g * out`` is numpy's product and
  ``reduce_sum(t, ...)`` runs the sum kernel directly (a primitive called on arrays returns an array);
- with ``create_graph=True`` they are Tensors, so the same lines record the gradient's own graph,
  which can be differentiated again (higher-order derivatives) and drawn.

Everything else (var, std, stack, division by a number, tril, split, GELU, LayerNorm...) is composed
from these in `autograd.tensor`, `autograd.functions`, `autograd.functional` and
`tinygrad_lm.functional`. The numpy algorithms some forwards call (a BLAS-backed sum, a sorted
segment sum, erf) are in `autograd.kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autograd import kernels
from autograd.kernels import broadcast_axes, inverse_permutation, kept_shape
from autograd.primitive import Primitive

# ---------------------------------------------------------------------------------------------------
# Helpers the vjps share (each works on arrays and on Tensors alike)
# ---------------------------------------------------------------------------------------------------


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` over the axes that broadcasting added or stretched, giving it ``shape``.

    If ``x`` of shape ``shape`` was broadcast to ``g.shape``, every copy of an entry received
    part of the gradient, so the entry's gradient is their sum.
    """
    if g.shape == shape:
        return g
    axes = broadcast_axes(g.shape, shape)
    summed = reduce_sum(g, axis=axes, keepdims=False) if axes else g
    return summed.reshape(shape) if summed.shape != shape else summed


def _expand_reduced(g: Any, shape: tuple[int, ...], axis: tuple[int, ...], keepdims: bool) -> Any:
    """Give a reduction's gradient back its reduced axes (as size 1), then broadcast it to ``shape``:
    every entry that was summed receives the gradient of the sum."""
    if not keepdims:
        g = g.reshape(kept_shape(shape, axis))
    return expand(g, shape=shape)


def _matrix_transpose(t: Any) -> Any:
    """Swap the last two axes (a view): ``swapaxes`` is numpy's method and the Tensor's alike."""
    return t.swapaxes(-1, -2)


def value_of(v: Any) -> np.ndarray | None:
    """The array behind a vjp argument: itself, a Tensor's data, or None for a shape-only `Node`.

    For what decides a formula rather than flows through it (where ties are, which entries are
    zero): such masks are constants, with no gradient of their own."""
    if isinstance(v, np.ndarray):
        return v
    return getattr(v, "data", None) if not hasattr(v, "op_name") else None


def _explain_broadcast(op: str, error: Exception, *tensors: Any, **attrs: Any) -> str | None:
    try:
        np.broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        shapes = " and ".join(str(tuple(t.shape)) for t in tensors)
        return f"{op}: shapes {shapes} do not broadcast"
    return None


# ---------------------------------------------------------------------------------------------------
# Elementwise, one input
# ---------------------------------------------------------------------------------------------------

neg = Primitive("neg", np.negative, vjps=(lambda g, out, x: -g,), save=(), reuses_g=True)
exp = Primitive("exp", np.exp, vjps=(lambda g, out, x: g * out,), save=("out",), reuses_g=True)  # (e^x)' = e^x
log = Primitive("log", np.log, vjps=(lambda g, out, x: g / x,), save=(0,), reuses_g=True)  # (log x)' = 1/x
sqrt = Primitive(  # (sqrt x)' = 1 / (2 sqrt x)
    "sqrt", np.sqrt, vjps=(lambda g, out, x: g / (out * 2.0),), save=("out",), reuses_g=True
)  # fmt: skip
square = Primitive("square", np.square, vjps=(lambda g, out, x: g * x * 2.0,), save=(0,), reuses_g=True)  # 2x
tanh = Primitive(  # tanh' = 1 - tanh^2
    "tanh", np.tanh, vjps=(lambda g, out, x: g * (1.0 - out * out),), save=("out",), reuses_g=True
)  # fmt: skip


def _rsqrt(x: np.ndarray) -> np.ndarray:
    """1 / sqrt(x), the reciprocal taken in place on sqrt's result."""
    root = np.asarray(np.sqrt(x))  # an array even for 0-d input (numpy returns a scalar there)
    return np.divide(1.0, root, out=root)


rsqrt = Primitive(  # y = x^(-1/2):  dy/dx = -1/2 x^(-3/2) = -1/2 y^3
    "rsqrt", _rsqrt, vjps=(lambda g, out, x: g * (out * out * out) * -0.5,), save=("out",), reuses_g=True
)  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) in place on one temporary; e^-x may overflow to inf, giving exactly 0."""
    e = np.asarray(np.negative(x, dtype=x.dtype if x.dtype.kind == "f" else np.float64))  # fresh, also 0-d
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1.0
    np.divide(1.0, e, out=e)
    return e


sigmoid = Primitive(  # s' = s (1 - s)
    "sigmoid", _sigmoid, vjps=(lambda g, out, x: g * (out * (1.0 - out)),), save=("out",), reuses_g=True
)  # fmt: skip
relu = Primitive(
    "relu", lambda x: np.maximum(x, 0), vjps=(lambda g, out, x: g * (out > 0),), save=("out",), reuses_g=True
)
absolute = Primitive("abs", np.abs, vjps=(lambda g, out, x: g * sign(x),), save=(0,), reuses_g=True)
cast = Primitive(
    "cast", lambda x, dtype: x.astype(dtype), vjps=(lambda g, out, x, dtype: cast(g, dtype=x.dtype),), save=()
)  # fmt: skip
sin = Primitive("sin", np.sin, vjps=(lambda g, out, x: g * cos(x),), save=(0,), reuses_g=True)  # sin' = cos
cos = Primitive("cos", np.cos, vjps=(lambda g, out, x: -g * sin(x),), save=(0,), reuses_g=True)  # cos' = -sin
log2 = Primitive(  # (log2 x)' = 1 / (x ln 2)
    "log2", np.log2, vjps=(lambda g, out, x: g / (x * math.log(2.0)),), save=(0,), reuses_g=True
)  # fmt: skip
expm1 = Primitive(  # e^x - 1, exact for tiny x (where exp(x) - 1 cancels):  (e^x - 1)' = e^x = out + 1
    "expm1", np.expm1, vjps=(lambda g, out, x: g * (out + 1.0),), save=("out",), reuses_g=True
)  # fmt: skip
erf = Primitive(  # erf x = 2/sqrt(pi) * integral of e^(-t^2) from 0 to x:  erf' = 2/sqrt(pi) e^(-x^2)
    "erf", kernels.erf, vjps=(lambda g, out, x: g * (exp(-square(x)) * (2.0 / math.sqrt(math.pi))),), save=(0,),
    reuses_g=True,
)  # fmt: skip
softplus = Primitive(  # log(1 + e^x), computed as logaddexp(0, x), which never overflows:  softplus' = sigmoid
    "softplus", lambda x: np.logaddexp(0.0, x), vjps=(lambda g, out, x: g * sigmoid(x),), save=(0,), reuses_g=True
)  # fmt: skip

# Piecewise constant: the derivative is 0 wherever it exists, and is taken to be 0 at the jumps too, as
# torch does, so these results require grad (when their input does) and pass back exact zeros.
zero_gradient = Primitive("zero_gradient", lambda g: np.zeros(g.shape, g.dtype))  # a constant: no vjp itself


def _zero_vjp(g: Any, out: Any, x: Any, **attrs: Any) -> Any:
    return zero_gradient(g)


sign = Primitive("sign", np.sign, vjps=(_zero_vjp,), save=())
floor = Primitive("floor", np.floor, vjps=(_zero_vjp,), save=())
ceil = Primitive("ceil", np.ceil, vjps=(_zero_vjp,), save=())
round_ = Primitive(  # halves to even, as numpy and torch
    "round", lambda x, decimals: np.round(x, decimals), vjps=(_zero_vjp,), save=()
)  # fmt: skip

# Boolean results: no gradient.
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
    name: str, forward: Any, vjp_x: Any, vjp_y: Any, save: Sequence[str | int] | Mapping[int, Sequence[str | int]],
    reuses_g: bool = False,
) -> Primitive:  # fmt: skip
    return Primitive(
        name, forward, vjps=(vjp_x, vjp_y), save=save, broadcasts=True, explain=_explain_broadcast, reuses_g=reuses_g
    )


add = _binary("add", np.add, lambda g, out, x, y: g, lambda g, out, x, y: g, save=())
sub = _binary(  # dy = -g, negated after summing out broadcast axes (a pass over y's shape, not g's)
    "sub", np.subtract, lambda g, out, x, y: g, lambda g, out, x, y: -unbroadcast(g, y.shape), save=(), reuses_g=True
)
mul = _binary(
    "mul", np.multiply, lambda g, out, x, y: g * y, lambda g, out, x, y: g * x, save={0: (1,), 1: (0,)}, reuses_g=True
)
div = _binary(  # out = x / y:  dx = g / y,  dy = -g x / y^2 = -g out / y
    "div", np.divide, lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y, save={0: (1,), 1: ("out", 1)},
    reuses_g=True,
)


def _pow_vjp_x(g: Any, out: Any, x: Any, y: Any) -> Any:
    """dx = g y x^(y-1), and 0 where y == 0 (x^0 is constant, even at x == 0), as torch."""
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = g * y * x ** (y - 1.0)
    zero_power = value_of(y) == 0
    return where(zero_power, np.zeros((), grad.dtype), grad) if zero_power.any() else grad


def _pow_vjp_y(g: Any, out: Any, x: Any, y: Any) -> Any:
    """dy = g out log(x), and 0 where x == 0 and y >= 0 (out is 0 or 1 there), as torch."""
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = g * out * log(x)
    flat = (value_of(x) == 0) & (value_of(y) >= 0)
    return where(flat, np.zeros((), grad.dtype), grad) if flat.any() else grad


power = _binary("pow", np.power, _pow_vjp_x, _pow_vjp_y, save={0: (0, 1), 1: ("out", 0, 1)})  # out = x^y


def _clip_vjp_x(g: Any, out: Any, x: Any, low: Any, high: Any) -> Any:
    """Inside [low, high], bounds included (as torch's clamp), out is x: x gets g; outside, 0."""
    a = value_of(x)
    return where((a >= value_of(low)) & (a <= value_of(high)), g, np.zeros((), g.dtype))


def _clip_vjp_low(g: Any, out: Any, x: Any, low: Any, high: Any) -> Any:
    """Below the range out is low (unless low > high, when high wins everywhere)."""
    a, lo = value_of(x), value_of(low)
    return where((a < lo) & (lo < value_of(high)), g, np.zeros((), g.dtype))


def _clip_vjp_high(g: Any, out: Any, x: Any, low: Any, high: Any) -> Any:
    """Above the range out is high, and everywhere when high < low (numpy's and torch's clip give high)."""
    a, hi = value_of(x), value_of(high)
    return where((a > hi) | (hi < value_of(low)), g, np.zeros((), g.dtype))


clip = Primitive(  # out = min(max(x, low), high): the gradient goes to whichever of the three out is
    "clip", np.clip, vjps=(_clip_vjp_x, _clip_vjp_low, _clip_vjp_high), save=(0, 1, 2), broadcasts=True,
    explain=_explain_broadcast,
)  # fmt: skip


def _tie_weight(x: Any, y: Any) -> np.ndarray:
    """1 where x wins, 0 where y wins, 1/2 at ties (the gradient is shared, as in torch)."""
    a, b = value_of(x), value_of(y)
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)).astype(a.dtype)


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

where = Primitive(  # out = cond ? x : y: the gradient goes to whichever was chosen
    "where", np.where,
    vjps=(
        None,
        lambda g, out, c, x, y: where(c, g, np.zeros((), g.dtype)),
        lambda g, out, c, x, y: where(c, np.zeros((), g.dtype), g),
    ),
    save=(0,), broadcasts=True, explain=_explain_broadcast,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Matrix product: (..., n, k) @ (..., k, m) -> (..., n, m), batch axes broadcast
# ---------------------------------------------------------------------------------------------------


def _matmul_vjp_x(g: Any, out: Any, x: Any, y: Any) -> Any:
    return _matmul(g, _matrix_transpose(y))  # dx = g y^T


def _matmul_vjp_y(g: Any, out: Any, x: Any, y: Any) -> Any:
    if y.ndim == 2 and x.ndim >= 2:  # a shared weight: one (k, rows) @ (rows, m) product, no batch sum
        n = math.prod(x.shape[:-1])  # the number of rows (explicit: -1 fails for empty batches)
        x2, g2 = x.reshape(n, x.shape[-1]), g.reshape(n, g.shape[-1])
        if kernels.is_transposed(value_of(y)):  # y = W.T: make dy^T = g^T x, in W's own layout
            return _matrix_transpose(_matmul(_matrix_transpose(g2), x2))
        return _matmul(_matrix_transpose(x2), g2)
    return _matmul(_matrix_transpose(x), g)  # dy = x^T g


def _explain_matmul(op: str, error: Exception, x: Any, y: Any) -> str:
    if x.shape[-1] != y.shape[-2]:
        return f"matmul: shapes {x.shape} and {y.shape} do not align ({x.shape[-1]} != {y.shape[-2]})"
    return f"matmul: batch shapes {x.shape[:-2]} and {y.shape[:-2]} do not broadcast (shapes {x.shape} and {y.shape})"


_matmul = Primitive(
    "matmul", kernels.matmul, vjps=(_matmul_vjp_x, _matmul_vjp_y), save={0: (1,), 1: (0,)}, broadcasts=True,
    explain=_explain_matmul,
)  # fmt: skip


def matmul(x: Any, y: Any) -> Any:
    """numpy's ``@``: 1-D operands are promoted to a row or a column and the axis dropped again."""
    if x.ndim >= 2 and y.ndim >= 2:
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
# Reductions (axis: a sorted tuple of non-negative ints, from `arguments.normalize_axes`)
# ---------------------------------------------------------------------------------------------------

reduce_sum = Primitive(  # every entry that was summed gets the gradient of the sum
    "sum", kernels.sum_array,
    vjps=(lambda g, out, x, axis, keepdims: _expand_reduced(g, x.shape, axis, keepdims),), save=(),
)  # fmt: skip


def reduced_count(shape: tuple[int, ...], axis: tuple[int, ...]) -> int:
    """How many entries of ``shape`` each sum over ``axis`` adds up."""
    return math.prod([shape[a] for a in axis])


def mean_scale(shape: tuple[int, ...], axis: tuple[int, ...]) -> float:
    """``1 / n`` for a mean of ``n`` entries (NaN for none, as numpy's mean of nothing)."""
    count = reduced_count(shape, axis)
    return 1.0 / count if count else math.nan


def _mean(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """The sum over ``axis`` divided by the count, scaled in place (in the sum's own dtype; float16
    is summed and scaled in float32, then rounded once, as numpy's mean does: its sum may not fit)."""
    if x.dtype == kernels.FLOAT16:
        total = np.asarray(kernels.accumulated_sum(x, axis, keepdims))
        return np.multiply(total, mean_scale(x.shape, axis), out=total).astype(kernels.FLOAT16)
    total = np.asarray(kernels.sum_array(x, axis, keepdims))  # an array even when numpy returns a scalar
    return np.multiply(total, mean_scale(x.shape, axis), out=total)


reduce_mean = Primitive(  # y = sum(x) / n:  every entry of x gets g / n
    "mean", _mean,
    vjps=(lambda g, out, x, axis, keepdims: _expand_reduced(g * mean_scale(x.shape, axis), x.shape, axis, keepdims),),
    save=(),
)  # fmt: skip


def _max_vjp(g: Any, out: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    """The gradient goes to the entries equal to the result; ties share it equally."""
    a, best = value_of(x), value_of(out)
    winners = a == (best if keepdims else np.expand_dims(best, axis))
    share = (winners / winners.sum(axis=axis, keepdims=True)).astype(a.dtype, copy=False)
    return _expand_reduced(g, x.shape, axis, keepdims) * share


reduce_max = Primitive(
    "max", lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims), vjps=(_max_vjp,), save=("out", 0)
)  # fmt: skip
reduce_min = Primitive(  # the same vjp: the winners are the entries equal to the output
    "min", lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims), vjps=(_max_vjp,), save=("out", 0)
)  # fmt: skip


def _with_kept_axes(t: Any, shape: tuple[int, ...], axis: tuple[int, ...], keepdims: bool) -> Any:
    """A reduction's result with its reduced axes back as size 1, so it broadcasts against its input."""
    return t if keepdims else t.reshape(kept_shape(shape, axis))


def _prod_vjp(g: Any, out: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    """d(prod x)/dx_i is the product of the other entries of x_i's slice. With no 0 in x that is
    out / x_i; with zeros, out / x_i would be 0/0, so it is computed as the product it is."""
    if (value_of(x) == 0).any():
        others = _product_of_others(x, axis)
    else:
        others = _with_kept_axes(out, x.shape, axis, keepdims) / x
    return _expand_reduced(g, x.shape, axis, keepdims) * others


def _product_of_others(x: Any, axis: tuple[int, ...]) -> Any:
    """For each entry, the product of the other entries of its slice along ``axis``: the product of the
    slice with that entry replaced by 1. The reduced axes are moved last and merged into one of length
    n; each slice is repeated n times with entry i set to 1 in repeat i, (..., n, n), and multiplied out
    over its last axis. A product again, so its own vjp is right at zeros too (higher derivatives)."""
    order = tuple(a for a in range(x.ndim) if a not in axis) + tuple(axis)
    moved = permute(x, axes=order)
    lead, n = moved.shape[: x.ndim - len(axis)], reduced_count(x.shape, axis)
    rows = moved.reshape((*lead, 1, n))
    replaced = where(np.eye(n, dtype=bool), np.ones((), x.dtype), rows)  # (..., n, n)
    others = reduce_prod(replaced, axis=(len(lead) + 1,), keepdims=False)  # (..., n)
    return permute(others.reshape(moved.shape), axes=inverse_permutation(order))


reduce_prod = Primitive(
    "prod", lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims), vjps=(_prod_vjp,), save=("out", 0)
)  # fmt: skip


def _logsumexp(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """log sum e^x = m + log sum e^(x - m) for m the max (0 where it is not finite, as for an empty
    axis or one of -inf only): no e^x overflows. Integers and bools give float64, as np.exp."""
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    shift = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    with np.errstate(divide="ignore"):  # log 0 = -inf: the sum of nothing, or of e^-inf only
        out = np.log(kernels.sum_array(np.exp(x - shift), axis, keepdims=True)) + shift
    return out if keepdims else out.reshape([n for i, n in enumerate(out.shape) if i not in axis])


logsumexp = Primitive(  # y = log sum e^x:  dx = g e^x / sum e^x = g e^(x - y), the softmax of x
    "logsumexp", _logsumexp,
    vjps=(lambda g, out, x, axis, keepdims: (
        _expand_reduced(g, x.shape, axis, keepdims) * exp(x - _with_kept_axes(out, x.shape, axis, keepdims))
    ),),
    save=("out", 0),
)  # fmt: skip

# Positions, not values: no gradient.
argmax = Primitive("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims))
argmin = Primitive("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """e^(x - max) / sum e^(x - max), in place on one temporary (the shift keeps exp from overflowing).

    Integers and bools give float64 probabilities, as ``np.exp`` (and scipy's softmax) would.
    """
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    e = x - x.max(axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= kernels.sum_array(e, axis, keepdims=True)
    return e


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """(x - max) - log sum e^(x - max) (float64 for integers and bools)."""
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(kernels.sum_array(np.exp(shifted), axis, keepdims=True))


softmax = Primitive(  # y = softmax(x):  dx = y (g - sum(g y))
    "softmax", _softmax,
    vjps=(lambda g, out, x, axis: out * (g - reduce_sum(g * out, axis=(axis,), keepdims=True)),), save=("out",),
)  # fmt: skip
log_softmax = Primitive(  # y = log_softmax(x):  dx = g - e^y sum(g)
    "log_softmax", _log_softmax,
    vjps=(lambda g, out, x, axis: g - exp(out) * reduce_sum(g, axis=(axis,), keepdims=True),), save=("out",),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Scans (axis: one non-negative int)
# ---------------------------------------------------------------------------------------------------

cumsum = Primitive(  # y_j = x_0 + ... + x_j: x_i is in every y_j with j >= i, so dx_i = g_i + ... + g_last
    "cumsum", lambda x, axis: np.cumsum(x, axis=axis),
    vjps=(lambda g, out, x, axis: flip(cumsum(flip(g, axis=(axis,)), axis=axis), axis=(axis,)),), save=(),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Shapes: views of the same data, whose vjps undo the view
# ---------------------------------------------------------------------------------------------------


def _explain_reshape(op: str, error: Exception, x: Any, shape: tuple[int, ...]) -> str:
    return f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}"


reshape = Primitive(
    "reshape", lambda x, shape: x.reshape(shape),
    vjps=(lambda g, out, x, shape: g.reshape(x.shape),), save=(), explain=_explain_reshape,
)  # fmt: skip
permute = Primitive(
    "permute", lambda x, axes: x.transpose(axes),
    vjps=(lambda g, out, x, axes: permute(g, axes=inverse_permutation(tuple(axes))),), save=(),
)  # fmt: skip
expand = Primitive(
    "expand", kernels.broadcast_view, vjps=(lambda g, out, x, shape: unbroadcast(g, x.shape),), save=()
)  # fmt: skip


flip = Primitive(  # reversing is undone by reversing again
    "flip", lambda x, axis: np.flip(x, axis), vjps=(lambda g, out, x, axis: flip(g, axis=axis),), save=()
)  # fmt: skip


def _pad_vjp(g: Any, out: Any, x: Any, widths: tuple[tuple[int, int], ...], value: Any) -> Any:
    """The padding is constant (no gradient); x's entries get theirs back: the window of g they went to."""
    return getitem(g, index=tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape)))


def _pad(x: np.ndarray, widths: tuple[tuple[int, int], ...], value: Any) -> np.ndarray:
    """``x`` with ``widths[i] = (before, after)`` entries of ``value`` added on either side of axis i."""
    if not widths:  # a 0-d tensor has no side to pad (numpy's pad has no way to say so)
        return x.copy()
    return np.pad(x, widths, mode="constant", constant_values=value)


pad = Primitive("pad", _pad, vjps=(_pad_vjp,), save=())  # the gradient of the padding is 0


def _concatenate_vjp(i: int, g: Any, out: Any, *inputs: Any, axis: int) -> Any:
    """Input ``i``'s gradient is its own window of ``g`` along ``axis``."""
    start = sum(x.shape[axis] for x in inputs[:i])
    window = (slice(None),) * axis + (slice(start, start + inputs[i].shape[axis]),)
    return getitem(g, index=window)


def _explain_concatenate(op: str, error: Exception, *tensors: Any, axis: int) -> str:
    shapes = ", ".join(str(t.shape) for t in tensors)
    return f"concatenate: shapes {shapes} must match except along axis {axis}"


concatenate = Primitive(
    "concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis),
    vjps=_concatenate_vjp, save=(), explain=_explain_concatenate,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Indexing: x[index] and its transpose, scattering a gradient back (each is the other's vjp)
# ---------------------------------------------------------------------------------------------------


def _explain_getitem(op: str, error: Exception, x: Any, index: tuple) -> str:
    return f"getitem: index {_show_index(index)} is invalid for a tensor of shape {x.shape}: {error}"


def _show_index(index: tuple) -> str:
    parts = [f"array{i.shape}" if isinstance(i, np.ndarray) and i.size > 8 else repr(i) for i in index]
    return "[" + ", ".join(parts) + "]"


getitem = Primitive(  # the picked entries get their gradient back; the rest get 0
    "getitem", lambda x, index: x[index],
    vjps=(lambda g, out, x, index: scatter_add(g, shape=x.shape, index=index),), save=(), explain=_explain_getitem,
)  # fmt: skip
scatter_add = Primitive(
    "scatter_add", kernels.scatter_add, vjps=(lambda g, out, x, shape, index: getitem(g, index=index),), save=()
)  # fmt: skip


for _primitive in [value for value in list(globals().values()) if isinstance(value, Primitive)]:
    _primitive.builtin = True
