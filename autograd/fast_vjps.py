"""First-order vjps in plain numpy: the backward pass's fast path.

Every vjp in `autograd.ops` is written with engine ops, so it can be differentiated again
(``create_graph=True``). A plain ``backward()`` needs no graph of its gradient, yet running those
vjps still wraps every intermediate in a Tensor and goes through a primitive call per op (for a
2-layer GPT on a batch of 2 tokens, where arithmetic is nothing: 3.9 ms of bookkeeping per
backward, 2.7 ms on arrays). The hottest primitives therefore also carry the same formulas on
arrays, here, which `backward` uses when it records nothing (``create_graph`` is off and
`detect_anomaly` is not on, whose messages name the op inside a vjp).

Each formula is the one beside its primitive in `autograd.ops`, operation for operation, so both
paths give bit-identical gradients; ``tests/test_fast_vjps.py`` checks exactly that for every
primitive listed here. Inputs a primitive did not save arrive as shape-only `Node`s (``.shape``,
``.dtype``), as they do for its engine vjps.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from autograd import ops


def unbroadcast_array(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`ops.unbroadcast` on an array: sum ``g`` over the axes broadcasting added or stretched."""
    if g.shape == shape:
        return g
    axes = ops.broadcast_axes(g.shape, shape)
    summed = ops.sum_array(g, axes) if axes else g
    return summed.reshape(shape) if summed.shape != shape else summed


