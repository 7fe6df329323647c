"""The GPT: nanoGPT's parameter names and layout, GPT-2's math checked against an independent plain
numpy implementation, gradients of the whole model against central differences, training, and
clear errors for bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd as ag
from autograd import Tensor
from tinygrad_lm import GPT, GPTConfig
from tinygrad_lm.model import Block, CausalSelfAttention
from tinygrad_lm.optim import AdamW


def nanogpt_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict layout of nanoGPT's GPT, written out from its model file."""
    C, V = cfg.n_embd, cfg.vocab_size
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (cfg.block_size, C)}
    for i in range(cfg.n_layer):
        h = f"transformer.h.{i}."
        layer = {
            "ln_1.weight": (C,), "ln_1.bias": (C,),
            "attn.c_attn.weight": (3 * C, C), "attn.c_attn.bias": (3 * C,),
            "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
            "ln_2.weight": (C,), "ln_2.bias": (C,),
            "mlp.c_fc.weight": (4 * C, C), "mlp.c_fc.bias": (4 * C,),
            "mlp.c_proj.weight": (C, 4 * C), "mlp.c_proj.bias": (C,),
        }  # fmt: skip
        shapes.update({h + k: s for k, s in layer.items() if cfg.bias or not k.endswith(".bias")})
    shapes["transformer.ln_f.weight"] = (C,)
    if cfg.bias:
        shapes["transformer.ln_f.bias"] = (C,)
    shapes["lm_head.weight"] = (V, C)
    return shapes


