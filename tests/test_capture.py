"""`autograd.capture`: a replayed function gives what calling it gives, graph included.

A replay must be indistinguishable from a call: the same values and gradients bit for bit, the same
graph (ops, shapes, scopes) for higher-order gradients and drawings, a new trace whenever something
the trace depends on changes, and a clear error instead of a wrong answer when the function reads
its inputs' values in Python.
"""

import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd as ag
from autograd import Tensor
from tinygrad_lm import GPT, GPTConfig
from tinygrad_lm import functional as F  # noqa: N812
from tinygrad_lm.model import _CAPTURED_BODIES, CausalSelfAttention, _captured_body


def make_mlp(rng, dtype=np.float64):
    w1 = Tensor(rng.standard_normal((4, 6)).astype(dtype), requires_grad=True)
    b1 = Tensor(rng.standard_normal(6).astype(dtype), requires_grad=True)
    w2 = Tensor(rng.standard_normal((6, 3)).astype(dtype), requires_grad=True)

    def mlp(x):
        with ag.scope("hidden"):
            h = (x @ w1 + b1).tanh() * 2.0
        return (h @ w2).softmax(axis=-1) - h[..., :3].sigmoid()

    return mlp, [w1, b1, w2]


def grads_of(fn, params, x):
    for p in params:
        p.grad = None
    x = Tensor(x, requires_grad=True)
    y = fn(x)
    (y * y).sum().backward()
    return y.data.copy(), [p.grad.data.copy() for p in params] + [x.grad.data.copy()]


