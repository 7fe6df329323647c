"""Check the engine's gradients against central differences, in float64.

For ``out = fn(*inputs)`` we fix a random cotangent ``v`` and compare, for each floating input
``x``, the engine's ``d<v, out>/dx``, computed both ways the vjps run (a plain backward, on arrays,
and ``create_graph=True``, on Tensors), with the numerical derivative

    (<v, fn(x + eps*u)> - <v, fn(x - eps*u)>) / (2 eps)

along ``u``: every unit vector (``mode="full"``: the whole gradient, entry by entry) or a few
random directions (``mode="fast"``: one number per direction, as JAX's ``check_grads`` does;
cheap and, over many draws, as strong). ``mode="auto"`` uses "full" for small inputs.

The default tolerances are what float64 central differences with ``eps=1e-6`` can resolve on
well-conditioned inputs (rounding ~1e-16 / eps, truncation ~eps^2): tight enough that a vjp off by
a constant factor of 1 + 1e-5 fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from autograd.backward import grad
from autograd.primitive import enable_grad, no_grad
from autograd.tensor import Tensor

FULL_CHECK_MAX_ELEMENTS = 512


class GradcheckError(AssertionError):
    """The engine's gradient and the numerical one disagree; the message has a per-input report."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Any,
    *,
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-6,
    mode: str = "auto",
    n_directions: int = 3,
    seed: int = 0,
) -> bool:
    """True if ``fn``'s gradients match central differences; else raise `GradcheckError`.

    ``inputs`` is a tensor/array or a sequence of them. Floating-point ones are copied to
    float64 leaves that require grad and checked; the others (indices, masks) are passed as they
    are. ``fn`` must compute in float64 for the comparison to be meaningful.
    """
    if mode not in ("auto", "full", "fast"):
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'fast', got {mode!r}")
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"gradcheck: {name} must be a number, got {type(value).__name__} {value!r}")
        if name == "eps" and not (np.isfinite(eps) and eps > 0):
            raise ValueError(
                f"gradcheck: eps must be a step > 0 (central differences divide by 2 eps; 1e-6 suits float64), "
                f"got {eps!r}"
            )
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"gradcheck: {name} must be a finite number >= 0, got {value!r}")
    if isinstance(n_directions, bool) or not isinstance(n_directions, (int, np.integer)) or n_directions < 1:
        raise ValueError(f"gradcheck: n_directions must be a positive integer, got {n_directions!r}")
    args, checked = _prepare(inputs)
    if not checked:
        raise ValueError("gradcheck: no floating-point input to check")
    rng = np.random.default_rng(seed)
    out = _call(fn, args)
    if not out.requires_grad:
        raise GradcheckError("gradcheck: the output does not depend on any input (requires_grad=False)")
    v = rng.standard_normal(out.shape)
    wrt = [args[i] for i in checked]
    analytic = {  # the same vjps, run on arrays (a plain backward) and on Tensors (create_graph=True)
        "": grad(out, wrt, grad_outputs=Tensor(v), allow_unused=True),
        " with create_graph=True": grad(_call(fn, args), wrt, grad_outputs=Tensor(v), create_graph=True,
                                        allow_unused=True),
    }  # fmt: skip

    def projected(values: list[np.ndarray]) -> float:
        trial = list(args)
        for i, value in zip(checked, values):
            trial[i] = Tensor(value)
        with no_grad():
            return float(np.sum(v * _call(fn, trial).data))

    base = [args[i].data for i in checked]
    total = sum(b.size for b in base)
    full = mode == "full" or (mode == "auto" and total <= FULL_CHECK_MAX_ELEMENTS)
    lines, failed = [], False
    for k, i in enumerate(checked):
        def at(x: np.ndarray, k: int = k) -> float:
            return projected(base[:k] + [x] + base[k + 1 :])

        numerical = _numerical_gradient(at, base[k], eps) if full else None
        for how, grads in analytic.items():
            g = grads[k].data
            if full:
                ok, line = _compare_full(g, numerical, atol, rtol)
            else:
                directions = np.random.default_rng(seed + 7919 * k)  # the same directions for both modes
                ok, line = _check_directions(at, base[k], g, eps, atol, rtol, directions, n_directions)
            failed |= not ok
            lines.append(f"  input {i}, shape {base[k].shape}{how}: {line}")
    if failed:
        header = (
            f"gradcheck failed: the engine's gradient disagrees with central differences "
            f"(mode={'full' if full else 'fast'}, eps={eps}, atol={atol}, rtol={rtol})"
        )
        if out.dtype != np.float64:
            header += f"\n  note: the output is {out.dtype}; gradcheck needs float64 all the way through"
        raise GradcheckError("\n".join([header, *lines]))
    return True


