"""The plain-numpy vjps (`autograd.fast_vjps`) give exactly the gradients of the engine-op vjps.

`backward()` and `grad()` use the fast path when they record nothing; ``create_graph=True`` runs the
vjps written with engine ops. Both must agree bit for bit, in float64 and float32, broadcasting
included. (Numerical correctness of the first-order path is `gradcheck`'s job, in test_grad_ops.)
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd import Tensor
from autograd.fast_vjps import FAST_VJPS
from autograd.testing import arrays, broadcastable_shapes, shape_and_axis, shape_and_single_axis, shapes


def _unary(fn, **options):
    def case(data):
        return fn, [data.draw(arrays(data.draw(shapes(), label="shape"), **options), label="x")]

    return case


def _binary(fn, x_options=None, y_options=None):
    def case(data):
        shape_x, shape_y = data.draw(broadcastable_shapes(2), label="shapes")
        x = data.draw(arrays(shape_x, **(x_options or {})), label="x")
        y = data.draw(arrays(shape_y, **(y_options or {})), label="y")
        return fn, [x, y]

    return case


MATMUL_SHAPES = [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 3))]


def _matmul(data):
    shape_x, shape_y = data.draw(st.sampled_from(MATMUL_SHAPES), label="shapes")
    return (lambda a, b: a @ b), [data.draw(arrays(shape_x), label="x"), data.draw(arrays(shape_y), label="y")]


def _power(data):
    """Includes x == 0 and y == 0, where both vjps mask their formula (as torch does)."""
    shape_x, shape_y = data.draw(broadcastable_shapes(2), label="shapes")
    x = np.abs(data.draw(arrays(shape_x), label="x")) * data.draw(st.sampled_from([0.0, 1.0]), label="zero x")
    y = data.draw(arrays(shape_y), label="y") * data.draw(st.sampled_from([0.0, 1.0]), label="zero y")
    return (lambda a, b: a**b), [x, y]


def _sum(data):
    shape, axis = data.draw(shape_and_axis(), label="shape, axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    return (lambda a: a.sum(axis=axis, keepdims=keepdims)), [data.draw(arrays(shape), label="x")]


def _mean(data):
    shape, axis = data.draw(shape_and_axis(), label="shape, axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    return (lambda a: a.mean(axis=axis, keepdims=keepdims)), [data.draw(arrays(shape), label="x")]


def _softmax_family(method):
    def case(data):
        shape, axis = data.draw(shape_and_single_axis(), label="shape, axis")
        return (lambda a: getattr(a, method)(axis=axis)), [data.draw(arrays(shape), label="x")]

    return case


def _reshape(data):
    x = data.draw(arrays(data.draw(shapes(), label="shape")), label="x")
    return (lambda a: a.reshape(-1)), [x]


def _permute(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1), label="shape")), label="x")
    axes = data.draw(st.permutations(range(x.ndim)), label="axes")
    return (lambda a: a.permute(*axes)), [x]


def _expand(data):
    shape_x, shape_y = data.draw(broadcastable_shapes(2), label="shapes")
    target = np.broadcast_shapes(shape_x, shape_y)
    return (lambda a: a.expand(*target)), [data.draw(arrays(shape_x), label="x")]


def _getitem(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=2, min_side=2), label="shape")), label="x")
    rows = np.array(data.draw(st.lists(st.integers(0, x.shape[0] - 1), min_size=1, max_size=5), label="rows"))
    index = data.draw(st.sampled_from([(slice(1, None),), (Ellipsis, 0), (rows,), (rows, rows % x.shape[1])]))
    return (lambda a: a[index]), [x]


def _linear(data):
    """x @ W.T: W's gradient is computed in W's own layout, (g^T x)^T, on both paths."""
    shape_x = data.draw(st.sampled_from([(3, 4), (2, 3, 4), (1, 4)]), label="shape x")
    x, w = data.draw(arrays(shape_x), label="x"), data.draw(arrays((5, 4)), label="w")
    return (lambda a, b: a @ b.T), [x, w]


def _mul_self(data):
    """x * x: both vjps go to one tensor, the second may overwrite the gradient the first read."""
    return (lambda a: a * a), [data.draw(arrays(data.draw(shapes(), label="shape")), label="x")]


CASES = {
    "neg": _unary(lambda a: -a),
    "exp": _unary(lambda a: a.exp()),
    "log": _unary(lambda a: a.log(), positive=True),
    "sqrt": _unary(lambda a: a.sqrt(), positive=True),
    "rsqrt": _unary(lambda a: a.rsqrt(), positive=True),
    "tanh": _unary(lambda a: a.tanh()),
    "square": _unary(lambda a: a.square()),
    "sigmoid": _unary(lambda a: a.sigmoid()),
    "add": _binary(lambda a, b: a + b),
    "sub": _binary(lambda a, b: a - b),
    "mul": _binary(lambda a, b: a * b),
    "mul_self": _mul_self,
    "div": _binary(lambda a, b: a / b, y_options={"away_from_zero": 0.2}),
    "pow": _power,
    "matmul": _matmul,
    "linear": _linear,
    "sum": _sum,
    "mean": _mean,
    "softmax": _softmax_family("softmax"),
    "log_softmax": _softmax_family("log_softmax"),
    "reshape": _reshape,
    "permute": _permute,
    "expand": _expand,
    "getitem": _getitem,
}


def test_every_fast_vjp_is_compared():
    assert {primitive.name for primitive in FAST_VJPS} == set(CASES) - {"mul_self", "linear"}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 0 ** negative: inf in both paths, compared too
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chained", [False, True], ids=["seeded", "chained"])
@given(data=st.data())
def test_fast_vjps_equal_engine_vjps_bit_for_bit(name, dtype, chained, data):
    """``chained``: the op's output feeds another op, so its gradient is an array the walk made
    itself, which the last vjp may overwrite (``fast_vjps_into_g``)."""
    fn, values = CASES[name](data)
    tensors = [Tensor(v.astype(dtype), requires_grad=True) for v in values]
    out = fn(*tensors)
    if chained:
        out = out * Tensor(data.draw(arrays(out.shape), label="factor").astype(dtype))
    seed = data.draw(arrays(out.shape), label="seed").astype(dtype)
    fast = ag.grad(out, tensors, grad_outputs=seed, retain_graph=True)
    engine = ag.grad(out, tensors, grad_outputs=seed, create_graph=True)
    for f, e in zip(fast, engine):
        assert f.dtype == e.dtype == dtype
        np.testing.assert_array_equal(f.data, e.data)


def test_backward_takes_the_fast_path_only_when_nothing_is_recorded():
    """Under create_graph or detect_anomaly the engine vjps run (they name the op inside a vjp)."""
    calls = []
    primitive = next(p for p in FAST_VJPS if p.name == "exp")
    original = primitive.fast_vjps
    primitive.fast_vjps = (lambda g, out, x: calls.append("fast") or original[0](g, out, x),)
    try:
        x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
        x.exp().sum().backward()
        assert calls == ["fast"]
        ag.grad(x.exp().sum(), [x], create_graph=True)
        with ag.detect_anomaly():
            x.exp().sum().backward()
        assert calls == ["fast"]
    finally:
        primitive.fast_vjps = original


SLICE_PATTERNS = {
    "q, k, v split": lambda a: (a[..., 0:2] * a[..., 2:4]).exp() + a[..., 4:6],
    "overlapping slices": lambda a: a[1:] * a[:-1] + a[::2].sum(),
    "rows picked twice": lambda a: a[np.array([0, 2, 0])] * a[np.array([1, 1, 2])] + a[np.array([2])],
    "after another use": lambda a: a.tanh()[..., :3] + a[..., 1:4] * a[..., 2:5],
    "one element picked twice": lambda a: a[(1,) * a.ndim] * a[(1,) * a.ndim] * a[(2,) * a.ndim],
    # the slices' gradients arrive as transposed views (attention's q, k, v heads), added in their memory order
    "transposed slices": lambda a: (
        (a[..., 0:2].transpose(0, -1) * 2.0).exp() + a[..., 2:4].transpose(0, -1) * a[..., 4:6].transpose(0, -1)
    ),
}


@pytest.mark.parametrize("name", SLICE_PATTERNS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_slice_gradients_added_in_place_equal_engine_vjps(name, dtype, data):
    """Several slices of one tensor: their gradients go straight into one array, bit for bit as the
    engine's sum of scattered copies."""
    x = Tensor(data.draw(arrays(data.draw(shapes(min_dims=2, min_side=3), label="shape")), label="x").astype(dtype),
               requires_grad=True)  # fmt: skip
    if x.shape[-1] < 6:
        x = Tensor(np.concatenate([x.data] * 2, axis=-1), requires_grad=True)
    out = SLICE_PATTERNS[name](x)
    seed = data.draw(arrays(out.shape), label="seed").astype(dtype)
    (fast,) = ag.grad(out, [x], grad_outputs=seed, retain_graph=True)
    (engine,) = ag.grad(out, [x], grad_outputs=seed, create_graph=True)
    np.testing.assert_array_equal(fast.data, engine.data)
    out.backward(seed)  # and into .grad, twice: the second call adds
    out = SLICE_PATTERNS[name](x)
    out.backward(seed)
    np.testing.assert_array_equal(x.grad.data, engine.data + engine.data)


