"""One real training step, forward and backward, with the engine's own numbers: the data of the
walkthrough page (`viz.walkthrough` draws it; ``python demo.py --explain TEXT`` writes it).

The GPT runs its own forward on one sentence, as in training, inside `autograd.graph.keep_values`,
so every step's array stays readable; `autograd.graph.gradients` then gives the gradient of the
loss with respect to every one of them, from the engine's one backward. Nothing here computes a
derivative: the stages are found in the recorded graph by the modules that made them (their
scopes) and read off it. The central differences of the ``gradcheck`` section are the check.

    data = trace_step(model, ids, targets, tokens=[...], text="a cat sat on a mat.")
    json.dumps(data)    # every number of the page, keyed as INTERFACE.md's "The walkthrough page"
"""

from __future__ import annotations

import copy
import inspect
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

import autograd as ag
from autograd.primitive import Node
from tinygrad_lm.model import GPT

DIGITS = 6  # significant digits of the arrays in the JSON (scalars keep all theirs)
TOP_K = 5  # next-token candidates shown per position
PI_DIGITS = "3141592653589793238462643383279502884197169399375105820974944592307816406286208998628034825342117067"
GRADCHECK_EPS = 1e-6  # the float64 central-difference step


# ---------------------------------------------------------------------------------------------------
# The sentence a page explains
# ---------------------------------------------------------------------------------------------------


def sentence(task: Any, text: str | None = None) -> dict[str, Any]:
    """The ids, targets and token strings of ``text`` (a task's example when None) as the task
    trains on them: ``ids`` the model's input, ``targets`` the next ids (``-1``: not scored).

    Text tasks encode characters and predict each next one. Exact tasks (sort, add) read the digits
    of ``text`` as the question, append the right answer, and score the answer only, as in training.
    """
    if getattr(task, "exact", False):
        source = text if text is not None else PI_DIGITS[: task.n_in]  # the example: the digits of pi
        digits = [int(c) for c in source if c.isdigit()]
        if len(digits) != task.n_in:
            raise ValueError(f"explain: the {task.name} task needs {task.n_in} digits, got {len(digits)} in {text!r}")
        problem = np.array([digits])
        sequence = np.concatenate([problem, task.answers(problem)], axis=1)[0]
        ids, targets = sequence[:-1].copy(), sequence[1:].copy()
        targets[: task.n_in - 1] = -1  # the question is given, not predicted
        tokens = [str(int(i)) for i in ids]
        shown = task.describe(digits, task.answers(problem)[0])
        return {"text": shown, "tokens": tokens, "ids": ids, "targets": targets, "vocab": [str(i) for i in range(10)]}
    tokenizer = task.tokenizer
    text = text if text is not None else example_text(task)
    encoded = np.asarray(tokenizer.encode(text), dtype=np.int64)  # unknown characters: a clear error
    if len(encoded) < 2:
        raise ValueError(f"explain: {text!r} is too short: it needs at least two tokens (one to predict)")
    encoded = encoded[: task.block_size + 1]  # the model sees at most block_size positions
    vocab = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
    return {
        "text": tokenizer.decode(encoded),
        "tokens": [tokenizer.decode([i]) for i in encoded[:-1]],
        "ids": encoded[:-1],
        "targets": encoded[1:],
        "vocab": vocab,
    }


def example_text(task: Any) -> str:
    """The sentence a run's page explains when none is given."""
    if getattr(task, "name", "") == "grammar":
        return "a cat sat on a mat."
    # A piece of held-out text: 40 characters, or 12 tokens of a big vocabulary (GPT-2's 50,257: the page
    # carries every position's logits over all of them, 1.2 MB a token in JSON).
    length = 41 if task.tokenizer.vocab_size <= 1000 else 13
    data = task.splits["val"][: min(task.block_size + 1, length)]
    return task.tokenizer.decode(data)


# ---------------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------------