def random_state_dict(cfg: GPTConfig, seed: int, scale: float = 0.5) -> dict[str, np.ndarray]:
    """A nanoGPT-layout state dict built by hand (lm_head tied: the same array as wte)."""
    rng = np.random.default_rng(seed)
    sd = {name: rng.standard_normal(shape) * scale for name, shape in nanogpt_shapes(cfg).items()}
    for name in sd:
        if ".ln_" in name and name.endswith(".weight"):
            sd[name] = 1.0 + 0.3 * rng.standard_normal(sd[name].shape)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def numpy_gpt(sd: dict[str, np.ndarray], cfg: GPTConfig, idx: np.ndarray, targets=None):
    """GPT-2's forward pass in plain numpy, written from the formulas with explicit loops over
    batch, heads and positions (shares no code with the model)."""

    def layer_norm(x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        y = (x - mean) / np.sqrt(var + 1e-5) * sd[name + ".weight"]
        return y + sd[name + ".bias"] if name + ".bias" in sd else y

    def linear(x, name):
        y = x @ sd[name + ".weight"].T
        return y + sd[name + ".bias"] if name + ".bias" in sd else y

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    B, T = idx.shape
    C, nh = cfg.n_embd, cfg.n_head
    hs = C // nh
    x = np.stack([[sd["transformer.wte.weight"][idx[b, t]] + sd["transformer.wpe.weight"][t] for t in range(T)]
                  for b in range(B)])  # fmt: skip
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        qkv = linear(layer_norm(x, p + "ln_1"), p + "attn.c_attn")
        q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]
        heads = np.zeros((B, T, C))
        for b in range(B):
            for h in range(nh):
                cols = slice(h * hs, (h + 1) * hs)
                for t in range(T):
                    scores = np.array([q[b, t, cols] @ k[b, j, cols] for j in range(t + 1)]) / math.sqrt(hs)
                    weights = np.exp(scores - scores.max())
                    weights /= weights.sum()
                    heads[b, t, cols] = sum(weights[j] * v[b, j, cols] for j in range(t + 1))
        x = x + linear(heads, p + "attn.c_proj")
        x = x + linear(gelu(linear(layer_norm(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
    logits = layer_norm(x, "transformer.ln_f") @ sd["lm_head.weight"].T
    if targets is None:
        return logits, None
    losses = []
    for b in range(B):
        for t in range(T):
            if targets[b, t] != -1:
                z = logits[b, t]
                losses.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[targets[b, t]])
    return logits, float(np.mean(losses)) if losses else 0.0


CFG = GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8)


# ---------------------------------------------------------------------------------------------------
# Config and parameters
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, error, words",
    [
        (dict(n_embd=10, n_head=4), ValueError, "n_embd=10 is not divisible by n_head=4"),
        (dict(vocab_size=0), ValueError, "vocab_size must be positive"),
        (dict(n_layer=-1), ValueError, "n_layer must be positive"),
        (dict(block_size=2.0), TypeError, "block_size must be an int"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
        (dict(dropout=-0.1), ValueError, "dropout"),
        (dict(bias="yes"), TypeError, "bias must be True or False"),
    ],
)
def test_config_validation(fields, error, words):
    base = dict(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4)
    with pytest.raises(error, match=words):
        GPTConfig(**{**base, **fields})


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_has_nanogpt_names_shapes_and_tied_head(bias):
    cfg = GPTConfig(vocab_size=13, block_size=5, n_layer=3, n_head=2, n_embd=6, bias=bias)
    model = GPT(cfg, seed=0)
    sd = model.state_dict()
    expected = nanogpt_shapes(cfg)
    assert list(sd) == list(expected)  # same names, in nanoGPT's order
    assert {k: v.shape for k, v in sd.items()} == expected
    assert all(v.dtype == np.float32 for v in sd.values())
    assert sd["lm_head.weight"] is sd["transformer.wte.weight"]
    assert model.lm_head.weight is model.transformer.wte.weight
    names = [n for n, _ in model.named_parameters()]
    assert names == [k for k in expected if k != "lm_head.weight"]  # the tied weight once, as wte
    assert [p.name for p in model.parameters()] == names
    assert model.num_parameters() == sum(math.prod(s) for k, s in expected.items() if k != "lm_head.weight")


def test_gpt2_initialisation_is_deterministic_from_the_seed():
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=4, n_head=4, n_embd=64)
    a, b, c = GPT(cfg, seed=3).state_dict(), GPT(cfg, seed=3).state_dict(), GPT(cfg, seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["transformer.wte.weight"], c["transformer.wte.weight"])
    for name, value in a.items():
        if name.endswith("c_proj.weight"):
            assert abs(value.std() - 0.02 / math.sqrt(2 * cfg.n_layer)) < 0.002, name
        elif value.ndim == 2:
            assert abs(value.std() - 0.02) < 0.002, name
        elif ".ln_" in name and name.endswith(".weight"):
            assert np.all(value == 1.0), name
        else:
            assert not value.any(), name


def test_repr_counts_parameters():
    text = repr(GPT(CFG))
    assert text.startswith(f"GPT(  # {GPT(CFG).num_parameters():,} parameters")
    assert "(attn): CausalSelfAttention(  #" in text and "(lm_head): Linear(in_features=8, out_features=11" in text


# ---------------------------------------------------------------------------------------------------
# The math: hand-checked values
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_logits_and_loss_match_plain_numpy_on_a_hand_built_nanogpt_state_dict(bias):
    cfg = GPTConfig(vocab_size=7, block_size=5, n_layer=2, n_head=2, n_embd=6, bias=bias)
    sd = random_state_dict(cfg, seed=1)
    model = GPT(cfg, seed=0).to(np.float64)
    model.load_state_dict(sd)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 7, (3, 5))
    targets = rng.integers(-1, 7, (3, 5))
    logits, loss = model(idx, targets)
    expected_logits, expected_loss = numpy_gpt(sd, cfg, idx, targets)
    assert logits.shape == (3, 5, 7) and logits.dtype == np.float64
    np.testing.assert_allclose(logits.data, expected_logits, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(loss.item(), expected_loss, rtol=1e-12)
    short_logits, no_loss = model(idx[:, :2])  # shorter sequences: the same causal prefix
    assert no_loss is None
    np.testing.assert_allclose(short_logits.data, expected_logits[:, :2], rtol=1e-10, atol=1e-10)


def test_loaded_state_dict_is_what_the_model_then_holds():
    sd = random_state_dict(CFG, seed=2)
    model = GPT(CFG, seed=0)
    model.load_state_dict(sd)
    out = model.state_dict()
    assert list(out) == list(sd)
    for name in sd:
        np.testing.assert_array_equal(out[name], sd[name].astype(np.float32), err_msg=name)
    assert out["lm_head.weight"] is out["transformer.wte.weight"]


def test_float32_model_agrees_with_float64_numpy():
    sd = random_state_dict(CFG, seed=5)
    model = GPT(CFG)
    model.load_state_dict(sd)
    idx = np.random.default_rng(1).integers(0, CFG.vocab_size, (2, CFG.block_size))
    logits, _ = model(idx)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits.data, numpy_gpt(sd, CFG, idx)[0], rtol=1e-4, atol=1e-4)