def broadcast_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``np.broadcast_to(a, shape)`` for ``a`` of the same number of dims (read-only, no copy),
    built straight from strides: a stretched axis gets stride 0. About 4x cheaper than
    `np.broadcast_to`, whose Python-level checks cost more than the rest of a small vjp."""
    if a.ndim != len(shape) or not a.flags.c_contiguous or a.size == 0 or any(
        n != m and n != 1 for n, m in zip(a.shape, shape)
    ):
        return np.broadcast_to(a, shape)  # (which also says what is wrong with a shape that does not fit)
    strides = tuple(0 if n != m else stride for n, m, stride in zip(a.shape, shape, a.strides))
    view = np.ndarray(shape, a.dtype, buffer=a, strides=strides)
    view.flags.writeable = False
    return view


def _expand_reduced(g: np.ndarray, shape: tuple[int, ...], axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    if not keepdims:
        g = g.reshape(ops.kept_shape(shape, axis))
    return broadcast_view(g, shape)


def _matrix_transpose(a: np.ndarray) -> np.ndarray:
    return a.swapaxes(-1, -2)


def _matmul_dx(g: np.ndarray, out: Any, x: Any, y: np.ndarray) -> np.ndarray:
    return ops._matmul_forward(g, _matrix_transpose(y))  # dx = g y^T


def _matmul_dy(g: np.ndarray, out: Any, x: np.ndarray, y: Any) -> np.ndarray:
    if y.ndim == 2 and x.ndim >= 2:  # a shared weight: one (k, rows) @ (rows, m) product
        n = math.prod(x.shape[:-1])
        x2, g2 = x.reshape(n, x.shape[-1]), g.reshape(n, g.shape[-1])
        if ops.is_transposed(y):  # y = W.T: W's gradient comes out in W's layout, no strided copy later
            return ops._matmul_forward(g2.T, x2).T
        return ops._matmul_forward(x2.T, g2)
    return ops._matmul_forward(_matrix_transpose(x), g)  # dy = x^T g


def _pow_dx(g: np.ndarray, out: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = g * y * x ** (y - 1.0)
    if y.ndim == 0 and y != 0:  # one nonzero exponent (x ** -0.5): nothing to mend
        return grad
    zero_power = y == 0
    return np.where(zero_power, np.zeros((), dtype=grad.dtype), grad) if zero_power.any() else grad


def _pow_dy(g: np.ndarray, out: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = g * out * np.log(x)
    flat = (x == 0) & (y >= 0)
    return np.where(flat, np.zeros((), dtype=grad.dtype), grad) if flat.any() else grad


# Temporaries are reused in place where every array involved has one dtype: a ufunc writing into one
# of its own inputs gives the same numbers and skips a fresh array (about half a pass of memory
# traffic). Products are commutative in IEEE arithmetic, so ``t *= g`` equals ``g * t`` bit for bit.


def _same_dtype(*arrays: np.ndarray) -> bool:
    """One dtype throughout, and not 0-d (numpy returns scalars there, which cannot be written into)."""
    return arrays[0].ndim > 0 and all(a.dtype == arrays[0].dtype for a in arrays)


def _sigmoid_dx(g: np.ndarray, out: np.ndarray, x: Any) -> np.ndarray:
    if not _same_dtype(g, out):
        return g * (out * (1.0 - out))
    t = np.subtract(1.0, out, dtype=out.dtype)
    t *= out
    t *= g
    return t


def _tanh_dx(g: np.ndarray, out: np.ndarray, x: Any) -> np.ndarray:
    if not _same_dtype(g, out):
        return g * (1.0 - out * out)
    t = out * out
    np.subtract(1.0, t, out=t)
    t *= g
    return t


def _softmax_dx(g: np.ndarray, out: np.ndarray, x: Any, axis: int) -> np.ndarray:
    if not _same_dtype(g, out):
        return out * (g - ops.sum_array(g * out, axis, keepdims=True))
    t = g * out
    np.subtract(g, ops.sum_array(t, axis, keepdims=True), out=t)
    t *= out
    return t


def _log_softmax_dx(g: np.ndarray, out: np.ndarray, x: Any, axis: int) -> np.ndarray:
    if not _same_dtype(g, out):
        return g - np.exp(out) * ops.sum_array(g, axis, keepdims=True)
    e = np.exp(out)
    e *= ops.sum_array(g, axis, keepdims=True)
    np.subtract(g, e, out=e)
    return e


def _rsqrt_dx(g: np.ndarray, out: np.ndarray, x: Any) -> np.ndarray:
    if not _same_dtype(g, out):
        return g * (out * out * out) * -0.5
    t = out * out
    t *= out
    t *= g
    t *= -0.5
    return t


def _mean_dx(g: np.ndarray, out: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    return _expand_reduced(g * ops.mean_scale(x.shape, axis), x.shape, axis, keepdims)


def _square_dx(g: np.ndarray, out: Any, x: np.ndarray) -> np.ndarray:
    t = g * x
    if type(t) is not np.ndarray:  # 0-d: numpy gave a scalar
        return t * 2.0
    t *= 2.0
    return t


def _square_dx_into_g(g: np.ndarray, out: Any, x: np.ndarray) -> np.ndarray | None:
    t = _into_g(np.multiply, g, x)
    if t is not None:
        t *= 2.0
    return t


def _div_dy(g: np.ndarray, out: np.ndarray, x: Any, y: np.ndarray) -> np.ndarray:
    if out.shape != g.shape or not _same_dtype(g, out, y):
        return -g * out / y
    t = np.negative(g)
    t *= out
    t /= y
    return t


def _into_g(ufunc: np.ufunc, g: np.ndarray, other: np.ndarray) -> np.ndarray | None:
    """``ufunc(g, other)`` written into ``g`` (None if the result would need another dtype)."""
    if np.result_type(g, other) != g.dtype:
        return None
    return ufunc(g, other, out=g)


def _getitem_add_into(buffer: np.ndarray, g: np.ndarray, out: Any, x: Any, index: tuple) -> bool:
    """``buffer[index] += g``: the gradient of ``x[index]`` added straight into the gradient ``x``
    already has, instead of into a new array of zeros that is then added whole (for attention's
    q, k, v slices of one array: two passes of zeros and two whole additions saved per layer).
    Returns False (and the ordinary vjp runs) for an index that needs `np.add.at` (mixed kinds), or
    integer arrays into a gradient that is not in C order."""
    if ops._is_basic(index):
        target = buffer[index]
        if type(target) is np.ndarray:  # a view (else one element, picked whole: a scalar copy)
            _add_in_memory_order(target, g)
        else:
            buffer[index] += g
    elif buffer.flags.c_contiguous and all(isinstance(i, np.ndarray) for i in index):
        ops._segment_sum(buffer, index, g)  # adds through a reshaped view: needs C order
    else:
        return False
    return True


def _add_in_memory_order(target: np.ndarray, g: np.ndarray) -> None:
    """``target += g``, walking both in the order ``g`` lies in memory when neither is C-ordered
    (attention's ``dq``, a transposed view, into a strided slot of the q/k/v gradient): numpy
    would follow the target's axis order and read ``g`` in short scattered runs, about 1.4x
    slower at every size measured."""
    if not g.flags.c_contiguous and not target.flags.c_contiguous and g.ndim > 1:
        order = _memory_order(g.strides)
        target, g = target.transpose(order), g.transpose(order)
    np.add(target, g, out=target)


@functools.lru_cache(maxsize=256)
def _memory_order(strides: tuple[int, ...]) -> tuple[int, ...]:
    """The axes from the largest stride to the smallest: the transpose that is (nearly) C-ordered."""
    return tuple(sorted(range(len(strides)), key=lambda axis: -abs(strides[axis])))


FAST_VJPS: dict[ops.Primitive, tuple[Any, ...]] = {
    ops.neg: (lambda g, out, x: np.negative(g),),
    ops.exp: (lambda g, out, x: g * out,),
    ops.log: (lambda g, out, x: g / x,),
    ops.sqrt: (lambda g, out, x: g / (out * 2.0),),
    ops.tanh: (_tanh_dx,),
    ops.square: (_square_dx,),
    ops.sigmoid: (_sigmoid_dx,),
    ops.rsqrt: (_rsqrt_dx,),
    ops.add: (lambda g, out, x, y: g, lambda g, out, x, y: g),
    ops.sub: (lambda g, out, x, y: g, lambda g, out, x, y: np.negative(unbroadcast_array(g, y.shape))),
    ops.mul: (lambda g, out, x, y: g * y, lambda g, out, x, y: g * x),
    ops.div: (lambda g, out, x, y: g / y, _div_dy),
    ops.power: (_pow_dx, _pow_dy),
    ops._matmul: (_matmul_dx, _matmul_dy),
    ops.reduce_sum: (lambda g, out, x, axis, keepdims: _expand_reduced(g, x.shape, axis, keepdims),),
    ops.reduce_mean: (_mean_dx,),
    ops.softmax: (_softmax_dx,),
    ops.log_softmax: (_log_softmax_dx,),
    ops.reshape: (lambda g, out, x, shape: g.reshape(x.shape),),
    ops.permute: (lambda g, out, x, axes: g.transpose(ops.inverse_permutation(tuple(axes))),),
    ops.expand: (lambda g, out, x, shape: unbroadcast_array(g, x.shape),),
    ops.getitem: (lambda g, out, x, index: ops._scatter_add(g, x.shape, index),),
}

# The same vjps, computed into ``g`` itself: used for the last input a node serves when its gradient
# array is the walk's own and no earlier vjp of the node handed it on (see `_visit_arrays`).
FAST_VJPS_INTO_G: dict[ops.Primitive, tuple[Any, ...]] = {
    ops.mul: (lambda g, out, x, y: _into_g(np.multiply, g, y), lambda g, out, x, y: _into_g(np.multiply, g, x)),
    ops.exp: (lambda g, out, x: _into_g(np.multiply, g, out),),
    ops.square: (_square_dx_into_g,),
    ops.div: (lambda g, out, x, y: _into_g(np.divide, g, y), None),
    ops.neg: (lambda g, out, x: np.negative(g, out=g),),
    ops.sub: (None, lambda g, out, x, y: np.negative(g, out=g) if y.shape == g.shape else None),
}

# Ops whose gradient can be added into an existing gradient array in place (see `_visit_arrays`).
FAST_ADD_INTO: dict[ops.Primitive, Any] = {ops.getitem: _getitem_add_into}

# Ops whose fast vjps always return arrays of their own, or views of them (matmul reshapes its
# product): the walk may keep such a view as its own too.
FRESH_VIEWS = (ops._matmul,)

for _primitive, _vjps in FAST_VJPS.items():
    _primitive.fast_vjps = _vjps
for _primitive in FRESH_VIEWS:
    _primitive.fast_vjps_fresh = True
for _primitive, _into in FAST_VJPS_INTO_G.items():
    _primitive.fast_vjps_into_g = _into
for _primitive, _add_into in FAST_ADD_INTO.items():
    _primitive.fast_add_into = _add_into
