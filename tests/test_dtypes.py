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
