"""Making tensors: zeros, ones, a constant, a range, an identity matrix, normal noise, and each ``*_like``.

    ag.zeros(2, 3)                              # or ag.zeros((2, 3)): float32, as Tensor([...]) makes
    ag.randn(4, 4, seed=0, requires_grad=True)  # reproducible: the same seed, the same numbers
    ag.arange(5)                                # int64 [0 1 2 3 4]: integer ranges stay integers
    ag.ones_like(x)                             # x's shape and dtype

The default dtype is the engine's rule for Python numbers, float32 (``Tensor([1.0])``); ``dtype=``
chooses another. Only floating-point tensors can require grad: ``requires_grad=True`` with an integer
dtype raises the same error as ``Tensor(..., requires_grad=True)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autograd import arguments
from autograd.tensor import DEFAULT_DTYPE, Tensor, _dtype_argument, as_tensor


def _shape(op: str, shape: tuple) -> tuple[int, ...]:
    """``f(2, 3)`` or ``f((2, 3))`` as ``(2, 3)``, each size an int of at least 0."""
    sizes = arguments.shape_argument(op, shape)
    for n in sizes:
        arguments.count_argument(op, "a size", n)
    return sizes


def _dtype(op: str, dtype: Any) -> np.dtype:
    return DEFAULT_DTYPE if dtype is None else _dtype_argument(dtype, op)


def zeros(*shape: int | tuple[int, ...], dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return Tensor(np.zeros(_shape("zeros", shape), _dtype("zeros", dtype)), requires_grad=requires_grad)


def ones(*shape: int | tuple[int, ...], dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``."""
    return Tensor(np.ones(_shape("ones", shape), _dtype("ones", dtype)), requires_grad=requires_grad)


def full(shape: int | tuple[int, ...], fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``shape`` with every entry ``fill_value``. Its dtype is ``Tensor(fill_value)``'s: a
    Python number gives float32 (also an int, unlike torch's ``full``), a numpy scalar keeps its dtype."""
    try:
        value = Tensor(fill_value, dtype=dtype)  # the engine's rule for the value's dtype, and its checks
    except TypeError as error:
        raise TypeError(f"full: fill_value {fill_value!r}: {error}") from None
    if value.ndim != 0:
        raise ValueError(f"full: fill_value must be a single number, got shape {value.shape}")
    sizes = _shape("full", shape if isinstance(shape, (tuple, list)) else (shape,))
    return Tensor(np.full(sizes, value.data, value.dtype), requires_grad=requires_grad)


def arange(
    start: float, stop: float | None = None, step: float = 1, dtype: Any = None, requires_grad: bool = False
) -> Tensor:
    """``start, start + step, ...`` up to ``stop`` (excluded), as numpy's ``arange``; ``arange(n)`` is
    ``0 ... n-1``. With only integers it is int64 (so it never requires grad); with a float among them,
    float32. Float ranges are computed in float64 and then converted, so their length and values are
    numpy's float64 ones, rounded."""
    if stop is None:
        start, stop = 0, start
    for name, value in (("start", start), ("stop", stop), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"arange: {name} must be a number, got {type(value).__name__} {value!r}")
    if step == 0:
        raise ValueError("arange: step must not be 0")
    integers = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
    if dtype is None:
        dtype = np.int64 if integers else DEFAULT_DTYPE
    dtype = _dtype_argument(dtype, "arange")
    values = np.arange(start, stop, step, dtype=np.int64 if integers else np.float64)
    return Tensor(values.astype(dtype, copy=False), requires_grad=requires_grad)


def eye(n: int, m: int | None = None, k: int = 0, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """The ``n x m`` identity matrix (``m = n`` by default): ones on diagonal ``k`` (0 the main one,
    ``k > 0`` above it), zeros elsewhere."""
    n = arguments.count_argument("eye", "n", n)
    m = n if m is None else arguments.count_argument("eye", "m", m)
    k = arguments.count_argument("eye", "k", k, minimum=None)
    return Tensor(np.eye(n, m, k, dtype=_dtype("eye", dtype)), requires_grad=requires_grad)


def randn(
    *shape: int | tuple[int, ...],
    dtype: Any = None,
    requires_grad: bool = False,
    seed: int | np.random.Generator | None = None,
) -> Tensor:
    """Standard normal samples (mean 0, variance 1). ``seed``: an int (the same seed gives the same
    numbers), a ``np.random.Generator`` to draw from (advancing it), or None for fresh entropy. The
    numbers are drawn in float64 and rounded to ``dtype``, so a seed gives the same values in any dtype."""
    return _normal("randn", _shape("randn", shape), _dtype("randn", dtype), requires_grad, seed)


def _normal(op: str, shape: tuple[int, ...], dtype: np.dtype, requires_grad: bool, seed: Any) -> Tensor:
    if dtype.kind != "f":
        raise TypeError(f"{op}: normal samples need a float dtype, got {dtype}")
    if seed is not None and not isinstance(seed, np.random.Generator):
        seed = arguments.count_argument(op, "seed", seed)
    rng = np.random.default_rng(seed)  # (a Generator it is given is returned as it is)
    samples = np.asarray(rng.standard_normal(shape))
    return Tensor(samples.astype(dtype, copy=False), requires_grad=requires_grad)


def _like(op: str, x: Any, dtype: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape of ``x`` (a tensor or an array) and ``dtype``, or else its own dtype."""
    template = as_tensor(x, f"{op}: x")
    return template.shape, template.dtype if dtype is None else _dtype_argument(dtype, op)


def zeros_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``x``'s shape and dtype (or ``dtype``)."""
    shape, dtype = _like("zeros_like", x, dtype)
    return Tensor(np.zeros(shape, dtype), requires_grad=requires_grad)


def ones_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of ``x``'s shape and dtype (or ``dtype``)."""
    shape, dtype = _like("ones_like", x, dtype)
    return Tensor(np.ones(shape, dtype), requires_grad=requires_grad)


def full_like(x: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere, in ``x``'s shape and dtype (or ``dtype``); numpy converts the value
    to that dtype (``full_like(int_tensor, 2.5)`` holds 2s)."""
    shape, dtype = _like("full_like", x, dtype)
    value = as_tensor(fill_value, "full_like: fill_value")
    if value.ndim != 0:
        raise ValueError(f"full_like: fill_value must be a single number, got shape {value.shape}")
    return Tensor(np.full(shape, value.data, dtype), requires_grad=requires_grad)


def randn_like(
    x: Any, dtype: Any = None, requires_grad: bool = False, seed: int | np.random.Generator | None = None
) -> Tensor:
    """Standard normal samples of ``x``'s shape and dtype (or ``dtype``); ``seed`` as in `randn`."""
    shape, dtype = _like("randn_like", x, dtype)
    return _normal("randn_like", shape, dtype, requires_grad, seed)
