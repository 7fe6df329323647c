"""From the engine's recorded graph to a neutral picture description: nodes, edges, module scopes.

`build_graph` takes what `viz.read` read from the engine (steps 1 and 2 below) and decides what is
drawn (3 and 4); it knows nothing of DOT (that is `viz.dot`). The steps:

1. walk the forward graph from ``root``; with ``backward=True`` also the graph that computes every
   gradient (``gradients(root, create_graph=True)``), whose nodes are linked to the forward node
   each gradient belongs to;
2. give every engine node a scope: an op has the scope it was made in; a leaf or a constant (made
   once, maybe used by several modules) goes to its parameter's module, or else to the deepest
   scope shared by all its users;
3. with ``depth=d``, replace everything made inside a module nested ``d`` deep (scope tuples of
   length ``>= d``) by one node for that module (its parameter count, op count and output shape);
   the forward and the backward of a module become separate nodes;
4. if the picture still has more than ``max_nodes`` nodes, collapse to a smaller depth, and as a
   last resort keep the nodes nearest the output and summarise the rest in one node.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from autograd import Node, Tensor
from viz.read import EngineGraph, common_prefix, module_paths, read_engine
from viz.text import describe_attrs

# What a drawn node stands for.
PARAM = "param"  # a leaf that requires grad (a parameter or an input being differentiated)
CONST = "const"  # a constant input: data, a number in an expression, a mask
OP = "op"  # an op (in "compact" style it stands for its output tensor too)
VALUE = "value"  # "records" style: the tensor an op produced, drawn as its own record
MODULE = "module"  # everything a module (scope) computed, collapsed into one node
SUMMARY = "summary"  # what the max_nodes guard left out

Style = Literal["auto", "records", "compact"]
AUTO_RECORDS_LIMIT = 40  # "auto" style draws micrograd-like records up to this many engine nodes


@dataclass
class VizNode:
    id: str
    kind: str
    title: str  # op name, tensor name or module name
    scope: tuple[str, ...]  # the nested module boxes it is drawn in
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    detail: str = ""  # an op's attributes, e.g. "axis=1"
    name: str | None = None  # a tensor's name (parameter name or the user's `names=`)
    value: np.ndarray | None = None  # available data (shown when values=True)
    grad: float | None = None  # a scalar's gradient
    grad_norm: float | None = None  # ||d root / d tensor||_2 (for a module: of its parameters)
    backward: bool = False  # part of the gradient computation
    is_root: bool = False
    params: int = 0  # modules: number of parameter entries
    ops: int = 0  # modules and summaries: number of ops collapsed into the node
    op_counts: Counter = field(default_factory=Counter)  # summaries: which ops
    uses: list[str] = field(default_factory=list)  # modules: parameters of other modules they read (tied)
    order: int = 0  # position in the walk (inputs before users), for the max_nodes guard
    tooltip: str = ""


@dataclass
class VizEdge:
    src: str
    dst: str
    # "data": forward flow; "backward": within the gradient computation; "saved": a forward tensor
    # read by a backward op; "grad_of": from a gradient to the forward tensor it is the gradient of
    kind: str = "data"
    count: int = 1  # how many engine edges it stands for (after collapsing)


@dataclass
class VizGraph:
    nodes: dict[str, VizNode]
    edges: list[VizEdge]
    depth: int | None  # the depth actually drawn (None: every op)
    style: str  # "records" or "compact"
    grads: str | None  # None, "all" (every node's gradient) or "leaves" (only leaves' .grad)
    backward: bool
    notes: list[str] = field(default_factory=list)  # what was collapsed or could not be drawn, and why


# ---------------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------------


def build_graph(
    root: Tensor,
    *,
    backward: bool = False,
    depth: int | None = None,
    names: Mapping[Any, Any] | None = None,
    values: bool = False,
    grads: bool = False,
    style: Style = "auto",
    max_nodes: int | None = 300,
    expand: str | Iterable[str] = (),
) -> VizGraph:
    """Describe the graph that computed ``root`` (see `viz.draw_graph` for the options)."""
    expand_names = [expand] if isinstance(expand, str) else list(expand)
    if not isinstance(root, Tensor):
        raise TypeError(f"viz: expected the Tensor whose graph to draw, got {type(root).__name__}")
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"viz: depth must be None or an int >= 1, got {depth!r}")
    if max_nodes is not None and max_nodes < 2:
        raise ValueError(f"viz: max_nodes must be at least 2 (or None for no limit), got {max_nodes}")
    if style not in ("auto", "records", "compact"):
        raise ValueError(f"viz: style must be 'auto', 'records' or 'compact', got {style!r}")
    engine = read_engine(root, backward=backward, names=names, grads=grads)
    if style == "auto":
        style = "records" if len(engine.order) <= AUTO_RECORDS_LIMIT and depth is None else "compact"
    expand_paths = module_paths(engine, expand_names)
    graph = _layout(engine, depth, style, values, expand_paths)
    if max_nodes is not None and len(graph.nodes) > max_nodes:
        graph = _shrink(engine, graph, max_nodes, values, expand_paths)
    graph.notes = engine.notes + graph.notes
    return graph

def _shrink(
    engine: EngineGraph, graph: VizGraph, max_nodes: int, values: bool, expand: list[tuple[str, ...]]
) -> VizGraph:
    """Collapse to the deepest depth that fits in ``max_nodes``; failing that, summarise."""
    asked = graph.depth
    deepest = max((len(s) for s in engine.scope.values()), default=0)
    start = deepest if asked is None else min(asked - 1, deepest)
    for depth in range(start, 0, -1):
        smaller = _layout(engine, depth, "compact", values, expand)
        if len(smaller.nodes) <= max_nodes:
            smaller.notes.append(
                f"{len(graph.nodes)} nodes > max_nodes={max_nodes}: modules collapsed to depth={depth}"
            )
            return smaller
    smallest = _layout(engine, 1, "compact", values, []) if deepest >= 1 else graph
    if len(smallest.nodes) < len(graph.nodes):
        graph = smallest
    return _summarise(graph, max_nodes)

# ---------------------------------------------------------------------------------------------------
# From engine nodes to drawn nodes and edges
# ---------------------------------------------------------------------------------------------------


def _collapsed_into(
    scope: tuple[str, ...], depth: int | None, expand: list[tuple[str, ...]], leaf_scopes: set[tuple[str, ...]]
) -> tuple[str, ...] | None:
    """The module a node made in ``scope`` is collapsed into at this ``depth`` (None: drawn itself).

    Modules nested ``depth`` deep are collapsed, and so are modules above that level that hold no
    submodule (a LayerNorm beside the blocks). An expanded module is drawn op by op, and the
    modules around it are opened down to it: its siblings become one node each.
    """
    if depth is None or not scope:
        return None
    for path in expand:
        if scope[: len(path)] == path:
            return None
        shared = len(common_prefix([scope, path]))
        if shared:
            depth = max(depth, shared + 1)
    if len(scope) >= depth:
        return scope[:depth]
    return scope if scope in leaf_scopes else None


def _layout(
    engine: EngineGraph, depth: int | None, style: str, values: bool, expand: list[tuple[str, ...]]
) -> VizGraph:
    nodes: dict[str, VizNode] = {}
    into: dict[int, str] = {}  # engine node -> the drawn node its inputs point at
    out_of: dict[int, str] = {}  # engine node -> the drawn node its users are fed from
    group: dict[int, tuple] = {}  # engine node -> its module key, if collapsed
    module_ids: dict[tuple, str] = {}  # module key (scope, is_backward) -> drawn node id

    for i, node in enumerate(engine.order):
        key = id(node)
        scope = engine.scope[key]
        is_backward = key in engine.backward
        collapsed_scope = _collapsed_into(scope, depth, expand, engine.leaf_scopes)
        if collapsed_scope is not None:
            module = (collapsed_scope, is_backward)
            group[key] = module
            module_id = module_ids.setdefault(module, f"m{len(module_ids)}")
            if module_id not in nodes:
                nodes[module_id] = _module_node(module_id, module)
            _absorb(nodes[module_id], engine, node, i)
            into[key] = out_of[key] = module_id
            continue
        drawn = _engine_node(engine, node, i, scope, values)
        nodes[drawn.id] = drawn
        into[key] = out_of[key] = drawn.id
        if style == "records" and not node.is_leaf:
            record = _value_record(drawn, engine, node, values)
            nodes[record.id] = record
            out_of[key] = record.id

    edges: dict[tuple[str, str, str], VizEdge] = {}

    def connect(src: str, dst: str, kind: str) -> None:
        if src == dst:
            return
        edge = edges.get((src, dst, kind))
        if edge is None:
            edges[(src, dst, kind)] = VizEdge(src, dst, kind)
        else:
            edge.count += 1

    for node in engine.order:
        if style == "records" and id(node) not in group and not node.is_leaf:  # op -> its value record
            connect(into[id(node)], out_of[id(node)], "backward" if id(node) in engine.backward else "data")
        for parent in node.inputs:
            if id(node) not in engine.backward:
                kind = "data"
            else:
                kind = "backward" if id(parent) in engine.backward else "saved"
            connect(out_of[id(parent)], into[id(node)], kind)
    for gradient, forward in engine.grad_of:
        connect(out_of[id(gradient)], out_of[id(forward)], "grad_of")

    _finish_modules(nodes, engine, group, module_ids)
    nodes[out_of[id(engine.root)]].is_root = True
    return VizGraph(nodes, list(edges.values()), depth, style, engine.grads, bool(engine.backward))


def _engine_node(engine: EngineGraph, node: Node, order: int, scope: tuple[str, ...], values: bool) -> VizNode:
    key = id(node)
    name = engine.names.get(key)
    if node.is_leaf:
        kind = PARAM if node.requires_grad else CONST
        title = name or ("grad" if key in engine.gradient_ids else _leaf_title(node))
    else:
        kind, title = OP, node.op_name
    value = node.value
    drawn = VizNode(
        id=f"n{order}",
        kind=kind,
        title=title,
        scope=scope,
        shape=tuple(node.shape),
        dtype=str(node.dtype),
        detail="" if node.is_leaf else describe_attrs(node.op_name, node.attrs),
        name=name,
        value=value if (values or (kind == CONST and node.size == 1)) else None,
        grad=engine.scalar_grads.get(key),
        grad_norm=engine.norms.get(key),
        backward=key in engine.backward,
        order=order,
    )
    drawn.tooltip = _tooltip(drawn, node)
    return drawn


def _leaf_title(node: Node) -> str:
    if node.requires_grad:
        return "param" if node.ndim else "input"
    if node.size == 1 and node.value is not None:
        return "const"
    return "input" if node.dtype.kind in "iu" else "const"


def _value_record(op: VizNode, engine: EngineGraph, node: Node, values: bool) -> VizNode:
    """Records style: the tensor an op produced, as its own node (micrograd's draw_dot)."""
    record = VizNode(
        id=op.id + "v",
        kind=VALUE,
        title=op.name or "",
        scope=op.scope,
        shape=op.shape,
        dtype=op.dtype,
        name=op.name,
        value=op.value if values else None,
        grad=op.grad,
        grad_norm=op.grad_norm,
        backward=op.backward,
        order=op.order,
        tooltip=op.tooltip,
    )
    op.grad = op.grad_norm = op.value = None  # the record shows them
    return record


def _tooltip(drawn: VizNode, node: Node) -> str:
    parts = [drawn.title if not drawn.name else f"{drawn.name} ({node.op_name})"]
    parts.append(f"{tuple(node.shape)} {node.dtype}")
    if drawn.detail:
        parts.append(drawn.detail)
    if node.scope:
        parts.append("in " + node.scope[-1])
    if node.vjp_of is not None:
        parts.append(f"gradient step of {node.vjp_of.op_name}")
    return " | ".join(parts)


def _module_node(module_id: str, module: tuple) -> VizNode:
    scope, is_backward = module
    return VizNode(
        id=module_id,
        kind=MODULE,
        title=scope[-1],
        scope=scope[:-1],
        backward=is_backward,
        tooltip=("gradient of " if is_backward else "") + scope[-1],
    )


def _absorb(module: VizNode, engine: EngineGraph, node: Node, order: int) -> None:
    """Count what a module node stands for."""
    module.order = max(module.order, order)
    if not node.is_leaf:
        module.ops += 1
        module.op_counts[node.op_name] += 1
    elif node.requires_grad and not module.backward:
        module.params += node.size
        norm = engine.norms.get(id(node))
        if norm is not None:  # the norm of all its parameters' gradients together
            module.grad_norm = math.hypot(module.grad_norm or 0.0, norm)


def _finish_modules(
    nodes: dict[str, VizNode], engine: EngineGraph, group: dict[int, tuple], module_ids: dict[tuple, str]
) -> None:
    """Give each module node the shape of its output: its last tensor used outside the module."""
    for node in engine.order:
        module = group.get(id(node))
        if module is None:
            continue
        drawn = nodes[module_ids[module]]
        for parent in node.inputs:
            name = engine.names.get(id(parent))
            shared = parent.is_leaf and parent.requires_grad and group.get(id(parent)) != module
            if shared and name and not drawn.backward and name not in drawn.uses:
                drawn.uses.append(name)
        users = engine.users.get(id(node), [])
        leaves_module = id(node) == id(engine.root) or not users or any(
            group.get(id(user)) != module for user in users
        )
        if leaves_module and not node.is_leaf:
            drawn.shape, drawn.dtype = tuple(node.shape), str(node.dtype)
            if not drawn.params and id(node) in engine.norms:  # no parameters: its output's gradient
                drawn.grad_norm = engine.norms[id(node)]


def _summarise(graph: VizGraph, max_nodes: int) -> VizGraph:
    """Keep the ``max_nodes - 1`` nodes nearest the output; one node stands for all the others."""
    ranked = sorted(graph.nodes.values(), key=lambda n: n.order, reverse=True)
    kept = {n.id: n for n in ranked[: max_nodes - 1]}
    dropped = ranked[max_nodes - 1 :]
    summary = VizNode(id="summary", kind=SUMMARY, title=f"{len(dropped)} more nodes", scope=())
    for n in dropped:
        if n.kind == MODULE:
            summary.ops += n.ops
            summary.op_counts.update(n.op_counts)
        elif n.kind == OP:
            summary.ops += 1
            summary.op_counts[n.title] += 1
    kept[summary.id] = summary
    edges: dict[tuple[str, str, str], VizEdge] = {}
    for edge in graph.edges:
        src = edge.src if edge.src in kept else summary.id
        dst = edge.dst if edge.dst in kept else summary.id
        if src == dst:
            continue
        merged = edges.setdefault((src, dst, edge.kind), VizEdge(src, dst, edge.kind, 0))
        merged.count += edge.count
    note = (
        f"{len(graph.nodes)} nodes > max_nodes={max_nodes}: the {len(dropped)} nodes farthest from the output "
        "are summarised in one node (pass a smaller depth= or a larger max_nodes= to see them)"
    )
    return VizGraph(kept, list(edges.values()), graph.depth, graph.style, graph.grads, graph.backward,
                    graph.notes + [note])  # fmt: skip