@settings(max_examples=15, deadline=None)
@given(rows=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_replay_gives_the_values_and_gradients_of_a_call_bit_for_bit(rows, seed):
    rng = np.random.default_rng(seed)
    mlp, params = make_mlp(rng)
    captured = ag.capture(mlp)
    for n in rows + rows:  # every shape twice: a trace, then replays
        x = rng.standard_normal((n, 4))
        got_y, got_grads = grads_of(captured, params, x)
        want_y, want_grads = grads_of(mlp, params, x)
        np.testing.assert_array_equal(got_y, want_y)
        for got, want in zip(got_grads, want_grads):
            np.testing.assert_array_equal(got, want)
    assert captured.stats["traces"] == len(set(rows))
    assert captured.stats["replays"] == 2 * len(rows) - len(set(rows))


def test_replayed_graph_is_the_called_graph():
    rng = np.random.default_rng(0)
    mlp, _ = make_mlp(rng)
    captured = ag.capture(mlp)
    x = Tensor(rng.standard_normal((2, 4)), requires_grad=True)
    captured(x)
    replayed = ag.graph.walk(captured(x))
    called = ag.graph.walk(mlp(x))
    assert captured.stats["replays"] == 1

    def describe(nodes):
        return [(n.op_name, n.shape, n.dtype, n.scope, n.requires_grad) for n in nodes]

    assert describe(replayed) == describe(called)
    assert any(n.scope == ("hidden",) for n in replayed)


def test_higher_order_gradients_go_through_a_replay():
    rng = np.random.default_rng(1)
    mlp, params = make_mlp(rng)
    captured = ag.capture(mlp)
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    results = []
    for fn in (captured, captured, mlp):  # trace, replay, call
        (gx,) = ag.grad(fn(x).sum(), x, create_graph=True)
        (ggx,) = ag.grad((gx * gx).sum(), x)
        results.append(ggx.data)
    np.testing.assert_array_equal(results[1], results[2])


def test_parameters_are_read_at_each_replay():
    rng = np.random.default_rng(2)
    mlp, params = make_mlp(rng)
    captured = ag.capture(mlp)
    x = rng.standard_normal((2, 4))
    captured(Tensor(x))
    params[0].data *= 0.5  # an optimizer's in-place update
    params[1].data = rng.standard_normal(6)  # a new array of the same shape and dtype
    np.testing.assert_array_equal(captured(Tensor(x)).data, mlp(Tensor(x)).data)
    assert captured.stats == {"traces": 1, "replays": 1, "direct": 0}


def test_changes_the_graph_depends_on_make_a_new_trace():
    rng = np.random.default_rng(3)
    mlp, params = make_mlp(rng)
    captured = ag.capture(mlp)
    x = Tensor(rng.standard_normal((2, 4)))
    captured(x)
    captured(Tensor(rng.standard_normal((3, 4))))  # another shape
    captured(Tensor(rng.standard_normal((2, 4)).astype(np.float32)))  # another dtype
    captured(Tensor(x.data, requires_grad=True))  # the argument requires grad
    with ag.no_grad():
        y = captured(x)  # grad mode
    assert not y.requires_grad and y.node is None
    with ag.scope("outer"):
        captured(x)  # scope
    captured(x, key="v2")  # the caller's key
    params[2].requires_grad = False  # a frozen parameter
    y = captured(x)
    assert captured.stats["traces"] == 8
    y.sum().backward()
    assert params[2].grad is None and params[0].grad is not None


def test_no_grad_replay_records_nothing():
    rng = np.random.default_rng(4)
    mlp, _ = make_mlp(rng)
    captured = ag.capture(mlp)
    x = Tensor(rng.standard_normal((2, 4)))
    with ag.no_grad():
        captured(x)
        y = captured(x)
    assert captured.stats["replays"] == 1
    assert not y.requires_grad and y.node is None
    np.testing.assert_array_equal(y.data, mlp(x).data)


def test_a_function_that_reads_values_in_python_is_refused_at_its_first_replay():
    def clipped(x):
        return x * 2.0 if x.data.sum() > 0 else x * -1.0  # a branch on the data: frozen by a trace

    captured = ag.capture(clipped)
    captured(Tensor(np.ones(3)))
    with pytest.raises(ag.CaptureError, match="reads its inputs' values in Python"):
        captured(Tensor(-np.ones(3)))


def test_tensors_not_made_by_engine_ops_cannot_be_returned():
    with pytest.raises(ag.CaptureError, match="no engine op inside it computed"):
        ag.capture(lambda x: Tensor(x.data * 2.0))(Tensor(np.ones(2)))
    with pytest.raises(ag.CaptureError, match="must return a Tensor"):
        ag.capture(lambda x: (x * 2.0).data)(Tensor(np.ones(2)))


def test_several_outputs_and_an_argument_returned_as_it_is():
    captured = ag.capture(lambda x, y: (x * y, x, (x + y).sum()))
    x, y = Tensor(np.arange(3.0), requires_grad=True), Tensor(np.ones(3))
    captured(x, y)
    product, same, total = captured(x, y)
    assert same is x and captured.stats["replays"] == 1
    np.testing.assert_array_equal(product.data, x.data)
    total.backward()
    np.testing.assert_array_equal(x.grad.data, np.ones(3))


def test_anomaly_mode_and_an_enclosing_trace_call_the_function():
    inner = ag.capture(lambda x: (x * 3.0).exp())
    outer = ag.capture(lambda x: inner(x).sum())
    x = Tensor(np.ones(2), requires_grad=True)
    outer(x)  # traced: inner runs as a call, so its ops are in outer's trace
    assert inner.stats == {"traces": 0, "replays": 0, "direct": 1}
    trace = next(iter(outer._traces.values()))
    assert [step.op.name for step in trace.steps] == ["mul", "exp", "sum"]
    with ag.detect_anomaly():
        inner(x)
    assert inner.stats["direct"] == 2


def test_least_recently_used_traces_are_forgotten():
    captured = ag.capture(lambda x: x * 2.0, max_traces=2)
    for n in (1, 2, 1, 3, 1, 2):
        captured(Tensor(np.ones(n)))
    assert captured.stats["traces"] == 4  # 1, 2, 3 and 2 again (evicted by 3)
    with pytest.raises(ValueError, match="max_traces"):
        ag.capture(lambda x: x, max_traces=0)
    with pytest.raises(TypeError, match="expected a function"):
        ag.capture(3)


def test_a_replay_frees_what_no_gradient_needs():
    """Intermediate results the vjps do not read die during the forward pass, as with a call."""
    rng = np.random.default_rng(5)
    w = Tensor(rng.standard_normal((4, 4)), requires_grad=True)
    kept: list[weakref.ref] = []

    def fn(x):
        h = x @ w  # matmul's vjps read x and w, not h ...
        h2 = h + 1.0  # ... and add reads nothing: h and h2 need not outlive the forward pass
        kept.append(weakref.ref(h2.data))
        return (h2 * 2.0).tanh()

    captured = ag.capture(fn)
    first = captured(Tensor(rng.standard_normal((3, 4))))  # traced: recording keeps no array alive
    assert first.requires_grad and kept[0]() is None
    y = captured(Tensor(rng.standard_normal((3, 4))))  # replayed, and checked against a call
    trace = next(iter(captured._traces.values()))
    assert len(trace.steps) == 4
    assert y.requires_grad
    assert kept[1]() is None  # the checking call's h2 is gone too


def gpt_config(dropout=0.0):
    return GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, dropout=dropout)


