"""Write docs/tutorial.ipynb from the cells below and run it, so the committed notebook shows its outputs:

    .venv/bin/python docs/make_tutorial.py       # about ten seconds (make tutorial)

The cells are kept here, as text a diff can show, rather than edited in Jupyter; `tests/test_tutorial.py`
runs the committed notebook again in a fresh kernel and fails on any error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parent
NOTEBOOK = DOCS / "tutorial.ipynb"

CELLS: list[tuple[str, str]] = [
    ("markdown", """# tinygrad-lm in a notebook

A gradient you can see, a gradient you can test, and a small GPT you can look inside and train. Every
picture below is drawn by `viz` as SVG, without a system Graphviz (the `graphviz-pure` program that
`pip install` brings draws it), and every gradient comes from the engine's one backward."""),
    ("code", """%matplotlib inline
import numpy as np

import autograd as ag
import viz
from autograd import Tensor"""),
    ("markdown", """## 1. A neuron, forward and backward

micrograd's neuron, `o = tanh(x1 w1 + x2 w2 + b)`. `o.backward()` fills every leaf's `.grad`;
`values=True, grads=True` draws each tensor as a record `name | data | grad`, as micrograd's `draw_dot` does.
(`retain_graph=True` keeps the graph's saved arrays after the backward, so the drawing can show the
gradients of the intermediate tensors too.)"""),
    ("code", """x1, x2 = Tensor(2.0, requires_grad=True), Tensor(0.0, requires_grad=True)
w1, w2 = Tensor(-3.0, requires_grad=True), Tensor(1.0, requires_grad=True)
b = Tensor(6.8813735870195432, requires_grad=True)
for t, name in [(x1, "x1"), (x2, "x2"), (w1, "w1"), (w2, "w2"), (b, "b")]:
    t.name = name
n = x1 * w1 + x2 * w2 + b
o = n.tanh()
o.backward(retain_graph=True)
print(f"o = {o.item():.4f}   do/dx1 = {x1.grad.item():.4f}   do/dw1 = {w1.grad.item():.4f}")
viz.draw_graph(o, values=True, grads=True, rankdir="LR", names={n: "n", o: "o"})"""),
    ("markdown", """## 2. The gradient, tested

`ag.gradcheck` compares the engine's gradients with central differences in float64. With hypothesis,
`autograd.testing` draws the shapes (broadcasting included) and the values, so one property covers many
cases: here `tanh(a * b)` for every pair of shapes that broadcast. A failing case would raise with a
per-input report."""),
    ("code", """from hypothesis import given, settings
from hypothesis import strategies as st

from autograd.testing import arrays, broadcastable_shapes


@settings(max_examples=30, deadline=None)
@given(shapes=broadcastable_shapes(2), data=st.data())
def tanh_of_a_product(shapes, data):
    a, b = data.draw(arrays(shapes[0])), data.draw(arrays(shapes[1]))
    assert ag.gradcheck(lambda a, b: (a * b).tanh(), [a, b])


tanh_of_a_product()
print("the gradient of tanh(a * b) matches central differences on 30 generated shape pairs")"""),
    ("markdown", """## 3. A small GPT, drawn

The model is written only with engine ops, so its graph is the engine's graph. `depth=1` collapses each
top-level module into one node (its parameter count, op count and output shape); `grad_health=True`
colours each node by its gradient's norm."""),
    ("code", """from tinygrad_lm import GPT, GPTConfig

config = GPTConfig(vocab_size=11, block_size=13, n_layer=2, n_head=2, n_embd=32)
model = GPT(config, seed=0)
idx = np.random.default_rng(0).integers(0, 11, (4, 12))
logits, loss = model(idx, np.roll(idx, -1, axis=1))
names = dict(model.named_parameters())
viz.draw_graph(loss, depth=1, names=names, grad_health=True)"""),
    ("markdown", """Zoom into one attention, forward and the backward the engine derived from it: the yellow ops are
the forward, the red ones the vjps that differentiate them, each dashed red arrow from a gradient to the tensor
it is the gradient of."""),
    ("code", """viz.draw_graph(loss, depth=1, expand="transformer.h.0.attn", backward=True, names=names)"""),
    ("markdown", """## 4. A few training steps

The model learns to sort 6 digits (`3 1 4 1 5 9` then `1 1 3 4 5 9`), scored on the sorted half only.
The loss falls within a hundred steps on one CPU core."""),
    ("code", """from tinygrad_lm.optim import AdamW
from tinygrad_lm.tasks import SortTask

task = SortTask(length=6)
model = GPT(GPTConfig(task.vocab_size, task.block_size, n_layer=2, n_head=4, n_embd=48), seed=0).compile()
optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
rng = np.random.default_rng(0)
losses = []
for step in range(150):
    idx, targets = task.get_batch("train", 32, rng)
    _, loss = model(idx, targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append((step, loss.item()))
print(f"loss: {losses[0][1]:.3f} at the first step, {losses[-1][1]:.3f} after {len(losses)}")
viz.plot_losses(train=losses, title="a 2-layer GPT learning to sort 6 digits")"""),
    ("markdown", """## Where next

- `python demo.py --task sort` trains this to 100% on held-out lists and writes its pictures.
- The README's "Reading the engine" names the files to open: `autograd/ops.py` (every primitive with its
  vjp), then `autograd/backward.py` (the walk), then `autograd/primitive.py`.
- [The gallery](GALLERY.md) shows more of what `viz` draws."""),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    notebook.cells = [make[kind](text) for kind, text in CELLS]
    for i, cell in enumerate(notebook.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: a rerun changes only what the cells print
    return notebook


def execute(notebook: nbformat.NotebookNode, directory: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel started in ``directory``; raise on the first error."""
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(directory)}}
    )
    client.execute()
    return notebook


def main() -> None:
    notebook = execute(build(), DOCS)
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(DOCS.parent)} ({NOTEBOOK.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    sys.exit(main())
