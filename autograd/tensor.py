"""The `Tensor`: a numpy array plus what reverse-mode autodiff needs to know about it.

Every method is a thin call into a primitive of `autograd.ops` (or a composition of them), so this
file reads as the list of what a tensor can do. Numbers on either side of an operator follow
numpy's rules for Python scalars: ``x * 2.0`` keeps ``x``'s float32. numpy's own ufuncs run the
same primitives on a tensor (``np.exp(t)`` is ``t.exp()``), so code written with them, a vjp
among it, works on arrays and tensors alike.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from autograd import arguments
from autograd import ops as _ops
from autograd.primitive import Node, use_tensor_class

_new_object = object.__new__

DEFAULT_DTYPE = np.dtype(np.float32)
Axis = int | Sequence[int] | None


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in "biuf":
        raise TypeError(f"{what}: dtype {dtype} is not supported; use a float, integer or bool dtype")


class Tensor:
    """An n-dimensional array that can record the ops applied to it and differentiate through them.

    ``Tensor(data, requires_grad=False, dtype=None)``: numpy arrays keep their dtype (and share
    memory, like ``torch.from_numpy``); Python numbers and lists become float32 unless ``dtype``
    says otherwise. Only floating-point tensors can require grad.
    """

    __slots__ = ("data", "grad", "_requires_grad", "name", "_node", "__weakref__")

    data: np.ndarray
    grad: Tensor | None
    name: str | None
    _node: Node | None

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        array = _to_array(data, dtype)
        if requires_grad and array.dtype.kind != "f":
            raise TypeError(
                f"Tensor: requires_grad=True needs a floating-point tensor, got dtype {array.dtype}; "
                "integer and bool tensors index and compare but are never differentiated"
            )
        self.data = array
        self.grad = None
        self._requires_grad = bool(requires_grad)
        self.name = None
        self._node = None

    @staticmethod
    def _make(data: np.ndarray, node: Node | None, requires_grad: bool) -> Tensor:
        """Fast internal constructor for op results (no validation). A staticmethod calling a bound
        ``object.__new__``, which is cheaper than a classmethod; every op pays it."""
        tensor = _new_object(Tensor)
        tensor.data = data
        tensor.grad = None
        tensor._requires_grad = requires_grad
        tensor.name = None
        tensor._node = node
        return tensor

    def __deepcopy__(self, memo: dict) -> Tensor:
        """A copy of the data (and of ``.grad``) that is a new leaf: a graph node is never copied.
        (A copied node would still point at this tensor, so a copied model's backward would write
        into the original's ``.grad``.)"""
        copied = Tensor._make(copy.deepcopy(self.data, memo), None, self._requires_grad)  # (views stay views)
        memo[id(self)] = copied
        copied.name = self.name
        copied.grad = None if self.grad is None else self.grad.__deepcopy__(memo)
        return copied

    # -- array-like attributes -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def node(self) -> Node | None:
        """The graph node that produced this tensor (None for a tensor outside any graph)."""
        return self._node

    @property
    def is_leaf(self) -> bool:
        return self._node is None or self._node.op is None

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> Tensor:
        """The same data, cut off from the graph (requires_grad=False)."""
        return Tensor._make(self.data, None, False)

    @property
    def requires_grad(self) -> bool:
        """Whether ops on this tensor are recorded for differentiation. Assigning a new value
        (``p.requires_grad = False`` to freeze a parameter) is `requires_grad_`: leaves only."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, requires_grad: bool) -> None:
        if bool(requires_grad) != self._requires_grad:  # the same value: a graph already recorded stays whole
            self.requires_grad_(requires_grad)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Make this leaf tensor require grad, or stop requiring it (in place), as torch does."""
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad_: a tensor of dtype {self.dtype} cannot require grad (floats only)")
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only leaf tensors can change requires_grad; use .detach() first")
        self._requires_grad = bool(requires_grad)
        self._node = None  # its leaf node says whether it requires grad: a new one is made on next use
        return self

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    __hash__ = object.__hash__  # by identity, like torch: tensors can key dicts and sets

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="Tensor(", threshold=64)
        extras = [f"dtype={self.dtype}"]
        if self.requires_grad:
            extras.append("requires_grad=True")
        if self._node is not None and self._node.op is not None:
            extras.append(f"op={self._node.op.name}")
        if self.name:
            extras.append(f"name={self.name!r}")
        return f"Tensor({body}, {', '.join(extras)})"

    # -- autodiff --------------------------------------------------------------------------------
    def backward(self, gradient: Any = None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``gradient`` is d(loss)/d(self); it may be omitted for a single-element tensor. The graph's
        saved arrays are freed afterwards unless ``retain_graph=True``. With ``create_graph=True``
        the gradients are recorded too, so they can be differentiated again.
        """
        from autograd.backward import backward  # the walk is the layer above this one

        backward(self, gradient, retain_graph=retain_graph or create_graph, create_graph=create_graph)

    # -- operators -------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return _ops.add(self, other if type(other) is Tensor else lift(other, self))

    def __radd__(self, other: Any) -> Tensor:
        return _ops.add(lift(other, self), self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops.sub(self, other if type(other) is Tensor else lift(other, self))

    def __rsub__(self, other: Any) -> Tensor:
        return _ops.sub(lift(other, self), self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops.mul(self, other if type(other) is Tensor else lift(other, self))

    def __rmul__(self, other: Any) -> Tensor:
        return _ops.mul(lift(other, self), self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops.div(self, lift(other, self))

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops.div(lift(other, self), self)

    def __pow__(self, other: Any) -> Tensor:
        return _ops.power(self, lift(other, self))

    def __rpow__(self, other: Any) -> Tensor:
        return _ops.power(lift(other, self), self)

    def __matmul__(self, other: Any) -> Tensor:
        if type(other) is Tensor and self.data.ndim >= 2 and other.data.ndim >= 2:  # no 1-D operand to promote
            return _ops._matmul(self, other)
        return _ops.matmul(self, other if type(other) is Tensor else as_tensor(other, "matmul operand"))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops.matmul(as_tensor(other, "matmul operand"), self)

    def __neg__(self) -> Tensor:
        return _ops.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __lt__(self, other: Any) -> Tensor:
        return _ops.less(self, lift(other, self, comparison=True))

    def __le__(self, other: Any) -> Tensor:
        return _ops.less_equal(self, lift(other, self, comparison=True))

    def __gt__(self, other: Any) -> Tensor:
        return _ops.greater(self, lift(other, self, comparison=True))

    def __ge__(self, other: Any) -> Tensor:
        return _ops.greater_equal(self, lift(other, self, comparison=True))

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _ops.equal(self, lift(other, self, comparison=True))

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _ops.not_equal(self, lift(other, self, comparison=True))

    def __getitem__(self, index: Any) -> Tensor:
        return _ops.getitem(self, index=arguments.index_argument(index, self.shape))

    # -- numpy's ufuncs (NEP 13): np.exp(t), np.add(a, t), ndarray * Tensor -----------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Tensor:
        """``np.exp(t)``, ``np.multiply(a, t)``, ``array + t``: the engine's primitive for that ufunc."""
        primitive = _UFUNC_PRIMITIVES.get(ufunc)
        if primitive is None or method != "__call__" or kwargs:
            usage = f"np.{ufunc.__name__}" + (f".{method}" if method != "__call__" else "")
            extra = f" with {', '.join(kwargs)}=" if kwargs else ""
            raise TypeError(
                f"{usage}{extra} on a Tensor: not an engine op. Use the tensor's methods, or call it on "
                "tensor.data (a plain array, no gradient)"
            )
        like = next(x for x in inputs if type(x) is Tensor)
        name = f"{ufunc.__name__} operand"
        return primitive(*[x if type(x) is Tensor else lift(x, like, name=name) for x in inputs])

    # -- elementwise -----------------------------------------------------------------------------
    def exp(self) -> Tensor:
        return _ops.exp(self)

    def log(self) -> Tensor:
        return _ops.log(self)

    def sqrt(self) -> Tensor:
        return _ops.sqrt(self)

    def rsqrt(self) -> Tensor:
        """``1 / sqrt(x)``, the reciprocal square root (as in a LayerNorm's ``1 / sqrt(var + eps)``)."""
        return _ops.rsqrt(self)

    def tanh(self) -> Tensor:
        return _ops.tanh(self)

    def square(self) -> Tensor:
        """``x * x`` as one op: its backward is one product, not two to be summed."""
        return _ops.square(self)

    def sigmoid(self) -> Tensor:
        return _ops.sigmoid(self)

    def relu(self) -> Tensor:
        return _ops.relu(self)

    def abs(self) -> Tensor:
        return _ops.absolute(self)

    def sin(self) -> Tensor:
        return _ops.sin(self)

    def cos(self) -> Tensor:
        return _ops.cos(self)

    def log2(self) -> Tensor:
        return _ops.log2(self)

    def expm1(self) -> Tensor:
        """``e^x - 1``, accurate also where ``x`` is tiny and ``exp(x) - 1`` would lose its digits."""
        return _ops.expm1(self)

    def erf(self) -> Tensor:
        """The error function ``2/sqrt(pi) * integral of e^(-t^2) from 0 to x`` (exact GELU uses it)."""
        return _ops.erf(self)

    def reciprocal(self) -> Tensor:
        """``1 / x``. Integers give floats (float64), as in torch; numpy's ``reciprocal`` keeps them integers."""
        return _ops.div(lift(1.0, self), self)

    def sign(self) -> Tensor:
        """-1, 0 or 1. Its gradient is 0 (also at 0, as torch), so it can sit inside a differentiated expression."""
        return _ops.sign(self)

    def floor(self) -> Tensor:
        """Round down. Gradient 0 (piecewise constant; 0 at the jumps too, as torch)."""
        return _ops.floor(self)

    def ceil(self) -> Tensor:
        """Round up. Gradient 0 (piecewise constant; 0 at the jumps too, as torch)."""
        return _ops.ceil(self)

    def round(self, decimals: int = 0) -> Tensor:
        """Round to ``decimals`` places, halves to even (``round(2.5) == 2``), as numpy and torch. Gradient 0."""
        decimals = arguments.count_argument("round", "decimals", decimals, minimum=None)
        return _ops.round_(self, decimals=decimals)

    def clip(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (numpy's and torch's names)
        """``min(max(x, min), max)``: each entry limited to ``[min, max]``; either bound may be None (no
        limit) or a tensor that broadcasts with ``x``. Where ``min > max`` every entry is ``max``.

        The gradient follows torch's ``clamp``: ``x`` gets it where ``min <= x <= max`` (the bounds
        included), ``min`` where ``x < min``, ``max`` where ``x > max``, 0 elsewhere."""
        if min is None and max is None:
            raise ValueError("clip: give min, max or both (both are None)")
        return _ops.clip(self, self._clip_bound(min, "min"), self._clip_bound(max, "max"))

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (torch's names)
        """torch's name for `clip`."""
        return self.clip(min, max)

    def _clip_bound(self, bound: Any, which: str) -> Tensor:
        """A bound of `clip` as a tensor; None is no bound: the dtype's lowest or highest value."""
        if bound is not None:
            return lift(bound, self, name=f"clip: {which}")
        kind, dtype = self.dtype.kind, self.dtype
        if kind == "f":
            value = -np.inf if which == "min" else np.inf
        elif kind in "iu":
            value = np.iinfo(dtype).min if which == "min" else np.iinfo(dtype).max
        else:
            value = which == "max"
        return Tensor._make(np.asarray(value, dtype=dtype), None, False)

    def astype(self, dtype: Any) -> Tensor:
        """A copy converted to ``dtype`` (differentiable between float dtypes)."""
        dtype = _dtype_argument(dtype, "astype")
        if dtype == self.dtype:
            return self
        return _ops.cast(self, dtype=dtype)

    # -- reductions ------------------------------------------------------------------------------
    def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        return _ops.reduce_sum(self, axis=arguments.normalize_axes("sum", axis, self.shape), keepdims=keepdims)

    def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Average; integers and bools are averaged in float64, as numpy does."""
        axes = arguments.normalize_axes("mean", axis, self.shape)
        count = _ops.reduced_count(self.shape, axes)
        if count == 0:
            raise ValueError(f"mean: cannot average over an empty axis (shape {self.shape}, axis {axis})")
        x = self if self.dtype.kind == "f" else self.astype(np.float64)
        return _ops.reduce_mean(x, axis=axes, keepdims=keepdims)

    def var(self, axis: Axis = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
        """Variance ``sum((x - mean)^2) / (N - ddof)`` (numpy's default ``ddof=0``, the biased one)."""
        return self._variance("var", axis, keepdims, ddof)

    def std(self, axis: Axis = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
        """Standard deviation ``sqrt(var(x, ddof))``, with numpy's default ``ddof=0`` as `var`. torch's
        ``std`` divides by ``N - 1`` by default (``correction=1``): pass ``ddof=1`` for that. Where every
        value is equal the gradient is NaN (0/0), as torch's."""
        return self._variance("std", axis, keepdims, ddof).sqrt()

    def _variance(self, op: str, axis: Axis, keepdims: bool, ddof: int) -> Tensor:
        axes = arguments.normalize_axes(op, axis, self.shape)
        if isinstance(ddof, bool) or not isinstance(ddof, (int, float, np.integer, np.floating)):
            raise TypeError(f"{op}: ddof must be a number, got {type(ddof).__name__} {ddof!r}")
        count = _ops.reduced_count(self.shape, axes)
        if count == 0 or count - ddof <= 0:
            raise ValueError(f"{op}: {count} values over axis {axis} of shape {self.shape} with ddof={ddof}")
        x = self if self.dtype.kind == "f" else self.astype(np.float64)
        centered = x - x.mean(axis=axes, keepdims=True)
        # The mean of the squares, not their sum over N - ddof: a float16 sum of squares overflows
        # long before the variance does (the mean is accumulated in float32).
        variance = (centered * centered).mean(axis=axes, keepdims=keepdims)
        return variance if ddof == 0 else variance * (count / (count - ddof))

    def prod(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Product; its gradient is the product of the other entries, also where some are 0."""
        return _ops.reduce_prod(self, axis=arguments.normalize_axes("prod", axis, self.shape), keepdims=keepdims)

    def logsumexp(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """``log(sum(exp(x)))``, computed without overflow (shifted by the max); its gradient is the
        softmax of ``x``. Of nothing (an empty axis) it is ``-inf``, as torch's."""
        axes = arguments.normalize_axes("logsumexp", axis, self.shape)
        return _ops.logsumexp(self, axis=axes, keepdims=keepdims)

    def cumsum(self, axis: int | None = None) -> Tensor:
        """Running sums along ``axis`` (numpy's ``cumsum``; ``None`` runs over the flattened tensor).
        Small integers and bools are summed in int64, as numpy does."""
        if axis is None:
            return _ops.cumsum(self.reshape(-1), axis=0)
        return _ops.cumsum(self, axis=arguments.normalize_axis("cumsum", axis, self.ndim, self.shape))

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """The index of the largest entry along ``axis`` (of the flattened tensor for ``None``), the first
        one at ties, as numpy. An integer tensor: no gradient."""
        return self._arg("argmax", _ops.argmax, axis, keepdims)

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """The index of the smallest entry, the first at ties (see `argmax`)."""
        return self._arg("argmin", _ops.argmin, axis, keepdims)

    def _arg(self, op: str, primitive: Any, axis: int | None, keepdims: bool) -> Tensor:
        a = None if axis is None else arguments.normalize_axis(op, axis, self.ndim, self.shape)
        if (self.size if a is None else self.shape[a]) == 0:
            raise ValueError(f"{op}: no entries to choose from (shape {self.shape}, axis {axis})")
        return primitive(self, axis=a, keepdims=keepdims)

    def max(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Maximum; its gradient is shared equally among tied maxima."""
        return _ops.reduce_max(self, axis=arguments.normalize_axes("max", axis, self.shape), keepdims=keepdims)

    def min(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Minimum; its gradient is shared equally among tied minima."""
        return _ops.reduce_min(self, axis=arguments.normalize_axes("min", axis, self.shape), keepdims=keepdims)

    def softmax(self, axis: int = -1) -> Tensor:
        """``e^x / sum(e^x)`` along ``axis``. A 0-d tensor is a vector of one number, as in torch: 1, with
        gradient 0."""
        if self.ndim == 0:
            return _ops.softmax(self.reshape(1), axis=arguments.scalar_axis("softmax", axis)).reshape(())
        return _ops.softmax(self, axis=arguments.normalize_axis("softmax", axis, self.ndim, self.shape))

    def log_softmax(self, axis: int = -1) -> Tensor:
        """``x - logsumexp(x)`` along ``axis``; of a 0-d tensor 0, with gradient 0 (as torch)."""
        if self.ndim == 0:
            return _ops.log_softmax(self.reshape(1), axis=arguments.scalar_axis("log_softmax", axis)).reshape(())
        return _ops.log_softmax(self, axis=arguments.normalize_axis("log_softmax", axis, self.ndim, self.shape))

    # -- shapes ----------------------------------------------------------------------------------
    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        shape_t = shape[0] if len(shape) == 1 and type(shape[0]) is tuple else shape
        if not all(type(n) is int for n in shape_t):  # the common case skips the full check
            shape_t = arguments.shape_argument("reshape", shape)
        if shape_t == self.data.shape:
            return self
        return _ops.reshape(self, shape=shape_t)

    def permute(self, *axes: int | Sequence[int]) -> Tensor:
        perm = arguments.permutation("permute", arguments.shape_argument("permute", axes), self.ndim)
        if perm == tuple(range(self.ndim)):
            return self
        return _ops.permute(self, axes=perm)

    def transpose(self, axis0: int = -2, axis1: int = -1) -> Tensor:
        """Swap two axes (by default the last two, as for a batch of matrices)."""
        a = arguments.normalize_axis("transpose", axis0, self.ndim, self.shape)
        b = arguments.normalize_axis("transpose", axis1, self.ndim, self.shape)
        if a == b:
            return self
        perm = list(range(self.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return _ops.permute(self, axes=tuple(perm))

    def swapaxes(self, axis0: int, axis1: int) -> Tensor:
        """Swap two axes (numpy's name for `transpose` of two axes)."""
        return self.transpose(axis0, axis1)

    @property
    def T(self) -> Tensor:  # noqa: N802 (numpy's name)
        """All axes reversed, as numpy's ``.T``."""
        return self.permute(*reversed(range(self.ndim)))

    def expand(self, *shape: int | Sequence[int]) -> Tensor:
        """Broadcast to ``shape`` without copying; ``-1`` keeps an axis's size."""
        target = arguments.shape_argument("expand", shape)
        target = arguments.expanded_shape(self.shape, target)
        if target == self.shape:
            return self
        return _ops.expand(self, shape=target)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge the axes ``start_dim`` to ``end_dim`` (both included) into one, as torch's ``flatten``;
        by default all of them (a 0-d tensor becomes shape ``(1,)``)."""
        if self.ndim == 0:
            for dim in (start_dim, end_dim):
                arguments.scalar_axis("flatten", dim)
            return self.reshape(1)
        start = arguments.normalize_axis("flatten", start_dim, self.ndim, self.shape)
        end = arguments.normalize_axis("flatten", end_dim, self.ndim, self.shape)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (shape {self.shape})")
        merged = int(np.prod(self.shape[start : end + 1]))
        return self.reshape((*self.shape[:start], merged, *self.shape[end + 1 :]))

    def squeeze(self, axis: int) -> Tensor:
        a = arguments.normalize_axis("squeeze", axis, self.ndim, self.shape)
        if self.shape[a] != 1:
            raise ValueError(f"squeeze: axis {axis} of shape {self.shape} has size {self.shape[a]}, not 1")
        return self.reshape(self.shape[:a] + self.shape[a + 1 :])

    def unsqueeze(self, axis: int) -> Tensor:
        a = arguments.normalize_axis("unsqueeze", axis, self.ndim + 1)
        return self.reshape(self.shape[:a] + (1,) + self.shape[a:])

    def flip(self, axis: Axis = None) -> Tensor:
        """Reverse the order of the entries along ``axis`` (an int, a tuple, or None for every axis), as
        numpy's ``flip``."""
        axes = arguments.normalize_axes("flip", axis, self.shape)
        return _ops.flip(self, axis=axes) if axes else self

    def tril(self, k: int = 0) -> Tensor:
        """The lower triangle of each matrix (the last two axes): entries ``[i, j]`` with ``j <= i + k``
        kept, the rest 0. ``k > 0`` keeps diagonals above, ``k < 0`` drops some below."""
        return self._triangle("tril", k, lower=True)

    def triu(self, k: int = 0) -> Tensor:
        """The upper triangle of each matrix: entries ``[i, j]`` with ``j >= i + k`` kept, the rest 0."""
        return self._triangle("triu", k, lower=False)

    def _triangle(self, op: str, k: int, lower: bool) -> Tensor:
        """``where(mask, x, 0)`` with a constant mask: the kept entries get their gradient, the others 0."""
        if self.ndim < 2:
            raise ValueError(f"{op}: needs a matrix or a batch of them (at least 2 dims), got shape {self.shape}")
        k = arguments.count_argument(op, "k", k, minimum=None)
        rows, cols = self.shape[-2:]
        keep = np.tri(rows, cols, k, dtype=bool) if lower else ~np.tri(rows, cols, k - 1, dtype=bool)
        zero = Tensor._make(np.zeros((), self.dtype), None, False)
        return _ops.where(Tensor._make(keep, None, False), self, zero)

    def tile(self, *reps: int | Sequence[int]) -> Tensor:
        """The whole tensor repeated ``reps[i]`` times along axis ``i``, as numpy's ``tile`` (and torch's):
        ``[1, 2].tile(2) == [1, 2, 1, 2]``. Fewer ``reps`` than axes repeat the last axes; more add
        leading axes. Built as a view, ``expand``-ed, then copied once by a reshape: its gradient sums
        the copies."""
        reps_t = arguments.shape_argument("tile", reps)
        for r in reps_t:
            arguments.count_argument("tile", "a repetition", r)
        ndim = max(len(reps_t), self.ndim)
        reps_t = (1,) * (ndim - len(reps_t)) + reps_t
        shape = (1,) * (ndim - self.ndim) + self.shape
        spread = self.reshape(tuple(n for size in shape for n in (1, size)))  # (1, s0, 1, s1, ...)
        copies = spread.expand(tuple(n for r, size in zip(reps_t, shape) for n in (r, size)))  # (r0, s0, r1, s1, ...)
        return copies.reshape(tuple(r * size for r, size in zip(reps_t, shape)))

    def repeat(self, *sizes: int | Sequence[int]) -> Tensor:
        """torch's ``Tensor.repeat``: the same as `tile` (``[1, 2].repeat(2) == [1, 2, 1, 2]``), except that
        ``sizes`` must cover every axis. Not numpy's ``np.repeat``, which repeats each entry in place."""
        sizes_t = arguments.shape_argument("repeat", sizes)
        if len(sizes_t) < self.ndim:
            raise ValueError(
                f"repeat: sizes {sizes_t} name {len(sizes_t)} axes, but the tensor has {self.ndim} (shape "
                f"{self.shape}); give one size per axis, or use tile, which fills in 1s"
            )
        for r in sizes_t:
            arguments.count_argument("repeat", "a repetition", r)
        return self.tile(sizes_t)

    def split(self, split_size_or_sections: int | Sequence[int], axis: int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``axis``, as torch's ``split``: an int is the size of each piece (the last may be
        smaller), a list the size of each (they must add up to the axis's length; 0 gives an empty piece).
        Each piece is a slice: its gradient goes back to where it came from."""
        a = arguments.normalize_axis("split", axis, self.ndim, self.shape)
        length = self.shape[a]
        if isinstance(split_size_or_sections, (list, tuple)):
            sizes = [arguments.count_argument("split", "a section size", n) for n in split_size_or_sections]
            if sum(sizes) != length:
                raise ValueError(
                    f"split: sections {list(split_size_or_sections)} add up to {sum(sizes)}, but axis {axis} of "
                    f"shape {self.shape} has length {length}"
                )
        else:
            size = arguments.count_argument("split", "split_size", split_size_or_sections, minimum=1)
            sizes = [min(size, length - start) for start in range(0, length, size)] or [0]
        return self._pieces(a, sizes)

    def chunk(self, chunks: int, axis: int = 0) -> tuple[Tensor, ...]:
        """``chunks`` pieces along ``axis``, as torch's ``chunk``: each of ``ceil(length / chunks)``
        entries, the last smaller, so there may be fewer than ``chunks`` (``chunk(6 entries, 4)`` gives 3
        of 2). An axis of length 0 gives ``chunks`` empty pieces."""
        a = arguments.normalize_axis("chunk", axis, self.ndim, self.shape)
        chunks = arguments.count_argument("chunk", "chunks", chunks, minimum=1)
        length = self.shape[a]
        if length == 0:
            return self._pieces(a, [0] * chunks)
        return self.split(-(-length // chunks), axis=a)

    def _pieces(self, axis: int, sizes: list[int]) -> tuple[Tensor, ...]:
        starts = np.cumsum([0, *sizes[:-1]]).tolist()
        before = (slice(None),) * axis
        return tuple(self[(*before, slice(start, start + n))] for start, n in zip(starts, sizes))


def _dtype_argument(dtype: Any, what: str) -> np.dtype:
    """``dtype`` as a supported np.dtype, or a TypeError naming ``what`` asked for it."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"{what}: {dtype!r} is not a dtype ({error})") from None
    _check_dtype(dtype, what)
    return dtype


def _to_array(data: Any, dtype: Any) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, Node):
        raise TypeError("Tensor: got a graph Node, not data")
    if data is None:
        raise TypeError("Tensor: data is None; pass a number, a (nested) list or an array")
    if dtype is not None:
        dtype = _dtype_argument(dtype, "Tensor")
    elif not isinstance(data, (np.ndarray, np.generic)):
        dtype = DEFAULT_DTYPE  # Python numbers and lists
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as error:
        raise TypeError(f"Tensor: cannot make an array from {type(data).__name__}: {error}") from None
    _check_dtype(array.dtype, "Tensor")
    return array


def as_tensor(value: Any, name: str = "argument") -> Tensor:
    """``value`` as a constant Tensor (a Tensor is returned unchanged)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, Node):
        raise TypeError(
            f"{name}: got a shape-only graph Node. Inside a vjp this means the input was not saved; "
            "add it to the primitive's save="
        )
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        return Tensor._make(_number(value, name), None, False)
    if isinstance(value, (np.ndarray, np.generic, list, tuple)):
        try:
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (ValueError, TypeError, OverflowError) as error:
            raise TypeError(f"{name}: cannot make an array from {type(value).__name__}: {error}") from None
        _check_dtype(array.dtype, name)
        return Tensor._make(array, None, False)
    raise TypeError(f"{name}: expected a Tensor, an array or a number, got {type(value).__name__}")


def _number(value: bool | int | float, name: str) -> np.ndarray:
    """A Python number on its own as a 0-d array: bool, int64 (numpy's default int) or float32."""
    if isinstance(value, float):
        return np.asarray(value, dtype=DEFAULT_DTYPE)
    try:
        return np.asarray(value, dtype=None if isinstance(value, bool) else np.int64)
    except OverflowError:
        raise ValueError(f"{name}: the number {value} does not fit in int64") from None


def lift(value: Any, like: Tensor, comparison: bool = False, name: str = "operand") -> Tensor:
    """The other operand of a binary operator as a Tensor, with numpy's rules for Python scalars.

    A Python number takes ``like``'s dtype when that loses nothing (a float into a float tensor, an
    int into an int tensor), so ``float32_tensor * 2.0`` stays float32, as in numpy. An int that
    does not fit is refused, except by a comparison (``uint8_tensor < 256``), which then compares in
    64 bits, as numpy does.
    """
    if type(value) is Tensor:
        return value
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic | Tensor):
        kind = like.data.dtype.kind
        if kind == "f" or (kind in "iu" and not isinstance(value, float)) or kind == "b" and isinstance(value, bool):
            dtype = like.data.dtype
        else:  # a float beside an integer tensor, an int beside a bool tensor: numpy's float64 or int64
            dtype = np.dtype(np.float64 if isinstance(value, float) else np.int64)
        try:
            return Tensor._make(np.asarray(value, dtype=dtype), None, False)
        except OverflowError:
            wide = np.asarray(value) if comparison and kind in "iu" else None  # int64, uint64 (object beyond)
            if wide is not None and wide.dtype.kind in "iu":
                return Tensor._make(wide, None, False)
        where = f"the tensor's dtype {dtype}" if dtype == like.dtype else f"{dtype} (beside a {like.dtype} tensor)"
        raise ValueError(f"the number {value} does not fit in {where}")
    if isinstance(value, float) and like.data.dtype.kind == "f":  # np.float64 is a float: weak, like Python's
        return Tensor._make(np.asarray(value, dtype=like.data.dtype), None, False)
    return as_tensor(value, name)


# The numpy ufuncs a tensor answers with a primitive (`Tensor.__array_ufunc__`).
_UFUNC_PRIMITIVES = {
    np.add: _ops.add, np.subtract: _ops.sub, np.multiply: _ops.mul, np.divide: _ops.div,
    np.power: _ops.power, np.negative: _ops.neg, np.matmul: _ops.matmul,
    np.exp: _ops.exp, np.log: _ops.log, np.sqrt: _ops.sqrt, np.square: _ops.square, np.tanh: _ops.tanh,
    np.absolute: _ops.absolute, np.sign: _ops.sign, np.maximum: _ops.maximum, np.minimum: _ops.minimum,
    np.sin: _ops.sin, np.cos: _ops.cos, np.log2: _ops.log2, np.expm1: _ops.expm1, np.floor: _ops.floor,
    np.ceil: _ops.ceil,
    np.less: _ops.less, np.less_equal: _ops.less_equal, np.greater: _ops.greater,
    np.greater_equal: _ops.greater_equal, np.equal: _ops.equal, np.not_equal: _ops.not_equal,
}  # fmt: skip

use_tensor_class(Tensor, as_tensor)  # primitives return Tensors (`autograd.primitive` never imports this module)