def trace_step(
    model: GPT,
    ids: Sequence[int] | np.ndarray,
    targets: Sequence[int] | np.ndarray,
    *,
    tokens: Sequence[str],
    text: str,
    vocab: Sequence[str] | None = None,
    lr: float = 1e-3,
    optimizer_state: dict[str, Any] | None = None,
    weight_decay: float = 0.1,
    gradcheck_entries: int = 12,
    seed: int = 0,
) -> dict[str, Any]:
    """Run one training step of ``model`` on one sentence and return every number of the page.

    ``ids``/``targets``: length T (``-1`` targets are not scored). The model is not changed: the
    forward runs in eval mode (no dropout), the AdamW update on a copy (with ``optimizer_state``,
    a saved optimizer's state dict, when given: the run's own moments), the gradient check on a
    float64 copy.
    """
    ids = np.asarray(ids, dtype=np.int64)[None]  # (1, T): one sentence
    targets = np.asarray(targets, dtype=np.int64)[None]
    config = model.config
    if len(tokens) != ids.shape[1]:
        raise ValueError(f"explain: {len(tokens)} token strings for {ids.shape[1]} positions")
    with model.evaluating(), _uncompiled(model), ag.graph.keep_values() as kept:
        logits, loss = model(ids, targets)
    steps = _Steps(loss)
    gradients = ag.graph.gradients(loss)  # d loss / d every node: the engine's backward, once
    steps.gradients = {node: g.data for node, g in gradients.items()}

    T = ids.shape[1]
    with ag.no_grad():  # the engine's softmax, in float64 so that probabilities of 1e-9 still show
        probs = ag.Tensor(logits.data[0].astype(np.float64)).softmax(axis=-1).data
    scored = targets[0] >= 0
    nll = [(-math.log(max(probs[t, targets[0, t]], 1e-300)) if scored[t] else None) for t in range(T)]
    data: dict[str, Any] = {
        "text": text,
        "tokens": list(tokens),
        "ids": ids[0].tolist(),
        "targets": targets[0].tolist(),
        "vocab": list(vocab) if vocab is not None else None,
        "config": config.to_dict(),
        "loss": float(loss.item()),
        "scored": int(scored.sum()),
        "logits": _rounded(logits.data[0]),
        "probs": _rounded(probs),
        "dlogits": _rounded(steps.grad_of(steps.output("lm_head"))[0]),
        "nll": nll,
        "top": _top_candidates(probs, vocab),
        "embeddings": _embeddings(steps, model),
        "blocks": [_block(steps, i, config.n_head) for i in range(config.n_layer)],
        "final": _final(steps),
        "grad_norms": _grad_norms(steps, model),
        "vjps": steps.vjp_sources(),
    }
    data["attention"] = [block["attention"] for block in data["blocks"]]
    del kept
    data["gradcheck"] = gradcheck_entries_of(model, ids, targets, gradcheck_entries, seed)
    data["update"] = adamw_update(model, ids, targets, lr, optimizer_state, weight_decay)
    return data


class _uncompiled:  # noqa: N801 (a context manager used like a function)
    """Run the model's own Python, not a replayed trace, so every op is recorded and kept."""

    def __init__(self, model: GPT) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.was = self.model.__dict__.get("_compiled", False)
        self.model.__dict__["_compiled"] = False

    def __exit__(self, *exc: Any) -> None:
        self.model.__dict__["_compiled"] = self.was


