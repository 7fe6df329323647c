"""The ops users reach for (issue 17): values against numpy, gradients against central differences.

Each differentiable op has a `gradcheck` property over generated shapes (with broadcasting for clip's
bounds), in float64 with `ag.gradcheck`'s default tolerances, on inputs kept away from the op's kinks;
the kinks themselves are tested separately, with the exact gradient expected there. Ops with a second
derivative also get `gradgradcheck` (linear ones inside a square, so that their vjp runs on Tensors).
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import autograd as ag
import autograd.functional as F  # noqa: N812 (torch users know it as F)
from autograd import Tensor
from autograd.testing import arrays, broadcastable_shapes, shape_and_axis, shape_and_single_axis, shapes
from tinygrad_lm import functional as lm_functional

AxisError = np.exceptions.AxisError
np_erf = np.vectorize(math.erf, otypes=[np.float64])

# ---------------------------------------------------------------------------------------------------
# Smooth elementwise ops and activations
# ---------------------------------------------------------------------------------------------------

# name -> (engine function, numpy reference, options for the generated values, has a second derivative)
SMOOTH = {
    "sin": (Tensor.sin, np.sin, {}, True),
    "cos": (Tensor.cos, np.cos, {}, True),
    "log2": (Tensor.log2, np.log2, {"positive": True}, True),
    "expm1": (Tensor.expm1, np.expm1, {}, True),
    "erf": (Tensor.erf, np_erf, {}, True),
    "reciprocal": (Tensor.reciprocal, np.reciprocal, {"away_from_zero": 0.3}, True),
    "softplus": (F.softplus, lambda x: np.logaddexp(0.0, x), {}, True),
    "softplus_beta": (lambda x: F.softplus(x, beta=2.0), lambda x: np.logaddexp(0.0, 2.0 * x) / 2.0, {}, True),
    "silu": (F.silu, lambda x: x / (1.0 + np.exp(-x)), {}, True),
    "gelu": (F.gelu, lambda x: 0.5 * x * (1.0 + np_erf(x / math.sqrt(2.0))), {}, True),
    "gelu_tanh": (
        lambda x: F.gelu(x, approximate="tanh"),
        lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
        {},
        True,
    ),
    "elu": (F.elu, lambda x: np.where(x > 0, x, np.expm1(x)), {"away_from_zero": 0.01}, True),
    "elu_alpha": (
        lambda x: F.elu(x, alpha=0.7),
        lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
        {"away_from_zero": 0.01},
        True,
    ),
    "leaky_relu": (F.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), {"away_from_zero": 0.01}, False),
    "leaky_relu_slope": (
        lambda x: F.leaky_relu(x, 0.2),
        lambda x: np.where(x > 0, x, 0.2 * x),
        {"away_from_zero": 0.01},
        False,
    ),
}


@pytest.mark.parametrize("name", SMOOTH)
@given(data=st.data())
def test_smooth_elementwise(name, data):
    fn, reference, options, second = SMOOTH[name]
    x = data.draw(arrays(shapes(max_dims=2, max_side=2), **options), label="x")  # elementwise: small shapes do
    out = fn(Tensor(x))
    assert out.shape == x.shape and out.dtype == np.float64
    np.testing.assert_allclose(out.data, reference(x), rtol=1e-12, atol=1e-14)
    assert ag.gradgradcheck(fn, [x]) if second else ag.gradcheck(fn, [x])


@pytest.mark.parametrize("name", ["sin", "cos", "log2", "expm1", "erf", "softplus", "gelu", "gelu_tanh", "silu"])
def test_float32_stays_float32(name):
    fn = SMOOTH[name][0]
    x = Tensor(np.array([0.5, 1.5], dtype=np.float32), requires_grad=True)
    out = fn(x)
    out.sum().backward()
    assert out.dtype == np.float32 and x.grad.dtype == np.float32


def test_known_values():
    x = Tensor(np.array([0.0, np.pi / 2, np.pi]))
    np.testing.assert_allclose(x.sin().data, [0.0, 1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(x.cos().data, [1.0, 0.0, -1.0], atol=1e-15)
    assert Tensor(np.array([1.0, 8.0, 0.5])).log2().data.tolist() == [0.0, 3.0, -1.0]
    assert Tensor(np.array([1e-20])).expm1().item() == 1e-20  # exp(x) - 1 would give 0
    np.testing.assert_allclose(Tensor(np.array([1.0])).erf().data, [0.8427007929497149], rtol=1e-15)
    assert Tensor(np.array([2.0, -4.0])).reciprocal().data.tolist() == [0.5, -0.25]
    integers = Tensor(np.array([2, 4])).reciprocal()  # a float, as torch (numpy's would give [0, 0])
    assert integers.dtype == np.float64 and integers.data.tolist() == [0.5, 0.25]


def test_numpy_ufuncs_run_the_engine_ops():
    x = Tensor(np.array([0.3, 1.7]), requires_grad=True)
    for ufunc, method in [
        (np.sin, "sin"),
        (np.cos, "cos"),
        (np.log2, "log2"),
        (np.expm1, "expm1"),
        (np.floor, "floor"),
        (np.ceil, "ceil"),
        (np.sign, "sign"),
    ]:
        out = ufunc(x)
        assert isinstance(out, Tensor) and out.node.op_name == method
        np.testing.assert_array_equal(out.data, ufunc(x.data))


def test_activations_at_their_kinks_and_extremes():
    zero = Tensor(np.zeros(1), requires_grad=True)
    for fn, slope in [
        (F.leaky_relu, 0.01),
        (lambda t: F.leaky_relu(t, 0.2), 0.2),
        (F.elu, 1.0),
        (lambda t: F.elu(t, alpha=0.7), 0.7),
    ]:
        (g,) = ag.grad(fn(zero).sum(), [zero])
        assert g.data.tolist() == [slope], "the negative side's slope at 0, as torch"
    (g,) = ag.grad(F.softplus(zero).sum(), [zero])
    assert g.data.tolist() == [0.5]  # smooth at 0: sigmoid(0)
    big = Tensor(np.array([-800.0, 0.0, 800.0]), requires_grad=True)
    out = F.softplus(big)
    np.testing.assert_allclose(out.data, [0.0, math.log(2.0), 800.0])
    out.sum().backward()
    assert big.grad.data.tolist() == [0.0, 0.5, 1.0]
    large = Tensor(np.array([100.0, 1000.0], dtype=np.float32), requires_grad=True)  # e^x overflows float32
    with ag.detect_anomaly():
        F.elu(large).sum().backward()
    assert large.grad.data.tolist() == [1.0, 1.0]
    assert F.gelu(Tensor(np.array([-40.0, 40.0]))).data.tolist() == [-0.0, 40.0]


def test_gelu_tanh_is_the_gpts_gelu_bit_for_bit():
    x = Tensor(np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32), requires_grad=True)
    ours, gpts = F.gelu(x, approximate="tanh"), lm_functional.gelu(x)
    np.testing.assert_array_equal(ours.data, gpts.data)
    (g1,) = ag.grad(ours.sum(), [x])
    (g2,) = ag.grad(gpts.sum(), [x])
    np.testing.assert_array_equal(g1.data, g2.data)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(x, approximate="erf")


def test_functional_wrappers_are_the_methods():
    x = Tensor(np.array([[-1.0, 0.5, 2.0]]))
    for fn, method in [
        (F.relu, Tensor.relu),
        (F.sigmoid, Tensor.sigmoid),
        (F.tanh, Tensor.tanh),
        (F.softmax, Tensor.softmax),
        (F.log_softmax, Tensor.log_softmax),
    ]:
        np.testing.assert_array_equal(fn(x).data, method(x).data)


# ---------------------------------------------------------------------------------------------------
# Piecewise-constant ops: gradient exactly 0
# ---------------------------------------------------------------------------------------------------

STEPS = {
    "sign": (Tensor.sign, np.sign),
    "floor": (Tensor.floor, np.floor),
    "ceil": (Tensor.ceil, np.ceil),
    "round": (Tensor.round, np.round),
}


@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_gradient_ops_give_exact_zeros(name, dtype):
    method, reference = STEPS[name]
    values = np.array([[-2.5, -1.5, -0.5, -0.0], [0.0, 0.5, 1.5, 2.7]], dtype=dtype)  # jumps and halves
    x = Tensor(values, requires_grad=True)
    out = method(x)
    np.testing.assert_array_equal(out.data, reference(values))
    assert out.dtype == dtype and out.requires_grad, "differentiable, as torch's: usable inside a loss"
    (out * x).sum().backward()  # d/dx (step(x) * x) = step(x): only the product's own term
    np.testing.assert_array_equal(x.grad.data, reference(values))
    (g,) = ag.grad(method(x).sum(), [x])
    assert g.shape == values.shape and g.dtype == dtype and not g.data.any()
    (g,) = ag.grad(method(x).sum(), [x], create_graph=True)  # the same zeros when the vjp runs on Tensors
    assert g.shape == values.shape and g.dtype == dtype and not g.data.any()


@pytest.mark.parametrize("name", STEPS)
@given(data=st.data())
def test_zero_gradient_ops_away_from_jumps(name, data):
    method, reference = STEPS[name]
    x = data.draw(arrays(shapes(max_dims=2, max_side=3), low=-3, high=3), label="x")
    x = np.floor(x) + 0.3  # 0.3 from an integer and 0.2 from a half: no jump within the finite difference
    np.testing.assert_array_equal(method(Tensor(x)).data, reference(x))
    assert ag.gradcheck(lambda t: method(t) * t, [x])


def test_round_halves_to_even_and_decimals():
    assert Tensor(np.array([0.5, 1.5, 2.5, -0.5])).round().data.tolist() == [0.0, 2.0, 2.0, -0.0]
    assert Tensor(np.array([1.234, 5.678])).round(2).data.tolist() == [1.23, 5.68]
    assert Tensor(np.array([1234.0])).round(-2).data.tolist() == [1200.0]
    with pytest.raises(TypeError, match="round: decimals must be an int"):
        Tensor(np.ones(2)).round(1.5)


def test_abs_second_derivative_still_exact():
    """abs's vjp uses sign, which now records a (zero) gradient of its own with create_graph."""
    x = Tensor(np.array([-2.0, 3.0]), requires_grad=True)
    (g,) = ag.grad((x.abs() * x).sum(), [x], create_graph=True)
    (h,) = ag.grad(g.sum(), [x])
    np.testing.assert_array_equal(h.data, 2 * np.sign(x.data))


