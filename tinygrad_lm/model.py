"""The GPT: GPT-2's transformer (as in nanoGPT's model.py), built only from engine ops.

Read top-down, it is the story of ``how-training-works``:

1. each token becomes a vector: its token embedding plus the embedding of its position,
   ``x_t = wte[tok_id] + wpe[t]``;
2. each block normalises ``x`` (LayerNorm), lets every token look at the ones before it (multi-head
   causal self-attention: queries, keys, values, scores scaled by ``1/sqrt(head_size)``, softmax,
   weighted values, heads concatenated and projected) and adds the result back; then normalises
   again, widens, applies GELU, narrows, and adds that back too:
   ``x = x + attn(ln_1(x))``, ``x = x + mlp(ln_2(x))``;
3. a final LayerNorm, the unembedding (the token embedding matrix again, tied) gives one score per
   vocabulary entry, and the loss is the mean of ``-log softmax(logits)[next token]``.

Names, shapes and layout of the parameters are nanoGPT's, so its state dicts load unchanged.
Shapes in comments: ``B`` batch, ``T`` time, ``C`` = n_embd, ``nh`` heads, ``hs = C / nh``,
``V`` vocabulary.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import autograd as ag
from autograd import Tensor
from tinygrad_lm import functional as F  # noqa: N812 (torch users know it as F)
from tinygrad_lm.nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleDict, ModuleList

if TYPE_CHECKING:
    from tinygrad_lm.generate import KVCache, LayerCache
    from tinygrad_lm.optim import AdamW


class CausalSelfAttention(Module):
    """Multi-head causal self-attention: each position mixes the values of itself and the
    positions before it, weighted by how well its query matches their keys."""

    def __init__(self, config: GPTConfig, rng: np.random.Generator, dropout_rng: np.random.Generator) -> None:
        super().__init__()
        C = config.n_embd
        self.n_head, self.n_embd = config.n_head, C
        self.c_attn = Linear(C, 3 * C, bias=config.bias, rng=rng)  # W_Q, W_K, W_V stacked: (3C, C)
        self.c_proj = Linear(C, C, bias=config.bias, std=0.02 / math.sqrt(2 * config.n_layer), rng=rng)  # W_O
        self.attn_dropout = Dropout(config.dropout, dropout_rng)
        self.resid_dropout = Dropout(config.dropout, dropout_rng)
        self.recorded_weights: list[np.ndarray] | None = None  # set to a list to keep the attention weights

    def forward(self, x: Tensor, cache: LayerCache | None = None) -> Tensor:
        """(B, T, C) -> (B, T, C): per head, ``softmax(Q K^T / sqrt(hs) + mask) V``; heads joined, times W_O."""
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        qkv = self.c_attn(x).reshape(B, T, 3, nh, hs)  # (B, T, 3C) seen as (B, T, 3, nh, hs)
        q = qkv[:, :, 0].transpose(1, 2)  # (B, nh, T, hs): what each token looks for
        k = qkv[:, :, 1].transpose(1, 2)  # (B, nh, T, hs): what each token contains
        v = qkv[:, :, 2].transpose(1, 2)  # (B, nh, T, hs): what each token says
        if cache is not None:  # generation: prepend the keys and values of the earlier positions
            k, v = cache.extend(k, v)  # (B, nh, T_past + T, hs)
        y = F.attention(q, k, v, causal=True, dropout=self.attn_dropout, weights_out=self.recorded_weights)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): the heads side by side
        return self.resid_dropout(self.c_proj(y))

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}, n_embd={self.n_embd}"


class MLP(Module):
    """Widen to 4C, GELU, narrow back to C: the per-token feature computation."""

    def __init__(self, config: GPTConfig, rng: np.random.Generator, dropout_rng: np.random.Generator) -> None:
        super().__init__()
        C = config.n_embd
        self.c_fc = Linear(C, 4 * C, bias=config.bias, rng=rng)
        self.c_proj = Linear(4 * C, C, bias=config.bias, std=0.02 / math.sqrt(2 * config.n_layer), rng=rng)
        self.dropout = Dropout(config.dropout, dropout_rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, 4C) inside, (B, T, C) out


class Block(Module):
    """One transformer block, pre-LayerNorm with residual connections."""

    def __init__(self, config: GPTConfig, rng: np.random.Generator, dropout_rng: np.random.Generator) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, rng, dropout_rng)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, rng, dropout_rng)

    def forward(self, x: Tensor, cache: LayerCache | None = None) -> Tensor:
        """(B, T, C) -> (B, T, C): attention, then the MLP, each on a normalised copy, added back."""
        x = x + self.attn(self.ln_1(x), cache)  # (B, T, C): tokens look at the tokens before them
        x = x + self.mlp(self.ln_2(x))  # (B, T, C): each token on its own
        return x


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT (nanoGPT's field names). Checked on creation."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self) -> None:
        for field in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"GPTConfig: {field} must be an int, got {type(value).__name__} {value!r}")
            if value <= 0:
                raise ValueError(f"GPTConfig: {field} must be positive, got {value}")
            object.__setattr__(self, field, int(value))
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig: n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                "each head gets n_embd / n_head channels"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float, np.integer, np.floating)):
            raise TypeError(f"GPTConfig: dropout must be a number, got {type(self.dropout).__name__}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if not isinstance(self.bias, (bool, np.bool_)):
            raise TypeError(f"GPTConfig: bias must be True or False, got {self.bias!r}")
        object.__setattr__(self, "bias", bool(self.bias))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GPT(Module):
    """GPT-2: token and position embeddings, ``n_layer`` blocks, final LayerNorm, tied unembedding.

    ``GPT(config, seed=0)`` initialises as GPT-2 (normal(0, 0.02) weights, residual projections
    ``c_proj`` at ``0.02 / sqrt(2 n_layer)``, zero biases, LayerNorm ones), deterministically from
    ``seed``; dropout masks come from a second stream derived from the same seed.
    """

    def __init__(self, config: GPTConfig, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"GPT: seed must be a non-negative int, got {type(seed).__name__} {seed!r}")
        if seed is not None and seed < 0:
            raise ValueError(f"GPT: seed must be a non-negative int, got {seed}")
        self.config = config
        rng = np.random.default_rng(seed)
        dropout_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        self.transformer = ModuleDict(
            dict(
                wte=Embedding(config.vocab_size, config.n_embd, rng=rng),
                wpe=Embedding(config.block_size, config.n_embd, rng=rng),
                drop=Dropout(config.dropout, dropout_rng),
                h=ModuleList(Block(config, rng, dropout_rng) for _ in range(config.n_layer)),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False, rng=rng)
        # Weight tying: the unembedding is the token embedding matrix itself (one parameter).
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx: Any, targets: Any = None, *, cache: KVCache | None = None) -> tuple[Tensor, Tensor | None]:
        """``idx`` (B, T) token ids -> ``(logits (B, T, V), loss or None)``.

        ``targets`` (B, T) are the ids that should come next; -1 marks a position to ignore.
        ``cache`` (generation only, under ``no_grad``): the keys and values of earlier positions,
        so ``idx`` holds only the new tokens.
        """
        ids = check_token_ids(idx, self.config.vocab_size, self.config.block_size, "idx")
        B, T = ids.shape
        positions = self._positions(T, cache)  # 0 .. T-1 (or after the cached ones, when generating)
        tok_emb = self.transformer.wte(ids)  # (B, T, C): what each token is
        pos_emb = self.transformer.wpe(positions)  # (T, C): where it is
        x = self.transformer.drop(tok_emb + pos_emb)  # (B, T, C)
        if cache is None and self.__dict__.get("_compiled") and self._replayable():  # after model.compile()
            logits = _captured_body(self)(x, key=self._version)  # the same ops as body(x), minus the Python
        else:
            logits = self.body(x, cache)  # (B, T, V)
        if targets is None:
            return logits, None
        target_ids = check_targets(targets, ids.shape, self.config.vocab_size)
        return logits, F.cross_entropy(logits, target_ids, ignore_index=-1)

    def body(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """(B, T, C) embedded tokens -> (B, T, V) logits: the blocks, the final LayerNorm, the unembedding."""
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache.layer(i) if cache is not None else None)  # (B, T, C)
        if cache is not None:
            cache.advance(x.shape[1])
        x = self.transformer.ln_f(x)
        return self.lm_head(x)  # (B, T, V): a score for every possible next token

    def compile(self) -> GPT:
        """Replay the model's `body` (the blocks, the final LayerNorm, the unembedding) from a trace
        from now on, as ``torch.nn.Module.compile`` does in place; returns the model.

        `autograd.capture` records the primitives a call runs and later calls replay just those, so
        the Python around them (module calls, method dispatch, shape checks) runs once per input
        shape, not on every step: a training step of a small model is several times quicker. A
        shape is traced on its second call and checked on its first replay. While a dropout draws
        masks or attention weights are recorded, the body is called, not replayed. A ``print`` or a
        breakpoint in a block's forward runs on the calls that trace, not on replays: debug uncompiled.
        """
        self.__dict__["_compiled"] = True
        return self

    def _replayable(self) -> bool:
        """Whether `body` may be replayed from a trace (`autograd.capture`): not while a dropout
        draws masks (each call must draw new ones) or attention weights are being recorded."""
        version = self._version
        known = self.__dict__.get("_replayable_at")
        if known is None or known[0] != version:
            dropping = any(isinstance(m, Dropout) and m.training and m.p > 0 for m in self.modules())
            recording = any(getattr(m, "recorded_weights", None) is not None for m in self.modules())
            known = self.__dict__["_replayable_at"] = (version, not (dropping or recording))
        return known[1]

    def _positions(self, T: int, cache: KVCache | None) -> slice:
        """The positions of ``T`` new tokens: 0 .. T-1, or right after those already in ``cache``.

        A slice, not an index array: the position embeddings are then a view of consecutive rows,
        whose backward writes into those rows (no scatter by index)."""
        start = 0
        if cache is not None:
            if ag.is_grad_enabled():
                raise RuntimeError("GPT: a key/value cache is for generation; call the model under ag.no_grad()")
            start = cache.length
        if start + T > self.config.block_size:
            raise ValueError(
                f"GPT: sequence of length {start + T} is longer than block_size={self.config.block_size}; "
                "crop it to the last block_size tokens"
            )
        return slice(start, start + T)

    @ag.no_grad()
    def attention_weights(self, idx: Any) -> list[np.ndarray]:
        """The attention weights of every block for ``idx`` (B, T), in eval mode: a list of
        ``n_layer`` arrays of shape (B, n_head, T, T), row i = how much position i attends to each j."""
        blocks = list(self.transformer.h)
        with self.evaluating():
            try:
                for block in blocks:
                    block.attn.recorded_weights = []
                self(idx)
                return [block.attn.recorded_weights[0] for block in blocks]
            finally:
                for block in blocks:
                    block.attn.recorded_weights = None

    def generate(
        self,
        idx: Any,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        use_cache: bool = True,
    ) -> np.ndarray:
        """Continue ``idx`` (B, T) by ``max_new_tokens`` sampled tokens: see `tinygrad_lm.generate`."""
        from tinygrad_lm.generate import generate

        return generate(self, idx, max_new_tokens, temperature, top_k, seed, use_cache)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, dropout: float | None = None) -> GPT:
        """The GPT-2 in a local Hugging Face folder (``config.json`` + ``model.safetensors``, as
        ``hf download gpt2`` fetches it), with nanoGPT's names: see `tinygrad_lm.pretrained`.

        Everything is checked before the model is built; a folder this GPT cannot represent, or whose
        weights are pickled (``pytorch_model.bin``, never opened), raises ``PretrainedError`` (a
        ``ValueError``) in one line that says why. ``dropout``: the rate to train with (default: the
        config's)."""
        from tinygrad_lm.pretrained import load_pretrained

        return load_pretrained(path, dropout=dropout)

    def save_pretrained(self, path: str | os.PathLike) -> str:
        """Write ``config.json`` + ``model.safetensors`` into the folder ``path``, as
        ``GPT2LMHeadModel.save_pretrained`` does: ``transformers`` loads it with the same logits (and
        trains it further, on many GPUs with ``accelerate``). Returns ``path``."""
        from tinygrad_lm.pretrained import save_pretrained

        return save_pretrained(self, path)

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8
    ) -> AdamW:
        """nanoGPT's AdamW set-up: weight decay on matrices and embeddings (2-D), none on biases
        and LayerNorm parameters."""
        from tinygrad_lm.optim import AdamW

        params = self.parameters()
        return AdamW(
            [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
            ],
            lr=learning_rate,
            betas=betas,
            eps=eps,
        )

    def extra_repr(self) -> str:
        c = self.config
        return ", ".join(f"{key}={value}" for key, value in c.to_dict().items())


