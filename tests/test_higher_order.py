"""create_graph=True: gradients are graphs, so second derivatives are exact."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd import Tensor
from autograd.testing import arrays, broadcastable_shapes, shapes

# name -> (f, f'' computed by hand, options for the values)
SECOND_DERIVATIVES = {
    "exp": (lambda x: x.exp(), lambda x: np.exp(x), {}),
    "log": (lambda x: x.log(), lambda x: -1 / x**2, {"positive": True}),
    "sqrt": (lambda x: x.sqrt(), lambda x: -0.25 * x**-1.5, {"positive": True}),
    "rsqrt": (lambda x: x.rsqrt(), lambda x: 0.75 * x**-2.5, {"positive": True}),
    "tanh": (lambda x: x.tanh(), lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2), {}),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s), {}),
    "cube": (lambda x: x**3, lambda x: 6 * x, {}),
    "pow_fractional": (lambda x: x**2.5, lambda x: 2.5 * 1.5 * x**0.5, {"positive": True}),
    "reciprocal": (lambda x: 1.0 / x, lambda x: 2 / x**3, {"away_from_zero": 0.3}),
    "relu": (lambda x: x.relu() * x, lambda x: 2.0 * (x > 0), {"away_from_zero": 0.01}),
    "abs_times_x": (lambda x: x.abs() * x, lambda x: 2 * np.sign(x), {"away_from_zero": 0.01}),
    "neg_square": (lambda x: -(x * x), lambda x: -2 + 0 * x, {}),
    "square": (lambda x: x.square(), lambda x: 2 + 0 * x, {}),
}


@pytest.mark.parametrize("name", SECOND_DERIVATIVES)
@given(data=st.data())
def test_second_derivative_of_elementwise_ops_is_exact(name, data):
    f, f2, options = SECOND_DERIVATIVES[name]
    x = Tensor(data.draw(arrays(shapes(max_dims=2), **options), label="x"), requires_grad=True)
    (g,) = ag.grad(f(x).sum(), [x], create_graph=True)
    assert g.requires_grad
    (h,) = ag.grad(g.sum(), [x])  # elementwise: the Hessian is diagonal
    np.testing.assert_allclose(h.data, f2(x.data), rtol=1e-9, atol=1e-12)


def test_third_derivative():
    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    (g1,) = ag.grad((x**4).sum(), [x], create_graph=True)
    (g2,) = ag.grad(g1.sum(), [x], create_graph=True)
    (g3,) = ag.grad(g2.sum(), [x])
    np.testing.assert_allclose(g3.data, 24 * x.data)


def test_matmul_hessian_vector_product_by_hand():
    """f(A, B) = sum((A B)^2):  df/dA = 2 (A B) B^T,  and  d/dA <df/dA, V> = 2 V B B^T."""
    rng = np.random.default_rng(0)
    A, B, V = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((3, 4))
    a, b = Tensor(A, requires_grad=True), Tensor(B, requires_grad=True)
    (ga,) = ag.grad(((a @ b) ** 2).sum(), [a], create_graph=True)
    np.testing.assert_allclose(ga.data, 2 * (A @ B) @ B.T)
    (ha,) = ag.grad((ga * Tensor(V)).sum(), [a])  # d/dA <2 A B B^T, V> = 2 V B B^T
    np.testing.assert_allclose(ha.data, 2 * V @ B @ B.T, rtol=1e-10)


SECOND_ORDER_OPS = {
    "mul": lambda x, y: x * y * x,
    "div": lambda x, y: x / (y * y + 1.0),
    "matmul": lambda x, y: (x.reshape(-1, 1) @ y.reshape(1, -1)).tanh(),
    "softmax": lambda x, y: (x + y).softmax(axis=-1) if (x + y).ndim else (x + y).exp(),
    "log_softmax": lambda x, y: (x * y).log_softmax(axis=-1) if (x * y).ndim else (x * y).exp(),
    "max": lambda x, y: (x * y).max() ** 2,
    "getitem": lambda x, y: (x.reshape(-1)[np.array([0, 0])] * y.sum()) ** 2,
    "where": None,  # built in the test with a fixed condition
}


@pytest.mark.parametrize("name", SECOND_ORDER_OPS)
@given(shapes_=broadcastable_shapes(2, min_dims=1), data=st.data())
def test_gradgradcheck(name, shapes_, data):
    x = data.draw(arrays(shapes_[0], away_from_zero=0.2, distinct=True), label="x")
    y = data.draw(arrays(shapes_[1], away_from_zero=0.2, distinct=True), label="y")
    fn = SECOND_ORDER_OPS[name]
    if name == "where":
        cond = (x + y) > 0  # fixed, so finite differences do not flip it
        fn = lambda a, b: ag.where(cond, a * a, b * b * b)  # noqa: E731
    assert ag.gradgradcheck(fn, [x, y])


def test_backward_with_create_graph_gives_differentiable_leaf_grads():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x**3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (h,) = ag.grad(x.grad.sum(), [x])
    np.testing.assert_allclose(h.data, 6 * x.data)