def test_by_hand_blocks_that_add_nothing_leave_the_unembedded_embeddings():
    """With the residual branches' output projections zero, each block adds exactly zero, so
    logits = layer_norm(wte[idx] + wpe[t]) @ wte^T: small enough to write out by hand."""
    cfg = GPTConfig(vocab_size=3, block_size=2, n_layer=1, n_head=1, n_embd=2, bias=True)
    model = GPT(cfg).to(np.float64)
    sd = {k: np.zeros_like(v, dtype=np.float64) for k, v in model.state_dict().items()}
    wte = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    sd.update({
        "transformer.wte.weight": wte, "lm_head.weight": wte,
        "transformer.wpe.weight": np.array([[0.0, 1.0], [1.0, 0.0]]),
        "transformer.ln_f.weight": np.array([1.0, 1.0]), "transformer.ln_f.bias": np.array([0.5, 0.0]),
        "transformer.h.0.ln_1.weight": np.ones(2), "transformer.h.0.ln_2.weight": np.ones(2),
        "transformer.h.0.attn.c_attn.weight": np.ones((6, 2)), "transformer.h.0.mlp.c_fc.weight": np.ones((8, 2)),
    })  # fmt: skip
    model.load_state_dict(sd)
    # token 0 at t=0: x = (1, 0) + (0, 1) = (1, 1): zero variance, normalised to (0, 0), + bias (0.5, 0)
    # token 2 at t=1: x = (3, 1) + (1, 0) = (4, 1): mean 2.5, sd 1.5, normalised (1, -1) (up to eps)
    logits, loss = model(np.array([[0, 2]]), np.array([[2, -1]]))
    r = 1.5 / math.sqrt(1.5**2 + 1e-5)
    n1 = np.array([0.5 + r, -r])
    expected = np.array([[[0.5, 0.0, 1.5], [n1 @ wte[0], n1 @ wte[1], n1 @ wte[2]]]])
    np.testing.assert_allclose(logits.data, expected, rtol=1e-12, atol=1e-12)
    z = expected[0, 0]
    np.testing.assert_allclose(loss.item(), np.log(np.exp(z).sum()) - z[2], rtol=1e-12)


def test_attention_is_causal_a_later_token_never_changes_earlier_logits():
    model = GPT(CFG, seed=1)
    idx = np.random.default_rng(0).integers(0, CFG.vocab_size, (2, CFG.block_size))
    changed = idx.copy()
    changed[:, -1] = (changed[:, -1] + 1) % CFG.vocab_size
    a, b = model(idx)[0].data, model(changed)[0].data
    np.testing.assert_array_equal(a[:, :-1], b[:, :-1])
    assert not np.allclose(a[:, -1], b[:, -1])


def test_ignored_targets_drop_out_of_the_mean():
    model = GPT(CFG, seed=2).to(np.float64)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    logits, full = model(idx, targets)
    masked = targets.copy()
    masked[0, :4] = -1
    _, partial = model(idx, masked)
    z = logits.data.reshape(-1, 11)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    keep = masked.reshape(-1) != -1
    expected = -np.mean(logp[keep, masked.reshape(-1)[keep]])
    np.testing.assert_allclose(partial.item(), expected, rtol=1e-12)
    assert model(idx, np.full((2, 6), -1))[1].item() == 0.0


def test_integer_tensors_and_lists_are_accepted():
    model = GPT(CFG)
    idx = np.array([[1, 2, 3]])
    a = model(idx, idx)[1].item()
    assert model(Tensor(idx), Tensor(idx))[1].item() == a == model([[1, 2, 3]], [[1, 2, 3]])[1].item()


# ---------------------------------------------------------------------------------------------------
# Gradients of the whole model
# ---------------------------------------------------------------------------------------------------


