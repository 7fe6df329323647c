"""The backward walk: reuse, diamonds, long chains, no_grad, detach, accumulation, retain_graph."""

import gc
import weakref

import numpy as np
import pytest

import autograd as ag
from autograd import Tensor


def leaf(values, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


def test_interface_example():
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    w = Tensor([[1.0, 2.0]] * 4, requires_grad=True)
    y = ((x @ w).tanh() * 2 - 1).sum()
    y.backward()
    assert w.dtype == np.float32 and x.dtype == np.float64
    t = np.tanh(x.data @ w.data)
    np.testing.assert_allclose(x.grad.numpy(), (2 * (1 - t**2)) @ w.data.T, rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), x.data.T @ (2 * (1 - t**2)), rtol=1e-5)
    assert isinstance(y.item(), float) and isinstance(x.data, np.ndarray)


def test_tensor_used_many_times_accumulates():
    x = leaf([2.0, -1.0])
    y = x * x + x * 3.0 + x  # dy/dx = 2x + 4
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 4)


def test_diamond():
    x = leaf(1.5)
    a = x.exp()
    b, c = a * 2.0, a.tanh()
    (b + c).backward()
    e = np.exp(1.5)
    np.testing.assert_allclose(x.grad.data, (2 + (1 - np.tanh(e) ** 2)) * e)


def test_chain_of_ten_thousand_ops_needs_no_recursion():
    x = leaf(1.0)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.data, 1.0001**10_000)


def test_grads_accumulate_across_backward_calls_like_torch():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 3.0 + 2 * x.data)


def test_leaf_grads_never_alias_each_other():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data += 1  # in place, as an optimizer might
    np.testing.assert_allclose(b.grad.data, 1.0)
    (a + b).sum().backward()  # accumulation into one must not touch the other
    np.testing.assert_allclose(b.grad.data, 2.0)


def test_grad_of_a_sum_is_writable():
    x = leaf(np.ones((2, 3)))
    x.sum().backward()
    x.grad.data *= 2  # not a read-only broadcast view
    np.testing.assert_allclose(x.grad.data, 2.0)


def test_no_grad_records_nothing():
    x = leaf([1.0])
    with ag.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.node is None

    @ag.no_grad()
    def double(t):
        return t * 2.0

    assert not double(x).requires_grad
    assert (x * 2.0).requires_grad  # recording is back on
    with ag.no_grad(), ag.enable_grad():
        assert (x * 2.0).requires_grad


def test_detach_cuts_the_graph():
    x = leaf([1.0, 2.0])
    y = (x * x).detach() * x  # d/dx treats x*x as a constant
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, x.data**2)
    assert np.shares_memory(x.detach().data, x.data)


def test_branches_that_need_no_gradient_are_not_computed():
    calls = []

    def forward(x):
        return x * 1.0

    def vjp(g, out, x):
        calls.append(1)
        return g

    spy = ag.Primitive("spy", forward, vjps=(vjp,), save=())
    x = leaf([1.0])
    constant = Tensor(np.array([2.0]))
    (spy(constant) * x).sum().backward()  # spy's input needs no gradient: no node, no vjp
    assert calls == []
    (spy(x) * constant).sum().backward()
    assert calls == [1]


def test_grad_only_visits_what_leads_to_the_inputs():
    calls = []
    spy = ag.Primitive("spy", lambda x: x * 1.0, vjps=(lambda g, out, x: calls.append(1) or g,), save=())
    x, y = leaf([1.0]), leaf([2.0])
    out = (spy(x) * 2.0 + y * 3.0).sum()
    (gy,) = ag.grad(out, [y])
    np.testing.assert_allclose(gy.data, [3.0])
    assert calls == [] and x.grad is None and y.grad is None


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, 4 * x.data)


def test_second_backward_through_a_released_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(ag.GraphReleasedError, match="retain_graph=True"):
        y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data)  # untouched by the failed call


def test_released_graph_keeps_its_structure():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward()
    ops = [n.op_name for n in ag.graph.walk(y)]
    assert ops[-1] == "sum" and "exp" in ops and "mul" in ops


def test_activations_are_freed_when_no_vjp_needs_them():
    x = leaf(np.ones(4))
    a = x * 2.0  # mul saves x and the constant, not its output
    ref = weakref.ref(a)
    b = a + 1.0  # add saves nothing: `a` can go as soon as we drop it
    del a
    gc.collect()
    assert ref() is None
    b.sum().backward()
    np.testing.assert_allclose(x.grad.data, 2.0)