# ---------------------------------------------------------------------------------------------------
# clip / clamp
# ---------------------------------------------------------------------------------------------------


@given(shapes_=broadcastable_shapes(3, max_side=3), data=st.data())
def test_clip_with_broadcast_bounds(shapes_, data):
    x = data.draw(arrays(shapes_[0]), label="x")
    low = data.draw(arrays(shapes_[1], low=-2, high=0), label="low")
    high = data.draw(arrays(shapes_[2], low=0.5, high=2), label="high")
    for bound in (low, high, -0.5, 1.0):  # no kink within a finite-difference step
        assume(np.all(np.abs(x - bound) > 1e-3))
    out = Tensor(x).clip(Tensor(low), Tensor(high))
    np.testing.assert_array_equal(out.data, np.clip(x, low, high))
    assert ag.gradcheck(lambda a, b, c: a.clip(b, c), [x, low, high])
    assert ag.gradcheck(lambda a: ag.clip(a, -0.5, 1.0), [x])


def test_clip_boundaries_follow_torch():
    """torch's clamp: x gets the gradient where min <= x <= max (bounds included), min where x < min,
    max where x > max; when min > max every output is max, and so is every gradient."""
    x = Tensor(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), requires_grad=True)
    low = Tensor(np.array(-1.0), requires_grad=True)
    high = Tensor(np.array(1.0), requires_grad=True)
    out = x.clamp(min=low, max=high)
    assert out.data.tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    out.backward(np.array([1.0, 2.0, 4.0, 8.0, 16.0]))
    assert x.grad.data.tolist() == [0.0, 2.0, 4.0, 8.0, 0.0]
    assert low.grad.item() == 1.0 and high.grad.item() == 16.0
    x.grad = low.grad = high.grad = None
    crossed = x.clip(Tensor(np.array(1.0), requires_grad=True), high * -1.0)  # min 1 > max -1
    assert crossed.data.tolist() == np.clip(x.data, 1.0, -1.0).tolist() == [-1.0] * 5
    crossed.sum().backward()
    assert x.grad.data.tolist() == [0.0] * 5 and high.grad.item() == -5.0