def check_model_gradients(model: GPT, idx, targets, seed: int) -> None:
    """For every parameter tensor p: the engine's d loss/dp along a random direction u equals the
    central difference (loss(p + eps u) - loss(p - eps u)) / 2 eps, in float64."""
    rng = np.random.default_rng(seed)
    model.to(np.float64).zero_grad()
    _, loss = model(idx, targets)
    loss.backward()
    eps = 1e-6
    for name, p in model.named_parameters():
        u = rng.standard_normal(p.shape)
        analytic = float(np.sum(p.grad.data * u))
        original = p.data.copy()
        with ag.no_grad():
            p.data[...] = original + eps * u
            plus = model(idx, targets)[1].item()
            p.data[...] = original - eps * u
            minus = model(idx, targets)[1].item()
            p.data[...] = original
        numerical = (plus - minus) / (2 * eps)
        assert abs(analytic - numerical) <= 1e-7 + 1e-5 * abs(numerical), (
            f"{name}: engine {analytic:.10g}, central difference {numerical:.10g}"
        )


@st.composite
def tiny_setups(draw):
    n_head = draw(st.integers(1, 3))
    cfg = GPTConfig(
        vocab_size=draw(st.integers(2, 9)),
        block_size=draw(st.integers(1, 5)),
        n_layer=draw(st.integers(1, 2)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
    )
    batch, time = draw(st.integers(1, 3)), draw(st.integers(1, cfg.block_size))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cfg.vocab_size, (batch, time))
    targets = rng.integers(0, cfg.vocab_size, (batch, time))
    targets[rng.random((batch, time)) < draw(st.sampled_from([0.0, 0.3]))] = -1
    return cfg, idx, targets, seed


@settings(max_examples=30)
@given(setup=tiny_setups())
def test_whole_model_gradient_matches_central_differences(setup):
    cfg, idx, targets, seed = setup
    model = GPT(cfg, seed=seed)
    model.load_state_dict(random_state_dict(cfg, seed, scale=0.4))  # larger than init: every path matters
    check_model_gradients(model, idx, targets, seed)


def test_gradient_reaches_every_parameter_and_the_tied_weight_sums_both_uses():
    model = GPT(CFG, seed=0).to(np.float64)
    model.load_state_dict(random_state_dict(CFG, 0))
    idx = np.array([[1, 2, 3, 4]])
    _, loss = model(idx, np.array([[2, 3, 4, 5]]))
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape and p.grad.data.any() for p in model.parameters())
    wte = model.transformer.wte.weight
    # rows of tokens never seen as input still get gradient from the unembedding
    assert wte.grad.data[7].any() and not set(idx.ravel()) & {7}


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------


def test_adamw_overfits_one_small_batch_to_near_zero_loss():
    cfg = GPTConfig(vocab_size=12, block_size=8, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 12, (4, 8))
    targets = rng.integers(0, 12, (4, 8))
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=1e-2, betas=(0.9, 0.99))
    losses = []
    for _ in range(150):
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[0] > 2.0 and losses[-1] < 0.05, losses[::10]


def test_configure_optimizers_decays_matrices_only():
    model = GPT(CFG)
    opt = model.configure_optimizers(0.1, 1e-3)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(model.parameters())
    assert isinstance(opt, AdamW)


def test_dropout_only_in_training_mode_and_reproducible():
    cfg = GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8, dropout=0.3)
    idx = np.random.default_rng(0).integers(0, 11, (2, 6))
    a, b = GPT(cfg, seed=1), GPT(cfg, seed=1)
    first, second = a(idx)[0].data, a(idx)[0].data
    assert not np.array_equal(first, second)  # fresh masks each call
    assert np.array_equal(first, b(idx)[0].data)  # same seed, same masks
    a.eval()
    np.testing.assert_array_equal(a(idx)[0].data, a(idx)[0].data)
    plain = GPT(GPTConfig(**{**cfg.to_dict(), "dropout": 0.0}), seed=1)
    np.testing.assert_array_equal(a(idx)[0].data, plain(idx)[0].data)


# ---------------------------------------------------------------------------------------------------
# Scopes: ops know their module
# ---------------------------------------------------------------------------------------------------


