"""Adding a primitive of your own: a forward in numpy and one vjp (as in the README).

The vjp runs on numpy arrays in a plain backward() and on Tensors with create_graph=True, so it
is written with what works on both: operators, numpy ufuncs (a Tensor answers np.exp with the
engine's exp) and the primitives of `autograd.ops`."""

import numpy as np
import pytest
from hypothesis import given

import autograd as ag
from autograd import Tensor
from autograd.testing import arrays, shapes

# softplus(x) = log(1 + e^x), computed stably by numpy's logaddexp; d/dx = sigmoid(x).
softplus = ag.Primitive(
    "softplus",
    lambda x: np.logaddexp(0.0, x),
    vjps=(lambda g, out, x: g * ag.ops.sigmoid(x),),  # the engine's sigmoid: stable, and on arrays or Tensors
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


def test_the_one_vjp_runs_on_arrays_in_backward_and_on_tensors_with_create_graph():
    seen = []
    def cube_vjp(g, out, x):
        seen.append(type(g))
        return g * 3.0 * np.square(x)

    cube = ag.Primitive("cube", lambda x: x**3, vjps=(cube_vjp,), save=(0,))
    x = Tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    cube(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, 3.0 * x.data**2)
    (g,) = ag.grad(cube(x).sum(), [x], create_graph=True)
    (h,) = ag.grad(g.sum(), [x])
    np.testing.assert_array_equal(h.data, 6.0 * x.data)
    assert seen == [np.ndarray, Tensor]


def test_a_vjp_written_with_tensor_methods_gets_one_clear_line():
    old_style = ag.Primitive("softplus_methods", lambda x: np.logaddexp(0.0, x),
                             vjps=(lambda g, out, x: g * x.sigmoid(),), save=(0,))  # fmt: skip
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with pytest.raises(TypeError, match="vjp of 'softplus_methods' for input 0: .* receives numpy arrays"):
        old_style(x).sum().backward()
    (g,) = ag.grad(old_style(x).sum(), [x], create_graph=True)  # with Tensors it runs
    np.testing.assert_allclose(g.data, 1.0 / (1.0 + np.exp(-x.data)))


def test_a_vjp_may_use_numpy_ufuncs_which_tensors_answer_with_engine_ops():
    softplus_np = ag.Primitive("softplus_np", lambda x: np.logaddexp(0.0, x),
                               vjps=(lambda g, out, x: g / (1.0 + np.exp(-x)),), save=(0,))  # fmt: skip
    assert isinstance(ag.ops.sigmoid(np.zeros(2)), np.ndarray)  # a primitive on arrays: an array, nothing recorded
    assert ag.gradcheck(softplus_np, [np.random.default_rng(0).standard_normal(4)])
    assert ag.gradgradcheck(softplus_np, [np.random.default_rng(1).standard_normal(4)])


def _scaled_square(plain_factor: float, recorded_factor: float) -> ag.Primitive:
    """x^2 whose vjp is scaled by one factor on arrays (backward) and another on Tensors (create_graph)."""

    def vjp(g, out, x):
        return g * x * (2.0 * (plain_factor if isinstance(g, np.ndarray) else recorded_factor))

    return ag.Primitive("scaled_square", np.square, vjps=(vjp,), save=(0,))


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_gradcheck_catches_a_vjp_off_by_one_part_in_a_hundred_thousand(mode):
    x = np.random.default_rng(0).uniform(0.5, 2.0, 600 if mode == "fast" else 6)
    assert ag.gradcheck(_scaled_square(1.0, 1.0), [x], mode=mode)
    with pytest.raises(ag.GradcheckError, match=r"input 0, shape \(\d+,\): "):
        ag.gradcheck(_scaled_square(1.0 + 1e-5, 1.0 + 1e-5), [x], mode=mode)


def test_gradcheck_checks_the_vjp_in_both_modes():
    x = np.array([0.5, 1.0, 2.0])
    with pytest.raises(ag.GradcheckError) as error:
        ag.gradcheck(_scaled_square(1.0, 1.001), [x])  # right in backward(), wrong with create_graph
    report = str(error.value)
    assert "input 0, shape (3,): ok" in report
    assert "input 0, shape (3,) with create_graph=True: 3 of 3 entries differ" in report


def test_gradgradcheck_checks_the_first_derivative_too():
    """A first derivative off by a constant factor has a second derivative that agrees with it: only
    checking the first derivative numerically catches it."""
    x = np.array([0.5, 1.0, 2.0])
    with pytest.raises(ag.GradcheckError, match="input 0"):
        ag.gradgradcheck(_scaled_square(1.01, 1.01), [x])


UNSAVED = {  # a vjp, what its primitive saved, and what it must add to save=
    "out, not saved": (lambda g, out, x: g * out, (0,), '"out"'),
    "x through a ufunc": (lambda g, out, x: np.exp(x) * g, ("out",), "0"),
    "x through a method": (lambda g, out, x: g * x.mean(), ("out",), "0"),
}


@pytest.mark.parametrize("case", sorted(UNSAVED))
@pytest.mark.parametrize("create_graph", [False, True])
def test_a_vjp_that_reads_what_its_primitive_did_not_save_is_told_what_to_save(case, create_graph):
    vjp, save, missing = UNSAVED[case]
    faulty = ag.Primitive("faulty", np.exp, vjps=(vjp,), save=save)
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError) as info:
        ag.grad(faulty(x).sum(), x, create_graph=create_graph)
    message = str(info.value)
    assert message.startswith("vjp of 'faulty' for input 0: ") and "\n" not in message
    assert f"so the vjp was handed only its shape: add {missing} to the primitive's save=" in message


@pytest.mark.parametrize("options", [dict(eps=0), dict(eps=-1e-6), dict(eps=float("nan")), dict(atol=-1.0),
                                     dict(rtol=float("inf")), dict(n_directions=0)])  # fmt: skip
def test_gradcheck_refuses_a_step_or_tolerance_it_cannot_use(options):
    with pytest.raises(ValueError, match=rf"gradcheck: {next(iter(options))} must be") as info:
        ag.gradcheck(lambda x: x.sum(), [np.ones(3)], **options)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=rf"gradcheck: {next(iter(options))} must be"):
        ag.gradgradcheck(lambda x: (x * x).sum(), [np.ones(3)], **options)


def test_a_vjp_that_returns_a_plain_array_gives_tensors_with_create_graph_too():
    """A vjp may return a constant array (a zero gradient, say); with create_graph=True it becomes a
    constant Tensor of the gradient's graph, never an ndarray in ``.grad``."""
    flat = ag.Primitive("flat", np.floor, vjps=(lambda g, out, x: np.zeros(x.shape, x.dtype),), save=(0,))
    x = Tensor(np.array([0.5, 1.5]), requires_grad=True)
    (g,) = ag.grad(flat(x).sum(), x, create_graph=True)
    assert type(g) is Tensor and not g.data.any()
    flat(x).sum().backward(create_graph=True)
    assert type(x.grad) is Tensor and type(x.grad.data) is np.ndarray