def test_backward_releases_saved_arrays():
    x = leaf(np.ones(4))
    y = x.exp()  # exp saves its output
    node = y.node
    y.sum().backward()
    assert node.saved is None and node.released


def test_grad_function_does_not_touch_dot_grad_and_supports_many_outputs():
    x = leaf([1.0, 2.0])
    y1, y2 = (x * x).sum(), (x * 3.0).sum()
    gx, = ag.grad([y1, y2], [x])
    np.testing.assert_allclose(gx.data, 2 * x.data + 3)
    assert x.grad is None


def test_grad_with_grad_outputs_and_intermediate_inputs():
    x = leaf([1.0, 2.0, 3.0])
    h = x * 2.0
    y = h.exp()
    gh, gx = ag.grad(y, [h, x], grad_outputs=np.array([1.0, 0.0, -1.0]))
    np.testing.assert_allclose(gh.data, np.exp(h.data) * [1, 0, -1])
    np.testing.assert_allclose(gx.data, 2 * gh.data)


def test_grad_unused_input():
    x, z = leaf([1.0]), leaf([5.0])
    y = (x * 2.0).sum()
    with pytest.raises(ValueError, match="was not used"):
        ag.grad(y, [x, z], retain_graph=True)
    gx, gz = ag.grad(y, [x, z], allow_unused=True)
    np.testing.assert_allclose(gz.data, [0.0])


def test_backward_on_a_leaf_itself():
    x = leaf(3.0)
    x.backward()
    np.testing.assert_allclose(x.grad.data, 1.0)


def test_backward_with_explicit_gradient():
    x = leaf([1.0, 2.0])
    seed = np.array([10.0, 20.0])
    (x * 3.0).backward(gradient=seed)
    np.testing.assert_allclose(x.grad.data, [30.0, 60.0])
    x.grad.data += 1
    np.testing.assert_allclose(seed, [10.0, 20.0])  # the caller's array is not the .grad


def test_gradients_of_every_node():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    y = h.sum()
    grads = ag.graph.gradients(y)
    np.testing.assert_allclose(grads[h.node].data, [1.0, 1.0])
    np.testing.assert_allclose(grads[x.node].data, [3.0, 3.0])
    assert x.grad is None


def test_an_op_keeps_only_what_the_gradients_it_owes_will_read():
    """``h * 2.0`` needs nothing of ``h`` for h's gradient (just the 2.0): h's array is freed with h,
    though the graph still leads through it; ``h * w`` keeps h for w's gradient."""
    x = Tensor(np.ones((4, 5)), requires_grad=True)
    h = x + 1.0
    alive = weakref.ref(h.data)
    y = h * 2.0
    del h
    assert alive() is None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.full((4, 5), 2.0))

    w = Tensor(np.full((4, 5), 3.0), requires_grad=True)
    h = x + 1.0
    alive = weakref.ref(h.data)
    z = h * w
    del h
    assert alive() is not None  # w's gradient is dz * h
    z.sum().backward()
    np.testing.assert_array_equal(w.grad.data, np.full((4, 5), 2.0))


def test_assigning_requires_grad_freezes_a_leaf_that_was_used_before():
    """``p.requires_grad = False`` (how torch users freeze a parameter) takes effect on the next use,
    even for a leaf already in an earlier graph; a non-leaf refuses, as in torch."""
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    (x @ w).sum().backward()
    x.grad = w.grad = None
    w.requires_grad = False
    (x @ w).sum().backward()
    assert w.grad is None
    np.testing.assert_array_equal(x.grad.data, np.full((2, 3), 2.0))
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (x * 2.0).requires_grad = False
    with pytest.raises(TypeError, match="floats only"):
        Tensor(np.arange(3)).requires_grad = True


def test_a_transposed_weight_gets_its_gradient_in_its_own_layout():
    """``x @ W.T`` (every Linear): W.grad is a C-ordered array, as W is, equal to x^T g transposed."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w = Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    g = rng.standard_normal((2, 3, 5))
    (x @ w.T).backward(g)
    assert w.grad.data.flags.c_contiguous
    np.testing.assert_allclose(w.grad.data, (x.data.reshape(6, 4).T @ g.reshape(6, 5)).T, rtol=1e-12)
    np.testing.assert_allclose(x.grad.data, g @ w.data, rtol=1e-12)


def test_assigning_the_value_requires_grad_already_has_keeps_the_graph():
    w = Tensor(np.ones(3), requires_grad=True)
    y = (w * 2.0).sum()
    w.requires_grad = True
    (g,) = ag.grad(y, w)
    np.testing.assert_array_equal(g.data, [2.0, 2.0, 2.0])
