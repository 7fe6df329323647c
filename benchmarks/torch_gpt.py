"""The engine's GPT written in PyTorch, as a torch user writes it: the reference bench_vs_torch.py
times the engine against.

A comparison means something only if both sides compute the same thing, so this is the same
model as `tinygrad_lm.GPT`, operation for operation: token plus position embedding, ``n_layer``
pre-LayerNorm blocks ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))`` (LayerNorm eps 1e-5), causal
multi-head attention ``softmax(q k^T / sqrt(head_dim)) v`` with q, k, v stacked in one ``c_attn``
Linear, an MLP ``c_proj(gelu_tanh(c_fc(x)))`` of 4x width, a final LayerNorm, an unembedding tied
to the token embedding, and the mean cross-entropy. Parameter names, shapes and layout are
nanoGPT's, as the engine's are, so the engine's ``state_dict()`` loads here unchanged and both
sides start from the same weights.

Attention is written out (scores, mask, softmax, weighted values), as the engine computes it and
as nanoGPT does without flash attention; ``sdpa=True`` uses torch's fused
``F.scaled_dot_product_attention`` instead, the faster path a torch user would pick.

    python benchmarks/bench_vs_torch.py --check   # float64: losses, gradients and AdamW steps agree
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import harness
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (as torch users name it)
from torch import nn

# float64 agreement the check demands: relative to the largest magnitude of each compared array.
CHECK_TOLERANCE = 1e-10


class CausalSelfAttention(nn.Module):
    """Every position mixes the values of itself and the positions before it."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, sdpa: bool) -> None:
        super().__init__()
        self.n_head, self.sdpa = n_head, sdpa
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # W_Q, W_K, W_V stacked: (3C, C)
        self.c_proj = nn.Linear(n_embd, n_embd)
        future = torch.ones(block_size, block_size, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("future", future, persistent=False)  # not a parameter: not in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
            weights = scores.masked_fill(self.future[:T, :T], float("-inf")).softmax(dim=-1)
            y = weights @ v  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, sdpa: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=1e-5)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, sdpa)
        self.ln_2 = nn.LayerNorm(n_embd, eps=1e-5)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 as nanoGPT lays it out. Its own init is torch's default: the benchmark loads the
    engine's weights into it (load_engine_state_dict)."""

    def __init__(self, bc: harness.BenchConfig, sdpa: bool = False) -> None:
        super().__init__()
        C = bc.n_embd
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(bc.vocab_size, C),
                "wpe": nn.Embedding(bc.block_size, C),
                "h": nn.ModuleList(Block(C, bc.n_head, bc.block_size, sdpa) for _ in range(bc.n_layer)),
                "ln_f": nn.LayerNorm(C, eps=1e-5),
            }
        )
        self.lm_head = nn.Linear(C, bc.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied: one parameter under two names

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` (B, T) -> ``(logits (B, T, V), mean cross-entropy against targets, or None)``."""
        B, T = idx.shape
        x = self.transformer.wte(idx) + self.transformer.wpe.weight[:T]  # positions 0 .. T-1
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-1)
        return logits, loss


def build(
    bc: harness.BenchConfig, state_dict: Mapping[str, np.ndarray], dtype: torch.dtype | None = None, sdpa: bool = False
) -> GPT:
    """The torch GPT for ``bc`` holding the engine's weights ``state_dict`` (float32 by default)."""
    model = GPT(bc, sdpa=sdpa).to(dtype or torch.float32)
    load_engine_state_dict(model, state_dict)
    return model


def load_engine_state_dict(model: GPT, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy the engine's ``model.state_dict()`` into ``model`` (cast to its dtype).

    The names and shapes are the same on both sides (nanoGPT's, a Linear's weight as (out, in)),
    so this is torch's own strict ``load_state_dict``: a missing, extra or misshapen entry raises.
    """
    tensors = {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in state_dict.items()}
    model.load_state_dict(tensors, strict=True)


def adamw(model: GPT) -> torch.optim.AdamW:
    """torch's AdamW with the engine's settings and parameter groups (harness.ADAMW, adamw_groups)."""
    hyper = {k: v for k, v in harness.ADAMW.items() if k != "weight_decay"}
    return torch.optim.AdamW(harness.adamw_groups(list(model.named_parameters())), **hyper)


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b|`` over the largest magnitude of ``b``: a difference in the last digits of
    float64 reads about 1e-16, whatever the array's scale."""
    difference = float(np.max(np.abs(a - b), initial=0.0))
    scale = float(np.max(np.abs(b), initial=0.0))
    return difference / scale if scale > 0 else difference


def check_agreement(config: str = "tiny", steps: int = 3) -> dict[str, float]:
    """Train the engine's GPT and this one side by side in float64 for ``steps`` AdamW steps, from
    the same weights on the same batches; return the worst relative difference seen in the losses,
    the gradients (every parameter, every step) and the parameters after the last step.

    The engine runs compiled, as the benchmark runs it, and from its third call on it replays its
    trace, so the check covers the calls the benchmark times. In float64 losses and gradients agree
    to about 1e-14, parameters after AdamW to about 1e-12 (its division by the root of tiny second
    moments magnifies the last digits); anything above CHECK_TOLERANCE means they compute different
    things.
    """
    bc = harness.CONFIGS[config]
    engine = harness.engine_gpt(bc).to(np.float64).compile()
    reference = build(bc, engine.state_dict(), dtype=torch.float64)
    engine_opt = harness.engine_adamw(engine)
    reference_opt = adamw(reference)
    engine_params = dict(engine.named_parameters(remove_duplicate=False))
    reference_params = dict(reference.named_parameters(remove_duplicate=False))
    if engine_params.keys() != reference_params.keys():
        raise AssertionError(f"parameter names differ: {sorted(engine_params.keys() ^ reference_params.keys())}")
    worst = {"loss": 0.0, "gradients": 0.0, "parameters": 0.0}
    batches = harness.make_batches(bc, n=steps, seed=1)
    for idx, targets in batches:
        _, engine_loss = engine(idx, targets)
        engine_loss.backward()
        _, reference_loss = reference(torch.from_numpy(idx), torch.from_numpy(targets))
        reference_loss.backward()
        loss_difference = abs(float(engine_loss.data) - reference_loss.item()) / abs(reference_loss.item())
        worst["loss"] = max(worst["loss"], loss_difference)
        for name, p in engine_params.items():
            difference = _relative_difference(p.grad.data, reference_params[name].grad.numpy())
            worst["gradients"] = max(worst["gradients"], difference)
        engine_opt.step()
        engine_opt.zero_grad()
        reference_opt.step()
        reference_opt.zero_grad()
    for name, p in engine_params.items():
        difference = _relative_difference(p.data, reference_params[name].detach().numpy())
        worst["parameters"] = max(worst["parameters"], difference)
    return worst
