"""A small public API for reading a recorded graph (what `viz` and other tools use).

    >>> y = (x * w).sum()
    >>> for node in ag.graph.walk(y):
    ...     print(node.op_name, node.shape, [i.op_name for i in node.inputs], node.scope)

Each `Node` exposes ``op_name``, ``inputs``, ``shape``, ``dtype``, ``attrs``, ``scope``,
``requires_grad``, ``is_leaf``, ``name``, ``value`` and ``grad``; see `autograd.primitive.Node`.
"""

from __future__ import annotations

from collections.abc import Sequence

from autograd.backward import _seed, _walk
from autograd.primitive import Node, node_of
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