def test_clip_one_sided_integer_and_errors():
    x = Tensor(np.array([-3.0, 0.5, 3.0], dtype=np.float32), requires_grad=True)
    assert x.clip(min=0.0).data.tolist() == [0.0, 0.5, 3.0] and x.clip(min=0.0).dtype == np.float32
    assert x.clip(max=1.0).data.tolist() == [-3.0, 0.5, 1.0]
    x.clip(max=1.0).sum().backward()
    assert x.grad.data.tolist() == [1.0, 1.0, 0.0]
    ints = Tensor(np.array([-5, 0, 5], dtype=np.int8))
    assert ints.clip(-2, 2).data.tolist() == [-2, 0, 2] and ints.clip(-2, 2).dtype == np.int8
    assert ints.clip(max=1).data.tolist() == [-5, 0, 1]
    with pytest.raises(ValueError, match=r"clip: give min, max or both"):
        x.clip()
    with pytest.raises(ValueError, match=r"clip: shapes \(3,\) and \(2,\) and \(\) do not broadcast"):
        x.clip(np.zeros(2), 1.0)


# ---------------------------------------------------------------------------------------------------
# Reductions and scans
# ---------------------------------------------------------------------------------------------------


@given(shape_axis=shape_and_axis(max_side=3), keepdims=st.booleans(), data=st.data())
def test_prod(shape_axis, keepdims, data):
    shape, axis = shape_axis
    x = data.draw(arrays(shape, low=-2, high=2, away_from_zero=0.2), label="x")
    out = Tensor(x).prod(axis=axis, keepdims=keepdims)
    expected = np.prod(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    assert ag.gradgradcheck(lambda t: t.prod(axis=axis, keepdims=keepdims), [x])


def test_prod_gradient_with_zeros_is_the_product_of_the_others():
    x = Tensor(np.array([[2.0, 0.0, 3.0, 5.0], [2.0, 0.0, 0.0, 5.0], [1.0, 2.0, 3.0, 4.0]]), requires_grad=True)
    x.prod(axis=1).sum().backward()
    # one zero: it gets the product of the rest, the others 0; two zeros: all 0; none: out / x
    assert x.grad.data.tolist() == [[0.0, 30.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [24.0, 12.0, 8.0, 6.0]]
    whole = Tensor(np.array([[3.0, 0.0], [2.0, 5.0]]), requires_grad=True)
    whole.prod().backward()
    assert whole.grad.data.tolist() == [[0.0, 30.0], [0.0, 0.0]]


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1), -1])
@pytest.mark.parametrize("zeros", [[(0, 1)], [(0, 1), (0, 2)], [(0, 1), (1, 1)], [(0, 0), (0, 1), (0, 2)]])
def test_prod_second_derivative_with_zeros(axis, zeros):
    x = np.random.default_rng(0).uniform(0.5, 2.0, (2, 3))
    for position in zeros:
        x[position] = 0.0
    assert ag.gradgradcheck(lambda t: t.prod(axis=axis), [x])


