"""Optimizers (SGD, AdamW) with torch's updates and parameter groups, gradient clipping, and the
warmup + cosine learning-rate schedule.

    opt = AdamW([{"params": matrices, "weight_decay": 0.1},
                 {"params": biases_and_norms, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
    loss.backward(); clip_grad_norm(model.parameters(), 1.0); opt.step(); opt.zero_grad()

Updates are done in place on each parameter's numpy array (its dtype kept), outside the graph.
A parameter whose ``.grad`` is None is skipped (its state does not advance), as in torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from autograd import Tensor


class Optimizer:
    """Base class: parameter groups (lists of dicts, as torch) and per-parameter state.

    ``param_groups[i]`` holds ``"params"`` (a list of Tensors) and the hyper-parameters, taken from
    the group's dict or else from the optimizer's defaults. ``state[p]`` is a dict of arrays and
    numbers for parameter ``p``.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[Mapping[str, Any]], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], Mapping) else [{"params": params}]
        seen: set[int] = set()
        for group in groups:
            self.add_param_group(group, seen)

    def add_param_group(self, group: Mapping[str, Any], _seen: set[int] | None = None) -> None:
        name = type(self).__name__
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"{name}: a parameter group must be a dict with a 'params' list, got {group!r}")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{name}: unknown hyper-parameters {sorted(unknown)} (known: {sorted(self.defaults)})")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = _seen if _seen is not None else {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameters must be Tensors, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"{name}: parameter {p.name or tuple(p.shape)} does not require grad")
            if id(p) in seen:
                raise ValueError(f"{name}: parameter {p.name or tuple(p.shape)} appears in more than one group")
            seen.add(id(p))
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}, "params": params}
        self._check_hyperparameters(full)
        self.param_groups.append(full)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0.0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {group['lr']}")

    def zero_grad(self) -> None:
        """Set every parameter's gradient to None (torch's ``set_to_none=True``)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        raise NotImplementedError

    # -- saving and restoring ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {name: array or number}}, "param_groups": [{hyper-parameters, "params": [index]}]}``

        torch's layout: parameters are numbered in group order; only plain arrays, numbers, lists
        and strings appear (the arrays are the live state, not copies), so checkpoints can store it.
        """
        index, groups, state = 0, [], {}
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                if p in self.state:
                    state[index] = dict(self.state[p])
                ids.append(index)
                index += 1
            groups.append({**{k: _plain(v) for k, v in group.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict` (from an optimizer of the same
        type over parameters of the same shapes, in the same groups). Everything is checked
        before anything changes; a mismatch raises ValueError naming it."""
        self._apply(self._plan_load(state_dict))

    def _plan_load(self, state_dict: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[Tensor, dict[str, Any]]]:
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(self.param_groups):
            count = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else type(saved_groups).__name__
            raise ValueError(
                f"{name}.load_state_dict: {count} saved parameter groups, this optimizer has {len(self.param_groups)}"
            )
        params_by_index: dict[int, Tensor] = {}
        new_groups = []
        for g, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise ValueError(f"{name}.load_state_dict: group {g} is not a dict with 'params'")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {g} has {len(saved['params'])} saved parameters, "
                    f"this optimizer's has {len(group['params'])}"
                )
            keys = set(saved) - {"params"}
            if keys != set(self.defaults):
                raise ValueError(
                    f"{name}.load_state_dict: group {g} has hyper-parameters {sorted(keys)}, expected "
                    f"{sorted(self.defaults)} (was it saved by another kind of optimizer?)"
                )
            for i, p in zip(saved["params"], group["params"]):
                params_by_index[int(i)] = p
            restored = {k: _restore(saved[k], self.defaults[k]) for k in keys}
            self._check_hyperparameters({**restored, "params": group["params"]})
            new_groups.append({**restored, "params": group["params"]})
        saved_state = state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise ValueError(f"{name}.load_state_dict: 'state' must be a dict")
        new_state: dict[Tensor, dict[str, Any]] = {}
        for i, entry in saved_state.items():
            p = params_by_index.get(int(i))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {i}, which no group has")
            new_state[p] = self._check_state(entry, p, int(i))
        return new_groups, new_state

    def _apply(self, plan: tuple[list[dict[str, Any]], dict[Tensor, dict[str, Any]]]) -> None:
        self.param_groups, self.state = plan

    def _check_state(self, entry: Any, p: Tensor, i: int) -> dict[str, Any]:
        """Validate one parameter's saved state; return it with arrays copied into p's dtype."""
        name = type(self).__name__
        expected = self.state_keys
        if not isinstance(entry, Mapping) or set(entry) != set(expected):
            got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
            raise ValueError(f"{name}.load_state_dict: state of parameter {i} has {got}, expected {sorted(expected)}")
        out: dict[str, Any] = {}
        for key, kind in expected.items():
            value = entry[key]
            if kind == "array":
                array = np.asarray(value)
                if array.shape != p.shape or array.dtype.kind != "f":
                    raise ValueError(
                        f"{name}.load_state_dict: state {key!r} of parameter {i} ({p.name or 'unnamed'}) has "
                        f"shape {array.shape} and dtype {array.dtype}, expected shape {p.shape}, floats"
                    )
                out[key] = np.array(array, dtype=p.dtype, copy=True)
            else:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                    raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter {i} must be an int >= 0")
                out[key] = int(value)
        return out

    state_keys: dict[str, str] = {}  # per-parameter state: name -> "array" or "int"


def _plain(value: Any) -> Any:
    """Hyper-parameters as plain Python values (tuples become lists, numpy scalars numbers)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _restore(value: Any, default: Any) -> Any:
    """A saved hyper-parameter back in the type of its default (lists back to tuples)."""
    if isinstance(default, tuple):
        return tuple(value)
    return value


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``:

    d = g + weight_decay * p
    buf = d                         (first step)
    buf = momentum * buf + (1 - dampening) * d
    d = d + momentum * buf if nesterov else buf
    p = p - lr * d
    """

    state_keys = {"momentum_buffer": "array"}

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[Mapping[str, Any]],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        super()._check_hyperparameters(group)
        if not group["momentum"] >= 0.0:
            raise ValueError(f"SGD: momentum must be >= 0, got {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening 0")

    def step(self) -> None:
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.data
                if weight_decay:
                    d = d + weight_decay * p.data
                if momentum:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = np.array(d, dtype=p.dtype, copy=True)
                    else:
                        buf *= momentum
                        buf += (1.0 - dampening) * d
                    d = d + momentum * buf if nesterov else buf
                p.data -= (lr * d).astype(p.dtype, copy=False)


# A group of at most this many numbers is updated as one flat array (a dozen numpy calls in all).
# Bigger groups go one parameter at a time: each parameter's arrays stay in the CPU cache across the
# update's dozen passes, which the flat arrays of a big model do not (PERFORMANCE.md has the figures).
FLAT_MAX_SIZE = 1 << 20


class AdamW(Optimizer):
    """Adam with decoupled weight decay, exactly ``torch.optim.AdamW``'s update (per parameter,
    with its own step count ``t``):

        p = p * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    state_keys = {"step": "int", "exp_avg": "array", "exp_avg_sq": "array"}

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[Mapping[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        # Per group: its parameters' ids, and the _FlatGroup its moments live in; see _flat_state.
        self._flats: dict[int, tuple[tuple[int, ...], _FlatGroup]] = {}

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        super()._check_hyperparameters(group)
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamW: betas must be two numbers in [0, 1), got {betas}")
        if not group["eps"] >= 0.0 or not group["weight_decay"] >= 0.0:
            raise ValueError(f"AdamW: eps and weight_decay must be >= 0, got {group['eps']}, {group['weight_decay']}")
        group["betas"] = tuple(betas)

    def step(self) -> None:
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            flat = self._flat_state(index, params) if params else None
            if flat is not None:
                self._update_flat(group, params, flat)
                continue
            for p in params:
                state = self.state.get(p)
                if state is None:
                    zeros = np.zeros_like
                    state = self.state[p] = {"step": 0, "exp_avg": zeros(p.data), "exp_avg_sq": zeros(p.data)}
                state["step"] += 1
                scratch = np.empty_like(p.data)  # every temporary lives here: one allocation
                self._update(group, state["step"], p.data, p.grad.data, state["exp_avg"], state["exp_avg_sq"], scratch)

    @staticmethod
    def _update(
        group: dict[str, Any], t: int, data: np.ndarray | None, g: np.ndarray, m: np.ndarray, v: np.ndarray,
        scratch: np.ndarray,
    ) -> None:  # fmt: skip
        """The update of the class docstring, in place; ``scratch`` receives the step ``data`` loses."""
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        m *= beta1  # m = beta1 m + (1 - beta1) g
        np.multiply(g, 1.0 - beta1, out=scratch)
        m += scratch
        v *= beta2  # v = beta2 v + (1 - beta2) g^2
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - beta2
        v += scratch
        np.sqrt(v, out=scratch)  # denominator: sqrt(v) / sqrt(1 - beta2^t) + eps
        scratch *= 1.0 / math.sqrt(1.0 - beta2**t)
        scratch += eps
        np.divide(m, scratch, out=scratch)
        scratch *= lr / (1.0 - beta1**t)  # step size: lr / (1 - beta1^t)
        if data is not None:
            if weight_decay:
                data *= 1.0 - lr * weight_decay
            data -= scratch

    def _update_flat(self, group: dict[str, Any], params: list[Tensor], flat: _FlatGroup) -> None:
        """One update of the whole group: a dozen numpy calls over the concatenated parameters
        instead of a dozen per parameter (the same arithmetic, so the same bits)."""
        np.concatenate([p.grad.data.reshape(-1) for p in params], out=flat.grad)
        t = flat.states[0]["step"] + 1
        self._update(group, t, None, flat.grad, flat.exp_avg, flat.exp_avg_sq, flat.step)
        decay = 1.0 - group["lr"] * group["weight_decay"]
        for p, state, step in zip(params, flat.states, flat.steps):
            state["step"] = t
            if group["weight_decay"]:
                p.data *= decay
            p.data -= step

    def _flat_state(self, index: int, params: list[Tensor]) -> _FlatGroup | None:
        """The group's moments as two flat arrays of which every parameter's state holds a view, or
        None when the group is not updated as one (mixed dtypes of parameters or gradients, unequal
        step counts, or more than `FLAT_MAX_SIZE` numbers).

        Built on the first step (zeros) or after `load_state_dict` (copied in); reused while every
        state array is still a view of them."""
        ids = tuple(map(id, params))
        cached = self._flats.get(index)  # (ids, flat group)
        if cached is not None and cached[0] == ids and cached[1].still_holds(self.state, params):
            return cached[1]
        if any(p.grad.dtype != p.dtype for p in params):  # a gradient set by hand in another dtype
            return None
        states = [self.state.get(p) for p in params]
        dtype = params[0].dtype
        if any(p.dtype != dtype for p in params) or sum(p.size for p in params) > FLAT_MAX_SIZE:
            return None
        fresh = all(s is None for s in states)
        if not fresh and (any(s is None for s in states) or any(s["step"] != states[0]["step"] for s in states)):
            return None
        flat = _FlatGroup(params, dtype)
        for p, s, m_view, v_view in zip(params, states, flat.exp_avg_views, flat.exp_avg_sq_views):
            if fresh:
                self.state[p] = {"step": 0, "exp_avg": m_view, "exp_avg_sq": v_view}
            else:
                m_view[...], v_view[...] = s["exp_avg"], s["exp_avg_sq"]
                s["exp_avg"], s["exp_avg_sq"] = m_view, v_view
        flat.states = [self.state[p] for p in params]
        self._flats[index] = (ids, flat)
        return flat


class _FlatGroup:
    """One parameter group's AdamW moments as flat arrays, with the buffers and views an update
    needs made once: the concatenated gradients, the step, and each parameter's share of them."""

    def __init__(self, params: list[Tensor], dtype: np.dtype) -> None:
        bounds = [0]
        for p in params:
            bounds.append(bounds[-1] + p.size)
        n = bounds[-1]
        self.exp_avg, self.exp_avg_sq = np.zeros(n, dtype=dtype), np.zeros(n, dtype=dtype)
        self.grad, self.step = np.empty(n, dtype=dtype), np.empty(n, dtype=dtype)
        spans = list(zip(params, bounds, bounds[1:]))
        self.exp_avg_views = [self.exp_avg[a:b].reshape(p.shape) for p, a, b in spans]
        self.exp_avg_sq_views = [self.exp_avg_sq[a:b].reshape(p.shape) for p, a, b in spans]
        self.steps = [self.step[a:b].reshape(p.shape) for p, a, b in spans]
        self.states: list[dict[str, Any]] = []
        self.dtype = dtype

    def still_holds(self, state: dict, params: list[Tensor]) -> bool:
        """Whether the next update can be one flat update: the same state dicts holding these views,
        one step count, and gradients of the parameters' dtype."""
        t = self.states[0]["step"]
        dtype = self.dtype
        for p, s, m, v in zip(params, self.states, self.exp_avg_views, self.exp_avg_sq_views):
            if state.get(p) is not s or s["exp_avg"] is not m or s["exp_avg_sq"] is not v or s["step"] != t:
                return False
            if p.grad.dtype != dtype or p.dtype != dtype:
                return False
        return True


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``; return the
    norm before clipping. As torch: ``g *= min(1, max_norm / (norm + 1e-6))``."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float(np.vdot(g.data, g.data)) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g.data *= coef
    return total


def warmup_cosine_lr(step: int, max_lr: float, warmup_steps: int, decay_steps: int, min_lr: float = 0.0) -> float:
    """nanoGPT's schedule: a linear warmup, then a cosine decay to ``min_lr``, then ``min_lr``:

        step < warmup:              max_lr * (step + 1) / (warmup + 1)
        warmup <= step <= decay:    min_lr + (max_lr - min_lr) * (1 + cos(pi * r)) / 2,
                                    r = (step - warmup) / (decay - warmup)
        step > decay:               min_lr

    Its length is its own (``decay_steps``), not the run's, so a resumed run follows the same
    curve. Set it with ``for group in opt.param_groups: group["lr"] = warmup_cosine_lr(...)``.
    """
    if step < 0 or warmup_steps < 0 or decay_steps < warmup_steps:
        raise ValueError(
            f"warmup_cosine_lr: need step >= 0 and 0 <= warmup_steps <= decay_steps, "
            f"got step={step}, warmup_steps={warmup_steps}, decay_steps={decay_steps}"
        )
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step > decay_steps or decay_steps == warmup_steps:
        return min_lr
    ratio = (step - warmup_steps) / (decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)