class _Steps:
    """The recorded forward of one call, read by module: which node each stage is, its value and
    the loss's gradient with respect to it, and which vjps produced that gradient."""

    def __init__(self, loss: ag.Tensor) -> None:
        self.order = ag.graph.walk(loss)  # inputs before users
        self.users: dict[Node, list[tuple[Node, int]]] = {}
        for node in self.order:
            for i, parent in enumerate(node.inputs):
                self.users.setdefault(parent, []).append((node, i))
        self.gradients: dict[Node, np.ndarray] = {}
        self.sources: dict[str, dict[str, Any]] = {}

    def in_scope(self, scope: str) -> list[Node]:
        """The ops made directly in module ``scope`` (not in its submodules), in order."""
        return [n for n in self.order if not n.is_leaf and n.scope and n.scope[-1] == scope]

    def output(self, scope: str) -> Node:
        """What module ``scope`` returned: its last op (every op of a module leads to its output)."""
        inside = [n for n in self.order if not n.is_leaf and scope in n.scope]
        if not inside:
            raise LookupError(f"walkthrough: the graph has no ops of module {scope!r}")
        return inside[-1]

    def first(self, scope: str, op: str, **where: Any) -> Node:
        for node in self.in_scope(scope):
            if node.op_name == op and all(getattr(node, k) == v for k, v in where.items()):
                return node
        raise LookupError(f"walkthrough: no {op!r} op in module {scope!r}")

    def value(self, node: Node) -> np.ndarray:
        value = node.value
        if value is None:
            raise LookupError(f"walkthrough: the value of {node} was not kept")
        return value

    def grad_of(self, node: Node) -> np.ndarray:
        return self.gradients.get(node, np.zeros(node.shape, dtype=node.dtype))

    def stage(self, node: Node) -> dict[str, Any]:
        """A stage's arrays (its value and its gradient) and which vjps made that gradient."""
        return {"value": self.value(node), "grad": self.grad_of(node), "vjps": self.made_by(node)}

    def made_by(self, node: Node) -> list[str]:
        """The keys (into `vjp_sources`) of the vjps whose results were summed into ``node``'s gradient:
        the vjp of each op that used it, for the input it was."""
        keys = []
        for user, i in self.users.get(node, []):
            if user.op is None or not user.requires_grad:
                continue
            key = f"{user.op_name}/{i}"
            if key not in self.sources:
                self.sources[key] = _vjp_source(user.op, i)
            keys.append(key)
        return keys

    def vjp_sources(self) -> dict[str, dict[str, Any]]:
        return self.sources


def _vjp_source(op: Any, i: int) -> dict[str, Any]:
    """Where the vjp of ``op`` for input ``i`` is written: file, line, and its code."""
    vjp = op.vjps[i] if op.vjps is not None else op.vjp(i)
    try:
        lines, line = inspect.getsourcelines(vjp)
        path = inspect.getsourcefile(vjp) or ""
    except (OSError, TypeError):
        return {"op": op.name, "input": i, "file": None, "line": None, "code": None}
    root = os.path.dirname(os.path.dirname(os.path.abspath(ag.__file__)))
    code = "".join(lines).strip()
    if code.startswith("def "):  # a named vjp: the line that says what it returns
        returns = [n for n, text in enumerate(lines) if text.strip().startswith("return ")]
        if returns:
            line, code = line + returns[-1], lines[returns[-1]].strip()
    return {
        "op": op.name,
        "input": i,
        "file": os.path.relpath(path, root) if path.startswith(root) else path,
        "path": os.path.abspath(path),
        "line": line,
        "code": code,
    }


def _embeddings(steps: _Steps, model: GPT) -> dict[str, Any]:
    token, position = steps.output("transformer.wte"), steps.output("transformer.wpe")
    x = next(user for user, _ in steps.users[token] if user.op_name == "add")  # tok_emb + pos_emb
    return {
        "token": _pack(steps.stage(token), batch=True),
        "position": _pack(steps.stage(position), batch=False),
        "x": _pack(steps.stage(x), batch=True),
    }


