"""Reverse-mode differentiation: walk the graph from the outputs back to the inputs.

1. Order the nodes that require grad so every node comes before its inputs (an iterative
   depth-first search: a chain of any length works, there is no recursion).
2. Visit them in that order carrying d(output)/d(node). Each primitive's vjps turn the gradient
   of its output into gradients for its inputs, which are summed over every use of an input.
3. Leaves receive their total in ``.grad``; `grad` returns the totals instead.

The vjps run without recording (plain numpy underneath) unless ``create_graph=True``, in which
case the gradients are graphs themselves: differentiable again, and drawable. Saved arrays are
released as soon as their node has been visited, unless ``retain_graph=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autograd.fast_vjps import unbroadcast_array
from autograd.ops import unbroadcast
from autograd.primitive import STATE, GraphReleasedError, Node, check_finite_grad, node_of
from autograd.tensor import Tensor, as_tensor


def backward(root: Tensor, gradient: Any = None, *, retain_graph: bool = False, create_graph: bool = False) -> None:
    """``root.backward(...)``: accumulate gradients into the ``.grad`` of every leaf that needs one."""
    seed = _seed(root, gradient, "backward")
    _walk([node_of(root)], [seed], wanted=None, retain_graph=retain_graph, create_graph=create_graph)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, without touching any ``.grad``.

    ``grad_outputs`` are d(loss)/d(output), one per output (optional for single-element outputs).
    With ``create_graph=True`` the returned gradients are differentiable (higher-order
    derivatives). An input the outputs do not depend on raises, unless ``allow_unused=True``,
    which gives zeros for it.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not outputs or not inputs:
        raise ValueError("grad: needs at least one output and one input")
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: inputs[{i}] is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise ValueError(f"grad: inputs[{i}] (shape {t.shape}) does not require grad")
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray, np.generic, int, float)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    elif not isinstance(grad_outputs, (list, tuple)):
        raise TypeError(f"grad: grad_outputs must be a tensor, an array or a list of them, got {type(grad_outputs)}")
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    seeds = [_seed(out, g, f"grad: outputs[{i}]") for i, (out, g) in enumerate(zip(outputs, grad_outputs))]
    roots = [node_of(out) for out in outputs]
    wanted = [node_of(t) for t in inputs]
    retain = create_graph if retain_graph is None else retain_graph
    found = _walk(roots, seeds, wanted=wanted, retain_graph=retain, create_graph=create_graph)
    results = []
    for i, (t, node) in enumerate(zip(inputs, wanted)):
        g = found.get(node)
        if g is None:
            if not allow_unused:
                raise ValueError(
                    f"grad: inputs[{i}] (shape {t.shape}) was not used to compute the outputs; "
                    "pass allow_unused=True to get zeros for it"
                )
            g = Tensor._make(np.zeros(t.shape, dtype=t.dtype), None, False)
        results.append(g)
    return tuple(results)


def _seed(root: Tensor, gradient: Any, where: str) -> Tensor:
    if not isinstance(root, Tensor):
        raise TypeError(f"{where}: expected a Tensor, got {type(root).__name__}")
    if not root.requires_grad:
        raise RuntimeError(
            f"{where}: the tensor (shape {root.shape}) does not require grad and has no graph; was it computed "
            "under no_grad(), or from tensors none of which has requires_grad=True?"
        )
    if gradient is None:
        if root.size != 1:
            raise ValueError(
                f"{where}: the tensor has shape {root.shape}; backward() without a gradient needs a single "
                "element (call .sum() or .mean() first, or pass gradient= of that shape)"
            )
        return Tensor._make(np.ones(root.shape, dtype=root.dtype), None, False)
    if isinstance(gradient, (bool, int, float)) and not isinstance(gradient, np.generic):
        try:  # a Python number in the tensor's own dtype (not via float32, which would round it)
            gradient = np.asarray(gradient, dtype=root.dtype)
        except OverflowError:
            raise ValueError(f"{where}: the gradient {gradient} does not fit in {root.dtype}") from None
    seed = as_tensor(gradient, f"{where} gradient")
    if seed.shape != root.shape:
        raise ValueError(f"{where}: gradient has shape {seed.shape} but the tensor has shape {root.shape}")
    if seed.dtype != root.dtype:
        seed = seed.astype(root.dtype)
    return seed


def _topological_order(roots: list[Node]) -> list[Node]:
    """Nodes reachable from ``roots`` through inputs that require grad, inputs before users."""
    order: list[Node] = []
    visited: set[Node] = set()
    for root in roots:
        if root in visited:
            continue
        visited.add(root)
        stack = [(root, iter(root.inputs))]
        while stack:
            node, pending = stack[-1]
            for parent in pending:
                if parent.requires_grad and parent not in visited:
                    visited.add(parent)
                    stack.append((parent, iter(parent.inputs)))
                    break
            else:
                stack.pop()
                if node.released:
                    raise GraphReleasedError(
                        f"backward through op '{node.op_name}' (shape {node.shape}) a second time: its saved "
                        "arrays were freed by the first backward(). Pass retain_graph=True to the first call "
                        "if you need to go backward through the same graph again."
                    )
                order.append(node)
    return order


def _walk(
    roots: list[Node], seeds: list[Tensor], *, wanted: list[Node | None] | None, retain_graph: bool, create_graph: bool
) -> dict[Node, Tensor]:
    """Propagate ``seeds`` from ``roots``; fill leaves' ``.grad`` (``wanted=None``) or return the
    gradients of the ``wanted`` nodes.

    The running gradients are plain arrays, except with ``create_graph=True``, where they are
    Tensors whose own graph is being recorded."""
    order = _topological_order(roots)
    needed: set[Node] | None = None
    if wanted is not None:  # prune: only nodes that lead to a wanted node are worth visiting
        wanted_set = {n for n in wanted if n is not None}
        needed = set()
        for node in order:  # inputs come first, so their verdict is known
            if node in wanted_set or any(p in needed for p in node.inputs):
                needed.add(node)
    grads: dict[Node, Any] = {}  # node -> its gradient so far (an array; a Tensor with create_graph)
    exclusive: set[Node] = set()  # nodes whose gradient array is ours alone, so safe to add into in place
    for root, seed in zip(roots, seeds):
        if create_graph:
            _accumulate_tensor(grads, root, seed)
        else:
            _accumulate(grads, exclusive, root, seed.data, False)
    found: dict[Node, Any] = {}
    previous = (STATE.grad_enabled, STATE.scope, STATE.vjp_of, STATE.in_vjp_of)
    fast = not create_graph and not STATE.anomaly  # the plain-numpy vjps, where a primitive has them
    STATE.grad_enabled = create_graph  # vjps record only when the gradient must be a graph itself
    try:
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is None:
                continue
            op = node.op
            if wanted is not None:
                if node in wanted_set:
                    found[node] = g
            elif op is None:
                _write_leaf_grad(node, g, node in exclusive, create_graph)
            if op is None:
                continue
            owned = node in exclusive and (wanted is None or node not in wanted_set)
            if fast and op.fast_vjps is not None:
                _visit_arrays(node, g, grads, exclusive, needed, owned)
            else:
                _visit(node, g, grads, exclusive, needed, create_graph)
            if not retain_graph:
                node.saved = None
                node.released = True
    finally:
        STATE.grad_enabled, STATE.scope, STATE.vjp_of, STATE.in_vjp_of = previous
    if create_graph:
        return found
    return {node: Tensor._make(g, None, False) for node, g in found.items()}


def _visit(
    node: Node, g: Any, grads: dict, exclusive: set[Node], needed: set[Node] | None, create_graph: bool
) -> None:  # fmt: skip
    """Run the engine vjps of ``node`` for each input that needs a gradient, and accumulate the results.

    ``g`` is a Tensor with ``create_graph`` (the results are then graphs too), else an array."""
    op, saved, parents = node.op, node.saved, node.inputs
    make = Tensor._make
    if not create_graph:
        g = make(g, None, False)
    out = node if saved[0] is None else make(saved[0], node, True)
    inputs = [parent if array is None else make(array, parent, parent.requires_grad)
              for parent, array in zip(parents, saved[1:])]  # fmt: skip
    STATE.in_vjp_of = node
    if create_graph:  # the gradient's ops are drawn in the module of the op they differentiate
        STATE.scope, STATE.vjp_of = node.scope, node
    for i, parent in enumerate(parents):
        if not parent.requires_grad or (needed is not None and parent not in needed):
            continue
        vjp = op.vjp(i)
        if vjp is None:
            continue
        gi = vjp(g, out, *inputs, **node.attrs)
        if type(gi) is not Tensor:
            raise TypeError(f"vjp of '{op.name}' for input {i} returned {type(gi).__name__}, not a Tensor")
        data = gi.data
        if data.shape != parent.shape:
            if op.broadcasts:
                gi = unbroadcast(gi, parent.shape)
            if gi.data.shape != parent.shape:
                raise RuntimeError(
                    f"vjp of '{op.name}' returned a gradient of shape {gi.shape} for input {i}, "
                    f"whose shape is {parent.shape}"
                )
            data = gi.data
        if data.dtype is not parent.dtype and data.dtype != parent.dtype:
            gi = gi.astype(parent.dtype)
            data = gi.data
        if STATE.anomaly:
            check_finite_grad(node, i, data)
        if create_graph:
            _accumulate_tensor(grads, parent, gi)
        else:
            _accumulate(grads, exclusive, parent, data, op.trusted and data is not g.data and data.base is None)


def _visit_arrays(
    node: Node, g: np.ndarray, grads: dict, exclusive: set[Node], needed: set[Node] | None, owned: bool
) -> None:
    """`_visit` through the primitive's plain-numpy vjps (`autograd.fast_vjps`): no Tensors, no graph.

    ``owned``: ``g`` is an array this walk made and nobody else holds, so the node's last vjp may
    compute into it (``fast_vjps_into_g``) unless an earlier vjp handed ``g`` itself on."""
    op, saved, parents = node.op, node.saved, node.inputs
    out = node if saved[0] is None else saved[0]
    if len(parents) == 2:  # spelled out for the common arities: no list to build
        first, second = saved[1], saved[2]
        inputs = (parents[0] if first is None else first, parents[1] if second is None else second)
    elif len(parents) == 1:
        only = saved[1]
        inputs = (parents[0] if only is None else only,)
    else:
        inputs = [parent if array is None else array for parent, array in zip(parents, saved[1:])]
    into_g, last, receivers = (op.fast_vjps_into_g if owned else None), -1, 0
    g_base = g if g.base is None else g.base  # what views of g share
    if owned:
        for i, parent in enumerate(parents):
            if parent.requires_grad and (needed is None or parent in needed) and op.fast_vjps[i] is not None:
                last, receivers = i, receivers + 1
    for i, parent in enumerate(parents):
        if not parent.requires_grad or (needed is not None and parent not in needed):
            continue
        vjp = op.fast_vjps[i]
        if vjp is None:
            continue
        if op.fast_add_into is not None and parent in exclusive:  # a gradient array of ours exists
            so_far = grads[parent]
            if g.dtype == so_far.dtype and op.fast_add_into(so_far, g, out, *inputs, **node.attrs):
                continue
        use_g = into_g is not None and i == last and into_g[i] is not None
        gi = into_g[i](g, out, *inputs, **node.attrs) if use_g else None
        consumed = gi is not None  # g now holds this input's gradient and is handed over
        if gi is None:
            gi = vjp(g, out, *inputs, **node.attrs)
            if into_g is not None and (gi is g or (gi.base is not None and gi.base is g_base)):
                into_g = None  # g itself (or a view of it) was handed on: keep it intact
        if gi.shape != parent.shape:
            if op.broadcasts:
                gi = unbroadcast_array(gi, parent.shape)
            if gi.shape != parent.shape:
                raise RuntimeError(
                    f"fast vjp of '{op.name}' returned a gradient of shape {gi.shape} for input {i}, "
                    f"whose shape is {parent.shape}"
                )
        if gi.dtype is not parent.dtype and gi.dtype != parent.dtype:
            gi = gi.astype(parent.dtype)
        if type(gi) is not np.ndarray:  # numpy gives scalars, not 0-d arrays, for 0-d results
            gi = np.asarray(gi)
        # g handed on whole, or as a view (reshape, transpose), to the only input that takes a gradient
        # (x + 1.0, W.T) stays the walk's own.
        if receivers == 1 and not consumed:
            consumed = gi is g or (gi.base is g_base and gi.flags.writeable)
        fresh = op.trusted and (consumed or (gi is not g and (gi.base is None or op.fast_vjps_fresh)))
        if parent in grads:
            _accumulate(grads, exclusive, parent, gi, fresh)
        else:  # the first gradient for this input (`_accumulate`'s first case, inlined: the common one)
            grads[parent] = gi
            if fresh:
                exclusive.add(parent)


def _accumulate(grads: dict, exclusive: set[Node], node: Node, g: np.ndarray, fresh: bool) -> None:
    """grads[node] += g, in place only into an array this walk allocated itself (``fresh``: g is one)."""
    previous = grads.get(node)
    if previous is None:
        grads[node] = g
        if fresh:
            exclusive.add(node)
    elif node in exclusive:
        np.add(previous, g, out=previous)
    elif fresh and g.dtype == previous.dtype and g.ndim:  # add into the new array instead
        np.add(g, previous, out=g)
        grads[node] = g
        exclusive.add(node)
    else:
        total = previous + g
        grads[node] = total if type(total) is np.ndarray else np.asarray(total)
        exclusive.add(node)


def _accumulate_tensor(grads: dict, node: Node, g: Tensor) -> None:
    """grads[node] += g as a recorded op (``create_graph=True``: the sum is part of the gradient's graph)."""
    previous = grads.get(node)
    grads[node] = g if previous is None else previous + g


def _write_leaf_grad(node: Node, g: Any, is_exclusive: bool, create_graph: bool) -> None:
    """Add a leaf's gradient (an array; a Tensor with ``create_graph``) into its ``.grad``."""
    tensor = node.tensor
    if tensor is None:  # the leaf was garbage-collected: nobody can read its gradient
        return
    if create_graph:
        tensor.grad = g if tensor.grad is None else tensor.grad + g
    elif tensor.grad is None:
        tensor.grad = Tensor._make(g if is_exclusive else g.copy(), None, False)
    elif tensor.grad.requires_grad:
        tensor.grad = tensor.grad + Tensor._make(g, None, False)
    else:
        tensor.grad.data += g