def test_prod_of_nothing_and_of_integers():
    assert Tensor(np.zeros((2, 0))).prod(axis=1).data.tolist() == [1.0, 1.0]
    ints = Tensor(np.array([2, 3], dtype=np.int8)).prod()
    assert ints.item() == 6 and ints.dtype == np.prod(np.array([2, 3], dtype=np.int8)).dtype


def _logsumexp_reference(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    return np.log(np.sum(np.exp(x - m), axis=axis, keepdims=keepdims)) + (m if keepdims else np.squeeze(m, axis))


@given(shape_axis=shape_and_axis(max_side=3), keepdims=st.booleans(), data=st.data())
def test_logsumexp(shape_axis, keepdims, data):
    shape, axis = shape_axis
    x = data.draw(arrays(shape, low=-10, high=10), label="x")
    out = ag.logsumexp(Tensor(x), axis=axis, keepdims=keepdims)
    axes = tuple(range(x.ndim)) if axis is None else axis
    expected = _logsumexp_reference(x, axes, keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert ag.gradgradcheck(lambda t: t.logsumexp(axis=axis, keepdims=keepdims), [x])


def test_logsumexp_is_stable_and_its_gradient_is_the_softmax():
    x = Tensor(np.array([[1000.0, 1000.0], [-1000.0, -1001.0]]), requires_grad=True)
    out = x.logsumexp(axis=1)
    np.testing.assert_allclose(out.data, [1000.0 + math.log(2.0), -1000.0 + math.log1p(math.exp(-1.0))])
    out.sum().backward()
    np.testing.assert_allclose(x.grad.data, x.softmax(axis=1).data, rtol=1e-12)  # e^(x - out): out's rounding
    special = Tensor(np.array([[-np.inf, -np.inf], [np.inf, 0.0], [np.nan, 0.0]])).logsumexp(axis=1)
    assert special.data[0] == -np.inf and special.data[1] == np.inf and np.isnan(special.data[2])
    assert Tensor(np.zeros((3, 0))).logsumexp(axis=1).data.tolist() == [-np.inf] * 3  # of nothing, as torch
    assert Tensor(np.array([1, 2])).logsumexp().dtype == np.float64
    f32 = Tensor(np.array([100.0, 100.0], dtype=np.float32)).logsumexp()
    assert f32.dtype == np.float32 and np.isfinite(f32.item())


@given(shape_axis=shape_and_single_axis(max_side=3), data=st.data())
def test_cumsum(shape_axis, data):
    shape, axis = shape_axis
    x = data.draw(arrays(shape), label="x")
    np.testing.assert_allclose(Tensor(x).cumsum(axis).data, np.cumsum(x, axis=axis), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Tensor(x).cumsum().data, np.cumsum(x), rtol=1e-12, atol=1e-12)
    assert ag.gradgradcheck(lambda t: t.cumsum(axis).square(), [x])
    assert ag.gradcheck(lambda t: t.cumsum(), [x])


def test_cumsum_gradient_is_the_reversed_cumsum_and_dtypes_are_numpys():
    x = Tensor(np.ones(4), requires_grad=True)
    x.cumsum(0).backward(np.array([1.0, 2.0, 3.0, 4.0]))
    assert x.grad.data.tolist() == [10.0, 9.0, 7.0, 4.0]
    for dtype in (np.int8, np.bool_, np.float32):
        a = np.ones(3, dtype)
        assert Tensor(a).cumsum().dtype == np.cumsum(a).dtype
    assert Tensor(np.array(2.0)).cumsum().shape == (1,)


@given(shape_axis=shape_and_axis(max_side=3), keepdims=st.booleans(), ddof=st.sampled_from([0, 1]), data=st.data())
def test_std(shape_axis, keepdims, ddof, data):
    shape, axis = shape_axis
    count = math.prod(shape[a] for a in ((axis,) if isinstance(axis, int) else axis or range(len(shape))))
    assume(count > ddof + 1)  # at least two values: a spread, so sqrt is differentiable
    x = data.draw(arrays(shape, distinct=True), label="x")
    out = Tensor(x).std(axis=axis, keepdims=keepdims, ddof=ddof)
    np.testing.assert_allclose(out.data, np.std(x, axis=axis, keepdims=keepdims, ddof=ddof), rtol=1e-12)
    assert ag.gradgradcheck(lambda t: t.std(axis=axis, keepdims=keepdims, ddof=ddof), [x])


def test_std_defaults_to_numpys_ddof_and_names_itself():
    x = Tensor(np.array([1.0, 2.0, 3.0, 4.0]))
    assert x.std().item() == np.std(x.data) and x.std(ddof=1).item() == np.std(x.data, ddof=1)
    with pytest.raises(ValueError, match=r"std: 1 values over axis 0 of shape \(1, 2\) with ddof=1"):
        Tensor(np.ones((1, 2))).std(axis=0, ddof=1)
    with pytest.raises(AxisError, match="std: axis 2 is out of range"):
        x.std(axis=2)


@pytest.mark.parametrize("method", ["argmax", "argmin"])
@given(shape=shapes(min_dims=0), keepdims=st.booleans(), data=st.data())
def test_argmax_argmin_match_numpy(method, shape, keepdims, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis") if shape else None
    x = np.round(data.draw(arrays(shape, low=-2, high=2), label="x"))  # few values: many ties
    x_t = Tensor(x, requires_grad=True)
    for a in (None, axis):
        out = getattr(x_t, method)(axis=a, keepdims=keepdims)
        expected = getattr(np, method)(x, axis=a, keepdims=keepdims)
        assert out.shape == np.shape(expected) and out.dtype == np.intp and not out.requires_grad
        np.testing.assert_array_equal(out.data, expected)


def test_argmax_ties_and_empty():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]))
    assert x.argmax(axis=1).data.tolist() == [1, 0] and x.argmin().item() == 5  # the first, as numpy
    assert Tensor(np.zeros((0, 3))).argmax(axis=1).shape == (0,)
    with pytest.raises(ValueError, match=r"argmax: no entries to choose from \(shape \(0, 3\), axis 0\)"):
        Tensor(np.zeros((0, 3))).argmax(axis=0)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_of_a_0d_tensor_is_torchs(name, axis):
    x = Tensor(np.array(3.7), requires_grad=True)
    out = getattr(x, name)(axis=axis)
    assert out.shape == () and out.item() == (1.0 if name == "softmax" else 0.0)
    out.backward()
    assert x.grad.shape == () and x.grad.item() == 0.0
    (g,) = ag.grad(getattr(x, name)(axis=axis), [x], create_graph=True)
    assert g.item() == 0.0
    assert getattr(Tensor(np.array(2)), name)().dtype == np.float64  # an integer: float64, as with more dims
    assert getattr(Tensor(3.0), name)().dtype == np.float32
    with pytest.raises(AxisError, match=rf"{name}: axis 1 is out of range for a 0-d tensor"):
        getattr(x, name)(axis=1)


