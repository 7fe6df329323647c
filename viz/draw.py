"""The public drawing calls: `draw_graph` (a `graphviz.Digraph`) and `to_dot` (its DOT text)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import graphviz

from autograd import Tensor
from viz.dot import to_digraph
from viz.graph import Style, build_graph


def draw_graph(
    root: Tensor,
    *,
    backward: bool = False,
    depth: int | None = None,
    expand: str | Iterable[str] = (),
    names: Mapping[Any, Any] | None = None,
    values: bool = False,
    grads: bool = False,
    grad_health: bool = False,
    rankdir: str = "TB",
    max_nodes: int | None = 300,
    style: Style = "auto",
    legend: bool = True,
    title: str | None = None,
) -> graphviz.Digraph:
    """Draw the graph that computed ``root``: one node per op and per input tensor, in module boxes.

    - ``backward=True``: also the gradient computation, as the engine records it with
      ``create_graph=True`` (its ops are engine ops, in red), each gradient linked to its forward
      tensor by a dashed red "is the gradient of" edge. Needs the graph not yet freed by a plain
      ``backward()``; otherwise only the forward is drawn, with a warning and a note.
    - ``depth=d``: everything made inside a module nested ``d`` deep (the ``ag.scope`` blocks that
      modules open with their dotted name) becomes one node for that module, labelled with its
      parameter count, op count and output shape. For a GPT, ``depth=1`` gives one node per
      top-level module (embeddings -> blocks -> ln_f, lm_head) and the loss's ops; ``depth=2``
      opens the blocks (ln_1, attn, ln_2, mlp and the residual adds); ``None`` draws every op.
      A module with no submodules (a LayerNorm) is collapsed at any depth.
    - ``expand``: module names (or one name) drawn op by op whatever the depth, to zoom into one
      block or one attention: ``draw_graph(loss, depth=1, expand="transformer.h.0.attn")``.
    - ``names``: ``{name: Tensor}`` (e.g. ``dict(model.named_parameters())``) or ``{Tensor: name}``;
      tensors not named there show their own ``.name``.
    - ``values=True``: scalars' values, and mean/std/min/max of arrays still in memory.
    - ``grads=True``: gradients (scalars) and gradient norms ``||d root / d x||`` on every node,
      computed with ``ag.graph.gradients`` (no ``.grad`` is touched). After a plain ``backward()``
      freed the graph, only leaves' ``.grad`` can be shown (a note says so).
    - ``grad_health=True``: colour nodes by ``log10`` of their gradient norm, blue (vanishing) to
      green (healthy) to red (exploding); implies ``grads=True``. A module shows its parameters'
      combined gradient norm.
    - ``rankdir``: "TB" (top to bottom) or "LR", "BT", "RL".
    - ``max_nodes``: a bigger picture is collapsed to the deepest ``depth`` that fits, and if even
      that is too big, the nodes farthest from the output are summarised in one node (a note in
      the picture says what was done). ``None``: no limit.
    - ``style``: "records" draws micrograd-like records (``name | data | grad``) and small op nodes;
      "compact" one node per op holding its output's shape; "auto" uses records for graphs of up to
      40 nodes.

    The result renders in Jupyter and with ``.pipe()`` even without a system Graphviz (it falls back
    to the ``graphviz-pure`` program); to write a file use `viz.render`.
    """
    graph = build_graph(
        root, backward=backward, depth=depth, names=names, values=values, grads=grads or grad_health,
        style=style, max_nodes=max_nodes, expand=expand,
    )  # fmt: skip
    return to_digraph(graph, rankdir=rankdir, grad_health=grad_health, legend=legend, title=title)


def to_dot(root: Tensor, **options: Any) -> str:
    """The DOT text of `draw_graph(root, **options)`; needs no Graphviz program."""
    return draw_graph(root, **options).source
