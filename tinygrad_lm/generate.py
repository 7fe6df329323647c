"""Sampling text from a GPT, one token at a time, with a key/value cache.

Each new token needs the keys and values of every earlier position in every layer. They do not
change once computed (a token only sees the past), so `KVCache` keeps them, and each step feeds
the model only the newest token: one position of work instead of the whole sequence.

Past ``block_size`` the context is cropped to the last ``block_size`` tokens (as nanoGPT does).
That shifts every token's position, so the cached keys and values (computed with the old
position embeddings) are stale: the cache is rebuilt from the cropped context. From then on the
window slides by one each step, so every step re-reads the full window; the tokens are exactly
those of recomputing the cropped context from scratch (``use_cache=False``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

import autograd as ag
from autograd import Tensor

if TYPE_CHECKING:
    from tinygrad_lm.model import GPT


class LayerCache:
    """One layer's view of a `KVCache`."""

    __slots__ = ("cache", "layer")

    def __init__(self, cache: KVCache, layer: int) -> None:
        self.cache, self.layer = cache, layer

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' keys and values (B, nh, T, hs); return all so far (B, nh, T_past + T, hs)."""
        return self.cache.store(self.layer, k.data, v.data)


class KVCache:
    """Keys and values (B, nh, T, hs) of every layer for the positions fed so far.

    Buffers hold ``block_size`` positions, allocated when the first tokens arrive. ``length`` is the
    number of positions stored; the model advances it after each forward pass.
    """

    def __init__(self, n_layer: int, block_size: int) -> None:
        self.n_layer, self.block_size = n_layer, block_size
        self.keys: np.ndarray | None = None  # (n_layer, B, nh, block_size, hs)
        self.values: np.ndarray | None = None
        self.length = 0

    def layer(self, i: int) -> LayerCache:
        return LayerCache(self, i)

    def store(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[Tensor, Tensor]:
        """Write the new keys/values (B, nh, T, hs) of ``layer`` after the cached ones; return all of
        them so far, (B, nh, length + T, hs)."""
        B, nh, T, hs = k.shape
        shape = (self.n_layer, B, nh, self.block_size, hs)
        if self.keys is None or self.keys.shape != shape or self.keys.dtype != k.dtype:
            self.keys, self.values = np.empty(shape, k.dtype), np.empty(shape, k.dtype)
        end = self.length + T
        if end > self.block_size:
            raise ValueError(f"KVCache: {end} positions do not fit in block_size={self.block_size}")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return Tensor(self.keys[layer, :, :, :end]), Tensor(self.values[layer, :, :, :end])

    def advance(self, n: int) -> None:
        self.length += n

    def reset(self) -> None:
        self.length = 0


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> np.ndarray:
    """One token id per row of ``logits`` (B, V).

    ``temperature == 0`` (or ``top_k == 1``) picks the most likely token. Otherwise the logits are
    divided by the temperature, all but the ``top_k`` largest are dropped, and a token is drawn
    from ``softmax`` of the rest (in float64) by inverting its cumulative distribution with one
    uniform number per row.
    """
    if temperature == 0.0 or top_k == 1:
        return logits.argmax(axis=-1)
    scaled = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = np.partition(scaled, -top_k, axis=-1)[:, -top_k, None]  # the k-th largest per row
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    cumulative = np.cumsum(probs, axis=-1)
    u = rng.random((scaled.shape[0], 1)) * cumulative[:, -1:]
    choice = (cumulative <= u).sum(axis=-1)  # first index whose cumulative mass exceeds u
    return np.minimum(choice, scaled.shape[-1] - 1)


def generate(
    model: GPT,
    idx: Any,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Append ``max_new_tokens`` sampled tokens to each row of ``idx`` (B, T); returns the ids
    (B, T + max_new_tokens) as a numpy int64 array.

    Runs under ``no_grad`` and in eval mode (no dropout; the model's mode is restored after).
    ``seed`` seeds the sampler's own generator, so the same seed gives the same tokens (``None``:
    fresh randomness). ``temperature`` scales the logits (0: greedy); ``top_k`` keeps only the k
    most likely tokens. ``use_cache=False`` recomputes the whole context for every token (slow;
    for checking the cache).
    """
    from tinygrad_lm.model import check_token_ids

    config = model.config
    ids = check_token_ids(idx, config.vocab_size, None, "idx").astype(np.int64)  # may exceed block_size
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
        kind = type(temperature).__name__
        raise TypeError(f"generate: temperature must be a number >= 0, got {kind} {temperature!r}")
    if not temperature >= 0.0:
        raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"generate: top_k must be None or an int >= 1, got {top_k!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"generate: seed must be None or an int >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    block = config.block_size
    cache = KVCache(config.n_layer, block) if use_cache else None
    out = np.empty((ids.shape[0], ids.shape[1] + max_new_tokens), dtype=np.int64)
    out[:, : ids.shape[1]] = ids
    length = ids.shape[1]
    with model.evaluating(), ag.no_grad():
        for _ in range(max_new_tokens):
            if cache is not None and 0 < cache.length == length - 1 and length <= block:
                new = out[:, length - 1 : length]  # only the newest token: the rest is cached
            else:  # the first step, or the window slid: (re)compute the cropped context
                if cache is not None:
                    cache.reset()
                new = out[:, max(0, length - block) : length]
            logits, _ = model(new, cache=cache)
            out[:, length] = sample_next(logits.data[:, -1, :], temperature, top_k, rng)
            length += 1
    return out