# ---------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------


@given(shape=shapes(min_dims=1, max_dims=4, max_side=3), data=st.data())
def test_flatten_range_of_axes(shape, data):
    x = data.draw(arrays(shape), label="x")
    ndim = len(shape)
    start = data.draw(st.integers(-ndim, ndim - 1), label="start")
    end = data.draw(st.integers(start % ndim - ndim, -1), label="end")  # start <= end
    s, e = start % ndim, end % ndim
    expected = x.reshape(shape[:s] + (-1,) + shape[e + 1 :])
    np.testing.assert_array_equal(Tensor(x).flatten(start, end).data, expected)
    np.testing.assert_array_equal(Tensor(x).flatten().data, x.reshape(-1))
    assert ag.gradcheck(lambda t: t.flatten(start, end), [x])


def test_flatten_edges():
    assert Tensor(np.array(2.0)).flatten().shape == (1,) and Tensor(np.array(2.0)).flatten(0, -1).shape == (1,)
    assert Tensor(np.zeros((2, 0, 3))).flatten(1).shape == (2, 0)
    with pytest.raises(ValueError, match=r"flatten: start_dim 2 comes after end_dim 1 \(shape \(2, 3, 4\)\)"):
        Tensor(np.zeros((2, 3, 4))).flatten(2, 1)


def _weights(shape):
    """Distinct weights, so a gradient sent to the wrong entry shows."""
    return Tensor(np.linspace(0.5, 1.5, math.prod(shape)).reshape(shape))


