"""Capture: trace a function of tensors once, then replay its primitives without the Python between them.

    body = ag.capture(lambda x: mlp(x))
    y = body(x)     # first call with these shapes: runs the function, recording every primitive it calls
    y = body(x2)    # same shapes, dtypes and modes: replays the recorded primitives on x2's data

A replay calls the same forward functions on the same kinds of arrays and records the same graph
(nodes, saved arrays, scopes) as running the function would, so ``backward()``, higher-order
gradients and `viz` see no difference. What it skips is everything around the primitives: module
calls, method dispatch, argument checks, axis and shape arithmetic, lifting numbers to tensors. In a
small model that Python is most of the forward pass (``PERFORMANCE.md`` has the figures).
A replay also writes an elementwise result into an input array that nothing needs any more, as a
hand-written forward reuses its buffers (see `_Trace._plan_in_place`): the values are the same.

The contract is the one of ``torch.jit.trace`` and ``jax.jit``:

- The result may depend on the arguments only through engine ops. Values the function reads in
  Python (``x.item()``, ``if x.data.sum() > 0``, an index array computed from ``x.data``) are frozen
  at the first call, and so is randomness (dropout masks): do not capture those parts.
- Other tensors it uses (parameters, buffers) have their arrays read afresh at every replay, so an
  optimizer's updates are seen; but they are the tensors themselves, not the names bound to them: a
  variable rebound to another tensor needs a new ``key``. Numbers and arrays it turns into tensors
  itself are constants. Indexing with an argument's values (``t[ids]``) is refused.
- It must not have side effects: a replay does not run it.
- One thread at a time: the recording of a trace sees every primitive call in the process.

A trace is made again when the arguments' shapes, dtypes or ``requires_grad`` change, when grad mode
or the enclosing `scope` change, when a tensor it uses changes shape, dtype or ``requires_grad``,
or when the caller's ``key`` changes (a module passes its structure's version). The first replay of
every trace is checked against a real call; a difference raises `CaptureError` (or, with
``fallback=True``, warns) and that signature is called from then on. Later replays are not
checked. Under `detect_anomaly` the function simply runs.
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from autograd import ops
from autograd.primitive import STATE, Node, Primitive, no_grad, node_of
from autograd.tensor import Tensor, as_tensor


class CaptureError(RuntimeError):
    """A captured function cannot be replayed faithfully (it reads its inputs' values in Python,
    has side effects, or returns something that is not a tensor computed by engine ops)."""


class _Step:
    """One recorded primitive call, in terms of value slots."""

    __slots__ = ("op", "inputs", "attrs", "out", "grad", "keep", "scope", "release", "is_output", "in_place")

    def __init__(self, op: Primitive, inputs: tuple[int, ...], attrs: dict, out: int, grad: bool,
                 keep: tuple[bool, ...], scope: tuple[str, ...]) -> None:  # fmt: skip
        self.op, self.inputs, self.attrs, self.out = op, inputs, attrs, out
        self.grad = grad  # the result requires grad, so the replay records a node
        self.keep = keep  # which of (out, *inputs) that node saves for its vjps
        self.scope = scope
        self.release: tuple[int, ...] = ()  # slots no later step reads: dropped after this one
        self.is_output = False  # its result is one the function returns
        self.in_place: int | None = None  # the input whose array the replay writes the result into


class _Recorder:
    """Turns each primitive call of a traced function into a `_Step` as it happens (it is
    ``STATE.recording`` meanwhile), holding no result longer than the function does: a dead
    result's slot is forgotten (a weakref callback), so memory peaks as in a plain call and a
    reused ``id`` is never mistaken for it."""

    def __init__(self, args: Sequence[Tensor]) -> None:
        self.slot_of: dict[int, int] = {id(t): slot for slot, t in enumerate(args)}
        self.n_slots = len(args)
        self.externals: list[tuple[int, Tensor]] = []  # (slot, tensor) read afresh at each replay
        self.steps: list[_Step] = []
        self.watchers: list[weakref.ref] = []
        self.arg_arrays = [t.data for t in args]
        self.layout: dict[int, tuple] = {slot: _layout(t.data) for slot, t in enumerate(args)}  # slot -> array kind

    def append(self, call: tuple[Primitive, tuple[Tensor, ...], dict, Tensor]) -> None:
        op, inputs, attrs, out = call
        self._check_attrs(op, attrs)
        slots = []
        for t in inputs:
            slot = self.slot_of.get(id(t))
            if slot is None:  # not an argument nor a recorded result: a parameter, buffer or constant
                slot = self.slot_of[id(t)] = self._new_slot()
                self.externals.append((slot, t))
                self.layout[slot] = _layout(t.data)
            slots.append(slot)
        slot = self.slot_of[id(out)] = self._new_slot()
        self.layout[slot] = _layout(out.data)
        self.watchers.append(weakref.ref(out, functools.partial(self._forget, id(out), slot)))
        node = out._node
        grad = node is not None and node.op is op
        keep = tuple(array is not None for array in node.saved) if grad else ()
        scope = node.scope if grad else STATE.scope
        self.steps.append(_Step(op, tuple(slots), attrs, slot, grad, keep, scope))

    def _check_attrs(self, op: Primitive, attrs: dict) -> None:
        """An op that takes an argument's values as a setting (``t[ids]`` with ``ids`` an argument)
        would replay the first call's values: refused."""
        for name, value in attrs.items():
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, np.ndarray) and any(np.may_share_memory(item, a) for a in self.arg_arrays):
                    raise CaptureError(
                        f"capture: '{op.name}' uses an argument's values as its {name}= (an index array, say), "
                        "which a replay would freeze at the first call's; pass it as a constant, or call the "
                        "function without capture"
                    )

    def _new_slot(self) -> int:
        self.n_slots += 1
        return self.n_slots - 1

    def _forget(self, key: int, slot: int, _ref: weakref.ref) -> None:
        if self.slot_of.get(key) == slot:
            del self.slot_of[key]


