"""Primitives and the graph they record: the lowest layer of the engine.

A `Primitive` pairs a numpy forward with one vjp per input. Called on tensors, it runs the forward
on their arrays and, when some input requires grad and recording is on, gives the result a `Node`:

    node.op       the primitive                    node.inputs  the input nodes (one per argument)
    node.saved    arrays the vjps need (released after backward unless retain_graph=True)
    node.scope    the names of the enclosing `scope(...)` blocks, outermost first

Called on plain arrays (no tensor among its arguments), a primitive just runs its forward and
returns an array. That is what lets each vjp be written once: a vjp is written with operators and
primitives, so in a plain ``backward()`` it computes on the saved arrays, and with
``create_graph=True`` the same code runs on Tensors and records the gradient's own graph.

Nodes never hold their output `Tensor` strongly, so an activation that no vjp needs is freed as
soon as the forward pass drops it; the graph's structure (op, shapes, scopes) outlives its data.

This module imports nothing else of the engine. The class of the values a call returns,
`autograd.tensor.Tensor`, registers itself here when its module loads (`use_tensor_class`), as
HIPS autograd's boxes register with its core.
"""

from __future__ import annotations

import linecache
import os
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from autograd.tensor import Tensor

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _State:
    """Process-wide switches read on every op (a plain object: cheaper than thread-locals)."""

    grad_enabled: bool = True
    anomaly: bool = False
    scope: tuple[str, ...] = ()
    vjp_of: Node | None = None  # while a vjp runs with create_graph: the forward node it belongs to
    in_vjp_of: Node | None = None  # while any vjp runs: its node (anomaly reports blame the forward op)
    recording: Any = None  # while `autograd.capture` traces: it gets .append((primitive, inputs, attrs, result))


STATE = _State()
_TENSOR: Any = None  # autograd.tensor.Tensor, registered by that module (`use_tensor_class`)
_as_tensor: Any = None


def use_tensor_class(tensor_class: type, as_tensor: Callable[[Any, str], Any]) -> None:
    """Make primitives return ``tensor_class`` objects and turn other arguments into them with
    ``as_tensor(value, what)``. Called once, by `autograd.tensor`, the layer above this one."""
    global _TENSOR, _as_tensor
    _TENSOR, _as_tensor = tensor_class, as_tensor


class AnomalyError(RuntimeError):
    """An op produced NaN or Inf inside `detect_anomaly()`."""


class GraphReleasedError(RuntimeError):
    """Backward reached a node whose saved arrays were already freed by an earlier backward."""


# ---------------------------------------------------------------------------------------------------
# Switches: no_grad, enable_grad, scope, detect_anomaly
# ---------------------------------------------------------------------------------------------------


class _GradMode:
    """Context manager and decorator that sets whether ops are recorded."""

    enabled: bool

    def __enter__(self) -> None:
        self._previous = STATE.grad_enabled
        STATE.grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        STATE.grad_enabled = self._previous

    def __call__(self, fn: Callable) -> Callable:
        import functools

        mode = type(self)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with mode():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801 (named like torch.no_grad, which users know)
    """Inside ``with no_grad():`` (or a function decorated ``@no_grad()``) nothing is recorded:
    results have ``requires_grad=False`` and no graph is kept alive."""

    enabled = False


class enable_grad(_GradMode):  # noqa: N801
    """Turn recording back on inside a `no_grad` block."""

    enabled = True


def is_grad_enabled() -> bool:
    return STATE.grad_enabled


