"""Regenerate every picture of docs/GALLERY.md (run from the repository's root):

    .venv/bin/python docs/make_gallery.py            # all pictures, about a minute
    .venv/bin/python docs/make_gallery.py --no-train # skip the training run (loss curve, heatmap)

Each graph picture is committed with its DOT text beside it (``micrograd.png`` and ``micrograd.dot``):
`tests/test_gallery.py` draws the graphs again and fails when the code no longer draws what is
committed (DOT text is deterministic; PNG bytes depend on the renderer).

Engine-only pictures first (a micrograd neuron, one attention head forward and backward), then a GPT's
(needs `tinygrad_lm`): the whole model at depth=1 with gradient health, one block opened, the
backward at depth=1, and, after a short training run on sorting digits, the loss curve and the
attention of the trained model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import autograd as ag  # noqa: E402
import viz  # noqa: E402
from autograd import Tensor  # noqa: E402

DOCS = ROOT / "docs"
DPI = 110


def named(value, name: str, requires_grad: bool = True) -> Tensor:
    t = Tensor(np.asarray(value, dtype=np.float64), requires_grad=requires_grad)
    t.name = name
    return t


Picture = tuple[str, Tensor, dict]  # (file name, the tensor whose graph is drawn, viz options)


def micrograd_neuron() -> list[Picture]:
    """micrograd's neuron, o = tanh(x1 w1 + x2 w2 + b), with every value and gradient."""
    x1, x2 = named(2.0, "x1"), named(0.0, "x2")
    w1, w2, b = named(-3.0, "w1"), named(1.0, "w2"), named(6.8813735870195432, "b")
    x1w1 = x1 * w1
    x2w2 = x2 * w2
    s = x1w1 + x2w2
    n = s + b
    o = n.tanh()
    names = {x1w1: "x1*w1", x2w2: "x2*w2", s: "x1*w1 + x2*w2", n: "n", o: "o"}
    keep = (x1, x2, w1, w2, b)  # the leaves carry their names (``.name``): they must outlive the drawing
    return [("micrograd.png", o, dict(names=names, values=True, grads=True, rankdir="LR", keep=keep))]


def attention_head() -> list[Picture]:
    """One causal attention head written with engine ops, forward and backward."""
    rng = np.random.default_rng(0)
    T, C, H = 4, 8, 8
    x = Tensor(rng.normal(size=(T, C)).astype(np.float32))
    params = {}
    for part in ("query", "key", "value"):
        params[f"head.{part}.weight"] = Tensor(rng.normal(0, 0.3, (C, H)).astype(np.float32), requires_grad=True)
    mask = Tensor(np.tril(np.ones((T, T), dtype=bool)))
    with ag.scope("head"):
        with ag.scope("head.query"):
            q = x @ params["head.query.weight"]  # (T, H)
        with ag.scope("head.key"):
            k = x @ params["head.key.weight"]
        with ag.scope("head.value"):
            v = x @ params["head.value.weight"]
        scores = (q @ k.T) * (1.0 / np.sqrt(H))  # (T, T)
        weights = ag.where(mask, scores, -1e9).softmax(axis=-1)  # each row sums to 1 over the past
        out = weights @ v  # (T, H)
    loss = (out * out).mean()
    names = {**params, x: "x", mask: "causal mask", q: "q", k: "k", v: "v", scores: "scores",
             weights: "attention", out: "out", loss: "loss"}  # fmt: skip
    title = "One attention head: the forward (yellow) and the backward the engine derives (red)"
    return [("attention_head.png", loss, dict(names=names, backward=True, title=title))]


def gpt_pictures() -> list[Picture]:
    from tinygrad_lm import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = GPT(cfg, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, cfg.vocab_size, size=(8, 64))
    _, loss = model(idx, np.roll(idx, -1, axis=1))
    names = dict(model.named_parameters())
    config = f"n_layer={cfg.n_layer}, n_head={cfg.n_head}, n_embd={cfg.n_embd}, vocab_size={cfg.vocab_size}"
    return [
        ("gpt_depth1.png", loss, dict(depth=1, names=names, grad_health=True,
                                      title=f"GPT ({config}) at depth=1, coloured by gradient norm")),
        ("gpt_attention.png", loss, dict(depth=1, expand="transformer.h.0.attn", names=names,
                                         title='The same GPT at depth=1, zoomed into one attention: '
                                         'expand="transformer.h.0.attn"')),
        ("gpt_backward_depth1.png", loss, dict(depth=1, backward=True, names=names,
                                               title="GPT forward and backward at depth=1")),
    ]  # fmt: skip


