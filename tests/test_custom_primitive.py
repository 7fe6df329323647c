"""Adding a primitive of your own: a forward in numpy and a vjp in engine ops (as in the README)."""

import numpy as np
from hypothesis import given

import autograd as ag
from autograd import Tensor
from autograd.testing import arrays, shapes

# softplus(x) = log(1 + e^x), computed stably by numpy's logaddexp; d/dx = sigmoid(x).
softplus = ag.Primitive(
    "softplus",
    lambda x: np.logaddexp(0.0, x),
    vjps=(lambda g, out, x: g * x.sigmoid(),),
    save=(0,),
)


@given(x=arrays(shapes(), low=-30, high=30))
def test_softplus_gradient(x):
    assert ag.gradcheck(softplus, [x])


def test_softplus_is_stable_and_second_order():
    x = Tensor(np.array([-800.0, 0.0, 800.0]), requires_grad=True)
    y = softplus(x)
    np.testing.assert_allclose(y.data, [0.0, np.log(2.0), 800.0])
    (g,) = ag.grad(y.sum(), [x], create_graph=True)
    np.testing.assert_allclose(g.data, [0.0, 0.5, 1.0])
    (h,) = ag.grad(g.sum(), [x])  # sigmoid' = s (1 - s)
    np.testing.assert_allclose(h.data, [0.0, 0.25, 0.0])
    assert ag.gradgradcheck(softplus, [np.array([-2.0, 0.5, 3.0])])


def test_custom_primitive_appears_in_the_graph():
    x = Tensor(np.ones(2), requires_grad=True)
    assert [n.op_name for n in ag.graph.walk(softplus(x))] == ["leaf", "softplus"]


def test_gradcheck_catches_a_wrong_vjp_with_a_per_input_report():
    wrong = ag.Primitive("wrong_mul", np.multiply, vjps=(lambda g, out, x, y: g * y, lambda g, out, x, y: g))
    x, y = np.array([2.0, 3.0]), np.array([3.0, 4.0])
    try:
        ag.gradcheck(wrong, [x, y])
    except ag.GradcheckError as error:
        report = str(error)
    else:
        raise AssertionError("gradcheck accepted a wrong vjp")
    assert "input 0, shape (2,): ok" in report
    assert "input 1, shape (2,): 2 of 2 entries differ" in report
    try:
        ag.gradcheck(wrong, [np.full(600, 2.0), np.ones(600)])  # large: random directions
    except ag.GradcheckError as error:
        assert "mode=fast" in str(error) and "input 1" in str(error)
    else:
        raise AssertionError("gradcheck (fast) accepted a wrong vjp")


def test_a_custom_primitive_may_also_give_array_vjps_for_plain_backward():
    """``fast_vjps``: the same derivative on numpy arrays, used by backward(); create_graph still
    uses the engine-op vjp. A user's array may be returned as is: the walk copies before adding."""
    calls = []
    fast = ag.Primitive("softplus_fast", lambda x: np.logaddexp(0.0, x),
                        vjps=(lambda g, out, x: g * x.sigmoid(),), save=(0,))  # fmt: skip
    fast.fast_vjps = (lambda g, out, x: calls.append(1) or g / (1.0 + np.exp(-x)),)
    x = Tensor(np.array([-3.0, 0.0, 2.0]), requires_grad=True)
    (fast(x) * 2.0).sum().backward()
    assert calls == [1]
    np.testing.assert_allclose(x.grad.data, 2.0 / (1.0 + np.exp(-x.data)))
    (g,) = ag.grad(fast(x).sum(), [x], create_graph=True)
    assert g.requires_grad and calls == [1]
    assert ag.gradcheck(fast, [np.random.default_rng(0).standard_normal(4)])
