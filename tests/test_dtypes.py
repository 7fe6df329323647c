"""dtypes: float32 by default, float64 kept, numbers do not upcast, integers index and compare."""

import numpy as np
import pytest

import autograd as ag
from autograd import Tensor


def test_python_data_becomes_float32_and_arrays_keep_their_dtype():
    assert Tensor(1.0).dtype == np.float32
    assert Tensor([1, 2, 3]).dtype == np.float32
    assert Tensor([[1.0, 2.0]]).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64
    assert Tensor(np.zeros(2, dtype=np.int64)).dtype == np.int64
    assert Tensor([1, 2], dtype=np.int32).dtype == np.int32
    assert Tensor(np.zeros(2), dtype="float32").dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numbers_on_either_side_keep_the_tensor_dtype(dtype):
    x = Tensor(np.ones(3, dtype=dtype), requires_grad=True)
    for y in (x + 1, 1 + x, x * 2.5, 2.5 * x, x - 1.0, 1.0 - x, x / 3, 3 / x, x**2, 2.0**x, -x,
              x * np.float64(2.0), ag.maximum(x, 0.5), ag.where(x.data > 0, x, 0.0),
              x.mean(), x.sum(), x.rsqrt(), x[0].rsqrt(), x[0].mean()):  # fmt: skip (0-d results too)
        assert y.dtype == dtype and type(y.data) is np.ndarray
    y = (x * 2.0).sum()
    y.backward()
    assert x.grad.dtype == dtype


def test_mixed_arrays_follow_numpy_promotion_and_grads_keep_input_dtypes():
    a = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(2, dtype=np.float64), requires_grad=True)
    c = a * b
    assert c.dtype == np.float64
    c.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_integer_tensors_index_and_compare_without_grad():
    idx = Tensor(np.array([2, 0]))
    w = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    rows = w[idx]
    np.testing.assert_array_equal(rows.data, [[4, 5], [0, 1]])
    mask = idx > 0
    assert mask.dtype == np.bool_ and not mask.requires_grad
    assert (idx + 1).dtype == np.int64 and not (idx * 2).requires_grad
    assert (idx * 0.5).dtype == np.float64  # numpy's rule for int * Python float
    rows.sum().backward()
    np.testing.assert_array_equal(w.grad.data, [[1, 1], [0, 0], [1, 1]])


def test_comparisons_give_bools_and_no_grad():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    for result in (x < 2, x <= 2, x > 2, x >= 2, x == 2, x != 2, x > 2):
        assert result.dtype == np.bool_ and not result.requires_grad
    np.testing.assert_array_equal((x == 2).data, [False, True, False])


def test_float64_gradcheck_and_float32_model_paths():
    x = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    x64 = x.astype(np.float64)
    assert x64.dtype == np.float64 and x.astype(np.float32) is x
    (x64 * 3.0).sum().backward()
    assert x.grad.dtype == np.float32


# ---------------------------------------------------------------------------------------------------
# Reductions in low precision: accumulated as numpy accumulates them
# ---------------------------------------------------------------------------------------------------


def _large(dtype, shape=(3000, 40)):
    """120,000 numbers near 3: a float16 running total of them would stop growing at 8192 (where
    adding 3 is below half a unit in the last place) and overflow past 65504."""
    x = 3.0 + np.random.default_rng(0).standard_normal(shape)
    return x.astype(dtype)


def _reference(dtype):
    """What numpy gives with float16 accumulated in float32 (as its own sum and mean do), and the
    dtype's own arithmetic otherwise; rounded once to ``dtype``."""
    return np.float32 if dtype == np.float16 else dtype


TOLERANCE = {np.float16: 2e-3, np.float32: 2e-6}


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
def test_sum_mean_and_var_of_many_numbers_match_numpy(dtype, axis):
    x = _large(dtype)
    wide = x.astype(_reference(dtype))
    t = Tensor(x)
    sum_ = t.sum(axis=axis)
    assert sum_.dtype == dtype
    expected = np.sum(wide, axis=axis).astype(dtype)  # inf where the float16 result does not fit, as numpy's
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(sum_.data, expected, rtol=TOLERANCE[dtype])
    mean = t.mean(axis=axis)
    assert mean.dtype == dtype and np.isfinite(mean.data).all()
    np.testing.assert_allclose(mean.data, np.mean(x, axis=axis), rtol=TOLERANCE[dtype])  # numpy's own mean
    var = t.var(axis=axis)
    assert var.dtype == dtype and np.isfinite(var.data).all()
    np.testing.assert_allclose(var.data, np.var(wide, axis=axis).astype(dtype), rtol=10 * TOLERANCE[dtype])


def test_a_float16_sum_does_not_stop_growing():
    x = np.full(30000, 0.1, np.float16)  # a float16 running total sticks at 256 (0.1 is below half its last bit)
    assert Tensor(x).sum().item() == pytest.approx(3000, rel=1e-3)
    assert Tensor(x.reshape(3000, 10)).sum(axis=0).data == pytest.approx(np.full(10, 300), rel=1e-3)
    assert Tensor(np.full(100_000, 1.0, np.float16)).mean().item() == 1.0  # its sum, 100000, is not a float16


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_gradients_of_sum_mean_and_var_of_many_numbers(dtype):
    x = _large(dtype)
    n = x.size
    for reduce, expected in (
        (lambda t: t.sum(), np.ones_like(x)),
        (lambda t: t.mean(), np.full_like(x, 1.0 / n)),
        (lambda t: t.var(), (2.0 / n) * (x.astype(np.float64) - x.astype(np.float64).mean())),
    ):
        t = Tensor(x, requires_grad=True)
        reduce(t).backward()
        assert t.grad.dtype == dtype and np.isfinite(t.grad.data).all()
        scale = np.abs(expected).max()
        np.testing.assert_allclose(t.grad.data, expected.astype(dtype), rtol=TOLERANCE[dtype] * 10,
                                   atol=scale * TOLERANCE[dtype] * 10)  # fmt: skip
