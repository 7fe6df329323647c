"""Hypothesis strategies for property-testing gradients (requires the `hypothesis` package).

    from hypothesis import given, strategies as st
    import autograd as ag
    from autograd.testing import arrays, broadcastable_shapes

    @given(broadcastable_shapes(2).flatmap(lambda s: st.tuples(arrays(s[0]), arrays(s[1]))))
    def test_mul(pair):
        assert ag.gradcheck(lambda a, b: a * b, pair)

Values default to float64 in [-3, 3], away from the places where common ops are not
differentiable or ill-conditioned; ``positive=True`` for log/sqrt, ``distinct=True`` for max.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autograd.tensor import Tensor


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Array shapes such as ``()``, ``(3,)``, ``(2, 1, 4)``."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(
    num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4
) -> st.SearchStrategy:
    """Tuples of ``num_shapes`` shapes that broadcast together (size-1 and missing axes included)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda result: result.input_shapes)


def arrays(
    shape: tuple[int, ...] | st.SearchStrategy,
    dtype: Any = np.float64,
    *,
    low: float = -3.0,
    high: float = 3.0,
    positive: bool = False,
    away_from_zero: float = 0.0,
    distinct: bool = False,
) -> st.SearchStrategy:
    """Well-conditioned float arrays for gradient checks.

    ``positive`` draws from [0.1, high] (domains of log, sqrt, non-integer powers);
    ``away_from_zero=d`` keeps ``|x| >= d`` (kinks of abs and relu); ``distinct`` makes entries
    differ by at least 0.01 (ties of max/min are not differentiable).
    """
    if positive:
        low = max(low, 0.1)
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    if away_from_zero:
        elements = elements.filter(lambda v: abs(v) >= away_from_zero)
    strategy = hnp.arrays(np.float64, shape, elements=elements)
    if distinct:
        strategy = strategy.map(_spread)
    return strategy.map(lambda a: a.astype(dtype))


def _spread(a: np.ndarray) -> np.ndarray:
    """Make all entries distinct (>= 0.01 apart) while keeping their order."""
    if a.size <= 1:
        return a
    ranks = np.argsort(np.argsort(a.reshape(-1), kind="stable"), kind="stable")
    return (a.reshape(-1) + 0.02 * ranks).reshape(a.shape)


def tensors(
    shape: tuple[int, ...] | st.SearchStrategy | None = None, *, requires_grad: bool = True, **array_options: Any
) -> st.SearchStrategy:
    """Tensors (float64 by default) of a given or generated shape; options as for `arrays`."""
    return arrays(shapes() if shape is None else shape, **array_options).map(
        lambda a: Tensor(a, requires_grad=requires_grad)
    )


def axes(ndim: int, *, allow_none: bool = True, allow_tuple: bool = True) -> st.SearchStrategy:
    """A valid ``axis=`` argument for a tensor with ``ndim`` dims: None, an int (maybe negative), or a
    tuple of distinct ints."""
    options = []
    if allow_none:
        options.append(st.none())
    if ndim > 0:
        options.append(st.integers(-ndim, ndim - 1))
        if allow_tuple:
            options.append(st.lists(st.integers(0, ndim - 1), unique=True, min_size=1, max_size=ndim).map(tuple))
    if not options:
        raise ValueError("axes: a 0-d tensor has no axis to choose and allow_none=False")
    return st.one_of(*options)


def shape_and_axis(**shape_options: Any) -> st.SearchStrategy:
    """``(shape, axis)`` pairs with ``axis`` valid for ``shape`` (None and tuples included)."""
    return shapes(**shape_options).flatmap(lambda s: st.tuples(st.just(s), axes(len(s))))


def shape_and_single_axis(min_dims: int = 1, **shape_options: Any) -> st.SearchStrategy:
    """``(shape, axis)`` with one int axis (for softmax, concatenate, ...)."""
    return shapes(min_dims=min_dims, **shape_options).flatmap(
        lambda s: st.tuples(st.just(s), st.integers(-len(s), len(s) - 1))
    )
