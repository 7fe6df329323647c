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
from autograd.testing import arrays, broadcastable_shapes, shapes
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
    x = data.draw(arrays(shapes(max_side=3), **options), label="x")
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
    x = data.draw(arrays(shapes(), low=-3, high=3), label="x")
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


@given(shapes_=broadcastable_shapes(3), data=st.data())
def test_clip_with_broadcast_bounds(shapes_, data):
    x = data.draw(arrays(shapes_[0]), label="x")
    low = data.draw(arrays(shapes_[1], low=-2, high=0), label="low")
    high = data.draw(arrays(shapes_[2], low=0.5, high=2), label="high")
    assume(np.all(np.abs(x - low) > 1e-3) and np.all(np.abs(x - high) > 1e-3))  # no kink within a step
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
# An axis out of range is numpy's AxisError, a ValueError and an IndexError
# ---------------------------------------------------------------------------------------------------

AXIS_CALLS = {
    "sum": lambda x: x.sum(axis=2),
    "mean": lambda x: x.mean(axis=(0, -3)),
    "max": lambda x: x.max(axis=5),
    "var": lambda x: x.var(axis=-3),
    "softmax": lambda x: x.softmax(axis=2),
    "log_softmax": lambda x: x.log_softmax(axis=-3),
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
