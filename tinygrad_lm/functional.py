"""The GPT's math as small pure functions of engine tensors (picoGPT style).

Every function here is a composition of `autograd` ops, so its backward pass is derived by the
engine, never written by hand. Shapes: ``B`` batch, ``T`` time, ``C`` channels (``n_embd``),
``nh`` heads, ``hs = C / nh`` head size, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

import autograd as ag
from autograd import Tensor
from autograd import functional as activations

LAYER_NORM_EPS = 1e-5
_FLOAT32 = np.dtype(np.float32)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y = x W^T + b`` with ``W`` of shape (out, in), as torch's and nanoGPT's Linear.

    ``W.T`` is a transposed view (no copy); the engine's matmul multiplies a batch of sequences
    ``(B, T, in)`` by one matrix as a single ``(B*T, in)`` product.
    """
    y = x @ weight.T  # (..., out)
    return y if bias is None else y + bias


def gelu(x: Tensor) -> Tensor:
    """GELU with GPT-2's tanh approximation:

        gelu(x) = x/2 * (1 + tanh(u)),   u = sqrt(2/pi) * (x + 0.044715 x^3)
                = x * sigmoid(2u)        since (1 + tanh(u)) / 2 = sigmoid(2u)

    The engine's ``autograd.functional.gelu(x, approximate="tanh")``, which computes it (the second
    form: the same function with two fewer elementwise passes, forward and backward).
    """
    return activations.gelu(x, approximate="tanh")


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = LAYER_NORM_EPS) -> Tensor:
    """Normalise each vector over its last axis to mean 0 and variance 1, then scale and shift:

        y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias

    with the biased variance ``var(x) = mean((x - mean(x))^2)``, as torch's LayerNorm.
    """
    centered = x - x.mean(axis=-1, keepdims=True)
    variance = centered.square().mean(axis=-1, keepdims=True)  # (..., 1)
    y = centered * (variance + eps).rsqrt()  # 1/sqrt acts on (..., 1): cheaper than dividing (..., C)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``softmax(x)_i = e^(x_i - max x) / sum_j e^(x_j - max x)``: scores to probabilities (stable)."""
    return x.softmax(axis=axis)


def cross_entropy(logits: Tensor, targets: Any, ignore_index: int = -1) -> Tensor:
    """Mean negative log-likelihood of the targets:

        loss = -1/N * sum_{i: t_i != ignore_index} log softmax(logits_i)[t_i]

    where ``N`` counts the positions whose target is not ``ignore_index``. ``logits`` has shape
    ``(..., V)`` and ``targets`` the leading shape ``(...)``. If every target is ignored the loss is
    defined as 0 (with zero gradients), so a fully padded batch contributes nothing rather than NaN
    (torch returns NaN there).

    The picked log-probabilities are gathered with an integer-array index (its backward scatters
    into the rows), so no (positions, V) one-hot array is ever built: memory stays at the logits'.
    """
    with ag.scope("cross_entropy"):  # drawn as one named step, not as five anonymous ops
        return _cross_entropy(logits, targets, ignore_index)


def _cross_entropy(logits: Tensor, targets: Any, ignore_index: int) -> Tensor:
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    vocab = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {targets.shape} do not match logits {logits.shape}")
    flat = targets.reshape(-1)
    valid = flat != ignore_index
    rows = np.flatnonzero(valid)
    chosen = flat[rows]
    if chosen.size and (chosen.min() < 0 or chosen.max() >= vocab):
        bad = chosen[(chosen < 0) | (chosen >= vocab)][0]
        raise ValueError(f"cross_entropy: target {bad} is outside [0, {vocab}) and is not ignore_index={ignore_index}")
    log_probs = logits.reshape(-1, vocab).log_softmax(axis=-1)  # (N, V)
    if not rows.size:
        return log_probs.sum() * 0.0
    picked = log_probs[rows, chosen]  # (n,): log p(target) at each counted position
    return picked.sum() * (-1.0 / rows.size)


@lru_cache(maxsize=64)
def causal_mask(n_queries: int, n_keys: int, dtype: np.dtype = _FLOAT32) -> np.ndarray:
    """An additive mask (n_queries, n_keys): 0 where query ``i`` may see key ``j``, else a huge
    negative number (half the dtype's lowest value: finite, so `detect_anomaly` stays quiet, yet
    ``exp`` of it after softmax's max-shift is exactly 0, as -inf would give).

    The queries are the *last* ``n_queries`` positions of the ``n_keys`` (as with a key/value
    cache), so query ``i`` sits at position ``i + n_keys - n_queries`` and sees keys up to there.
    Every query sees at least itself, so every softmax row has a visible score. Read-only (shared).
    """
    offset = n_keys - n_queries
    hidden = np.triu(np.ones((n_queries, n_keys), dtype=bool), k=1 + offset)
    mask = np.where(hidden, np.finfo(dtype).min / 2, 0.0).astype(dtype)
    mask.flags.writeable = False
    return mask


def attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True, dropout: Any = None, weights_out: list | None = None
) -> Tensor:
    """Scaled dot-product attention of queries on keys, mixing the values:

        scores  = q k^T / sqrt(hs)                 (..., Tq, Tk)   how much query i matches key j
        weights = softmax(scores + mask)           each row sums to 1; the mask hides the future
        out     = weights v                        (..., Tq, hs)   a weighted sum of what they say

    ``q`` is ``(..., Tq, hs)``, ``k`` and ``v`` are ``(..., Tk, hs)`` with ``Tq <= Tk`` (the queries
    are the last ``Tq`` positions). The causal mask adds a huge negative number above the diagonal;
    the softmax subtracts each row's maximum (always a visible score) first, so masked entries
    become exactly 0 and nothing overflows. ``dropout`` (a callable, e.g. an `nn.Dropout`) is applied to
    the weights. ``weights_out``: a list that receives the weights (an array), for inspection.
    """
    head_size = q.shape[-1]
    scores = (q * (1.0 / math.sqrt(head_size))) @ k.transpose(-2, -1)  # (..., Tq, Tk); scaling q is cheaper
    if causal:
        scores = scores + Tensor(causal_mask(q.shape[-2], k.shape[-2], np.dtype(scores.dtype)))
    weights = scores.softmax(axis=-1)
    if weights_out is not None:
        weights_out.append(weights.data)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v  # (..., Tq, hs)


def dropout(x: Tensor, p: float, rng: np.random.Generator, training: bool = True) -> Tensor:
    """Inverted dropout: zero each entry with probability ``p`` and scale the rest by ``1/(1-p)``,

        y = x * mask / (1 - p),   mask_i ~ Bernoulli(1 - p)

    so the expected value is unchanged and evaluation needs no rescaling. Identity when not
    training or ``p == 0``. The mask comes from ``rng`` (deterministic given its state).
    """
    if not training or p == 0.0:
        return x
    keep = rng.random(x.shape) >= p
    scale = np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    return x * Tensor(keep * scale)


__all__ = [
    "LAYER_NORM_EPS",
    "attention",
    "causal_mask",
    "cross_entropy",
    "dropout",
    "gelu",
    "layer_norm",
    "linear",
    "softmax",
]