def test_ops_are_scoped_by_module_and_parameters_named():
    model = GPT(CFG)
    _, loss = model(np.array([[1, 2]]), np.array([[2, 3]]))
    nodes = ag.graph.walk(loss)
    scopes = {n.scope for n in nodes if n.op is not None}
    assert ("transformer.h.0", "transformer.h.0.attn", "transformer.h.0.attn.c_attn") in scopes
    assert ("transformer.h.1", "transformer.h.1.mlp", "transformer.h.1.mlp.c_fc") in scopes
    assert ("transformer.wte",) in scopes and ("lm_head",) in scopes and ("transformer.ln_f",) in scopes
    assert () in scopes  # the embedding sum and the loss belong to the root, GPT itself
    leaves = {n.name for n in nodes if n.is_leaf and n.requires_grad}
    assert leaves == {name for name, _ in model.named_parameters()}
    assert isinstance(model.transformer.h[0], Block) and isinstance(model.transformer.h[0].attn, CausalSelfAttention)


# ---------------------------------------------------------------------------------------------------
# Bad input gets a clear error
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "idx, targets, error, words",
    [
        (np.array([[1, 11]]), None, ValueError, r"token id 11, outside the vocabulary \[0, 11\)"),
        (np.array([[-1, 2]]), None, ValueError, "token id -1"),
        (np.zeros((1, 7), int), None, ValueError, "7 tokens per row, more than block_size=6"),
        (np.zeros((1, 3)), None, TypeError, "integer token ids, got dtype float64"),
        (np.zeros((1, 3), bool), None, TypeError, "dtype bool"),
        (np.zeros(3, int), None, ValueError, r"shape \(batch, time\), got shape \(3,\)"),
        (np.zeros((1, 0), int), None, ValueError, "empty"),
        (np.zeros((2, 3), int), np.zeros((2, 4), int), ValueError, r"targets have shape \(2, 4\)"),
        (np.zeros((2, 3), int), np.full((2, 3), 11), ValueError, "targets hold id 11"),
        (np.zeros((2, 3), int), np.full((2, 3), -2), ValueError, "targets hold id -2"),
        (np.zeros((2, 3), int), np.zeros((2, 3), np.float32), TypeError, "targets must hold integer"),
        ([["a"]], None, TypeError, "integer token ids"),
    ],
)
def test_bad_input_is_named(idx, targets, error, words):
    with pytest.raises(error, match=words):
        GPT(CFG)(idx, targets)


def test_gpt_needs_a_config():
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"vocab_size": 3})


def test_tied_weight_loads_from_either_name_but_both_must_agree():
    sd = random_state_dict(CFG, seed=3)
    only_head = {k: v for k, v in sd.items() if k != "transformer.wte.weight"}
    model = GPT(CFG)
    model.load_state_dict(only_head)
    np.testing.assert_allclose(model.transformer.wte.weight.data, sd["lm_head.weight"], rtol=1e-6)
    model.load_state_dict({k: v for k, v in sd.items() if k != "lm_head.weight"})  # as nanoGPT's checkpoints
    clash = {**sd, "lm_head.weight": sd["lm_head.weight"] + 1.0}
    before = model.state_dict()["transformer.wpe.weight"].copy()
    with pytest.raises(ValueError, match="lm_head.weight and transformer.wte.weight are tied"):
        model.load_state_dict({**clash, "transformer.wpe.weight": np.zeros_like(before)})
    np.testing.assert_array_equal(model.transformer.wpe.weight.data, before)  # nothing was loaded
    missing = {k: v for k, v in sd.items() if k not in ("lm_head.weight", "transformer.wte.weight")}
    with pytest.raises(ValueError, match="missing keys: transformer.wte.weight"):
        model.load_state_dict(missing)


def test_state_dict_round_trip_between_models_gives_the_same_function():
    a, b = GPT(CFG, seed=1), GPT(CFG, seed=2)
    idx = np.random.default_rng(0).integers(0, CFG.vocab_size, (2, CFG.block_size))
    assert not np.array_equal(a(idx)[0].data, b(idx)[0].data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(idx)[0].data, b(idx)[0].data)
    assert b.lm_head.weight is b.transformer.wte.weight
