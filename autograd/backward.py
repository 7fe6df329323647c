"""Reverse-mode differentiation: walk the graph from the outputs back to the inputs.

    order the nodes so that every node comes after its inputs        (`_topological_order`)
    visit them from the outputs back; at each node:
        g = the sum of the gradients that reached it                  (`GradientSums`)
        hand g to the vjp of each input that needs a gradient, and add what it returns to that
        input's sum
    leaves receive their total in ``.grad``; `grad` returns the totals instead

The vjps are the ones written beside each forward in `autograd.ops`. In a plain ``backward()``
the gradients are numpy arrays and the vjps compute on the arrays the forward saved. With
``create_graph=True`` they are Tensors and the vjps' ops are recorded: the gradient is a graph of
its own, which can be differentiated again and drawn. Saved arrays are released as soon as their
node has been visited, unless ``retain_graph=True``. There is no recursion: a chain of any length works.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from autograd.kernels import REUSE_MIN_BYTES, Reusable, Scattered, add_at
from autograd.ops import cast, unbroadcast
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
    roots: list[Node], seeds: list[Tensor], *, wanted: list[Node] | None, retain_graph: bool, create_graph: bool
) -> dict[Node, Tensor]:
    """Propagate ``seeds`` from ``roots`` back through the graph; fill the leaves' ``.grad``
    (``wanted=None``) or return the gradients of the ``wanted`` nodes."""
    order = _topological_order(roots)
    leads_to_wanted = None if wanted is None else _leading_to(set(wanted), order)
    wanted_nodes = () if wanted is None else set(wanted)
    sums = GradientSums(recorded=create_graph)
    for root, seed in zip(roots, seeds):
        sums.add(root, seed if create_graph else seed.data, ours=False)
    found: dict[Node, Any] = {}
    with _running_vjps(create_graph):
        for node in reversed(order):
            g, ours = sums.pop(node)
            if g is None:  # no path from the roots reaches this node's users with a gradient
                continue
            if node in wanted_nodes:
                found[node], ours = g, False  # the caller will hold this array: never written into
            if node.op is None:
                if wanted is None:
                    _write_leaf_grad(node, g, ours, create_graph)
                continue
            _visit(node, g, ours, sums, leads_to_wanted, create_graph)
            if not retain_graph:
                node.release()
    if create_graph:
        return found
    return {node: Tensor._make(g, None, False) for node, g in found.items()}


def _visit(
    node: Node, g: Any, ours: bool, sums: GradientSums, leads_to_wanted: set[Node] | None, create_graph: bool
) -> None:
    """Hand ``g``, the gradient of ``node``'s output, to the vjp of each input that needs a gradient,
    and add what each returns to that input's sum."""
    op, parents = node.op, node.inputs
    args = _vjp_arguments(node, create_graph)  # (out, *inputs)
    STATE.in_vjp_of = node
    if create_graph:  # the gradient's ops are drawn in the module of the op they differentiate
        STATE.scope, STATE.vjp_of = node.scope, node
    receivers = [i for i, parent in enumerate(parents)
                 if parent.requires_grad and (leads_to_wanted is None or parent in leads_to_wanted)]  # fmt: skip
    vjps = op.vjps
    g_memory = None if create_graph else (g if g.base is None else g.base)  # what views of g share
    passed_on = False  # whether an earlier vjp of this node returned g itself or a view of it
    for i in receivers:
        vjp = vjps[i] if vjps is not None else op.vjp(i)
        if vjp is None:  # an input with no gradient (an index, a condition)
            continue
        # The last vjp to read g, when g is ours and no earlier one passed it on, owns g: what it returns
        # is ours, and if it is one expression reading g once (`Primitive.reuses_g`), it may run in g's memory.
        owns_g = ours and not passed_on and i == receivers[-1]
        reuse = owns_g and op.reuses_g and not create_graph and g.nbytes >= REUSE_MIN_BYTES
        try:
            gi = vjp(Reusable.of(g) if reuse else g, *args, **node.attrs)
        except (AttributeError, TypeError) as error:
            explained = _explain_vjp_error(error, op.name, i, args)
            if explained is None:
                raise
            raise explained from error
        parent = parents[i]
        if create_graph or type(gi) is not np.ndarray or gi.shape != parent.shape or gi.dtype != parent.dtype or (
            STATE.anomaly
        ):  # (with create_graph a vjp may return a plain array: it becomes a constant Tensor)
            gi = _fitted(gi, node, i, create_graph)
        if create_graph:
            sums.add(parent, gi, ours=False)
            continue
        array = gi.values if type(gi) is Scattered else gi
        shares_g = array is g_memory or array.base is g_memory  # g itself, or a view of g's memory
        passed_on = passed_on or shares_g
        sums.add(parent, gi, ours=op.builtin and (owns_g or not shares_g))


