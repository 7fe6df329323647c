"""Generation: determinism, the key/value cache gives the same tokens as recomputing, top-k and
temperature are honoured, the context is cropped past block_size."""

import numpy as np
import pytest

import autograd as ag
from tinygrad_lm import GPT, GPTConfig
from tinygrad_lm.generate import KVCache, sample_next

CFG = GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16)


def make_model(dtype=np.float32, seed=0) -> GPT:
    model = GPT(CFG, seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # larger weights than GPT-2's init: peaked, varied distributions
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    return model.to(dtype)


def reference_generate(model, idx, steps, pick):
    """nanoGPT's loop, recomputing the cropped context for every token; ``pick(logits, context)``."""
    out = idx.copy()
    with ag.no_grad():
        for _ in range(steps):
            context = out[:, -CFG.block_size :]
            logits = model(context)[0].data[:, -1, :]
            out = np.concatenate([out, pick(logits, context)[:, None]], axis=1)
    return out


def test_interface_example():
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=1, n_head=4, n_embd=32), seed=0)
    idx = np.random.randint(0, 65, size=(8, 64))
    out = model.generate(idx[:1, :5], max_new_tokens=20, temperature=1.0, top_k=10, seed=0)
    assert out.shape == (1, 25) and out.dtype == np.int64 and np.array_equal(out[:, :5], idx[:1, :5])
    assert out.min() >= 0 and out.max() < 65


def test_same_seed_same_tokens_and_seeds_differ():
    model = make_model()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    a = model.generate(prompt, 12, seed=7)
    assert np.array_equal(a, model.generate(prompt, 12, seed=7))
    others = [model.generate(prompt, 12, seed=s) for s in range(8, 12)]
    assert any(not np.array_equal(a, b) for b in others)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("prompt_length, steps", [(1, 6), (3, 12), (8, 4), (11, 5)])
def test_cache_gives_the_same_tokens_as_recomputing(dtype, prompt_length, steps):
    """Including past block_size (8): prompts of 8 and 11 tokens, and 3 + 12 tokens, crop."""
    model = make_model(dtype)
    prompt = np.random.default_rng(prompt_length).integers(0, CFG.vocab_size, (3, prompt_length))
    for seed in range(3):
        cached = model.generate(prompt, steps, temperature=1.0, seed=seed)
        plain = model.generate(prompt, steps, temperature=1.0, seed=seed, use_cache=False)
        np.testing.assert_array_equal(cached, plain)
    greedy = model.generate(prompt, steps, temperature=0.0)
    np.testing.assert_array_equal(greedy, reference_generate(model, prompt, steps, lambda z, c: z.argmax(-1)))


def test_cached_logits_equal_full_recomputation():
    model = make_model(np.float64)
    ids = np.random.default_rng(0).integers(0, CFG.vocab_size, (2, CFG.block_size))
    with ag.no_grad():
        full = model(ids)[0].data
        cache = KVCache(CFG.n_layer, CFG.block_size)
        first = model(ids[:, :3], cache=cache)[0].data  # a prompt of 3, then one token at a time
        steps = [model(ids[:, t : t + 1], cache=cache)[0].data[:, 0] for t in range(3, CFG.block_size)]
    np.testing.assert_allclose(first, full[:, :3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.stack(steps, axis=1), full[:, 3:], rtol=1e-12, atol=1e-12)
    assert cache.length == CFG.block_size
    with pytest.raises(ValueError, match="longer than block_size=8"), ag.no_grad():
        model(ids[:, :1], cache=cache)


def test_cache_requires_no_grad():
    with pytest.raises(RuntimeError, match="no_grad"):
        make_model()(np.array([[1]]), cache=KVCache(CFG.n_layer, CFG.block_size))


def test_top_k_is_honoured():
    model = make_model()
    prompt = np.random.default_rng(3).integers(0, CFG.vocab_size, (4, 2))
    k = 3
    chosen_ranks = []
    out = model.generate(prompt, 14, temperature=1.5, top_k=k, seed=0)
    with ag.no_grad():  # replay: each sampled token must be among the k largest logits of its context
        for t in range(2, out.shape[1]):
            context = out[:, max(0, t - CFG.block_size) : t]
            logits = model(context)[0].data[:, -1, :]
            ranks = (logits > logits[np.arange(4), out[:, t]][:, None]).sum(-1)  # 0 = the largest
            chosen_ranks.extend(ranks.tolist())
    assert max(chosen_ranks) < k
    assert len(set(chosen_ranks)) > 1  # and it does sample, not just take the argmax


def test_greedy_forms_agree():
    model = make_model()
    prompt = np.array([[3, 1, 4]])
    greedy = model.generate(prompt, 10, temperature=0.0, seed=1)
    assert np.array_equal(greedy, model.generate(prompt, 10, top_k=1, seed=2))
    assert np.array_equal(greedy, model.generate(prompt, 10, temperature=0.0, seed=3))


def test_sample_next_follows_temperature_and_top_k():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 20000))
    draws = sample_next(logits, 1.0, None, rng)
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), [0.5, 0.3, 0.15, 0.05], atol=0.015)
    draws = sample_next(logits, 1.0, 2, rng)  # renormalised over the two largest: 0.625, 0.375
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), [0.625, 0.375, 0, 0], atol=0.015)
    hot = sample_next(logits, 100.0, None, rng)  # a high temperature flattens towards uniform
    assert np.all(np.abs(np.bincount(hot, minlength=4) / len(hot) - 0.25) < 0.02)
    assert np.array_equal(sample_next(logits[:3], 0.0, None, rng), [0, 0, 0])
    assert sample_next(logits[:5], 1.0, 100, rng).max() < 4  # top_k above the vocabulary: all kept


def test_generate_restores_training_mode_and_records_nothing():
    model = GPT(GPTConfig(**{**CFG.to_dict(), "dropout": 0.5}), seed=0)
    assert model.training
    prompt = np.array([[1, 2]])
    a = model.generate(prompt, 5, seed=0)
    assert model.training and np.array_equal(a, model.generate(prompt, 5, seed=0))  # no dropout while sampling
    model.eval()
    model.generate(prompt, 1, seed=0)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=2, temperature=-1.0), "temperature"),
        (dict(max_new_tokens=2, top_k=0), "top_k"),
        (dict(max_new_tokens=2.5), "max_new_tokens"),
    ],
)
def test_generate_argument_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        make_model().generate(np.array([[1]]), **kwargs)


def test_generate_checks_the_prompt_but_allows_it_longer_than_block_size():
    model = make_model()
    with pytest.raises(ValueError, match="token id 17"):
        model.generate(np.array([[17]]), 1)
    with pytest.raises(ValueError, match=r"shape \(batch, time\)"):
        model.generate(np.array([1, 2]), 1)
    out = model.generate(np.zeros((1, 20), int), 2, seed=0)
    assert out.shape == (1, 22)
    assert model.generate(np.array([[1, 2]]), 0).tolist() == [[1, 2]]