class _Trace:
    """A function's primitives as a straight-line program over numbered value slots.

    Slots hold the arguments' arrays, the arrays of the other tensors the function used (read at
    each replay), and each step's result.
    """

    def __init__(self, args: Sequence[Tensor], recorder: _Recorder, result: Any) -> None:
        self.n_args = len(args)
        self.externals = recorder.externals
        self.steps = recorder.steps
        self.n_slots = recorder.n_slots
        self.single = isinstance(result, Tensor)
        results = [result] if self.single else list(result) if isinstance(result, (tuple, list)) else None
        kind = type(result)  # a replay returns the same kind of sequence (a list, a named tuple)
        self.container = kind if kind is list else (lambda items: kind(*items)) if hasattr(kind, "_fields") else tuple
        if results is None or not all(isinstance(r, Tensor) for r in results):
            raise CaptureError(f"capture: the function must return a Tensor or a tuple of Tensors, got {type(result)}")
        self.outputs: list[int] = []
        for r in results:
            if id(r) not in recorder.slot_of:
                raise CaptureError(
                    "capture: the function returned a tensor that no engine op inside it computed (one made "
                    "from an array by hand, a detached one, or one from outside it); a replay could not recompute it"
                )
            self.outputs.append(recorder.slot_of[id(r)])
        self.signature = _external_signature([t for _, t in self.externals])
        self.verified = False
        last_read: dict[int, int] = {}  # slot -> the position of the last step that reads it
        for position, step in enumerate(self.steps):
            step.is_output = step.out in self.outputs
            for slot in step.inputs:
                last_read[slot] = position
        self._plan_releases(last_read)
        self._plan_in_place(recorder.layout, last_read)

    def _plan_releases(self, last_read: dict[int, int]) -> None:
        """After its last reader, a step's result leaves the slot table (its node may still save it)."""
        releases: dict[int, list[int]] = {}
        for position, step in enumerate(self.steps):
            if not step.is_output:
                releases.setdefault(last_read.get(step.out, position), []).append(step.out)
        for position, slots in releases.items():
            self.steps[position].release = tuple(slots)

    def _plan_in_place(self, layout: dict[int, tuple], last_read: dict[int, int]) -> None:
        """Let an elementwise step write its result into an input array that nothing needs any more,
        as a hand-written forward reuses its buffers: the sum ``x @ W.T + b`` goes into the product's
        array, GELU's ``x^2 * c + d`` into ``x^2``'s. Fewer fresh arrays mean fewer cache misses: a
        fresh array has to be brought into the cache, one just read is there already.

        An input qualifies when it has the result's shape, dtype and (C) layout, and no array that may
        share its memory (its views, the array it is a view of) is an argument or a tensor from
        outside, is returned, is kept by a node for backward, or is read by a later step. Ops not known
        to return new memory are taken to return views of all their inputs. Only replays write in place
        (a traced call runs the function as written), so this changes no value, only where it lives."""
        sharing = [[slot] for slot in range(self.n_slots)]  # sharing[s]: the slots that may share s's memory

        def join(a: int, b: int) -> None:
            if sharing[a] is not sharing[b]:
                merged = sharing[a] + sharing[b]
                for slot in merged:
                    sharing[slot] = merged

        kept: set[int] = set()  # slots whose array some node saves
        for step in self.steps:
            if step.grad:
                kept.update(slot for slot, keep in zip((step.out, *step.inputs), step.keep) if keep)
        pinned = set(range(self.n_args)) | {slot for slot, _ in self.externals} | set(self.outputs) | kept
        for step in self.steps:
            if not step.op.builtin or math.prod(layout[step.out][0]) == 1:
                # A primitive of the user's may return memory it keeps (a table, a cache), and a node
                # keeps a one-number result for drawing: neither is ever written into.
                pinned.add(step.out)
        for position, step in enumerate(self.steps):
            if step.op in _WRITES_INTO_INPUT and not step.attrs and layout[step.out][2]:
                for k, slot in enumerate(step.inputs):
                    if step.inputs.count(slot) == 1 and layout[slot] == layout[step.out] and all(
                        member not in pinned and last_read.get(member, -1) <= position
                        for member in sharing[slot]
                    ):
                        step.in_place = k
                        join(slot, step.out)  # the result lives in that array from now on
                        break
            elif step.op not in _FRESH_RESULT:
                for slot in step.inputs:  # a view, maybe: the result may share memory with any input
                    join(slot, step.out)

    def replay(self, args: Sequence[Tensor]) -> Any:
        values: list[Any] = [None] * self.n_slots
        nodes: list[Node | None] = [None] * self.n_slots
        sources: dict[int, Tensor] = dict(enumerate(args))
        sources.update(self.externals)
        for slot, tensor in sources.items():
            values[slot] = tensor.data
        make = Tensor._make
        results: dict[int, Tensor] = {}
        for step in self.steps:
            slots = step.inputs
            if len(slots) == 2:  # most ops: spelled out, no list to build
                arrays: Sequence[Any] = (values[slots[0]], values[slots[1]])
            elif len(slots) == 1:
                arrays = (values[slots[0]],)
            else:
                arrays = [values[slot] for slot in slots]
            if step.in_place is not None and arrays[step.in_place].flags.writeable:
                out = step.op.forward(*arrays, out=arrays[step.in_place])
            else:
                out = step.op.forward(*arrays, **step.attrs)
            if type(out) is not np.ndarray:
                out = np.asarray(out)
            values[step.out] = out
            if step.grad:
                tensor = make(out, None, True)
                parents = []
                for slot in slots:
                    node = nodes[slot]
                    if node is None:  # an argument, an external, or a result that needs no grad
                        source = sources[slot] if slot in sources else make(values[slot], None, False)
                        node = nodes[slot] = node_of(source)
                    parents.append(node)
                keep = step.keep
                if len(arrays) == 2:
                    saved = (out if keep[0] else None, arrays[0] if keep[1] else None, arrays[1] if keep[2] else None)
                elif len(arrays) == 1:
                    saved = (out if keep[0] else None, arrays[0] if keep[1] else None)
                else:
                    saved = (out if keep[0] else None, *[a if k else None for a, k in zip(arrays, keep[1:])])
                node = tensor._node = nodes[step.out] = Node(step.op, tuple(parents), saved, step.attrs, tensor, True)
                node.scope = step.scope
                if step.is_output:
                    results[step.out] = tensor
            elif step.is_output:
                results[step.out] = make(out, None, False)
            for slot in step.release:
                values[slot] = None
        found = [results[s] if s in results else sources[s] for s in self.outputs]
        return found[0] if self.single else self.container(found)