def test_an_uncompiled_gpt_runs_its_python_on_every_call(monkeypatch):
    """Without compile(), a print or breakpoint in the attention runs on every step."""
    calls = []
    forward = CausalSelfAttention.forward
    monkeypatch.setattr(CausalSelfAttention, "forward", lambda self, *a: calls.append(1) or forward(self, *a))
    model = GPT(gpt_config(), seed=0)
    idx = np.zeros((1, 8), dtype=np.int64)
    for _ in range(4):
        model(idx, idx)[1].backward()
    assert len(calls) == 4 * 2  # every call, both blocks
    assert model not in _CAPTURED_BODIES
    model.compile()
    for _ in range(4):
        model(idx, idx)
    assert len(calls) == 8 + 3 * 2  # compiled: the call before the trace, the trace, the first replay's check
    assert _captured_body(model).stats == {"traces": 1, "replays": 2, "direct": 1}


def test_compile_returns_the_model_and_changes_no_value():
    model = GPT(gpt_config(), seed=0)
    twin = GPT(gpt_config(), seed=0)
    assert twin.compile() is twin
    idx = np.random.default_rng(1).integers(0, 11, (2, 8))
    for _ in range(3):
        for m in (model, twin):
            m.zero_grad()
            m(idx, idx)[1].backward()
        for (name, p), q in zip(model.named_parameters(), twin.parameters()):
            np.testing.assert_array_equal(p.grad.data, q.grad.data, err_msg=name)


def test_gpt_training_steps_are_replayed_and_match_calling_the_blocks():
    model = GPT(gpt_config(), seed=0).compile()
    rng = np.random.default_rng(0)
    for _ in range(4):  # called, traced, replayed, replayed
        idx, targets = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))
        model.zero_grad()
        _, loss = model(idx, targets)
        loss.backward()
        replayed = {name: p.grad.data.copy() for name, p in model.named_parameters()}
        model.zero_grad()
        x = model.transformer.wte(idx) + model.transformer.wpe(np.arange(8))
        logits = model.body(x)  # the blocks called, not replayed
        F.cross_entropy(logits, targets).backward()
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(replayed[name], p.grad.data, err_msg=name)
    assert _captured_body(model).stats == {"traces": 1, "replays": 2, "direct": 1}


def test_gpt_with_active_dropout_or_recorded_attention_is_called_not_replayed():
    model = GPT(gpt_config(dropout=0.5), seed=0).compile()
    idx = np.zeros((1, 8), dtype=np.int64)
    first, second = model(idx)[0].data, model(idx)[0].data
    assert not np.array_equal(first, second)  # fresh masks each call
    with model.evaluating():
        for _ in range(3):
            model(idx)
    weights = model.attention_weights(idx)
    assert len(weights) == 2 and weights[0].shape == (1, 2, 8, 8)
    assert _captured_body(model).stats["replays"] == 1  # only the third evaluation call


def test_gpt_edited_in_place_is_traced_again():
    model = GPT(gpt_config(), seed=0).compile()
    idx = np.zeros((1, 8), dtype=np.int64)
    for _ in range(3):
        model(idx)
    model.transformer.ln_f.weight = Tensor(np.full(8, 3.0, dtype=np.float32), requires_grad=True)
    for _ in range(3):
        logits, _ = model(idx)
    embedded = model.transformer.wte(idx) + model.transformer.wpe(np.arange(8))
    np.testing.assert_array_equal(logits.data, model.body(embedded).data)
    assert _captured_body(model).stats == {"traces": 2, "replays": 2, "direct": 2}


def test_the_same_tensor_twice_is_not_two_tensors():
    captured = ag.capture(lambda a, b: a * b)
    x, p, q = Tensor(np.full(2, 3.0)), Tensor(np.full(2, 2.0)), Tensor(np.full(2, 5.0))
    captured(x, x)
    captured(x, x)
    np.testing.assert_array_equal(captured(p, q).data, [10.0, 10.0])
    np.testing.assert_array_equal(captured(p, q).data, [10.0, 10.0])
    assert captured.stats["traces"] == 2


def test_indexing_with_an_argument_is_refused_at_the_trace():
    table = Tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    with pytest.raises(ag.CaptureError, match="'getitem' uses an argument's values as its index="):
        ag.capture(lambda ids: table[ids])(Tensor(np.array([0, 2])))