@contextmanager
def scope(name: str) -> Iterator[None]:
    """Tag every op created inside with ``name`` (a name stack, like ``jax.named_scope``).

    Scopes nest: ops made in ``with scope("block"): with scope("attn"): ...`` have
    ``node.scope == ("block", "attn")``. Modules use it so a graph can be drawn one box per module.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"scope: name must be a non-empty string, got {name!r}")
    previous = STATE.scope
    STATE.scope = previous + (name,)
    try:
        yield
    finally:
        STATE.scope = previous


def current_scope() -> tuple[str, ...]:
    return STATE.scope


@contextmanager
def detect_anomaly() -> Iterator[None]:
    """Raise `AnomalyError` at the first op whose forward output or vjp output holds NaN or Inf.

    The error names the op, the innermost `scope` (module) it ran in, and the file:line that
    created it: the first frame outside `autograd` (for a model's op, the line of the model's code,
    e.g. in ``tinygrad_lm/functional.py``). Recording where each op was created costs a stack walk
    per op, so this is a debugging mode, off by default.
    """
    previous = STATE.anomaly
    STATE.anomaly = True
    try:
        yield
    finally:
        STATE.anomaly = previous


def user_site() -> str:
    """'file:line: source' of the innermost caller outside this package (where an op was written)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    filename, line = frame.f_code.co_filename, frame.f_lineno
    source = linecache.getline(filename, line).strip()
    return f"{filename}:{line}" + (f": {source}" if source else "")


def _non_finite_summary(array: np.ndarray) -> str | None:
    """None if every entry is finite, else a short count of the NaNs and Infs."""
    if array.dtype.kind not in "fc" or np.isfinite(array).all():
        return None
    n_nan = int(np.isnan(array).sum())
    n_inf = int(np.isinf(array).sum())
    return f"{n_nan} NaN and {n_inf} Inf among {array.size} values"


# ---------------------------------------------------------------------------------------------------
# Graph nodes
# ---------------------------------------------------------------------------------------------------


class Node:
    """One vertex of the recorded graph: a leaf, a constant, or the output of one primitive.

    Public, read-only view for tools (`viz`, debuggers): ``op_name``, ``inputs``, ``shape``,
    ``dtype``, ``attrs``, ``scope``, ``requires_grad``, ``is_leaf``, ``tensor`` (the tensor if it
    is still alive), ``value`` (its array, when available), ``grad`` (a leaf's ``.grad``),
    ``name`` (a leaf's name, e.g. a parameter's), ``vjp_of`` (for nodes made by a vjp under
    ``create_graph=True``: the forward node whose gradient they compute), and ``site``.
    """

    __slots__ = (
        "op", "inputs", "saved", "attrs", "shape", "dtype", "scope", "requires_grad",
        "released", "site", "vjp_of", "_tensor", "_small_value", "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        op: Primitive | None,
        inputs: tuple[Node, ...],
        saved: tuple[np.ndarray | None, ...] | None,
        attrs: dict[str, Any],
        tensor: Tensor,
        requires_grad: bool,
    ) -> None:
        data = tensor.data
        self.op = op
        self.inputs = inputs
        self.saved = saved
        self.attrs = attrs
        self.shape = data.shape
        self.dtype = data.dtype
        self.scope = STATE.scope
        self.requires_grad = requires_grad
        self.released = False
        self.site = user_site() if STATE.anomaly else None
        self.vjp_of = STATE.vjp_of
        self._tensor = weakref.ref(tensor)
        # Scalars are kept so small expressions can be drawn with their values (micrograd style).
        self._small_value = data if data.size == 1 else None

    # -- the public view -------------------------------------------------------------------------
    @property
    def op_name(self) -> str:
        if self.op is not None:
            return self.op.name
        return "leaf" if self.requires_grad else "const"

    @property
    def is_leaf(self) -> bool:
        return self.op is None

    @property
    def tensor(self) -> Tensor | None:
        return self._tensor()

    @property
    def value(self) -> np.ndarray | None:
        tensor = self._tensor()
        return tensor.data if tensor is not None else self._small_value

    @property
    def grad(self) -> Tensor | None:
        tensor = self._tensor()
        return tensor.grad if tensor is not None else None

    @property
    def name(self) -> str | None:
        tensor = self._tensor()
        return tensor.name if tensor is not None else None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __getattr__(self, attr: str) -> Any:
        # Reached only for attributes a Node lacks: most likely a vjp using an input that its
        # primitive did not declare in `save=`, so it was handed this shape-only node instead.
        raise AttributeError(
            f"'Node' has no attribute {attr!r}. If this happened inside a vjp, the primitive was handed "
            "only the shape of an input it did not save: add that input to the primitive's save=."
        )

    def release(self) -> None:
        """Free the saved arrays (backward has used them); a second backward through here raises."""
        self.saved = None
        self.released = True

    def __repr__(self) -> str:
        where = f" in {'/'.join(self.scope)}" if self.scope else ""
        return f"Node({self.op_name}, shape={self.shape}, dtype={self.dtype}{where})"