def test_rows_picked_from_a_tensor_whose_gradient_is_column_major():
    """The gradient so far can be in Fortran order (here: negated from a transposed view); rows
    picked by index arrays must still land in it, not in a copy."""
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        p = Tensor(rng.standard_normal((3, 4)).astype(dtype), requires_grad=True)
        loss = p[np.array([0, 2]), np.array([1, 3])].sum() + ((1.0 - p).T * 2.0).sum()
        loss.backward()
        expected = np.full((3, 4), -2.0, dtype=dtype)
        expected[0, 1] = expected[2, 3] = -1.0
        np.testing.assert_array_equal(p.grad.data, expected)


OWNERSHIP_PATTERNS = {
    "constant added": lambda a: (a + 1.0) * a,
    "scaled, shifted, exp": lambda a: ((a * 2.0) + 1.0).exp() * a,
    "subtracted both ways": lambda a: (a - 1.0).sigmoid() + (1.0 - a) * a,
    "shared then owned": lambda a: (a * a + a) * (a + 0.5),
}


@pytest.mark.parametrize("name", OWNERSHIP_PATTERNS)
@given(data=st.data())
def test_gradients_handed_on_or_overwritten_in_place_equal_engine_vjps(name, data):
    """A gradient handed whole to the one input that takes it stays the walk's to overwrite; one
    handed to two inputs does not. Either way the result is the engine's, bit for bit."""
    x = Tensor(data.draw(arrays(data.draw(shapes(min_dims=1), label="shape")), label="x"), requires_grad=True)
    out = OWNERSHIP_PATTERNS[name](x)
    seed = data.draw(arrays(out.shape), label="seed")
    (fast,) = ag.grad(out, [x], grad_outputs=seed, retain_graph=True)
    (engine,) = ag.grad(out, [x], grad_outputs=seed, create_graph=True)
    np.testing.assert_array_equal(fast.data, engine.data)