def graph_pictures() -> list[Picture]:
    """Every graph picture of the gallery, built afresh (the GPT's only where `tinygrad_lm` imports)."""
    pictures = micrograd_neuron() + attention_head()
    try:
        pictures += gpt_pictures()
    except ImportError as error:
        print(f"skipping the GPT pictures: {error}")
    return pictures


def dot_text(root: Tensor, options: dict) -> str:
    """The DOT text of a picture: what `tests/test_gallery.py` compares with the committed ``.dot``."""
    return viz.to_dot(root, **{k: v for k, v in options.items() if k != "keep"})


def draw(pictures: list[Picture]) -> None:
    """Render each picture to its PNG and write its DOT text beside it."""
    for name, root, options in pictures:
        start = time.perf_counter()
        source = dot_text(root, options)
        viz.render(source, DOCS / name, dpi=DPI)
        (DOCS / name).with_suffix(".dot").write_text(source, encoding="utf-8")
        print(f"{name}: {time.perf_counter() - start:.1f} s")


def sort_batch(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits, a separator (10), the same digits sorted; only the sorted part is scored."""
    digits = rng.integers(0, 10, size=(batch, n))
    seq = np.concatenate([digits, np.full((batch, 1), 10), np.sort(digits, axis=1)], axis=1)
    idx, targets = seq[:, :-1], seq[:, 1:].copy()
    targets[:, : n - 1] = -1
    return idx, targets


def attention_weights(model, idx: np.ndarray, layer: int) -> np.ndarray:
    """The attention probabilities (n_head, T, T) of one block, recomputed from the model's modules."""
    cfg = model.config
    B, T = idx.shape
    hs = cfg.n_embd // cfg.n_head
    with ag.no_grad():
        x = model.transformer.wte(idx) + model.transformer.wpe(np.arange(T))
        for block in list(model.transformer.h)[:layer]:
            x = block(x)
        block = list(model.transformer.h)[layer]
        qkv = block.attn.c_attn(block.ln_1(x)).data  # (B, T, 3C)
    q = qkv[..., : cfg.n_embd].reshape(B, T, cfg.n_head, hs).transpose(0, 2, 1, 3)
    k = qkv[..., cfg.n_embd : 2 * cfg.n_embd].reshape(B, T, cfg.n_head, hs).transpose(0, 2, 1, 3)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True))[0]


def training_pictures(steps: int = 300) -> None:
    from tinygrad_lm import GPT, GPTConfig
    from tinygrad_lm.optim import AdamW

    n = 6
    cfg = GPTConfig(vocab_size=11, block_size=2 * n + 1, n_layer=2, n_head=4, n_embd=48)
    model = GPT(cfg, seed=0)
    opt = AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    train_rng, eval_rng = np.random.default_rng(1), np.random.default_rng(2)
    eval_idx, eval_targets = sort_batch(eval_rng, 256, n)
    train, evals = [], []
    for step in range(steps + 1):
        if step % 25 == 0:
            with ag.no_grad():
                evals.append((step, model(eval_idx, eval_targets)[1].item()))
        idx, targets = sort_batch(train_rng, 32, n)
        _, loss = model(idx, targets)
        train.append((step, loss.item()))
        loss.backward()
        opt.step()
        opt.zero_grad()
    viz.plot_losses(train=train, eval=evals, path=DOCS / "losses.png", floor=0.0, floor_label="perfect sorting",
                    title="A 2-layer GPT learning to sort 6 digits")  # fmt: skip
    example = np.array([[3, 1, 4, 1, 5, 9, 10, 1, 1, 3, 4, 5]])
    tokens = [str(t) if t < 10 else "|" for t in example[0]]
    title = "Block 0 of a GPT trained to sort: each sorted digit finds the next digit of the input (head 2)"
    weights = attention_weights(model, example, layer=0)
    viz.plot_attention(weights, tokens, DOCS / "attention_heatmap.png", title=title, max_cols=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-train", action="store_true", help="skip the training run (loss curve, heatmap)")
    args = parser.parse_args()
    draw(graph_pictures())
    if not args.no_train:
        start = time.perf_counter()
        training_pictures()
        print(f"training pictures: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
