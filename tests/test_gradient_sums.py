"""The backward walk's in-place work changes where numbers are written, never which numbers.

`GradientSums` adds into arrays the walk owns, an index's gradient stays `Scattered` until it is
summed, and the vjps of a primitive with `reuses_g` may compute into its gradient's memory (`kernels.Reusable`).
Each is checked here against the plain computation, bit for bit.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd import backward, kernels, ops
from autograd.testing import arrays, broadcastable_shapes
from tinygrad_lm import GPT, GPTConfig

MARKED = {name: p for name, p in vars(ops).items() if isinstance(p, ag.Primitive) and p.reuses_g}


def test_the_marked_vjps_are_the_ones_that_read_g_once():
    assert set(MARKED) == {"neg", "exp", "log", "sqrt", "square", "tanh", "rsqrt", "sigmoid", "relu",
                           "absolute", "sub", "mul", "div", "sin", "cos", "log2", "expm1", "erf",
                           "softplus"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MARKED))
@given(shapes=broadcastable_shapes(2, min_dims=1), data=st.data())
def test_a_vjp_computed_into_g_gives_the_same_bits(name, shapes, data):
    primitive = MARKED[name]
    x = data.draw(arrays(shapes[0], positive=True), label="x")
    inputs = [x] if len(primitive.vjps) == 1 else [x, data.draw(arrays(shapes[1], positive=True), label="y")]
    out = np.asarray(primitive.forward(*inputs))
    g = data.draw(arrays(out.shape), label="g")
    for i, vjp in enumerate(primitive.vjps):
        expected = np.asarray(vjp(g.copy(), out, *inputs))
        given_g = g.copy()
        got = vjp(kernels.Reusable.of(given_g), out, *inputs)  # (the walk makes it a plain array)
        np.testing.assert_array_equal(np.asarray(got), expected, err_msg=f"{name} vjp {i}")


def test_the_first_op_on_a_reusable_g_computes_into_it():
    g, y = np.full((3, 4), 2.0), np.arange(12.0).reshape(3, 4)
    got = ops.square.vjps[0](kernels.Reusable.of(g), None, y)  # g * y * 2.0: both products in g's memory
    assert np.shares_memory(got, g)
    np.testing.assert_array_equal(got, 2.0 * y * 2.0)
    broadcast = ops.mul.vjps[0](kernels.Reusable.of(np.ones(4)), None, None, np.ones((3, 4)))  # (3, 4): not g's shape
    assert broadcast.shape == (3, 4)


def test_reusable_writes_only_into_itself_once():
    g = np.arange(4.0)
    reusable = kernels.Reusable.of(g)
    first = reusable * 2.0  # computed into g; the result may be reused by the next op of the expression
    second = reusable + 1.0  # a new array: g itself is reused once
    assert np.shares_memory(first, g) and not np.shares_memory(second, g)
    assert first.reusable and type(second) is np.ndarray
    assert type(reusable.reshape(2, 2) * 3.0) is np.ndarray  # views are never reused
    np.testing.assert_array_equal(first, [0.0, 2.0, 4.0, 6.0])
    fresh = kernels.Reusable.of(np.arange(4.0))
    assert (fresh > 1.0).dtype == bool and fresh.reusable  # a comparison makes a new (bool) array


def test_scattered_is_zeros_except_at_the_index_when_used_as_an_array():
    s = kernels.scatter_add(np.ones((2, 3)), (4, 3), (np.array([0, 0]), slice(None)))
    np.testing.assert_array_equal(np.asarray(s), [[2, 2, 2], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(s + 1.0, np.asarray(s) + 1.0)
    assert isinstance(ops.scatter_add(ag.Tensor(np.ones(2)), shape=(3,), index=(slice(0, 2),)).data, np.ndarray)


def _gpt_gradients(reuse_from_bytes, monkeypatch):
    monkeypatch.setattr(backward, "REUSE_MIN_BYTES", reuse_from_bytes)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16), seed=0)
    idx = np.random.default_rng(0).integers(0, 13, (3, 8))
    model(idx, np.roll(idx, 1, axis=1))[1].backward()
    return {name: p.grad.data for name, p in model.named_parameters()}


def test_the_gpt_gradients_are_the_same_bits_with_and_without_reuse(monkeypatch):
    everywhere = _gpt_gradients(0, monkeypatch)  # reuse every gradient a marked vjp may reuse
    nowhere = _gpt_gradients(1 << 62, monkeypatch)
    for name in everywhere:
        assert type(everywhere[name]) is np.ndarray
        np.testing.assert_array_equal(everywhere[name], nowhere[name], err_msg=name)


def test_a_gradient_the_caller_holds_is_never_written_into():
    x = ag.Tensor(np.arange(1.0, 5.0), requires_grad=True)
    h = x * 3.0
    y = (h.exp() * 2.0).sum()
    (gh, gx) = ag.grad(y, [h, x])  # h's gradient goes to the caller and on into x's
    np.testing.assert_allclose(gh.data, 2.0 * np.exp(h.data))
    np.testing.assert_allclose(gx.data, 6.0 * np.exp(h.data))