def _explain_vjp_error(error: Exception, name: str, i: int, args: tuple) -> TypeError | None:
    """What to do about a vjp that failed on what it was handed (None: an error of another kind)."""
    unsaved = ["out" if k == 0 else f"input {k - 1}" for k, a in enumerate(args) if isinstance(a, Node)]
    if unsaved and "Node" in str(error):
        what = f"'Node' has no attribute {error.name!r}" if isinstance(getattr(error, "obj", None), Node) else error
        keys = ['"out"' if u == "out" else u.split()[1] for u in unsaved]
        if len(unsaved) == 1:
            fix = f"so the vjp was handed only its shape: add {keys[0]} to the primitive's save="
        else:
            fix = f"so the vjp was handed only their shapes: add what it reads ({' or '.join(keys)}) to its save="
        unsaved_text = " or ".join(unsaved)
        return TypeError(f"vjp of '{name}' for input {i}: {what}. The primitive did not save {unsaved_text}, {fix}")
    if isinstance(error, AttributeError) and isinstance(getattr(error, "obj", None), (np.ndarray, np.generic)):
        return TypeError(
            f"vjp of '{name}' for input {i}: {error}. In backward() a vjp receives numpy arrays (Tensors "
            "only with create_graph=True): write it with operators, numpy ufuncs and autograd.ops primitives, "
            "which work on both"
        )
    return None


def _vjp_arguments(node: Node, as_tensors: bool) -> tuple:
    """``(out, *inputs)`` for the vjps: the arrays the node saved, or the shape-only `Node` of what it
    did not save. With ``as_tensors`` the arrays become Tensors on the forward graph (``out`` is
    the node's own output), so a recorded gradient reaches back into the forward pass."""
    saved, parents = node.saved, node.inputs
    if not as_tensors:
        out = node if saved[0] is None else saved[0]
        if len(parents) == 1:  # (the common arities, spelled out: this runs for every node)
            return out, parents[0] if saved[1] is None else saved[1]
        if len(parents) == 2:
            return out, parents[0] if saved[1] is None else saved[1], parents[1] if saved[2] is None else saved[2]
        return (out, *[p if a is None else a for p, a in zip(parents, saved[1:])])
    make = Tensor._make
    out = node if saved[0] is None else make(saved[0], node, True)
    return (out, *[p if a is None else make(a, p, p.requires_grad) for p, a in zip(parents, saved[1:])])


def _fitted(gi: Any, node: Node, i: int, create_graph: bool) -> Any:
    """A vjp's result as the gradient of input ``i``: summed back to the input's shape if the op
    broadcasts, in the input's dtype, and checked."""
    parent, op = node.inputs[i], node.op
    if create_graph and type(gi) is not Tensor:  # a vjp may return a constant, an array
        gi = as_tensor(gi, f"vjp of '{op.name}'")
    if gi.shape != parent.shape:
        if op.broadcasts:
            gi = unbroadcast(gi, parent.shape)
        if gi.shape != parent.shape:
            raise RuntimeError(
                f"vjp of '{op.name}' returned a gradient of shape {gi.shape} for input {i}, "
                f"whose shape is {parent.shape}"
            )
    if not create_graph and type(gi) is not np.ndarray and type(gi) is not Scattered:
        if isinstance(gi, Tensor):
            raise TypeError(f"vjp of '{op.name}' for input {i} returned a Tensor in backward(); return an array")
        gi = gi.view(np.ndarray) if isinstance(gi, Reusable) else np.asarray(gi)  # (0-d arithmetic gives scalars)
    if gi.dtype != parent.dtype:
        gi = cast(gi, dtype=parent.dtype)
    if STATE.anomaly:
        check_finite_grad(node, i, gi.data if create_graph else np.asarray(gi))
    return gi


