"""tinygrad_lm.nn and tinygrad_lm.functional: modules find their parameters and names, record
scopes, load and save state; each functional piece matches its formula and the engine's
gradient of it matches central differences."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd as ag
from autograd import Tensor
from tinygrad_lm import functional as F  # noqa: N812
from tinygrad_lm import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 4, rng=np.random.default_rng(0))
        self.layers = nn.ModuleList([nn.Linear(4, 4, rng=np.random.default_rng(i)) for i in range(2)])
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 2, bias=False, rng=np.random.default_rng(5))

    def forward(self, x):
        x = self.inp(x)
        for layer in self.layers:
            x = layer(x).tanh()
        return self.out(self.norm(x))


# ---------------------------------------------------------------------------------------------------
# Modules: registration, names, scopes
# ---------------------------------------------------------------------------------------------------


def test_parameters_and_submodules_are_found_with_dotted_names():
    model = Tiny()
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "inp.weight", "inp.bias", "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
        "norm.weight", "norm.bias", "out.weight",
    ]  # fmt: skip
    assert [p.name for p in model.parameters()] == names  # each parameter knows its own name
    assert [name for name, _ in model.named_modules()] == ["", "inp", "layers", "layers.0", "layers.1", "norm", "out"]
    assert model.layers[1].full_name == "layers.1" and model.layers[-1] is model.layers[1]
    assert model.num_parameters() == 3 * 4 + 4 + 2 * (16 + 4) + 8 + 8
    assert all(p.requires_grad and p.dtype == np.float32 for p in model.parameters())


def test_names_follow_a_module_attached_later_to_a_parent():
    block = Tiny()
    outer = nn.ModuleList([Tiny(), block])
    assert block.full_name == "1" and block.layers[0].full_name == "1.layers.0"
    assert block.layers[0].weight.name == "1.layers.0.weight"

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.h = outer

    Wrapper()
    assert block.layers[0].full_name == "h.1.layers.0" and block.norm.bias.name == "h.1.norm.bias"


def test_replacing_and_deleting_attributes_updates_the_registry():
    model = Tiny()
    model.out = nn.Linear(4, 2, bias=True)
    assert "out.bias" in model.state_dict()
    model.norm.bias = None
    assert "norm.bias" not in model.state_dict()
    del model.out
    assert not any(name.startswith("out.") for name in model.state_dict())
    with pytest.raises(RuntimeError, match=r"super\(\)\.__init__"):

        class Broken(nn.Module):
            def __init__(self):
                self.w = nn.Linear(1, 1)

        Broken()


def test_shared_parameter_is_listed_once_but_saved_under_both_names():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            self.b.weight = self.a.weight

    model = Tied()
    assert [n for n, _ in model.named_parameters()] == ["a.weight", "a.bias", "b.bias"]
    sd = model.state_dict()
    assert list(sd) == ["a.weight", "a.bias", "b.weight", "b.bias"] and sd["a.weight"] is sd["b.weight"]


def test_calling_a_module_records_its_full_name_on_the_ops_inside():
    model = Tiny()
    y = model(Tensor(np.ones((2, 3), np.float32))).sum()
    scopes = {node.scope for node in ag.graph.walk(y) if node.op is not None}
    assert ("layers.0",) in scopes and ("inp",) in scopes and ("norm",) in scopes
    assert () in scopes  # the root pushes no scope (the final sum, the tanh between layers)
    assert ag.current_scope() == ()  # and the scopes were popped again

    outer = nn.ModuleList([Tiny()])
    inner = outer[0]
    y = inner.layers[1](Tensor(np.ones((1, 4), np.float32)))
    assert y.node.scope == ("0.layers.1",)


def test_nested_modules_give_nested_scopes():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Tiny()

        def forward(self, x):
            return self.attn(x)

    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.h = nn.ModuleList([Block()])

        def forward(self, x):
            return self.h[0](x)

    y = Root()(Tensor(np.ones((1, 3), np.float32)))
    matmuls = [n for n in ag.graph.walk(y) if n.op_name == "matmul"]
    assert matmuls[0].scope == ("h.0", "h.0.attn", "h.0.attn.inp")
    assert {n.scope for n in matmuls} >= {("h.0", "h.0.attn", "h.0.attn.out")}


def test_train_eval_zero_grad_and_repr():
    model = Tiny()
    assert model.training and model.layers[0].training
    assert model.eval() is model and not model.layers[1].training and not model.norm.training
    model.train()
    assert model.layers[1].training
    model(Tensor(np.ones((2, 3), np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    text = repr(model)
    assert "Tiny(  # 72 parameters" in text
    assert "(layers): ModuleList(  # 40 parameters" in text
    assert "(0): Linear(in_features=4, out_features=4, bias=True)  # 20 parameters" in text


def test_to_float64_converts_in_place_and_gradients_follow():
    model = Tiny()
    x = Tensor(np.ones((2, 3)))
    model(x.astype(np.float32)).sum().backward()  # leaf nodes now exist, recorded as float32
    assert model.to(np.float64) is model
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in model.parameters())
    model.zero_grad()
    out = model(x)
    assert out.dtype == np.float64
    out.sum().backward()
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
    with pytest.raises(TypeError, match="floating point"):
        model.to(np.int32)


# ---------------------------------------------------------------------------------------------------
# State dicts
# ---------------------------------------------------------------------------------------------------


def test_state_dict_round_trip_copies_values_in():
    a, b = Tiny(), Tiny()
    for p in b.parameters():
        p.data[...] = 7.0
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(pa.data, pb.data) and pa.data is not pb.data, name


def test_load_state_dict_names_every_problem_and_changes_nothing():
    model = Tiny()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    sd = {k: np.zeros_like(v) for k, v in before.items()}
    del sd["norm.bias"], sd["layers.1.weight"]
    sd["inp.weight"] = np.zeros((3, 4))
    sd["out.bias"] = np.zeros(2)
    sd["extra"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    message = str(info.value)
    for word in ("missing keys: layers.1.weight, norm.bias", "unexpected keys: out.bias, extra",
                 "inp.weight: got (3, 4), expected (4, 3)", "nothing was loaded"):  # fmt: skip
        assert word in message, message
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_load_state_dict_non_strict_and_bad_values():
    model = Tiny()
    sd = model.state_dict()
    partial = {"inp.weight": np.full((4, 3), 2.0), "bogus": np.zeros(3)}
    result = model.load_state_dict(partial, strict=False)
    assert "bogus" in result.unexpected_keys and "norm.weight" in result.missing_keys
    assert np.all(model.inp.weight.data == 2.0)
    with pytest.raises(ValueError, match="wrong shapes"):
        model.load_state_dict({"inp.weight": np.zeros(3)}, strict=False)
    with pytest.raises(ValueError, match="not numeric"):
        model.load_state_dict({**sd, "norm.weight": np.array(["a"] * 4)})
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("inp.weight", np.zeros((4, 3)))])


# ---------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------


def test_linear_embedding_layernorm_match_numpy():
    rng = np.random.default_rng(0)
    lin = nn.Linear(5, 3, rng=rng)
    lin.bias.data[...] = rng.standard_normal(3)
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(lin(Tensor(x)).data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-5, atol=1e-6)
    emb = nn.Embedding(7, 3, rng=rng)
    ids = np.array([[0, 6, 6], [2, 1, 0]])
    assert np.array_equal(emb(ids).data, emb.weight.data[ids]) and emb(Tensor(ids)).shape == (2, 3, 3)
    norm = nn.LayerNorm(5)
    norm.weight.data[...] = rng.standard_normal(5)
    norm.bias.data[...] = rng.standard_normal(5)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * norm.weight.data + norm.bias.data
    np.testing.assert_allclose(norm(Tensor(x)).data, expected, rtol=1e-5, atol=1e-5)


def test_layer_init_is_gpt2_and_deterministic():
    a = nn.Linear(200, 300, rng=np.random.default_rng(3))
    b = nn.Linear(200, 300, rng=np.random.default_rng(3))
    assert np.array_equal(a.weight.data, b.weight.data) and a.weight.shape == (300, 200)
    assert abs(a.weight.data.std() - 0.02) < 0.001 and abs(a.weight.data.mean()) < 0.001
    assert not a.bias.data.any()
    norm = nn.LayerNorm(6, bias=False)
    assert np.all(norm.weight.data == 1.0) and norm.bias is None


def test_dropout_scales_in_training_and_is_identity_in_eval():
    x = Tensor(np.ones((200, 100), np.float32), requires_grad=True)
    drop = nn.Dropout(0.25, np.random.default_rng(0))
    y = drop(x)
    kept = y.data != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    assert np.array_equal(x.grad.data != 0, kept)  # gradient flows only where kept
    again = nn.Dropout(0.25, np.random.default_rng(0))(x)
    assert np.array_equal(again.data, y.data)  # same generator state, same mask
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        nn.Dropout(1.0)


def test_containers():
    layers = nn.ModuleList()
    layers.append(nn.Linear(1, 1)).append(nn.Linear(1, 1))
    assert len(layers) == 2 and [m.full_name for m in layers] == ["0", "1"]
    with pytest.raises(IndexError, match="out of range"):
        layers[2]
    with pytest.raises(TypeError, match="Modules"):
        layers.append(3)
    d = nn.ModuleDict({"a": nn.Linear(1, 2), "b": nn.LayerNorm(2)})
    assert d["a"] is d.a and "b" in d and list(d) == ["a", "b"] and len(d) == 2
    assert [k for k, _ in d.items()] == d.keys() and d.values()[1] is d.b


# ---------------------------------------------------------------------------------------------------
# Functional pieces: formulas and gradients
# ---------------------------------------------------------------------------------------------------

small_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def _normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def test_gelu_is_the_tanh_approximation():
    x = np.linspace(-6, 6, 101)
    expected = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(F.gelu(Tensor(x)).data, expected, rtol=1e-12, atol=1e-14)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    assert np.max(np.abs(expected - exact)) < 1e-3  # and close to the exact GELU


@settings(max_examples=25)
@given(shape=small_shapes, seed=st.integers(0, 2**16))
def test_gelu_gradient(shape, seed):
    assert ag.gradcheck(F.gelu, [_normal(shape, seed) * 2])


@settings(max_examples=25)
@given(shape=small_shapes, seed=st.integers(0, 2**16), affine=st.booleans())
def test_layer_norm_value_and_gradient(shape, seed, affine):
    x = _normal(shape + (5,), seed)
    w, b = _normal(5, seed + 1), _normal(5, seed + 2)
    if affine:
        y = F.layer_norm(Tensor(x), Tensor(w), Tensor(b)).data
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * w + b, rtol=1e-10, atol=1e-10)
        assert ag.gradcheck(lambda x, w, b: F.layer_norm(x, w, b), [x, w, b])
    else:
        assert ag.gradcheck(lambda x: F.layer_norm(x, None, None), [x])


def _cross_entropy_reference(logits, targets, ignore=-1):
    flat, t = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    shifted = flat - flat.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    rows = [i for i in range(len(t)) if t[i] != ignore]
    return -np.mean([logp[i, t[i]] for i in rows]) if rows else 0.0


@settings(max_examples=25)
@given(batch=st.integers(1, 3), time=st.integers(1, 4), vocab=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_cross_entropy_value_and_gradient_with_ignored_targets(batch, time, vocab, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, time, vocab)) * 3
    targets = rng.integers(-1, vocab, (batch, time))  # -1: ignored
    loss = F.cross_entropy(Tensor(logits), targets)
    np.testing.assert_allclose(loss.item(), _cross_entropy_reference(logits, targets), rtol=1e-12, atol=1e-12)
    assert ag.gradcheck(lambda z: F.cross_entropy(z, targets), [logits])


@pytest.mark.parametrize("ignore_index", [0, 3, -100])
def test_cross_entropy_ignores_exactly_the_ignore_index_it_is_given(ignore_index):
    rng = np.random.default_rng(ignore_index + 200)
    logits = rng.standard_normal((3, 5, 4))
    targets = rng.integers(0, 4, (3, 5))
    targets[0, :2] = ignore_index  # (3 and 0 are also real classes: those positions must still be skipped)
    loss = F.cross_entropy(Tensor(logits), targets, ignore_index=ignore_index)
    expected = _cross_entropy_reference(logits, targets, ignore=ignore_index)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12, atol=1e-12)
    assert ag.gradcheck(lambda z: F.cross_entropy(z, targets, ignore_index=ignore_index), [logits])
    if ignore_index != -1:  # -1 is then an ordinary target, and out of range
        targets[1, 1] = -1
        with pytest.raises(ValueError, match=rf"target -1 is outside \[0, 4\) and is not ignore_index={ignore_index}"):
            F.cross_entropy(Tensor(logits), targets, ignore_index=ignore_index)


def test_cross_entropy_refuses_a_negative_target_that_is_not_the_ignored_one():
    logits = Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"target -2 is outside \[0, 4\) and is not ignore_index=-1"):
        F.cross_entropy(logits, np.array([[0, 1, -2], [-1, 3, 2]]))


def test_cross_entropy_all_ignored_is_zero_with_zero_gradient():
    logits = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)
    loss = F.cross_entropy(logits, np.full((2, 3), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert not logits.grad.data.any()


def test_cross_entropy_errors():
    logits = Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="do not match"):
        F.cross_entropy(logits, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="target 4 is outside"):
        F.cross_entropy(logits, np.full((2, 3), 4))


def test_causal_mask():
    m = F.causal_mask(2, 4)
    assert m.dtype == np.float32 and not m.flags.writeable
    hidden = m < -1e30  # a huge finite negative: exp() after the softmax's shift is exactly 0
    assert np.isfinite(m).all()
    assert np.array_equal(hidden, [[False, False, False, True], [False, False, False, False]])
    m64 = F.causal_mask(3, 3, np.dtype(np.float64))
    assert np.array_equal(m64 < -1e300, np.triu(np.ones((3, 3), bool), 1)) and np.isfinite(m64).all()


def _attention_reference(q, k, v):
    tq, tk, hs = q.shape[-2], k.shape[-2], q.shape[-1]
    out = np.zeros(q.shape)
    for index in np.ndindex(q.shape[:-2]):
        for i in range(tq):
            visible = tk - tq + i + 1
            scores = k[index][:visible] @ q[index][i] / math.sqrt(hs)
            w = np.exp(scores - scores.max())
            out[index][i] = (w / w.sum()) @ v[index][:visible]
    return out


@settings(max_examples=25)
@given(lead=st.lists(st.integers(1, 3), max_size=2).map(tuple), tq=st.integers(1, 4), extra=st.integers(0, 2),
       hs=st.integers(1, 4), seed=st.integers(0, 2**16))  # fmt: skip
def test_causal_attention_value_and_gradient(lead, tq, extra, hs, seed):
    rng = np.random.default_rng(seed)
    tk = tq + extra  # queries are the last tq of tk positions (as with a key/value cache)
    q, k, v = (rng.standard_normal(lead + (t, hs)) for t in (tq, tk, tk))
    out = F.attention(Tensor(q), Tensor(k), Tensor(v))
    np.testing.assert_allclose(out.data, _attention_reference(q, k, v), rtol=1e-10, atol=1e-12)
    assert ag.gradcheck(lambda q, k, v: F.attention(q, k, v), [q, k, v])


def test_attention_rows_are_probability_weighted_and_dropout_applies():
    q = Tensor(np.zeros((1, 3, 2)))
    v = Tensor(np.arange(6.0).reshape(1, 3, 2))
    out = F.attention(q, q, v).data  # equal scores: position i averages values 0..i
    np.testing.assert_allclose(out[0], [[0, 1], [1, 2], [2, 3]])
    dropped = F.attention(q, q, v, dropout=lambda w: w * 0.0).data
    assert not dropped.any()


def test_softmax_and_dropout_functions():
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    y = F.softmax(Tensor(x)).data
    np.testing.assert_allclose(y.sum(-1), 1.0)
    np.testing.assert_allclose(y[0], np.exp(x[0]) / np.exp(x[0]).sum())
    t = Tensor(np.ones(5))
    assert F.dropout(t, 0.5, np.random.default_rng(0), training=False) is t
    assert F.dropout(t, 0.0, np.random.default_rng(0)) is t
    assert F.dropout(t.astype(np.float32), 0.5, np.random.default_rng(0)).dtype == np.float32


def test_a_removed_module_becomes_a_root_again():
    model = Tiny()
    norm = model.norm
    assert norm.full_name == "norm" and norm.weight.name == "norm.weight"
    model.norm = nn.LayerNorm(4)
    assert norm.full_name == "" and norm.weight.name == "weight"
    y = norm(Tensor(np.ones((1, 4), np.float32)))
    assert y.node.scope == ()  # a root pushes no scope
    layer = model.layers[0]
    del model.layers
    assert layer.full_name == "0"  # still inside its list, which is now a root


def test_evaluating_restores_the_mode_even_after_an_error():
    from tinygrad_lm.nn import Dropout

    layer = Dropout(0.5, np.random.default_rng(0))
    with pytest.raises(KeyError), layer.evaluating():
        assert not layer.training
        raise KeyError("boom")
    assert layer.training
    layer.eval()
    with layer.evaluating():
        pass
    assert not layer.training


def test_a_deep_copy_made_after_a_forward_pass_has_gradients_of_its_own():
    """A parameter used in a graph carries its leaf node; a copy must not carry it along, or the
    copy's backward would write into the original's ``.grad``."""
    import copy

    from tinygrad_lm import GPT, GPTConfig

    model = GPT(GPTConfig(11, 8, n_layer=1, n_head=2, n_embd=16))
    idx = np.arange(8)[None] % 11
    model(idx, idx)[1].backward()
    model.zero_grad()
    twin = copy.deepcopy(model)
    twin(idx, idx)[1].backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in twin.parameters())
    assert twin.transformer.wte.weight is twin.lm_head.weight  # the tie survives the copy
    x = Tensor(np.ones(3), requires_grad=True)
    x.grad = Tensor(np.full(3, 2.0))
    y = copy.deepcopy(x)
    assert y.requires_grad and y.grad is not x.grad and np.array_equal(y.grad.data, x.grad.data)
    assert y.data is not x.data


def test_a_deep_copy_keeps_memory_that_tensors_shared():
    import copy

    x = Tensor(np.ones(3), requires_grad=True)
    a, b = copy.deepcopy([x, x.detach()])
    a.data[0] = 5.0
    assert b.data[0] == 5.0 and x.data[0] == 1.0