# ---------------------------------------------------------------------------------------------------
# Input checks: a clear error instead of a numpy traceback deep inside the model
# ---------------------------------------------------------------------------------------------------


def _as_int_array(value: Any, name: str) -> np.ndarray:
    array = value.data if isinstance(value, Tensor) else value
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except (ValueError, TypeError) as error:
            raise TypeError(f"GPT: {name} must be an integer array, could not convert it: {error}") from None
    if array.dtype.kind not in "iu":
        raise TypeError(f"GPT: {name} must hold integer token ids, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"GPT: {name} must have shape (batch, time), got shape {array.shape}")
    return array


_CAPTURED_BODIES: weakref.WeakKeyDictionary[GPT, ag.Captured] = weakref.WeakKeyDictionary()


def _captured_body(model: GPT) -> ag.Captured:
    """``model.body`` for a compiled model, traced on the second call with an input shape and mode,
    and replayed after (`autograd.capture`): shapes seen once (generation without a cache) are never
    traced. Kept beside the model, not on it, and holding it weakly: no cycle, and a copy gets its own."""
    captured = _CAPTURED_BODIES.get(model)
    if captured is None:
        owner = weakref.ref(model)
        captured = _CAPTURED_BODIES[model] = ag.capture(lambda x: owner().body(x), fallback=True, trace_after=1)
    return captured


def check_token_ids(idx: Any, vocab_size: int, max_length: int | None, name: str = "idx") -> np.ndarray:
    """``idx`` as an integer array (B, T) with 1 <= T <= max_length and ids in [0, vocab_size), or raise."""
    ids = _as_int_array(idx, name)
    if ids.shape[1] == 0 or ids.shape[0] == 0:
        raise ValueError(f"GPT: {name} is empty (shape {ids.shape}); it needs at least one token per row")
    if max_length is not None and ids.shape[1] > max_length:
        raise ValueError(
            f"GPT: {name} has {ids.shape[1]} tokens per row, more than block_size={max_length}; "
            "crop it to the last block_size tokens"
        )
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"GPT: {name} holds token id {bad}, outside the vocabulary [0, {vocab_size})")
    return ids


def check_targets(targets: Any, shape: tuple[int, ...], vocab_size: int) -> np.ndarray:
    """``targets`` as an integer array of ``shape`` with ids in [0, vocab_size) or -1 (ignored)."""
    t = _as_int_array(targets, "targets")
    if t.shape != shape:
        raise ValueError(f"GPT: targets have shape {t.shape}, but idx has shape {shape}; they must match")
    bad = t[(t < -1) | (t >= vocab_size)]
    if bad.size:
        raise ValueError(
            f"GPT: targets hold id {int(bad.flat[0])}, outside the vocabulary [0, {vocab_size}) "
            "(-1 marks a position to ignore)"
        )
    return t
