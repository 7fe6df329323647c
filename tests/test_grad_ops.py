"""Every primitive and public op: gradients against central differences, on generated inputs.

Shapes (with broadcasting and size-1 axes), axes and values come from `autograd.testing`; each
check runs in float64 through `ag.gradcheck`. Forward values are compared with numpy too.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import autograd as ag
from autograd.testing import arrays, broadcastable_shapes, shape_and_axis, shape_and_single_axis, shapes

# name -> (engine function, numpy reference, options for the generated values)
UNARY = {
    "neg": (lambda x: -x, np.negative, {}),
    "exp": (lambda x: x.exp(), np.exp, {}),
    "log": (lambda x: x.log(), np.log, {"positive": True}),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, {"positive": True}),
    "rsqrt": (lambda x: x.rsqrt(), lambda x: 1 / np.sqrt(x), {"positive": True}),
    "tanh": (lambda x: x.tanh(), np.tanh, {}),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), {}),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0), {"away_from_zero": 0.01}),
    "abs": (lambda x: x.abs(), np.abs, {"away_from_zero": 0.01}),
    "square": (lambda x: x**2, np.square, {}),
    "square_method": (lambda x: x.square(), np.square, {}),
    "pow_fractional": (lambda x: x**1.7, lambda x: x**1.7, {"positive": True}),
    "rpow": (lambda x: 2.0**x, lambda x: 2.0**x, {}),
    "add_number": (lambda x: 1.5 + x, lambda x: 1.5 + x, {}),
    "sub_number": (lambda x: 1.5 - x, lambda x: 1.5 - x, {}),
    "mul_number": (lambda x: x * -0.7, lambda x: x * -0.7, {}),
    "div_number": (lambda x: x / 3.0, lambda x: x / 3.0, {}),
    "rdiv_number": (lambda x: 2.0 / x, lambda x: 2.0 / x, {"away_from_zero": 0.3}),
    "softmax_last": (lambda x: x.softmax() if x.ndim else x.exp(), None, {}),
}


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary(name, data):
    fn, reference, options = UNARY[name]
    x = data.draw(arrays(shapes(), **options), label="x")
    if reference is not None:
        np.testing.assert_allclose(fn(ag.Tensor(x)).data, reference(x), rtol=1e-12, atol=1e-12)
    assert ag.gradcheck(fn, [x])


BINARY = {
    "add": (lambda x, y: x + y, np.add),
    "sub": (lambda x, y: x - y, np.subtract),
    "mul": (lambda x, y: x * y, np.multiply),
    "div": (lambda x, y: x / y, np.divide),
    "pow": (lambda x, y: x**y, np.power),
    "maximum": (ag.maximum, np.maximum),
    "minimum": (ag.minimum, np.minimum),
}


@pytest.mark.parametrize("name", BINARY)
@given(data=st.data())
def test_binary_broadcasting(name, data):
    fn, reference = BINARY[name]
    shape_x, shape_y = data.draw(broadcastable_shapes(2), label="shapes")
    x = data.draw(arrays(shape_x, positive=name == "pow"), label="x")
    y = data.draw(arrays(shape_y, away_from_zero=0.5 if name == "div" else 0.0), label="y")
    if name in ("maximum", "minimum"):  # no ties within the finite-difference step
        assume(np.all(np.abs(np.subtract(x, y)) > 1e-3))
    out = fn(ag.Tensor(x), ag.Tensor(y))
    np.testing.assert_allclose(out.data, reference(x, y), rtol=1e-12)
    assert out.shape == np.broadcast_shapes(shape_x, shape_y)
    assert ag.gradcheck(fn, [x, y])


@given(data=st.data())
def test_where(data):
    shape_c, shape_x, shape_y = data.draw(broadcastable_shapes(3), label="shapes")
    cond = data.draw(st.from_type(bool).flatmap(lambda _: arrays(shape_c)), label="cond") > 0
    x, y = data.draw(arrays(shape_x), label="x"), data.draw(arrays(shape_y), label="y")
    np.testing.assert_array_equal(ag.where(cond, ag.Tensor(x), ag.Tensor(y)).data, np.where(cond, x, y))
    assert ag.gradcheck(lambda a, b: ag.where(cond, a, b), [x, y])


MATMUL_SHAPES = st.sampled_from(
    [
        ((3, 4), (4, 2)),
        ((1, 1), (1, 1)),
        ((4,), (4, 3)),
        ((2, 4), (4,)),
        ((5,), (5,)),
        ((2, 3, 4), (4, 5)),  # a shared weight
        ((3, 4), (2, 4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),  # broadcast batch axes
        ((2, 3, 4), (2, 4, 1)),
    ]
)


@given(shapes_=MATMUL_SHAPES, data=st.data())
def test_matmul(shapes_, data):
    x = data.draw(arrays(shapes_[0]), label="x")
    y = data.draw(arrays(shapes_[1]), label="y")
    np.testing.assert_allclose((ag.Tensor(x) @ ag.Tensor(y)).data, x @ y, rtol=1e-12, atol=1e-12)
    assert ag.gradcheck(lambda a, b: a @ b, [x, y])


REDUCTIONS = {
    "sum": (lambda x, axis, keep: x.sum(axis=axis, keepdims=keep), np.sum),
    "mean": (lambda x, axis, keep: x.mean(axis=axis, keepdims=keep), np.mean),
    "var": (lambda x, axis, keep: x.var(axis=axis, keepdims=keep), np.var),
    "max": (lambda x, axis, keep: x.max(axis=axis, keepdims=keep), np.max),
    "min": (lambda x, axis, keep: x.min(axis=axis, keepdims=keep), np.min),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@given(shape_axis=shape_and_axis(), keepdims=st.booleans(), data=st.data())
def test_reductions(name, shape_axis, keepdims, data):
    fn, reference = REDUCTIONS[name]
    shape, axis = shape_axis
    x = data.draw(arrays(shape, distinct=name in ("max", "min")), label="x")
    out = fn(ag.Tensor(x), axis, keepdims)
    expected = reference(x, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    assert out.shape == np.shape(expected)
    assert ag.gradcheck(lambda t: fn(t, axis, keepdims), [x])


@pytest.mark.parametrize("method", ["max", "min"])
def test_ties_share_the_gradient(method):
    x = ag.Tensor(np.array([[1.0, 3.0, 3.0, 2.0], [3.0, 1.0, 1.0, 1.0]]), requires_grad=True)
    getattr(x, method)().backward()  # the max, 3, three times; the min, 1, four times
    whole = {"max": [[0, 1 / 3, 1 / 3, 0], [1 / 3, 0, 0, 0]], "min": [[0.25, 0, 0, 0], [0, 0.25, 0.25, 0.25]]}
    np.testing.assert_allclose(x.grad.data, whole[method], rtol=1e-15)
    x.grad = None
    getattr(x, method)(axis=1).sum().backward()  # per row
    per_row = {"max": [[0, 0.5, 0.5, 0], [1, 0, 0, 0]], "min": [[1, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3]]}
    expected = per_row[method]
    np.testing.assert_allclose(x.grad.data, expected, rtol=1e-15)
    (g,) = ag.grad(getattr(x, method)(axis=1).sum(), [x], create_graph=True)  # the same shares, recorded
    np.testing.assert_allclose(g.data, expected, rtol=1e-15)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(shape_axis=shape_and_single_axis(), data=st.data())
def test_softmax_family(name, shape_axis, data):
    shape, axis = shape_axis
    x = data.draw(arrays(shape, low=-10, high=10), label="x")
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    expected = shifted / shifted.sum(axis=axis, keepdims=True)
    out = getattr(ag.Tensor(x), name)(axis=axis)
    np.testing.assert_allclose(out.data, expected if name == "softmax" else np.log(expected), rtol=1e-9, atol=1e-12)
    assert ag.gradcheck(lambda t: getattr(t, name)(axis=axis), [x])


def test_log_softmax_is_stable_for_huge_logits():
    x = ag.Tensor(np.array([1000.0, 0.0, -1000.0]), requires_grad=True)
    out = x.log_softmax()
    assert np.isfinite(out.data).all()
    out[1].backward()
    assert np.isfinite(x.grad.data).all()


# --- shapes ------------------------------------------------------------------------------------


@given(shape=shapes(), data=st.data())
def test_reshape(shape, data):
    x = data.draw(arrays(shape), label="x")
    target = data.draw(st.sampled_from([(-1,), tuple(reversed(shape)), (1, *shape), (x.size, 1)]), label="target")
    np.testing.assert_array_equal(ag.Tensor(x).reshape(target).data, x.reshape(target))
    assert ag.gradcheck(lambda t: t.reshape(target), [x])


@given(shape=shapes(min_dims=1), data=st.data())
def test_permute_transpose_and_t(shape, data):
    x = data.draw(arrays(shape), label="x")
    perm = data.draw(st.permutations(range(len(shape))), label="perm")
    np.testing.assert_array_equal(ag.Tensor(x).permute(*perm).data, x.transpose(perm))
    np.testing.assert_array_equal(ag.Tensor(x).T.data, x.T)
    assert ag.gradcheck(lambda t: t.permute(perm), [x])
    assert ag.gradcheck(lambda t: t.T, [x])
    if len(shape) >= 2:
        np.testing.assert_array_equal(ag.Tensor(x).transpose(0, -1).data, np.swapaxes(x, 0, -1))
        assert ag.gradcheck(lambda t: t.transpose(0, -1), [x])


@given(shapes_=broadcastable_shapes(2), data=st.data())
def test_expand(shapes_, data):
    target = np.broadcast_shapes(*shapes_)
    x = data.draw(arrays(shapes_[0]), label="x")
    np.testing.assert_array_equal(ag.Tensor(x).expand(*target).data, np.broadcast_to(x, target))
    assert ag.gradcheck(lambda t: t.expand(target), [x])


BASIC_INDICES = st.sampled_from(
    [0, -1, slice(None), slice(1, None), slice(None, None, 2), slice(None, None, -1), (Ellipsis, 0), (None, 0)]
)


@given(shape=shapes(min_dims=1, min_side=2), index=BASIC_INDICES, data=st.data())
def test_getitem_basic(shape, index, data):
    x = data.draw(arrays(shape), label="x")
    np.testing.assert_array_equal(ag.Tensor(x)[index].data, x[index])
    assert ag.gradcheck(lambda t: t[index], [x])


@given(shape=shapes(min_dims=1), data=st.data())
def test_getitem_integer_arrays_with_repeats(shape, data):
    x = data.draw(arrays(shape), label="x")
    index = np.array(data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=6), label="i"))
    for idx in (index, ag.Tensor(index), list(index)):
        np.testing.assert_array_equal(ag.Tensor(x)[idx].data, x[index])
    assert ag.gradcheck(lambda t: t[index], [x])  # repeated rows accumulate their gradients
    if len(shape) >= 2:  # pick one entry per row, as cross-entropy does
        rows = np.arange(shape[0])
        cols = data.draw(arrays((shape[0],), low=0, high=shape[1] - 1), label="cols").astype(np.int64)
        np.testing.assert_array_equal(ag.Tensor(x)[rows, cols].data, x[rows, cols])
        assert ag.gradcheck(lambda t: t[rows, cols], [x])


@given(shape=shapes(min_dims=1), data=st.data())
def test_getitem_boolean_mask(shape, data):
    x = data.draw(arrays(shape), label="x")
    mask = x > 0
    np.testing.assert_array_equal(ag.Tensor(x)[mask].data, x[mask])
    np.testing.assert_array_equal(ag.Tensor(x)[ag.Tensor(x) > 0].data, x[mask])
    assert ag.gradcheck(lambda t: t[mask] * 2.0, [x])


@given(shape_axis=shape_and_single_axis(), n=st.integers(1, 3), data=st.data())
def test_concatenate_and_stack(shape_axis, n, data):
    shape, axis = shape_axis
    pieces = []
    for i in range(n):
        size = data.draw(st.integers(1, 3), label=f"size{i}")
        piece_shape = list(shape)
        piece_shape[axis] = size
        pieces.append(data.draw(arrays(tuple(piece_shape)), label=f"piece{i}"))
    np.testing.assert_array_equal(ag.concatenate([ag.Tensor(p) for p in pieces], axis=axis).data,
                                  np.concatenate(pieces, axis=axis))  # fmt: skip
    assert ag.gradcheck(lambda *ts: ag.concatenate(list(ts), axis=axis), pieces)
    same = [data.draw(arrays(shape), label=f"same{i}") for i in range(n)]
    np.testing.assert_array_equal(ag.stack([ag.Tensor(p) for p in same], axis=axis).data, np.stack(same, axis=axis))
    assert ag.gradcheck(lambda *ts: ag.stack(list(ts), axis=axis), same)


@given(shape=shapes(), data=st.data())
def test_cast_between_floats_keeps_gradient_dtype(shape, data):
    x = ag.Tensor(data.draw(arrays(shape), label="x"), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * 2.0).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.data, 2.0)


@given(
    shape=st.sampled_from([(40, 30), (3, 20, 30), (2, 3, 4, 50), (1100,)]),
    dtype=st.sampled_from([np.float64, np.float32]),
    keepdims=st.booleans(),
    data=st.data(),
)
def test_sums_of_large_arrays_match_numpy(shape, dtype, keepdims, data):
    """Big contiguous float sums over leading or trailing axes run as BLAS products with ones."""
    x = data.draw(arrays(shape), label="x").astype(dtype)
    ndim = len(shape)
    k = data.draw(st.integers(1, ndim), label="k")
    axis = data.draw(st.sampled_from([tuple(range(k)), tuple(range(ndim - k, ndim)), tuple(range(ndim))]), label="axis")
    for view in (x, x[::-1], np.asfortranarray(x)):  # contiguous, reversed and column-major layouts
        got = ag.kernels.sum_array(view, axis, keepdims)
        expected = np.sum(view, axis=axis, keepdims=keepdims)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-12 if dtype == np.float64 else 1e-5, atol=1e-12)
    # The function is ~1e6 here, so central differences carry ~1e-16 * 1e6 / eps = 1e-4 of rounding.
    square_of_sums = lambda t: (t.sum(axis=axis, keepdims=keepdims) ** 2).sum()  # noqa: E731
    assert ag.gradcheck(square_of_sums, [x.astype(np.float64)], mode="fast", atol=1e-3, rtol=1e-6)


def test_long_float32_sums_keep_their_digits():
    """Sums of millions of float32 numbers use numpy's pairwise summation, not a BLAS dot product."""
    x = np.random.default_rng(0).random((2000, 1000), dtype=np.float32)
    exact = x.astype(np.float64)
    for axis in (None, 0, 1):
        got = ag.Tensor(x).sum(axis=axis).data
        np.testing.assert_allclose(got, exact.sum(axis=axis), rtol=2e-6)
    np.testing.assert_allclose(ag.Tensor(x.reshape(-1)).sum().data, exact.sum(), rtol=2e-6)