def _block(steps: _Steps, i: int, n_head: int) -> dict[str, Any]:
    """One block's stages, in the order the seed tells them."""
    p = f"transformer.h.{i}"
    attn = f"{p}.attn"
    weights = steps.first(attn, "softmax")  # (1, nh, T, T)
    masked = weights.inputs[0]  # scores + the causal mask
    scores = masked.inputs[0]  # (q / sqrt(hs)) @ k^T
    scaled_q, k_t = scores.inputs
    weighted = next(user for user, j in steps.users[weights] if user.op_name == "matmul" and j == 0)  # weights @ v
    v = weighted.inputs[1]
    c_proj_in = next(n for n in steps.in_scope(f"{attn}.c_proj") if n.op_name == "matmul").inputs[0]  # heads joined
    fc_out = steps.output(f"{p}.mlp.c_fc")
    gelu_out = next(n for n in steps.in_scope(f"{p}.mlp.c_proj") if n.op_name == "matmul").inputs[0]
    residual_1, out = [n for n in steps.in_scope(p) if n.op_name == "add"][:2]
    stages = {
        "ln_1": (steps.output(f"{p}.ln_1"), True),
        "qkv": (steps.output(f"{attn}.c_attn"), True),
        "q": (scaled_q.inputs[0], True),
        "k": (k_t.inputs[0], True),
        "v": (v, True),
        "scores": (masked, True),  # with the mask added: softmax's input (the page greys the masked cells)
        "attention": (weights, True),
        "weighted": (weighted, True),
        "joined": (c_proj_in, True),
        "attn_out": (steps.output(f"{attn}.c_proj"), True),
        "residual_1": (residual_1, True),
        "ln_2": (steps.output(f"{p}.ln_2"), True),
        "fc": (fc_out, True),
        "gelu": (gelu_out, True),
        "mlp_out": (steps.output(f"{p}.mlp.c_proj"), True),
        "out": (out, True),
    }
    packed = {name: _pack(steps.stage(node), batch=batch) for name, (node, batch) in stages.items()}
    packed["attention"]["value"] = _rounded(steps.value(weights)[0])  # n_head x T x T
    result = {"name": p, "stages": packed, "attention": packed["attention"]["value"]}
    result["scale"] = float(steps.value(scaled_q.inputs[1]).reshape(-1)[0]) if scaled_q.inputs[1].size == 1 else None
    return result


def _final(steps: _Steps) -> dict[str, Any]:
    return {
        "ln_f": _pack(steps.stage(steps.output("transformer.ln_f")), batch=True),
        "logits": _pack(steps.stage(steps.output("lm_head")), batch=True),
    }


def _grad_norms(steps: _Steps, model: GPT) -> dict[str, float]:
    """``{parameter name: |dL/dparameter|}`` for every parameter, the tied one once."""
    by_id = {id(node.tensor): node for node in steps.order if node.is_leaf and node.requires_grad}
    norms = {}
    for name, p in model.named_parameters():
        node = by_id.get(id(p))
        grad = steps.gradients.get(node) if node is not None else None
        norms[name] = float(np.linalg.norm(grad.astype(np.float64))) if grad is not None else 0.0
    return norms


def _pack(stage: dict[str, Any], batch: bool) -> dict[str, Any]:
    value, grad = stage["value"], stage["grad"]
    if batch:  # the one sentence of the batch
        value, grad = value[0], grad[0]
    return {"shape": list(value.shape), "value": _rounded(value), "grad": _rounded(grad), "vjps": stage["vjps"]}


def _rounded(array: np.ndarray) -> Any:
    """Nested lists of numbers with `DIGITS` significant digits (the page shows fewer)."""
    array = np.asarray(array, dtype=np.float64)
    return np.vectorize(lambda x: float(f"{x:.{DIGITS}g}"), otypes=[float])(array).tolist() if array.size else []


def _top_candidates(probs: np.ndarray, vocab: Sequence[str] | None) -> list[list[dict[str, Any]]]:
    top = []
    for row in probs:
        best = np.argsort(-row, kind="stable")[:TOP_K]
        top.append([{"id": int(j), "token": vocab[j] if vocab and j < len(vocab) else f"#{j}", "p": float(row[j])}
                    for j in best])  # fmt: skip (a model may have more ids than its tokenizer: GPT-2's padded vocab)
    return top


# ---------------------------------------------------------------------------------------------------
# Proof and consequence: central differences, one AdamW step
# ---------------------------------------------------------------------------------------------------


def _copy(model: GPT) -> GPT:
    """A copy to change (a gradient check's float64 twin, an update's): uncompiled, so each call runs
    the model's own Python."""
    twin = copy.deepcopy(model)
    twin.__dict__["_compiled"] = False
    return twin


