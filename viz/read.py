"""Reading the engine's recorded graph, through its public API only.

`read_engine` walks the forward graph from a root tensor (`autograd.graph.walk`), and with
``backward=True`` also the graph that computes every gradient (``gradients(root, create_graph=True)``:
the engine's vjps are engine ops, so the backward is recorded like any forward). It gathers what a
drawing needs: an order (inputs before users), who uses whom, names, gradient norms, and where each
node is drawn (its scope). Only ``walk``, ``gradients``, `Tensor.node` and the public fields of
`autograd.Node` are used, never the engine's private attributes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import autograd as ag
from autograd import Node, Tensor


@dataclass
class EngineGraph:
    """The engine's graph with everything a drawing needs, read once per drawing."""

    order: list[Node]  # forward and backward nodes, inputs before users
    index: dict[int, int]  # id(node) -> position in order
    backward: set[int]  # ids of the nodes that belong to the gradient computation
    users: dict[int, list[Node]]
    scope: dict[int, tuple[str, ...]]  # where each node is drawn
    leaf_scopes: set[tuple[str, ...]]  # scopes with no scope nested inside (modules with no submodules)
    names: dict[int, str]
    norms: dict[int, float]
    scalar_grads: dict[int, float]
    grad_of: list[tuple[Node, Node]]  # (gradient node, forward node)
    gradient_ids: set[int]  # ids of the nodes in grad_of that are gradients
    root: Node
    grads: str | None  # None, "all" or "leaves": which gradients were available
    notes: list[str]  # what could not be read, for the picture's caption


def read_engine(root: Tensor, *, backward: bool, names: Mapping[Any, Any] | None, grads: bool) -> EngineGraph:
    """Read ``root``'s graph (and with ``backward=True`` its gradient graph) for drawing."""
    notes: list[str] = []
    forward = ag.graph.walk(root)
    root_node = forward[-1]
    norms, scalar_grads, grad_status = ({}, {}, None)
    if grads:
        norms, scalar_grads, grad_status = _gradient_norms(root, forward, notes)

    grad_of: list[tuple[Node, Node]] = []
    order = forward
    if backward:
        gradient_tensors = _backward_graph(root, notes)
        if gradient_tensors:
            order = ag.graph.walk([root, *gradient_tensors.values()])
            grad_of = [(g.node, node) for node, g in gradient_tensors.items() if g.node is not None]
    forward_ids = {id(n) for n in forward}
    backward_ids = {id(n) for n in order if id(n) not in forward_ids}

    users: dict[int, list[Node]] = {}
    for node in order:
        for parent in node.inputs:
            users.setdefault(id(parent), []).append(node)
    engine = EngineGraph(
        order=order,
        index={id(n): i for i, n in enumerate(order)},
        backward=backward_ids,
        users=users,
        scope={},
        leaf_scopes=set(),
        names=_resolve_names(order, names),
        norms=norms,
        scalar_grads=scalar_grads,
        grad_of=grad_of,
        gradient_ids={id(g) for g, _ in grad_of},
        root=root_node,
        grads=grad_status,
        notes=notes,
    )
    engine.scope = _place(engine)
    every_scope = set(engine.scope.values())
    parents = {scope[:i] for scope in every_scope for i in range(1, len(scope))}
    engine.leaf_scopes = {scope for scope in every_scope if scope and scope not in parents}
    return engine


def _gradient_norms(root: Tensor, forward: list[Node], notes: list[str]) -> tuple[dict, dict, str | None]:
    """||d root / d node|| for every node (or, when the graph was freed, for leaves with a .grad)."""
    norms: dict[int, float] = {}
    scalars: dict[int, float] = {}
    if not root.requires_grad or root.size != 1:
        notes.append("no gradients: the root is not a single number that requires grad")
        return norms, scalars, None
    try:
        found = {id(n): g.data for n, g in ag.graph.gradients(root).items()}
        status = "all"
    except ag.GraphReleasedError:
        found = {id(n): n.grad.data for n in forward if n.is_leaf and n.grad is not None}
        status = "leaves"
        notes.append(
            "gradients of leaves only: backward() freed the graph "
            "(call backward(retain_graph=True), or draw before backward, to see every gradient)"
        )
    for key, g in found.items():
        norms[key] = float(np.linalg.norm(g.astype(np.float64, copy=False)))
        if g.size == 1:
            scalars[key] = float(g.reshape(()))
    return norms, scalars, status