@given(shape_axis=shape_and_axis(max_side=3), data=st.data())
def test_flip(shape_axis, data):
    shape, axis = shape_axis
    x = data.draw(arrays(shape), label="x")
    np.testing.assert_array_equal(Tensor(x).flip(axis).data, np.flip(x, axis))
    assert ag.gradgradcheck(lambda t: (t.flip(axis) * _weights(shape)).square(), [x])


@given(shape=shapes(max_side=3), data=st.data())
def test_pad(shape, data):
    x = data.draw(arrays(shape), label="x")
    widths = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2)), label="w") for _ in shape) or 1
    value = data.draw(st.sampled_from([0.0, -1.5]), label="value")
    out = ag.pad(Tensor(x), widths, value=value)
    np.testing.assert_array_equal(out.data, np.pad(x, widths, constant_values=value))
    assert ag.gradgradcheck(lambda t: (ag.pad(t, widths, value=value) * _weights(out.shape)).square(), [x])


def test_pad_widths_as_numpy_takes_them():
    x = np.arange(6.0).reshape(2, 3)
    for width in (1, (1,), (1, 2), [(0, 1), (2, 0)], ((1, 1),)):
        np.testing.assert_array_equal(ag.pad(x, width).data, np.pad(x, width))
    t = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    out = ag.pad(t, (1, 2), value=7)
    assert out.dtype == np.float32 and out.data.tolist() == [7, 1, 1, 7, 7]
    out.backward(np.arange(5.0, dtype=np.float32))
    assert t.grad.data.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="pad: pad_width .* is negative"):
        ag.pad(x, -1)
    with pytest.raises(ValueError, match=r"pad: pad_width .* per axis of shape \(2, 3\)"):
        ag.pad(x, [(1, 1), (1, 1), (1, 1)])
    with pytest.raises(TypeError, match="pad: pad_width must be ints"):
        ag.pad(x, 1.5)
    with pytest.raises(TypeError, match="pad: value must be a number"):
        ag.pad(x, 1, value="a")


@pytest.mark.parametrize("name", ["tril", "triu"])
@given(shape=shapes(min_dims=2, max_dims=3, max_side=4), k=st.integers(-3, 3), data=st.data())
def test_tril_triu(name, shape, k, data):
    x = data.draw(arrays(shape), label="x")
    out = getattr(Tensor(x), name)(k)
    np.testing.assert_array_equal(out.data, getattr(np, name)(x, k))
    assert ag.gradcheck(lambda t: getattr(t, name)(k=k), [x])


def test_tril_triu_gradient_and_dtypes():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    x.tril().sum().backward()
    assert x.grad.data.tolist() == [[1, 0, 0], [1, 1, 0]]
    ints = Tensor(np.arange(4).reshape(2, 2))
    assert ints.triu().dtype == np.int64 and ints.triu().data.tolist() == [[0, 1], [0, 3]]
    with pytest.raises(ValueError, match=r"tril: needs a matrix .* got shape \(3,\)"):
        Tensor(np.ones(3)).tril()


@given(shape=shapes(max_dims=3, max_side=3), data=st.data())
def test_tile_and_repeat(shape, data):
    x = data.draw(arrays(shape), label="x")
    reps = tuple(data.draw(st.lists(st.integers(0, 3), max_size=4), label="reps"))
    np.testing.assert_array_equal(Tensor(x).tile(reps).data, np.tile(x, reps))
    assert ag.gradcheck(lambda t: t.tile(*reps), [x])
    sizes = tuple(data.draw(st.lists(st.integers(1, 3), min_size=len(shape), max_size=4), label="sizes"))
    np.testing.assert_array_equal(Tensor(x).repeat(*sizes).data, np.tile(x, sizes))  # torch's repeat is tile


def test_repeat_is_torchs_not_numpys():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert x.repeat(2).data.tolist() == [1.0, 2.0, 1.0, 2.0]  # np.repeat would give [1, 1, 2, 2]
    assert x.repeat(2, 1).shape == (2, 2) and x.tile(2, 1).shape == (2, 2)
    x.repeat(3).sum().backward()
    assert x.grad.data.tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match=r"repeat: sizes \(2,\) name 1 axes, but the tensor has 2"):
        Tensor(np.ones((2, 2))).repeat(2)
    with pytest.raises(ValueError, match="tile: a repetition must be at least 0"):
        x.tile(-1)


def _numpy_pieces(x, sizes, axis):
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