def test_a_failed_check_calls_the_function_from_then_on():
    def scaled(x):  # tiny outputs: the check is relative, not blind below 1e-5
        return x * (1e-7 if x.data[0] > 0 else 3e-7)

    captured = ag.capture(scaled)
    captured(Tensor(np.ones(2)))
    with pytest.raises(ag.CaptureError, match="called, not replayed, from now on"):
        captured(Tensor(-np.ones(2)))
    np.testing.assert_array_equal(captured(Tensor(-np.ones(2))).data, [-3e-7, -3e-7])
    assert captured.stats["direct"] == 1

    lenient = ag.capture(scaled, fallback=True)
    lenient(Tensor(np.ones(2)))
    with pytest.warns(RuntimeWarning, match="different result"):
        y = lenient(Tensor(-np.ones(2)))
    np.testing.assert_array_equal(y.data, [-3e-7, -3e-7])


def test_a_replay_records_what_the_function_records_under_enable_grad():
    w = Tensor(np.ones(3), requires_grad=True)

    def fn(x):
        with ag.enable_grad():
            return x * w

    captured = ag.capture(fn)
    with ag.no_grad():
        captured(Tensor(np.ones(3)))
        y = captured(Tensor(np.ones(3)))
    assert y.requires_grad and y.node is not None


def test_lists_and_named_tuples_come_back_as_they_went():
    from collections import namedtuple

    Pair = namedtuple("Pair", "double triple")
    as_list = ag.capture(lambda x: [x * 2.0, x * 3.0])
    as_pair = ag.capture(lambda x: Pair(x * 2.0, x * 3.0))
    x = Tensor(np.ones(2))
    for _ in range(2):
        assert isinstance(as_list(x), list)
        assert as_pair(x).triple.data[0] == 3.0


def test_a_training_loop_that_calls_train_every_step_replays():
    model = GPT(gpt_config(), seed=0).compile()
    idx = np.zeros((1, 8), dtype=np.int64)
    version = model._version
    for _ in range(4):
        model.train()  # what Trainer does before every step: no change, so no new trace
        model(idx, idx)
    assert model._version == version
    assert _captured_body(model).stats == {"traces": 1, "replays": 2, "direct": 1}
    model.eval()
    assert model._version != version


def test_a_change_counts_in_its_module_and_those_above_only():
    model, other = GPT(gpt_config(), seed=0), GPT(gpt_config(), seed=1)
    block = model.transformer.h[0]
    before = (model._version, block._version, model.transformer.h[1]._version, other._version)
    block.attn.n_head = 2  # an attribute of a module deep inside the model
    assert model._version > before[0] and block._version > before[1]
    assert (model.transformer.h[1]._version, other._version) == before[2:]  # its siblings and other models: no


def test_trace_after_lets_shapes_seen_once_simply_run():
    """GPT uses trace_after=1: generation without a cache (a longer sequence each call) never traces."""
    captured = ag.capture(lambda x: x * 2.0, trace_after=1)
    for n in range(1, 6):
        captured(Tensor(np.ones(n)))
    assert captured.stats == {"traces": 0, "replays": 0, "direct": 5}
    for _ in range(3):
        np.testing.assert_array_equal(captured(Tensor(np.ones(2))).data, [2.0, 2.0])
    assert captured.stats == {"traces": 1, "replays": 2, "direct": 5}
    with pytest.raises(ValueError, match="trace_after"):
        ag.capture(lambda x: x, trace_after=-1)


# A replay writes an elementwise result into an input array nothing needs any more. These functions
# share their intermediates in each way such a write could go wrong if it were made anyway.
def _view_read_later(x, w):
    y = x * w
    v = y.reshape(-1)  # a view of y, read after y's last direct use below
    z = y + 1.0
    return z * 3.0 + v.reshape(z.shape)


def _transposed_view_read_later(x, w):
    y = x * w
    t = y.T
    return (y + 1.0) + t.T


def _kept_for_backward(x, w):
    y = x * 2.0
    z = y * w  # mul keeps y for w's gradient
    return z + 1.0


def _argument_and_parameter(x, w):
    return (x + w) * (w - x)


def _returned_and_used(x, w):
    y = x * w
    return y, y + 1.0


def _same_array_twice(x, w):
    y = x * w
    return y * y + 1.0


def _long_chain(x, w):
    h = (x * w + 1.0).tanh()
    return ((h * h) * 0.5 - h).exp() / (h + 2.0) - (h - 0.5).square()


IN_PLACE_HAZARDS = [
    _view_read_later, _transposed_view_read_later, _kept_for_backward, _argument_and_parameter,
    _returned_and_used, _same_array_twice, _long_chain,
]  # fmt: skip


