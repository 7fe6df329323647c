"""Activation functions, as torch's ``torch.nn.functional`` has them (``import autograd.functional as F``).

gelu, silu, leaky_relu and elu are compositions of the engine's ops, so their gradients (and second
derivatives) are derived. softplus is a primitive with its own vjp: the stable formula
``max(x, 0) + log(1 + e^-|x|)`` built from ops would have a kink at 0 (relu and abs), where softplus
has none. relu, sigmoid, tanh, softmax and log_softmax are the tensor's methods, as functions.

    F.gelu(x)                       # exact: x * Phi(x), Phi the standard normal CDF (torch's default)
    F.gelu(x, approximate="tanh")   # GPT-2's tanh approximation (the GPT of `tinygrad_lm` uses it)
    F.silu(x), F.softplus(x), F.elu(x), F.leaky_relu(x, 0.2)
"""

from __future__ import annotations

import math

import numpy as np

from autograd import ops
from autograd.tensor import Tensor

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU, ``x * Phi(x)`` with ``Phi`` the standard normal CDF, as torch's ``gelu``:

        approximate="none":  gelu(x) = x/2 * (1 + erf(x / sqrt(2)))
        approximate="tanh":  gelu(x) = x/2 * (1 + tanh(u)),  u = sqrt(2/pi) * (x + 0.044715 x^3)
                                     = x * sigmoid(2u)       since (1 + tanh(u)) / 2 = sigmoid(2u)

    The tanh form's second line is the same function with two fewer elementwise passes (forward and
    backward); it is GPT-2's, and `tinygrad_lm.functional.gelu` is this one.
    """
    if approximate == "tanh":
        two_u = x * (x.square() * (2 * _SQRT_2_OVER_PI * _GELU_CUBIC) + 2 * _SQRT_2_OVER_PI)  # 2u
        return x * two_u.sigmoid()
    if approximate == "none":
        return x * 0.5 * ((x * (1.0 / math.sqrt(2.0))).erf() + 1.0)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(x: Tensor) -> Tensor:
    """SiLU (swish): ``x * sigmoid(x)``."""
    return x * x.sigmoid()


def softplus(x: Tensor, beta: float = 1.0) -> Tensor:
    """``log(1 + e^(beta x)) / beta``, a smooth relu; its derivative is ``sigmoid(beta x)``. Computed as
    ``logaddexp(0, beta x)``, which never overflows, so torch's ``threshold`` (switching to ``x`` for
    large inputs) is not needed."""
    if beta == 1.0:
        return ops.softplus(x)
    return ops.softplus(x * beta) * (1.0 / beta)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``x`` where ``x > 0``, else ``negative_slope * x``. At 0 the gradient is ``negative_slope``, as
    torch's."""
    return ops.where(x > 0, x, x * negative_slope)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``x`` where ``x > 0``, else ``alpha * (e^x - 1)``. At 0 the gradient is ``alpha``, as torch's.

    The negative branch is computed on ``min(x, 0)`` (by `where`, not `minimum`, which would halve the
    gradient at 0): ``e^x`` of a large positive ``x`` would overflow, and although `where` discards
    that value, its gradient ``0 * inf`` would be NaN."""
    positive = x > 0
    negative_part = ops.where(positive, np.zeros((), x.dtype), x)
    return ops.where(positive, x, negative_part.expm1() * alpha)


def relu(x: Tensor) -> Tensor:
    """``max(x, 0)``; gradient 0 at 0."""
    return x.relu()


def sigmoid(x: Tensor) -> Tensor:
    """``1 / (1 + e^-x)``, without overflow."""
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``e^x / sum(e^x)`` along ``axis``."""
    return x.softmax(axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``x - logsumexp(x)`` along ``axis``."""
    return x.log_softmax(axis=axis)


__all__ = ["elu", "gelu", "leaky_relu", "log_softmax", "relu", "sigmoid", "silu", "softmax", "softplus", "tanh"]