def _layout(array: np.ndarray) -> tuple:
    """What an array must match for a result to be written into it: (shape, dtype, writeable and
    C-ordered). A broadcast view, for one, is read-only."""
    return array.shape, array.dtype, array.flags.writeable and array.flags.c_contiguous


# Primitives whose forward is a numpy ufunc (so it takes ``out=``), and those known to return new memory.
_WRITES_INTO_INPUT = frozenset({
    ops.neg, ops.exp, ops.log, ops.sqrt, ops.square, ops.tanh, ops.absolute,
    ops.add, ops.sub, ops.mul, ops.div, ops.power, ops.maximum, ops.minimum,
})  # fmt: skip
_FRESH_RESULT = _WRITES_INTO_INPUT | {ops._matmul, ops.softmax, ops.log_softmax, ops.sigmoid, ops.rsqrt}


def _external_signature(tensors: Sequence[Tensor]) -> list[tuple]:
    return [(t.data.shape, t.data.dtype, t.requires_grad) for t in tensors]


def _same(a: Tensor, b: Tensor) -> bool:
    """Bit for bit, or within a few rounding errors (BLAS may sum in another order on another array)."""
    x, y = a.data, b.data
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
        return True
    if x.dtype.kind != "f":
        return False
    eps = float(np.finfo(x.dtype).eps)
    scale = float(np.max(np.abs(y[np.isfinite(y)]), initial=0.0))
    return bool(np.allclose(x, y, rtol=64 * eps, atol=64 * eps * scale, equal_nan=True))