@contextmanager
def _running_vjps(create_graph: bool) -> Iterator[None]:
    """Record the vjps' ops only when the gradient must be a graph itself; restore the state after."""
    previous = (STATE.grad_enabled, STATE.scope, STATE.vjp_of, STATE.in_vjp_of)
    STATE.grad_enabled = create_graph
    try:
        with np.errstate(all="ignore") if STATE.anomaly else nullcontext():  # anomalies are raised, not warned
            yield
    finally:
        STATE.grad_enabled, STATE.scope, STATE.vjp_of, STATE.in_vjp_of = previous


def _leading_to(wanted: set[Node], order: list[Node]) -> set[Node]:
    """The nodes of ``order`` from which a wanted node can be reached: the only ones worth visiting."""
    leading: set[Node] = set()
    for node in order:  # inputs come first, so their verdict is known
        if node in wanted or any(p in leading for p in node.inputs):
            leading.add(node)
    return leading


class GradientSums:
    """The gradient of each node, summed over its uses as the walk reaches them, and the one rule for
    when a sum may be made in place.

    Adding ``b`` into ``a`` in place saves allocating ``a + b``, but only an array nobody else can
    see may be written into. Such an array is *ours*: one the walk itself made. That is a new array
    (or a view of one) returned by an engine vjp (`Primitive.builtin`; a user's primitive may return
    memory it keeps). A node's gradient, when ours, belongs to the last of its vjps to read it, if
    no earlier one passed it on: what that vjp returns is ours (a reshape's view of it, say), and a
    vjp that reads ``g`` once (`Primitive.reuses_g`) may compute into ``g``'s memory (`_visit`). The
    seeds, gradients handed to the caller, and everything else are never written into. An indexing
    vjp's gradient comes as a `Scattered` (zeros except at the index), added into a sum of ours by
    touching just the picked entries. With ``recorded=True`` (``create_graph``) the sums are
    recorded ops on Tensors instead, never in place.
    """

    def __init__(self, recorded: bool) -> None:
        self.recorded = recorded
        self.sums: dict[Node, Any] = {}
        self.ours: set[Node] = set()  # nodes whose sum is an array of ours

    def pop(self, node: Node) -> tuple[Any, bool]:
        """The total gradient of ``node`` as an array (None if none arrived), and whether it is ours."""
        g = self.sums.pop(node, None)
        if type(g) is Scattered:
            g = g.dense()
        ours = node in self.ours
        if ours:
            self.ours.remove(node)
        return g, ours

    def add(self, node: Node, g: Any, ours: bool) -> None:
        """Add ``g`` to the gradient of ``node``. ``ours``: ``g``'s memory is the walk's to write into
        (an engine vjp's new array, or ``g`` of a vjp that owned it) if it is writeable at all."""
        if type(g) is Scattered:
            ours = True  # it is written out into a new array before anything is added into it
        elif ours and g.base is not None and not self.recorded and not g.flags.writeable:
            ours = False  # a read-only view: a reduction's gradient broadcast back, say
        sums = self.sums
        if node not in sums:
            sums[node] = g
            if ours:
                self.ours.add(node)
            return
        previous = sums[node]
        if self.recorded:
            sums[node] = previous + g  # a recorded add: part of the gradient's graph
            return
        if node in self.ours:
            total = _add_into(previous, g)
        elif ours:  # add into the new array instead
            total = _add_into(g, previous)
        else:
            total = np.asarray(previous + g)
        sums[node] = total
        self.ours.add(node)


def _add_into(target: Any, other: Any) -> np.ndarray:
    """``target += other`` for ``target`` an array of ours (a `Scattered` is written out first)."""
    if type(target) is Scattered:
        target = target.dense()
    if type(other) is Scattered:
        add_at(target, other.index, other.values)
    else:
        np.add(target, other, out=target)
    return target


def _write_leaf_grad(node: Node, g: Any, ours: bool, create_graph: bool) -> None:
    """Add a leaf's gradient (an array; a Tensor with ``create_graph``) into its ``.grad``."""
    tensor = node.tensor
    if tensor is None:  # the leaf was garbage-collected: nobody can read its gradient
        return
    if create_graph:
        tensor.grad = g if tensor.grad is None else tensor.grad + g
    elif tensor.grad is None:
        tensor.grad = Tensor._make(g if ours else g.copy(), None, False)
    elif tensor.grad.requires_grad:
        tensor.grad = tensor.grad + Tensor._make(g, None, False)
    else:
        tensor.grad.data += g