@pytest.mark.parametrize("fn", IN_PLACE_HAZARDS, ids=lambda fn: fn.__name__)
@pytest.mark.parametrize("w_shape", [(3, 4), (4,)], ids=["same shape", "broadcast"])
def test_results_written_in_place_change_no_value_gradient_or_input(fn, w_shape):
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal(w_shape), requires_grad=True)
    captured = ag.capture(lambda x: fn(x, w))
    for _ in range(4):  # traced, replayed and checked, replayed twice
        x_array = rng.standard_normal((3, 4))
        x_before, w_before = x_array.copy(), w.data.copy()
        outs = []
        for f in (captured, lambda x: fn(x, w)):
            w.grad = None
            x = Tensor(x_array, requires_grad=True)
            y = f(x)
            ys = y if isinstance(y, tuple) else (y,)
            sum((t * t).sum() for t in ys).backward()
            outs.append(([t.data.copy() for t in ys], x.grad.data.copy(), w.grad.data.copy()))
            np.testing.assert_array_equal(x_array, x_before)  # an argument is never written into
            np.testing.assert_array_equal(w.data, w_before)  # nor a tensor from outside
        (got_ys, got_gx, got_gw), (want_ys, want_gx, want_gw) = outs
        for got, want in zip(got_ys, want_ys):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_gx, want_gx)
        np.testing.assert_array_equal(got_gw, want_gw)


def test_a_linear_layer_and_gelu_reuse_their_arrays_when_replayed():
    """``x @ W.T + b`` adds into the product's array; GELU's ``x^2 * c + d`` into ``x^2``'s."""
    rng = np.random.default_rng(0)
    w, b = Tensor(rng.standard_normal((8, 4)), requires_grad=True), Tensor(np.zeros(8), requires_grad=True)
    captured = ag.capture(lambda x: F.gelu(F.linear(x, w, b)))
    for _ in range(2):
        captured(Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True))
    trace = next(iter(captured._traces.values()))
    written = [(step.op.name, step.in_place) for step in trace.steps if step.in_place is not None]
    assert written == [("add", 0), ("mul", 0), ("add", 0)]  # + b, x^2 * c, + d


def test_read_only_views_and_memory_a_primitive_keeps_are_never_written():
    """An expand that only adds size-1 axes gives a read-only (broadcast) array of the right shape,
    and a user's primitive may return memory it keeps (a table): a replay leaves both alone."""
    table = np.arange(6.0).reshape(2, 3)
    rows = ag.Primitive("rows", lambda x: table[: x.shape[0]], vjps=(lambda g, out, x: g * 0.0,), save=())
    b = Tensor(np.ones((1, 3)))
    cases = [
        (lambda a: (a * 2.0).expand(1, 3) + b, (3,)),
        (lambda a: rows(a * 1.0) * 3.0 + a, (2, 3)),
    ]
    for fn, shape in cases:
        captured = ag.capture(fn)
        for i in range(4):
            x = Tensor(np.arange(float(np.prod(shape))).reshape(shape) + i, requires_grad=True)
            np.testing.assert_array_equal(captured(x).data, fn(x).data)
        np.testing.assert_array_equal(table, np.arange(6.0).reshape(2, 3))


def test_a_one_number_view_keeps_its_value_for_drawing():
    """A node keeps a one-number result (`Node.value`, drawn by viz): the array it views is not
    written into after it, although nothing else reads it."""

    def fn(a):
        y = a * 2.0
        first = y[0:1] * 3.0
        return first.sum() + (y + 1.0).sum()

    captured = ag.capture(fn)
    for i in range(3):
        a = Tensor(np.arange(4.0) + i, requires_grad=True)
        out = captured(a)
        picked = next(node for node in ag.graph.walk(out) if node.op_name == "getitem")
        np.testing.assert_array_equal(picked.value, 2.0 * a.data[0:1])


def test_a_first_replay_that_raises_falls_back_to_calling():
    calls = []

    def flaky(x):  # a primitive with a side effect: its second run fails
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("second run")
        return x * 2.0

    double = ag.Primitive("flaky", flaky, vjps=(lambda g, out, x: g * 2.0,), save=())
    captured = ag.capture(lambda x: double(x) + 1.0, fallback=True)
    x = Tensor(np.ones(3), requires_grad=True)
    captured(x)  # traced
    with pytest.warns(RuntimeWarning, match="raised ValueError: second run"):
        np.testing.assert_array_equal(captured(x).data, np.full(3, 3.0))  # the replay failed: called instead
    np.testing.assert_array_equal(captured(x).data, np.full(3, 3.0))
    assert captured.stats == {"traces": 1, "replays": 1, "direct": 1}  # one replay tried, then called
    calls.clear()
    strict = ag.capture(lambda x: double(x) + 1.0)
    strict(x)
    with pytest.raises(ag.CaptureError, match="raised ValueError"):
        strict(x)