def _backward_graph(root: Tensor, notes: list[str]) -> dict[Node, Tensor]:
    """The gradient of ``root`` for every node, each computed as a recorded graph."""
    if not root.requires_grad or root.size != 1:
        notes.append("no backward graph: the root is not a single number that requires grad")
        return {}
    try:
        gradients = ag.graph.gradients(root, create_graph=True)
    except ag.GraphReleasedError:
        warnings.warn(
            "viz: cannot draw the backward graph: backward() already freed it. Draw before calling "
            "backward(), or call backward(retain_graph=True).",
            stacklevel=4,
        )
        notes.append("backward graph not drawn: backward() freed it (use retain_graph=True)")
        return {}
    ag.graph.walk(list(gradients.values()))  # gives constant gradients a node, so they can be linked
    return gradients


def _resolve_names(order: list[Node], names: Mapping[Any, Any] | None) -> dict[int, str]:
    """Each node's display name: the user's ``names`` first, then the tensor's own ``.name``.

    ``names`` maps name -> Tensor (like ``dict(model.named_parameters())``) or Tensor -> name.
    """
    by_tensor: dict[int, str] = {}
    for key, value in (names or {}).items():
        if isinstance(value, Tensor) and isinstance(key, str):
            by_tensor[id(value)] = key
        elif isinstance(key, Tensor) and isinstance(value, str):
            by_tensor[id(key)] = value
        else:
            raise TypeError(
                "viz: names must map str -> Tensor (like dict(model.named_parameters())) or Tensor -> str, "
                f"got {type(key).__name__} -> {type(value).__name__}"
            )
    resolved: dict[int, str] = {}
    for node in order:
        tensor = node.tensor
        name = by_tensor.get(id(tensor)) if tensor is not None else None
        name = name or node.name
        if name:
            resolved[id(node)] = name
    return resolved


def _place(engine: EngineGraph) -> dict[int, tuple[str, ...]]:
    """The scope each node is drawn in.

    An op is drawn where it was made. A leaf or constant is drawn in the module its name says it
    belongs to (``transformer.h.0.attn.c_attn.weight`` -> ``transformer.h.0.attn.c_attn``), else in
    the deepest scope shared by all its users (forward users first), so a tensor used by several
    blocks sits outside them.
    """
    known: dict[str, tuple[str, ...]] = {}  # a scope's own name -> the full scope tuple
    for node in engine.order:
        for i in range(len(node.scope)):
            known.setdefault(node.scope[i], node.scope[: i + 1])
    gradient_of = {id(g): f for g, f in engine.grad_of}
    placed: dict[int, tuple[str, ...]] = {}
    for node in engine.order:
        if not node.is_leaf:
            placed[id(node)] = node.scope
            continue
        name = engine.names.get(id(node))
        owner = name.rpartition(".")[0] if name else ""
        if owner in known:
            placed[id(node)] = known[owner]
            continue
        users = engine.users.get(id(node), [])
        forward_users = [u for u in users if id(u) not in engine.backward]
        users = forward_users or users
        if users:
            placed[id(node)] = common_prefix([u.scope for u in users])
        elif id(node) in gradient_of:
            placed[id(node)] = gradient_of[id(node)].scope
        else:
            placed[id(node)] = node.scope
    return placed


def common_prefix(scopes: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    scopes = list(scopes)
    prefix = scopes[0]
    for scope in scopes[1:]:
        n = 0
        while n < min(len(prefix), len(scope)) and prefix[n] == scope[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def module_paths(engine: EngineGraph, names: list[str]) -> list[tuple[str, ...]]:
    """The full scope tuple of each module name (``"transformer.h.0.attn"`` -> its nesting)."""
    known = {scope[-1]: scope for scope in engine.scope.values() if scope}
    for scope in list(known.values()):
        for i in range(1, len(scope)):
            known.setdefault(scope[i - 1], scope[:i])
    missing = [name for name in names if name not in known]
    if missing:
        modules = ", ".join(sorted(known))
        raise ValueError(f"viz: expand: no module named {missing[0]!r} in this graph; modules: {modules}")
    return [known[name] for name in names]
