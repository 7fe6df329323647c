"""Bad input gets a clear error naming the op and the shapes, dtypes or axes involved."""

import numpy as np
import pytest

import autograd as ag
from autograd import Tensor


def t(*shape, dtype=np.float32, requires_grad=False):
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad)


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**", "<", "=="])
def test_shapes_that_do_not_broadcast(op):
    with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(4, 5\) do not broadcast"):
        eval(f"a {op} b", {"a": t(2, 3), "b": t(4, 5)})


def test_matmul_dimensions_that_do_not_align():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not align \(3 != 4\)"):
        t(2, 3) @ t(4, 5)
    with pytest.raises(ValueError, match=r"matmul: batch shapes \(2,\) and \(3,\) do not broadcast"):
        t(2, 4, 4) @ t(3, 4, 4)
    with pytest.raises(ValueError, match="at least 1 dim"):
        t() @ t(3)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.sum(axis=2),
        lambda x: x.mean(axis=-3),
        lambda x: x.max(axis=(0, 5)),
        lambda x: x.softmax(axis=2),
        lambda x: x.log_softmax(axis=-3),
        lambda x: x.transpose(0, 2),
        lambda x: ag.concatenate([x, x], axis=2),
        lambda x: ag.stack([x, x], axis=4),
    ],
)
def test_axis_out_of_range_names_axis_and_shape(call):
    with pytest.raises(ValueError, match=r"axis -?\d is out of range"):
        call(t(2, 3))


def test_bad_axis_type_and_repeated_axis():
    with pytest.raises(TypeError, match="axis must be"):
        t(2, 3).sum(axis="0")
    with pytest.raises(ValueError, match="repeats an axis"):
        t(2, 3).sum(axis=(0, 0))


def test_backward_on_non_scalar_without_gradient():
    y = t(2, 3, requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*\.sum\(\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but the tensor has shape \(2, 3\)"):
        y.backward(gradient=np.ones(3))


def test_backward_without_graph():
    with pytest.raises(RuntimeError, match="does not require grad"):
        t(1).backward()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_requires_grad_on_integers(dtype):
    expected = f"requires_grad=True needs a floating-point tensor, got dtype {np.dtype(dtype)}"
    with pytest.raises(TypeError, match=expected):
        Tensor(np.ones(3, dtype=dtype), requires_grad=True)
    with pytest.raises(TypeError, match="floats only"):
        Tensor(np.ones(3, dtype=dtype)).requires_grad_()


def test_unsupported_data():
    with pytest.raises(TypeError, match="not supported"):
        Tensor(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="not supported"):
        Tensor(np.array([1 + 2j]))
    with pytest.raises(TypeError, match="cannot make an array"):
        Tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match="expected a Tensor, an array or a number"):
        t(2) + "x"


def test_indexing_out_of_bounds_names_index_and_shape():
    with pytest.raises(IndexError, match=r"index \[5\] is invalid for a tensor of shape \(2, 3\)"):
        t(2, 3)[5]
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        t(2, 3)[np.array([0, 7])]
    with pytest.raises(IndexError, match="too many indices"):
        t(2, 3)[0, 0, 0]
    with pytest.raises(IndexError, match="must hold integers or bools, got dtype float"):
        t(2, 3)[np.array([0.5])]
    with pytest.raises(IndexError, match="unsupported index"):
        t(2, 3)["a"]


def test_reshape_and_expand_errors():
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, 2\)"):
        t(2, 3).reshape(4, 2)
    with pytest.raises(TypeError, match="sizes must be ints"):
        t(2, 3).reshape(2.0, 3)
    with pytest.raises(ValueError, match=r"shape \(2, 3\) cannot be expanded to \(2, 4\)"):
        t(2, 3).expand(2, 4)
    with pytest.raises(ValueError, match="not a permutation"):
        t(2, 3).permute(0, 0)


def test_join_errors():
    with pytest.raises(ValueError, match=r"shapes \(2, 3\), \(2, 4\) must match except along axis 0"):
        ag.concatenate([t(2, 3), t(2, 4)], axis=0)
    with pytest.raises(ValueError, match=r"stack: tensors\[1\] has shape \(2, 4\)"):
        ag.stack([t(2, 3), t(2, 4)])
    with pytest.raises(TypeError, match="list or tuple"):
        ag.concatenate(t(2, 3))
    with pytest.raises(TypeError, match="condition must be a bool tensor"):
        ag.where(t(2), t(2), t(2))


def test_item_and_reductions_of_empty():
    with pytest.raises(ValueError, match=r"only a one-element tensor.*shape \(2,\)"):
        t(2).item()
    with pytest.raises(ValueError, match="empty"):
        t(0).mean()
    with pytest.raises(ValueError, match="max"):
        t(0).max()


def test_number_that_does_not_fit_the_dtype():
    with pytest.raises(ValueError, match="does not fit"):
        Tensor(np.ones(2, dtype=np.int8)) + 1000


def test_vjp_returning_a_wrong_shape_is_caught():
    bad = ag.Primitive("bad", lambda x: x * 2, vjps=(lambda g, out, x: g.sum(),), save=())
    expected = r"vjp of 'bad' returned a gradient of shape \(\) for input 0, whose shape is \(3,\)"
    with pytest.raises(RuntimeError, match=expected):
        bad(t(3, requires_grad=True)).sum().backward()


def test_vjp_reading_an_unsaved_input_says_what_to_do():
    forgetful = ag.Primitive("forgetful", np.exp, vjps=(lambda g, out, x: g * x.exp(),), save=())
    expected = r"did not save out or input 0, .* add what it reads \(\"out\" or 0\) to its save="
    with pytest.raises(TypeError, match=expected):
        forgetful(t(3, requires_grad=True)).sum().backward()