def gradcheck_entries_of(
    model: GPT, ids: np.ndarray, targets: np.ndarray, n: int = 12, seed: int = 0
) -> dict[str, Any]:
    """A few entries of several parameters: the engine's gradient against central differences,
    ``(L(p + eps) - L(p - eps)) / 2 eps``, on a float64 copy of the model."""
    twin = _copy(model).to(np.float64)
    params = dict(twin.named_parameters())
    names = [name for name in params if name.endswith("weight")]
    picks = [names[0], *[n for n in names if ".attn.c_attn." in n][:1], *[n for n in names if ".mlp.c_fc." in n][:1]]
    picks += [n for n in names if n.startswith("transformer.ln_f")][:1] + [n for n in names if ".attn.c_proj." in n][:1]
    rng = np.random.default_rng(seed)

    def loss_at() -> float:
        with ag.no_grad(), twin.evaluating():
            return float(twin(ids, targets)[1].item())

    with twin.evaluating():
        twin.zero_grad()
        twin(ids, targets)[1].backward()
    entries = []
    for k in range(n):
        name = picks[k % len(picks)]
        p = params[name]
        # Among a few random entries, the one with the largest gradient: a relative error means
        # something there (an entry whose gradient is almost 0 is all rounding on both sides).
        candidates = [tuple(int(rng.integers(s)) for s in p.shape) for _ in range(16)]
        if name == "transformer.wte.weight":  # rows the sentence uses (it also unembeds every position)
            candidates = [(int(ids[0, rng.integers(ids.shape[1])]), c[1]) for c in candidates]
        index = max(candidates, key=lambda c: abs(float(p.grad.data[c])))
        engine = float(p.grad.data[index])
        original = p.data[index]
        p.data[index] = original + GRADCHECK_EPS
        up = loss_at()
        p.data[index] = original - GRADCHECK_EPS
        down = loss_at()
        p.data[index] = original
        numerical = (up - down) / (2 * GRADCHECK_EPS)
        error = abs(engine - numerical) / max(abs(engine), abs(numerical), 1e-12)
        entries.append({"param": name, "index": list(index), "engine": engine, "numerical": numerical,
                        "rel_error": error})  # fmt: skip
    return {
        "checked": len(entries),
        "max_rel_error": max((e["rel_error"] for e in entries), default=0.0),
        "eps": GRADCHECK_EPS,
        "entries": entries,
    }


def adamw_update(
    model: GPT,
    ids: np.ndarray,
    targets: np.ndarray,
    lr: float,
    optimizer_state: dict[str, Any] | None = None,
    weight_decay: float = 0.1,
    show: int = 6,
) -> dict[str, Any]:
    """One AdamW step on this sentence, on a copy: a few parameters before and after, and the
    loss before and after."""
    twin = _copy(model)
    optimizer = twin.configure_optimizers(weight_decay, lr)
    resumed = False
    if optimizer_state is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
            resumed = True
        except (ValueError, TypeError, KeyError):
            resumed = False
    for group in optimizer.param_groups:
        group["lr"] = lr

    def loss_of() -> float:
        with ag.no_grad(), twin.evaluating():
            return float(twin(ids, targets)[1].item())

    before_loss = loss_of()
    params = dict(twin.named_parameters())
    chosen = [n for n in params if ".attn.c_attn.weight" in n][:1] + [n for n in params if "ln_f.weight" in n][:1]
    watched = [(name, (0,) * params[name].ndim) for name in chosen]
    width = params["transformer.wte.weight"].shape[1]
    watched += [("transformer.wte.weight", (int(ids[0, 0]), j)) for j in range(min(2, width))]
    before = {(name, index): float(params[name].data[index]) for name, index in watched}
    with twin.evaluating():
        twin(ids, targets)[1].backward()
    grads = {(name, index): float(params[name].grad.data[index]) for name, index in watched}
    optimizer.step()
    optimizer.zero_grad()
    after_loss = loss_of()
    return {
        "lr": lr,
        "weight_decay": weight_decay,
        "resumed_moments": resumed,
        "loss_before": before_loss,
        "loss_after": after_loss,
        "params": [
            {"name": name, "index": list(index), "before": before[(name, index)], "grad": grads[(name, index)],
             "after": float(params[name].data[index])}
            for name, index in watched[:show]
        ],  # fmt: skip
    }