def node_of(tensor: Tensor) -> Node:
    """The node for `tensor`, creating a leaf/constant node the first time it is used in a graph."""
    node = tensor._node
    if node is None:
        node = Node(None, (), None, {}, tensor, tensor.requires_grad)
        tensor._node = node
    return node


# ---------------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------------

Vjp = Callable[..., Any]


class Primitive:
    """An op with a numpy forward and, per input, a vjp.

    ``forward(*arrays, **attrs) -> array`` computes the output. ``vjps[i](g, out, *inputs, **attrs)``
    returns the gradient for input ``i`` given ``g``, the gradient of the output (``None`` in
    ``vjps`` marks an input with no gradient, such as an index). A vjp receives numpy arrays in a
    plain ``backward()`` and Tensors with ``create_graph=True``, so write it with what works on
    both: operators, numpy ufuncs (``np.exp(x)``), and the primitives of `autograd.ops`.

    ``save`` lists what the vjps read: ``"out"`` and/or input positions (``0``, ``1``, ...); inputs
    not saved arrive as shape-only `Node`s (``.shape``, ``.dtype``), so their arrays can be freed
    early. By default everything is saved. As a dict, ``{input: what its vjp reads}`` (``mul``:
    ``{0: (1,), 1: (0,)}``), only what the inputs that require grad need is kept: ``x * 2.0``
    keeps nothing of ``x``. With ``broadcasts=True`` a gradient whose shape is the broadcast shape
    is summed back to its input's shape (`autograd.ops.unbroadcast`), in this one place.
    ``reuses_g=True`` declares that each vjp is one expression that reads ``g`` once (``g * out``),
    so the backward walk may let it compute in ``g``'s memory when nothing else needs ``g``.

    Example: a numerically stable softplus, ``log(1 + e^x)``, whose derivative is ``sigmoid(x)``::

        softplus = Primitive("softplus", lambda x: np.logaddexp(0.0, x),
                             vjps=(lambda g, out, x: g * ops.sigmoid(x),), save=(0,))  # autograd.ops
        y = softplus(x)
    """

    def __init__(
        self,
        name: str,
        forward: Callable[..., np.ndarray],
        vjps: Sequence[Vjp | None] | Callable[..., Any] | None = None,
        *,
        save: Sequence[str | int] | Mapping[int, Sequence[str | int]] | None = None,
        broadcasts: bool = False,
        explain: Callable[..., str] | None = None,
        reuses_g: bool = False,
    ) -> None:
        self.name = name
        self.forward = forward
        # A single callable serves every input of a variadic op: vjp(i, g, out, *inputs, **attrs).
        self.variadic_vjp = vjps if callable(vjps) else None
        self.vjps = None if vjps is None or callable(vjps) else tuple(vjps)
        self.arity = len(self.vjps) if self.vjps is not None else None
        self.differentiable = self.variadic_vjp is not None or (
            self.vjps is not None and any(v is not None for v in self.vjps)
        )
        n_inputs = len(self.vjps) if self.vjps is not None else None
        # ``save`` as {input: what its vjp reads}: only what the inputs that require grad need is kept.
        self._save_for: tuple[frozenset, ...] | None = None
        if isinstance(save, Mapping):
            if n_inputs is None or set(save) - set(range(n_inputs)):
                raise ValueError(f"Primitive {name!r}: save= as a dict needs input positions as keys, got {list(save)}")
            self._save_for = tuple(frozenset(save.get(i, ())) for i in range(n_inputs))
            save = sorted({item for wants in self._save_for for item in wants}, key=str)
        if save is None:
            self.save_out, self.save_inputs = True, None  # None: every input
        else:
            self.save_out = "out" in save
            self.save_inputs = frozenset(i for i in save if i != "out")
            bad = [i for i in self.save_inputs if not isinstance(i, int) or (n_inputs and i >= n_inputs)]
            if bad:
                raise ValueError(f"Primitive {name!r}: save= entries must be 'out' or input positions, got {bad}")
        # One- and two-input ops (the hot path): what to keep, looked up by which inputs require grad
        # (a one-input op records a node only when its input does).
        self._one_input_keeps = self._keeps_for((True,)) if n_inputs == 1 else None
        self._two_input_keeps = None
        if n_inputs == 2:
            self._two_input_keeps = [[self._keeps_for((a, b)) for b in (False, True)] for a in (False, True)]
        self.broadcasts = broadcasts
        self.explain = explain
        self.reuses_g = reuses_g
        # True for the engine's own primitives (set by `autograd.ops`): their vjps return new arrays or
        # views of ``g``, never memory they keep, so the backward walk may sum into what they return.
        self.builtin = False

    def __repr__(self) -> str:
        return f"Primitive({self.name!r})"

    def vjp(self, index: int) -> Vjp | None:
        """The vjp for input ``index`` (None if that input has no gradient)."""
        if self.vjps is not None:
            return self.vjps[index]
        if self.variadic_vjp is not None:
            fn = self.variadic_vjp
            return lambda g, out, *inputs, **attrs: fn(index, g, out, *inputs, **attrs)
        return None

    def __call__(self, *inputs: Any, **attrs: Any) -> Any:
        tensor_class = _TENSOR
        for x in inputs:
            if type(x) is tensor_class:
                break
        else:  # no tensor among the arguments: arrays in, an array out, nothing recorded
            return self.forward(*inputs, **attrs)
        for x in inputs:
            if type(x) is not tensor_class:  # numbers and arrays beside a tensor become constants
                inputs = tuple(_as_tensor(x, f"{self.name} input") for x in inputs)
                break
        if self.arity is not None and len(inputs) != self.arity:
            raise TypeError(f"{self.name}: expected {self.arity} inputs, got {len(inputs)}")
        n_inputs = len(inputs)
        try:
            if STATE.anomaly:  # numpy's warnings would only repeat, less precisely, what we raise
                with np.errstate(all="ignore"):
                    out = self.forward(*[t.data for t in inputs], **attrs)
                self._check_forward(out, inputs)
            elif n_inputs == 2:  # spelled out for the common arities: no list to build
                out = self.forward(inputs[0].data, inputs[1].data, **attrs)
            elif n_inputs == 1:
                out = self.forward(inputs[0].data, **attrs)
            else:
                out = self.forward(*[t.data for t in inputs], **attrs)
        except (ValueError, IndexError, TypeError, OverflowError) as error:
            raise self._forward_error(error, inputs, attrs) from None
        if type(out) is not np.ndarray:
            out = np.asarray(out)
        make = tensor_class._make
        if STATE.grad_enabled and self.differentiable:
            for t in inputs:
                if t._requires_grad:
                    if out.dtype.kind != "f":  # ints never require grad
                        break
                    result = make(out, None, True)
                    result._node = Node(self, *self._parents_and_saved(out, inputs), attrs, result, True)
                    if STATE.recording is not None:
                        STATE.recording.append((self, inputs, attrs, result))
                    return result
        result = make(out, None, False)
        if STATE.recording is not None:
            STATE.recording.append((self, inputs, attrs, result))
        return result

    def _parents_and_saved(self, out: np.ndarray, inputs: tuple[Tensor, ...]) -> tuple[tuple, tuple]:
        """The input nodes, and the arrays the node keeps for its vjps: ``(out, *inputs)``, with None
        for what no vjp that will run reads."""
        keeps = self._two_input_keeps
        if keeps is not None and len(inputs) == 2:  # the common arities look it up in a table
            first, second = inputs
            out_kept, keep_first, keep_second = keeps[first._requires_grad][second._requires_grad]
            return (first._node or node_of(first), second._node or node_of(second)), (
                out if out_kept else None,
                first.data if keep_first else None,
                second.data if keep_second else None,
            )
        if len(inputs) == 1 and self._one_input_keeps is not None:
            (only,) = inputs
            out_kept, keep_only = self._one_input_keeps
            return (only._node or node_of(only),), (out if out_kept else None, only.data if keep_only else None)
        parents = tuple([t._node or node_of(t) for t in inputs])
        return parents, self._saved(out, inputs)

    def _keeps_for(self, requires_grad: tuple[bool, ...]) -> tuple[bool, ...]:
        """(keep out?, keep input 0?, ...) when the inputs' ``requires_grad`` are as given."""
        if self._save_for is None:  # the same whoever requires grad
            keep = self.save_inputs
            return (self.save_out, *[keep is None or i in keep for i in range(len(requires_grad))])
        need = frozenset().union(*[wants for wants, rg in zip(self._save_for, requires_grad) if rg])
        return ("out" in need, *[i in need for i in range(len(requires_grad))])

    def _saved(self, out: np.ndarray, tensors: tuple[Tensor, ...]) -> tuple[np.ndarray | None, ...]:
        """The arrays a node keeps for its vjps (ops of other arities than the tables cover)."""
        keeps = self._keeps_for(tuple(t._requires_grad for t in tensors))
        return tuple(array if kept else None for array, kept in zip((out, *[t.data for t in tensors]), keeps))

    def _check_forward(self, out: np.ndarray, tensors: tuple[Tensor, ...]) -> None:
        problem = _non_finite_summary(out)
        if problem is not None and STATE.in_vjp_of is not None:
            node = STATE.in_vjp_of
            raise AnomalyError(
                f"detect_anomaly: backward of '{node.op_name}'{_scope_of(node)} produced {problem} "
                f"(in its vjp's '{self.name}')\n"
                f"  the op was created at {_site_or_hint(node)}"
            )
        if problem is not None:
            where = f" in {STATE.scope[-1]}" if STATE.scope else ""
            raise AnomalyError(
                f"detect_anomaly: forward of '{self.name}'{where} produced {problem}\n"
                f"  created at {user_site()}\n  inputs: {_describe(tensors)}"
            )

    def _forward_error(self, error: Exception, tensors: tuple[Tensor, ...], attrs: dict) -> Exception:
        """Turn numpy's complaint into one that names this op and the shapes involved.

        It is raised as the built-in type it is (IndexError, TypeError or ValueError; an overflow as a
        ValueError): numpy's own subclasses may not be constructible from a message. numpy's
        `AxisError` (a ValueError and an IndexError) is, and stays what it is.
        """
        kinds = (np.exceptions.AxisError, IndexError, TypeError)
        kind = next((k for k in kinds if isinstance(error, k)), ValueError)
        if self.explain is not None:
            message = self.explain(self.name, error, *tensors, **attrs)
            if message is not None:
                return kind(message)
        detail = ", ".join(f"{k}={v!r}" for k, v in attrs.items() if k != "index")
        return kind(f"{self.name}: {error} (inputs: {_describe(tensors)}{'; ' + detail if detail else ''})")


def _describe(tensors: Sequence[Tensor]) -> str:
    return ", ".join(f"{t.dtype} {tuple(t.shape)}" for t in tensors)


def check_finite_grad(node: Node, index: int, grad: np.ndarray) -> None:
    """In anomaly mode: raise if the gradient a vjp produced holds NaN or Inf."""
    problem = _non_finite_summary(grad)
    if problem is not None:
        raise AnomalyError(
            f"detect_anomaly: backward of '{node.op_name}'{_scope_of(node)} produced {problem} in the gradient "
            f"for its input {index} (shape {node.inputs[index].shape})\n  the op was created at {_site_or_hint(node)}"
        )


def _scope_of(node: Node) -> str:
    return f" in {node.scope[-1]}" if node.scope else ""


def _site_or_hint(node: Node) -> str:
    return node.site or "<unknown: run the forward pass inside detect_anomaly() to record it>"
