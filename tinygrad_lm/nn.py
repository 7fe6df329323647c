"""Modules: parameters and submodules found from attributes, with torch's (and nanoGPT's) names.

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.c_fc = Linear(8, 32)        # a submodule: its weight is named "c_fc.weight"
            self.c_proj = Linear(32, 8)

        def forward(self, x):
            return self.c_proj(gelu(self.c_fc(x)))

- A `Tensor` that requires grad, assigned to an attribute, is a parameter; a `Module` is a
  submodule; `ModuleList` items are named by index (``h.0``, ``h.1``, ...).
- Every module knows its full dotted name (``transformer.h.0.attn``), kept up to date whenever
  something is attached anywhere in its tree; each parameter's ``.name`` is its dotted state-dict
  name (a shared one: its first), so graph drawings can label leaves with it.
- Calling a module runs ``forward`` inside ``autograd.scope(<its full name>)``: every op recorded
  inside carries the names of the enclosing modules, outermost first, e.g.
  ``("transformer.h.0", "transformer.h.0.attn", "transformer.h.0.attn.c_attn")``. The root
  module (name ``""``) pushes no scope.
- A parameter shared by two modules (weight tying) is listed once by `named_parameters`, under the
  first name found, and under every name by `state_dict`, as torch does.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

import autograd as ag
from autograd import Tensor
from tinygrad_lm import functional as F  # noqa: N812 (torch users know it as F)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def parameter(array: np.ndarray, dtype: Any = np.float32) -> Tensor:
    """A trainable leaf tensor: ``array`` converted to ``dtype``, with ``requires_grad=True``."""
    return Tensor(np.asarray(array, dtype=dtype), requires_grad=True)


class LoadResult(NamedTuple):
    """What `Module.load_state_dict(strict=False)` skipped (both empty after a strict load)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class: subclasses set parameters and submodules as attributes and define ``forward``."""

    training: bool

    def __init__(self) -> None:
        state = self.__dict__
        state["_parameters"] = {}  # attribute name -> Tensor, in assignment order
        state["_modules"] = {}  # attribute name -> Module, in assignment order
        state["_name"] = ""  # full dotted name, "" for a root
        state["_parent"] = None  # weakref to the module this one is attached to
        state["training"] = True
        state["_version"] = 0  # counts the changes to this module and the modules below it


    # -- registration ----------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        parameters: dict[str, Tensor] | None = self.__dict__.get("_parameters")
        if parameters is None:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        modules: dict[str, Module] = self.__dict__["_modules"]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
            value = ModuleList(value)  # a plain list of modules is registered like torch's nn.ModuleList
        old = modules.get(name)
        object.__setattr__(self, name, value)
        self._changed()
        if isinstance(value, Module):
            parameters.pop(name, None)
            modules[name] = value  # a replacement keeps its place in the order
            value.__dict__["_parent"] = weakref.ref(self)
        elif isinstance(value, Tensor) and value.requires_grad:
            modules.pop(name, None)
            parameters[name] = value
        else:
            parameters.pop(name, None)
            modules.pop(name, None)
        if old is not None and old is not value:
            old._detach_from(self)
        if isinstance(value, (Module, Tensor)) or old is not None:
            self._root()._rename()

    def __delattr__(self, name: str) -> None:
        self._changed()
        self._parameters.pop(name, None)
        old = self._modules.pop(name, None)
        object.__delattr__(self, name)
        if old is not None:
            old._detach_from(self)

    def _changed(self) -> None:
        """Count a change (an attribute set or deleted, a mode switched) in this module and every
        module above it: a compiled model's traces are keyed on its ``_version``, so an edited model is
        traced again."""
        module: Module | None = self
        while module is not None:
            module.__dict__["_version"] += 1
            parent = module.__dict__["_parent"]
            module = parent() if parent is not None else None

    def _root(self) -> Module:
        module = self
        while module._parent is not None and module._parent() is not None:
            module = module._parent()
        return module

    def _detach_from(self, parent: Module) -> None:
        """This module was removed from ``parent``: it becomes a root of its own again."""
        if self._parent is not None and self._parent() is parent:
            self.__dict__["_parent"] = None
            self._rename()

    def _rename(self) -> None:
        """Name every module below this root by its dotted path, and every parameter by its first
        dotted name in `named_parameters` order (so a tied weight keeps one consistent name)."""
        for name, module in self.named_modules():
            module.__dict__["_name"] = name
        for name, p in self.named_parameters():
            p.name = name

    @property
    def full_name(self) -> str:
        """The dotted name from the root (``transformer.h.0.attn``); ``""`` for the root itself."""
        return self._name

    # -- calling ---------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self._name
        if not name:
            return self.forward(*args, **kwargs)
        with ag.scope(name):
            return self.forward(*args, **kwargs)

    # -- walking the tree ------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> list[tuple[str, Module]]:
        """``(dotted name relative to this module, module)`` for this module and every one below it,
        parents before children, in assignment order (a shared module once)."""
        found: list[tuple[str, Module]] = []
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            found.append((name, module))
            children = [(_join(name, key), child) for key, child in module._modules.items()]
            stack.extend(reversed(children))
        return found

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True) -> list[tuple[str, Tensor]]:
        """``(dotted name, parameter)`` pairs; a shared (tied) parameter once, under its first name,
        unless ``remove_duplicate=False``."""
        found: list[tuple[str, Tensor]] = []
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for key, p in module._parameters.items():
                if remove_duplicate:
                    if id(p) in seen:
                        continue
                    seen.add(id(p))
                found.append((_join(module_name, key), p))
        return found

    def parameters(self) -> list[Tensor]:
        """Every parameter once (tied weights once), in `named_parameters` order."""
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def named_generators(self) -> list[tuple[str, np.random.Generator]]:
        """``(module name, generator)`` for every random stream the modules own (dropout masks),
        each generator once, so checkpoints can save and restore them."""
        found: list[tuple[str, np.random.Generator]] = []
        seen: set[int] = set()
        for name, module in self.named_modules():
            generator = getattr(module, "generator", None)
            if isinstance(generator, np.random.Generator) and id(generator) not in seen:
                seen.add(id(generator))
                found.append((name, generator))
        return found

    # -- modes and dtypes ------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active) for this module and all below it; returns ``self``."""
        for module in self.modules():
            if module.training != bool(mode):  # a training loop calls train() every step: only a switch counts
                module.__dict__["training"] = bool(mode)
                module._changed()
        return self

    def eval(self) -> Module:
        """Evaluation mode (dropout off); returns ``self``."""
        return self.train(False)

    @contextmanager
    def evaluating(self) -> Iterator[Module]:
        """``with model.evaluating():`` eval mode inside, the previous mode restored after (also on errors)."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``.grad = None``), as torch's ``set_to_none=True``."""
        for p in self.parameters():
            p.grad = None

    def to(self, dtype: Any) -> Module:
        """Convert every parameter (and gradient) to the floating dtype ``dtype`` in place; returns ``self``.

        ``model.to(np.float64)`` is how exact gradient checks are run.
        """
        try:
            dtype = np.dtype(dtype)
        except TypeError as error:
            raise TypeError(f"to: {dtype!r} is not a dtype ({error})") from None
        if dtype.kind != "f":
            raise TypeError(f"to: parameters must be floating point, got dtype {dtype}")
        for p in self.parameters():
            if p.dtype == dtype:
                continue
            p.data = p.data.astype(dtype)
            if p.grad is not None:
                p.grad = Tensor(p.grad.data.astype(dtype))
            p.requires_grad_(True)  # forget the leaf's graph node, which recorded the old dtype
        return self

    # -- state dicts -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``{dotted name: array}`` for every parameter under every name (tied weights under each of
        their names, the same array), in registration order, as torch and nanoGPT.

        The arrays are the parameters' own (not copies), as in torch: copy them to keep a snapshot.
        """
        return {name: p.data for name, p in self.named_parameters(remove_duplicate=False)}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> LoadResult:
        """Copy arrays into the parameters (converted to each parameter's dtype).

        Every key and shape is checked before anything is copied, and all problems are reported in
        one `ValueError` (missing keys, unexpected keys, wrong shapes, non-numeric arrays); on error
        the module is untouched. With ``strict=False`` missing and unexpected keys are allowed and
        returned. A tied parameter (``transformer.wte.weight`` / ``lm_head.weight``) needs only one
        of its names; if several are given they must hold equal values.
        """
        plan, result = self._plan_load(state_dict, strict)
        for p, array in plan:
            np.copyto(p.data, array, casting="unsafe")
        return result

    def _plan_load(
        self, state_dict: Mapping[str, Any], strict: bool
    ) -> tuple[list[tuple[Tensor, np.ndarray]], LoadResult]:
        """Validate ``state_dict`` against this module: the (parameter, array) copies to make, or raise."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        names_of: dict[int, list[str]] = {}
        tensor_of: dict[int, Tensor] = {}
        for name, p in self.named_parameters(remove_duplicate=False):
            names_of.setdefault(id(p), []).append(name)
            tensor_of[id(p)] = p
        known = {name for names in names_of.values() for name in names}
        missing, bad_shape, bad_value = [], [], []
        plan: list[tuple[Tensor, np.ndarray]] = []
        for key, names in names_of.items():
            p = tensor_of[key]
            given = [name for name in names if name in state_dict]
            if not given:
                missing.append(names[0])
                continue
            arrays = []
            for name in given:
                value = state_dict[name]
                try:
                    array = np.asarray(value.data if isinstance(value, Tensor) else value)
                except Exception as error:  # noqa: BLE001 (anything that is not array-like)
                    bad_value.append(f"{name}: not an array ({type(value).__name__}: {error})")
                    continue
                if array.dtype.kind not in "fiu":
                    bad_value.append(f"{name}: dtype {array.dtype} is not numeric")
                elif array.shape != p.shape:
                    bad_shape.append(f"{name}: got {array.shape}, expected {p.shape}")
                else:
                    arrays.append((name, array))
            if len(arrays) == len(given):
                first_name, first = arrays[0]
                for name, other in arrays[1:]:
                    if other is not first and not np.array_equal(other, first):
                        bad_value.append(f"{name} and {first_name} are tied (one parameter) but hold different values")
                plan.append((p, first))
        unexpected = [str(key) for key in state_dict if key not in known]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if bad_shape:
            problems.append(f"wrong shapes: {'; '.join(bad_shape)}")
        if bad_value:
            problems.append(f"bad values: {'; '.join(bad_value)}")
        if problems:
            raise ValueError(
                f"load_state_dict: the state dict does not fit this {type(self).__name__} (nothing was loaded):\n  "
                + "\n  ".join(problems)
            )
        return plan, LoadResult(missing, unexpected)

    # -- printing --------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """What goes between the parentheses of this module's line in `repr` (sizes, options)."""
        return ""

    def __repr__(self) -> str:
        return self._repr_lines(top=True)

    def _repr_lines(self, top: bool = False) -> str:
        count = f"{self.num_parameters():,} parameters"
        extra = self.extra_repr()
        if not self._modules:
            return f"{type(self).__name__}({extra})  # {count}"
        lines = [f"{type(self).__name__}(  # {count}"] + ([f"  {extra}"] if extra else [])
        for key, child in self._modules.items():
            body = child._repr_lines().replace("\n", "\n  ")
            lines.append(f"  ({key}): {body}")
        lines.append(")")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------------


class ModuleList(Module):
    """A list of modules, named by index (``h.0``, ``h.1``, ...)."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: items must be Modules, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, index: int) -> Module:
        n = len(self._modules)
        if not -n <= index < n:
            raise IndexError(f"ModuleList index {index} is out of range for {n} modules")
        return self._modules[str(index % n)]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))


class ModuleDict(Module):
    """Named submodules, reachable as attributes (``transformer.wte``) or items (``transformer["wte"]``)."""

    def __init__(self, modules: Mapping[str, Module] | None = None) -> None:
        super().__init__()
        for key, module in (modules or {}).items():
            if not isinstance(module, Module):
                raise TypeError(f"ModuleDict: {key!r} is a {type(module).__name__}, not a Module")
            setattr(self, key, module)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def keys(self) -> list[str]:
        return list(self._modules)

    def items(self) -> list[tuple[str, Module]]:
        return list(self._modules.items())

    def values(self) -> list[Module]:
        return list(self._modules.values())


# ---------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


_SKIPPING_INIT = False


@contextmanager
def skip_init() -> Iterator[None]:
    """Inside, new `Linear` and `Embedding` weights start as zeros instead of random draws: for a
    model whose weights are loaded right after (`GPT.from_pretrained`), as torch's ``skip_init``.
    Drawing GPT-2's 124M normal numbers (in float64, then converted) takes seconds and a gigabyte,
    all of it overwritten at once; zeros cost nothing until written. The random streams are not
    advanced."""
    global _SKIPPING_INIT
    previous, _SKIPPING_INIT = _SKIPPING_INIT, True
    try:
        yield
    finally:
        _SKIPPING_INIT = previous


def _normal(rng: np.random.Generator | None, std: float, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """normal(0, std) numbers of ``shape`` from ``rng`` (zeros of ``dtype`` inside `skip_init`)."""
    return np.zeros(shape, dtype) if _SKIPPING_INIT else _rng(rng).normal(0.0, std, shape)


class Linear(Module):
    """``y = x W^T + b``, ``W`` of shape (out_features, in_features), initialised normal(0, std)
    (GPT-2's 0.02 by default) from ``rng``; ``b`` zeros."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        std: float = 0.02,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = parameter(_normal(rng, std, (out_features, in_features), dtype), dtype)
        self.bias = parameter(np.zeros(out_features), dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``; ``forward(ids)`` looks rows up.

    ``ids`` is an integer array (any shape), or a slice of consecutive rows (a GPT's positions
    ``0 .. T-1``). The lookup is the engine's index: by integer array its backward scatter-adds
    into the rows used; by slice it is a view, whose backward writes into those rows (no scatter).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        std: float = 0.02,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = parameter(_normal(rng, std, (num_embeddings, embedding_dim), dtype), dtype)

    def forward(self, ids: Any) -> Tensor:
        return self.weight[ids]  # (*ids.shape, embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """LayerNorm over the last axis (eps 1e-5), weight ones and optional bias zeros: see
    `functional.layer_norm`."""

    def __init__(self, ndim: int, bias: bool = True, eps: float = F.LAYER_NORM_EPS, dtype: Any = np.float32) -> None:
        super().__init__()
        self.ndim, self.eps = ndim, eps
        self.weight = parameter(np.ones(ndim), dtype)
        self.bias = parameter(np.zeros(ndim), dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.ndim}, eps={self.eps}, bias={self.bias is not None}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode, identity in eval mode.

    Masks are drawn from ``generator`` (an ``np.random.Generator``, shared by all the dropouts of a
    model and saved in checkpoints), so training is reproducible.
    """

    def __init__(self, p: float = 0.0, generator: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.generator = _rng(generator)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.generator, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