class Captured:
    """A function of tensors, traced once per signature and replayed after: see `capture`."""

    def __init__(
        self, fn: Callable[..., Any], *, max_traces: int = 8, verify: bool = True, fallback: bool = False,
        trace_after: int = 0,
    ) -> None:  # fmt: skip
        if not callable(fn):
            raise TypeError(f"capture: expected a function, got {type(fn).__name__}")
        if max_traces < 1:
            raise ValueError(f"capture: max_traces must be at least 1, got {max_traces}")
        if trace_after < 0:
            raise ValueError(f"capture: trace_after must be 0 or more, got {trace_after}")
        self.fn = fn
        self.max_traces = max_traces
        self.verify = verify
        self.fallback = fallback
        self.trace_after = trace_after
        self._traces: OrderedDict[Hashable, _Trace] = OrderedDict()
        self._sightings: OrderedDict[Hashable, int] = OrderedDict()  # calls so far of untraced signatures
        self._direct: set[Hashable] = set()  # signatures whose replay failed its check
        self.stats = {"traces": 0, "replays": 0, "direct": 0}

    def __call__(self, *args: Any, key: Hashable = ()) -> Any:
        """``fn(*args)``, replayed from a trace when one matches. ``key``: anything else the
        function's graph depends on (a module's structure version, say)."""
        tensors = [a if type(a) is Tensor else as_tensor(a, f"capture argument {i}") for i, a in enumerate(args)]
        if STATE.anomaly or STATE.recording is not None:  # anomaly checks each op; an outer trace records ours
            self.stats["direct"] += 1
            return self.fn(*tensors)
        ids = [id(t) for t in tensors]
        aliases = tuple(ids.index(i) for i in ids) if len(set(ids)) < len(ids) else None  # f(x, x) is not f(x, y)
        signature = (
            tuple((t.data.shape, t.data.dtype, t.requires_grad) for t in tensors),
            aliases, STATE.grad_enabled, STATE.scope, key,
        )  # fmt: skip
        if signature in self._direct:
            self.stats["direct"] += 1
            return self.fn(*tensors)
        trace = self._traces.get(signature)
        if trace is not None and _external_signature([t for _, t in trace.externals]) != trace.signature:
            trace = None  # a parameter was frozen, or swapped for another shape or dtype
        if trace is None:
            if signature not in self._traces and self._sightings.get(signature, 0) < self.trace_after:
                self._sightings[signature] = self._sightings.pop(signature, 0) + 1  # not yet worth a trace
                if len(self._sightings) > 8 * self.max_traces:
                    self._sightings.popitem(last=False)
                self.stats["direct"] += 1
                return self.fn(*tensors)
            self._sightings.pop(signature, None)
            return self._trace(signature, tensors)
        self._traces.move_to_end(signature)
        self.stats["replays"] += 1
        if trace.verified:
            return trace.replay(tensors)
        try:
            result, failed = trace.replay(tensors), None
        except Exception as error:  # noqa: BLE001 (any failure of a first replay means: do not replay)
            result, failed = None, error
        if failed is not None or not self._check(trace, tensors, result):
            del self._traces[signature]
            self._direct.add(signature)  # not replayable: called from now on
            name = getattr(self.fn, "__qualname__", self.fn)
            if failed is None:
                message = (
                    f"capture: replaying {name!r} gave a different result than calling it: it reads its inputs' "
                    "values in Python, draws random numbers or has side effects. It is called, not replayed, from "
                    "now on."
                )
            else:
                message = (
                    f"capture: replaying {name!r} raised {type(failed).__name__}: {failed}. It is called, not "
                    "replayed, from now on."
                )
            if not self.fallback:
                raise CaptureError(message) from failed
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            result = self.fn(*tensors)
        return result

    def _trace(self, signature: Hashable, tensors: list[Tensor]) -> Any:
        recorder = _Recorder(tensors)
        STATE.recording = recorder
        try:
            result = self.fn(*tensors)
            trace = _Trace(tensors, recorder, result)
        finally:
            STATE.recording = None
            recorder.watchers.clear()  # done: no callbacks from results that die later (and no cycle)
        self._traces.pop(signature, None)  # a trace made again goes to the back of the queue
        self._traces[signature] = trace
        if len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
        self.stats["traces"] += 1
        return result

    def _check(self, trace: _Trace, tensors: list[Tensor], replayed: Any) -> bool:
        """Whether the first replay of ``trace`` gave what a call gives (always true without ``verify``)."""
        if self.verify:
            with no_grad():  # values only: a second graph beside the replay's would double the memory peak
                direct = self.fn(*tensors)
            pairs = zip([replayed] if trace.single else replayed, [direct] if trace.single else direct)
            if not all(_same(r, d) for r, d in pairs):
                return False
        trace.verified = True
        return True

    def clear(self) -> None:
        """Forget every trace, and every failed check (the next call traces again)."""
        self._traces.clear()
        self._direct.clear()
        self._sightings.clear()


def capture(
    fn: Callable[..., Any], *, max_traces: int = 8, verify: bool = True, fallback: bool = False, trace_after: int = 0
) -> Captured:
    """Trace ``fn`` (tensors in, a tensor or a tuple of tensors out) on its first call for each
    signature, and replay the recorded primitives on later calls: see this module's docstring.

    ``max_traces``: how many signatures to remember (least recently used first out).
    ``trace_after``: calls of a signature that simply run before one is traced (a trace costs a few
    microseconds per op, wasted on shapes seen once, such as a growing sequence during generation).
    ``verify``: check the first replay of each trace against a real call. If they differ, that
    signature is called, not replayed, from then on, and `CaptureError` is raised; with
    ``fallback=True`` a `RuntimeWarning` is given instead and the call's result returned.
    """
    return Captured(fn, max_traces=max_traces, verify=verify, fallback=fallback, trace_after=trace_after)
