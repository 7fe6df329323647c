"""A small public API for reading a recorded graph (what `viz` and other tools use).

    >>> y = (x * w).sum()
    >>> for node in ag.graph.walk(y):
    ...     print(node.op_name, node.shape, [i.op_name for i in node.inputs], node.scope)

Each `Node` exposes ``op_name``, ``inputs``, ``shape``, ``dtype``, ``attrs``, ``scope``,
``requires_grad``, ``is_leaf``, ``name``, ``value`` and ``grad``; see `autograd.primitive.Node`.
A node's ``value`` is readable while its tensor is alive; inside `keep_values` every tensor an op
makes is kept, so a tool can show the numbers of every step of a forward pass afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from autograd.backward import _seed, _walk
from autograd.primitive import STATE, Node, node_of
from autograd.tensor import Tensor


def walk(roots: Tensor | Node | Sequence[Tensor | Node]) -> list[Node]:
    """Every node that the roots were computed from (constants too), inputs before their users."""
    if isinstance(roots, (Tensor, Node)):
        roots = [roots]
    order: list[Node] = []
    visited: set[int] = set()
    for root in roots:
        start = node_of(root) if isinstance(root, Tensor) else root
        if id(start) in visited:
            continue
        visited.add(id(start))
        stack = [(start, iter(start.inputs))]
        while stack:
            node, pending = stack[-1]
            for parent in pending:
                if id(parent) not in visited:
                    visited.add(id(parent))
                    stack.append((parent, iter(parent.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def gradients(root: Tensor, *, create_graph: bool = False, retain_graph: bool = True) -> dict[Node, Tensor]:
    """d(root)/d(node) for every node of root's graph that requires grad (intermediates included).

    With ``create_graph=True`` each gradient is itself a recorded graph whose nodes carry
    ``vjp_of`` (the forward node they differentiate), so the backward pass can be drawn.
    Leaves' ``.grad`` is not touched. ``root`` must hold a single element.
    """
    seed = _seed(root, None, "gradients")
    nodes = [n for n in walk(root) if n.requires_grad]
    return _walk([node_of(root)], [seed], wanted=nodes, retain_graph=retain_graph, create_graph=create_graph)


@contextmanager
def keep_values() -> Iterator[list]:
    """Keep alive every tensor an op makes inside the block (and so every node's ``value``), until
    the list this yields is dropped: for tools that show a forward pass's intermediate numbers.

        with ag.graph.keep_values() as kept:
            logits, loss = model(idx, targets)
        for node in ag.graph.walk(loss): node.value    # every step's array, not only the saved ones

    It costs the memory of all of them. While it is on, `autograd.capture` calls functions instead
    of replaying them (each op must run to be kept), and it cannot be nested in a trace.
    """
    if STATE.recording is not None:
        raise RuntimeError("keep_values: already inside a trace (autograd.capture) or another keep_values")
    kept: list = []
    STATE.recording = kept  # the hook `autograd.capture` traces with: every op appends what it made
    try:
        yield kept
    finally:
        STATE.recording = None