@given(shape_axis=shape_and_single_axis(max_side=5), data=st.data())
def test_split_and_chunk(shape_axis, data):
    shape, axis = shape_axis
    x = data.draw(arrays(shape), label="x")
    n = shape[axis]
    size = data.draw(st.integers(1, 6), label="size")
    sections = data.draw(st.lists(st.integers(0, 2), max_size=4).filter(lambda s: sum(s) <= n), label="sections")
    sections = [*sections, n - sum(sections)]
    chunks = data.draw(st.integers(1, 6), label="chunks")
    per_chunk = -(-n // chunks)
    for pieces, sizes in [
        (Tensor(x).split(size, axis), [min(size, n - s) for s in range(0, n, size)]),
        (Tensor(x).split(sections, axis), sections),
        (Tensor(x).chunk(chunks, axis), [min(per_chunk, n - s) for s in range(0, n, per_chunk)]),
    ]:
        expected = _numpy_pieces(x, sizes, axis)
        assert len(pieces) == len(expected)
        for piece, want in zip(pieces, expected):
            np.testing.assert_array_equal(piece.data, want)
    weights = [Tensor(np.full(p.shape, i + 1.0)) for i, p in enumerate(Tensor(x).split(sections, axis))]
    assert ag.gradcheck(lambda t: ag.concatenate([p * w for p, w in zip(t.split(sections, axis), weights)], axis), [x])


def test_split_and_chunk_edges_follow_torch():
    x = Tensor(np.arange(6.0))
    assert [p.shape for p in x.chunk(4)] == [(2,), (2,), (2,)]  # ceil(6 / 4) = 2 each: three pieces
    assert [p.shape for p in x.split(4)] == [(4,), (2,)]
    assert [p.shape for p in x.split([0, 6, 0])] == [(0,), (6,), (0,)]
    empty = Tensor(np.zeros((0, 2)))
    assert [p.shape for p in empty.split(3)] == [(0, 2)] and [p.shape for p in empty.chunk(3)] == [(0, 2)] * 3
    with pytest.raises(ValueError, match=r"split: sections \[2, 2\] add up to 4, but axis 0 of shape \(6,\)"):
        x.split([2, 2])
    with pytest.raises(ValueError, match="split: split_size must be at least 1, got 0"):
        x.split(0)
    with pytest.raises(ValueError, match="chunk: chunks must be at least 1"):
        x.chunk(0)
    with pytest.raises(TypeError, match="split: split_size must be an int"):
        x.split(2.0)


# ---------------------------------------------------------------------------------------------------
# Creation helpers
# ---------------------------------------------------------------------------------------------------


def test_zeros_ones_full_shapes_and_dtypes():
    for make, value in [(ag.zeros, 0.0), (ag.ones, 1.0)]:
        for args in [(2, 3), ((2, 3),), ([2, 3],)]:
            t = make(*args)
            assert t.shape == (2, 3) and t.dtype == np.float32 and not t.requires_grad and (t.data == value).all()
        assert make().shape == () and make(0, 2).shape == (0, 2)
        assert make(2, dtype=np.float64, requires_grad=True).requires_grad
        assert make(2, dtype="int32").dtype == np.int32
    assert ag.full((2, 2), 7).dtype == np.float32 and ag.full((2, 2), 7).data.tolist() == [[7.0, 7.0]] * 2
    assert ag.full(3, np.int64(7)).dtype == np.int64  # a numpy scalar keeps its dtype, as in Tensor(...)
    assert ag.full((2,), 1.5, dtype=np.float64, requires_grad=True).requires_grad


def test_arange_and_eye():
    r = ag.arange(5)
    assert r.dtype == np.int64 and r.data.tolist() == [0, 1, 2, 3, 4]
    assert ag.arange(2, 8, 3).data.tolist() == [2, 5]
    f = ag.arange(0.0, 1.0, 0.25, requires_grad=True)
    assert f.dtype == np.float32 and f.requires_grad and f.data.tolist() == [0.0, 0.25, 0.5, 0.75]
    np.testing.assert_array_equal(ag.arange(0, 1, 0.1, dtype=np.float64).data, np.arange(0, 1, 0.1))
    assert ag.arange(5, 0, -2).data.tolist() == [5, 3, 1] and ag.arange(0).shape == (0,)
    with pytest.raises(TypeError, match="requires_grad=True needs a floating-point tensor, got dtype int64"):
        ag.arange(5, requires_grad=True)
    with pytest.raises(ValueError, match="arange: step must not be 0"):
        ag.arange(0, 5, 0)
    np.testing.assert_array_equal(ag.eye(3).data, np.eye(3))
    assert ag.eye(2, 3, k=1).data.tolist() == np.eye(2, 3, 1).tolist() and ag.eye(2).dtype == np.float32


def test_randn_is_reproducible():
    a, b = ag.randn(3, 4, seed=0), ag.randn((3, 4), seed=0)
    assert a.shape == (3, 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, ag.randn(3, 4, seed=1).data)
    wide = ag.randn(3, 4, seed=0, dtype=np.float64, requires_grad=True)
    assert wide.requires_grad and np.array_equal(wide.data.astype(np.float32), a.data)  # one stream, any dtype
    rng = np.random.default_rng(5)
    first, second = ag.randn(2, seed=rng), ag.randn(2, seed=rng)  # a Generator is drawn from, advancing it
    assert not np.array_equal(first.data, second.data)
    np.testing.assert_array_equal(first.data, np.random.default_rng(5).standard_normal(2).astype(np.float32))
    with pytest.raises(TypeError, match="randn: normal samples need a float dtype"):
        ag.randn(2, dtype=np.int64)


def test_like_helpers():
    x = Tensor(np.ones((2, 3), dtype=np.float64), requires_grad=True)
    for make in (ag.zeros_like, ag.ones_like, lambda t, **k: ag.full_like(t, 2.5, **k), ag.randn_like):
        t = make(x)
        assert t.shape == (2, 3) and t.dtype == np.float64 and not t.requires_grad
        assert make(x, dtype=np.float32, requires_grad=True).requires_grad
    assert ag.zeros_like(np.zeros(2, dtype=np.int8)).dtype == np.int8
    assert ag.full_like(Tensor(np.zeros(2, dtype=np.int64)), 2.5).data.tolist() == [2, 2]
    np.testing.assert_array_equal(ag.randn_like(x, seed=3).data, ag.randn(2, 3, seed=3, dtype=np.float64).data)
    with pytest.raises(TypeError, match="randn_like: normal samples need a float dtype"):
        ag.randn_like(Tensor(np.zeros(2, dtype=np.int64)))


def test_creation_errors_name_the_function():
    with pytest.raises(ValueError, match="zeros: a size must be at least 0, got -1"):
        ag.zeros(2, -1)
    with pytest.raises(TypeError, match="ones: sizes must be ints"):
        ag.ones(2.0)
    with pytest.raises(ValueError, match="full: fill_value must be a single number"):
        ag.full(2, [1.0, 2.0])
    with pytest.raises(TypeError, match="arange: stop must be a number"):
        ag.arange(0, "5")
    with pytest.raises(TypeError, match="eye: n must be an int"):
        ag.eye(2.5)


# ---------------------------------------------------------------------------------------------------
# An axis out of range is numpy's AxisError, a ValueError and an IndexError
# ---------------------------------------------------------------------------------------------------

AXIS_CALLS = {
    "sum": lambda x: x.sum(axis=2),
    "mean": lambda x: x.mean(axis=(0, -3)),
    "max": lambda x: x.max(axis=5),
    "var": lambda x: x.var(axis=-3),
    "std": lambda x: x.std(axis=2),
    "prod": lambda x: x.prod(axis=2),
    "logsumexp": lambda x: x.logsumexp(axis=-3),
    "cumsum": lambda x: x.cumsum(2),
    "argmax": lambda x: x.argmax(axis=2),
    "argmin": lambda x: x.argmin(axis=-3),
    "softmax": lambda x: x.softmax(axis=2),
    "log_softmax": lambda x: x.log_softmax(axis=-3),
    "flip": lambda x: x.flip(2),
    "flatten": lambda x: x.flatten(0, 2),
    "split": lambda x: x.split(1, axis=2),
    "chunk": lambda x: x.chunk(2, axis=-3),
    "squeeze": lambda x: x.squeeze(2),
    "unsqueeze": lambda x: x.unsqueeze(4),
    "transpose": lambda x: x.transpose(0, 2),
    "permute": lambda x: x.permute(0, 2),
    "concatenate": lambda x: ag.concatenate([x, x], axis=2),
    "stack": lambda x: ag.stack([x, x], axis=-4),
}


@pytest.mark.parametrize("name", AXIS_CALLS)
def test_axis_out_of_range_is_numpys_axis_error(name):
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(AxisError, match=rf"{name}: axis -?\d is out of range"):
        AXIS_CALLS[name](x)
    with pytest.raises(ValueError):  # numpy's AxisError is both, so either `except` catches it
        AXIS_CALLS[name](x)
    with pytest.raises(IndexError):
        AXIS_CALLS[name](x)


# ---------------------------------------------------------------------------------------------------
# Together: none of them reads a value in Python, so a captured function replays them exactly
# ---------------------------------------------------------------------------------------------------


def test_the_new_ops_replay_under_capture():
    w = ag.randn(4, 4, seed=0, dtype=np.float64, requires_grad=True)

    def f(x):
        h = F.gelu(x @ w).clip(-1.0, 1.0).tril() + F.elu(x).flip(0).cumsum(1) + x.sign() + x.round()
        first, rest = h.split([1, 3], axis=1)
        return first.logsumexp(axis=0).sum() + ag.pad(rest, 1, value=0.5).prod(axis=1).sum() + rest.std()

    replayed = ag.capture(f)
    for seed in range(3):
        x = Tensor(np.random.default_rng(seed).standard_normal((4, 4)))
        (g_replayed,) = ag.grad(replayed(x), [w])
        (g_called,) = ag.grad(f(x), [w])
        np.testing.assert_array_equal(g_replayed.data, g_called.data)
    assert replayed.stats["replays"] == 2