def gradgradcheck(fn: Callable[..., Tensor], inputs: Any, *, seed: int = 0, **tolerances: Any) -> bool:
    """Check first and second derivatives: `gradcheck` of ``fn`` itself, then gradcheck of
    ``x -> <d<v, fn(x)>/dx, w>`` for fixed random v, w (the derivative of the recorded gradient)."""
    gradcheck(fn, inputs, seed=seed, **tolerances)
    args, checked = _prepare(inputs)
    rng = np.random.default_rng(seed + 1)
    out = _call(fn, args)
    v = Tensor(rng.standard_normal(out.shape))
    ws = [Tensor(rng.standard_normal(args[i].shape)) for i in checked]

    def first_derivative(*xs: Tensor) -> Tensor:
        with enable_grad():  # the numerical pass calls us under no_grad with plain tensors
            xs = tuple(Tensor(x.data, requires_grad=True) if i in checked and not x.requires_grad else x
                       for i, x in enumerate(xs))
            wrt = [xs[i] for i in checked]
            grads = grad(fn(*xs), wrt, grad_outputs=v, create_graph=True, allow_unused=True)
            return sum(((g * w).sum() for g, w in zip(grads, ws)), Tensor(np.float64(0.0)))

    return gradcheck(first_derivative, args, seed=seed, **tolerances)


def _prepare(inputs: Any) -> tuple[list[Tensor], list[int]]:
    if isinstance(inputs, (Tensor, np.ndarray)) or not isinstance(inputs, Sequence):
        inputs = [inputs]
    args, checked = [], []
    for i, x in enumerate(inputs):
        array = x.data if isinstance(x, Tensor) else np.asarray(x)
        if array.dtype.kind == "f":
            args.append(Tensor(array.astype(np.float64), requires_grad=True))
            checked.append(i)
        else:
            args.append(x if isinstance(x, Tensor) else Tensor(array))
    return args, checked


def _call(fn: Callable[..., Tensor], args: list[Tensor]) -> Tensor:
    out = fn(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if out.dtype.kind != "f":
        raise TypeError(f"gradcheck: fn must return a floating-point tensor, got dtype {out.dtype}")
    return out


def _close(analytic: np.ndarray, numerical: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    return np.abs(analytic - numerical) <= atol + rtol * np.abs(numerical)


def _numerical_gradient(at: Callable, x: np.ndarray, eps: float) -> np.ndarray:
    """Central differences, entry by entry: (f(x + eps e_j) - f(x - eps e_j)) / (2 eps)."""
    numerical = np.zeros(x.shape)
    flat = numerical.reshape(-1)
    for j in range(x.size):
        step = np.zeros(x.size)
        step[j] = eps
        step = step.reshape(x.shape)
        flat[j] = (at(x + step) - at(x - step)) / (2 * eps)
    return numerical


def _compare_full(analytic: np.ndarray, numerical: np.ndarray, atol: float, rtol: float) -> tuple[bool, str]:
    if numerical.size == 0:
        return True, "ok (empty)"
    error = np.abs(analytic - numerical)
    worst = np.unravel_index(int(np.argmax(error)), numerical.shape)
    close = _close(analytic, numerical, atol, rtol)
    if close.all():
        return True, f"ok (max error {error.max():.2e})"
    return False, (
        f"{int((~close).sum())} of {numerical.size} entries differ; worst at index {tuple(int(w) for w in worst)}: "
        f"analytic {analytic[worst]:.6g}, numerical {numerical[worst]:.6g}"
    )


def _check_directions(
    at: Callable, x: np.ndarray, analytic: np.ndarray, eps: float, atol: float, rtol: float, rng, n: int
):
    worst = (0.0, 0.0, 0.0)
    ok = True
    for _ in range(n):
        u = rng.standard_normal(x.shape)
        u /= max(np.linalg.norm(u), 1e-12)
        numerical = (at(x + eps * u) - at(x - eps * u)) / (2 * eps)
        directional = float(np.sum(analytic * u))
        error = abs(directional - numerical)
        if error > worst[0]:
            worst = (error, directional, numerical)
        ok &= bool(_close(np.float64(directional), np.float64(numerical), atol, rtol))
    if ok:
        return True, f"ok ({n} random directions, max error {worst[0]:.2e})"
    return False, f"directional derivative: analytic {worst[1]:.6g}, numerical {worst[2]:.6g} (error {worst[0]:.2e})"
