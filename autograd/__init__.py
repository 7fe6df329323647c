"""autograd: a numpy Tensor with reverse-mode automatic differentiation.

    import numpy as np
    import autograd as ag

    x = ag.Tensor(np.random.randn(3, 4), requires_grad=True)
    y = (x.tanh() * 2).sum()
    y.backward()          # x.grad == 2 * (1 - tanh(x)^2)

Read it in this order: `autograd.ops` (every primitive, its forward beside its vjp),
`autograd.backward` (the walk that runs the vjps), `autograd.primitive` (how a call records the
graph). `Primitive` lets you add your own.
"""

from autograd import functional, graph, kernels, memory, ops
from autograd.backward import grad
from autograd.capture import Captured, CaptureError, capture
from autograd.creation import (
    arange,
    eye,
    full,
    full_like,
    ones,
    ones_like,
    randn,
    randn_like,
    zeros,
    zeros_like,
)
from autograd.functions import clip, concatenate, logsumexp, maximum, minimum, pad, stack, where
from autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck
from autograd.primitive import (
    AnomalyError,
    GraphReleasedError,
    Node,
    Primitive,
    current_scope,
    detect_anomaly,
    enable_grad,
    is_grad_enabled,
    no_grad,
    scope,
)
from autograd.tensor import Tensor

__all__ = [
    "AnomalyError",
    "CaptureError",
    "Captured",
    "GradcheckError",
    "GraphReleasedError",
    "Node",
    "Primitive",
    "Tensor",
    "arange",
    "capture",
    "clip",
    "concatenate",
    "current_scope",
    "detect_anomaly",
    "enable_grad",
    "eye",
    "full",
    "full_like",
    "functional",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "graph",
    "kernels",
    "is_grad_enabled",
    "logsumexp",
    "maximum",
    "memory",
    "minimum",
    "no_grad",
    "ones",
    "ones_like",
    "ops",
    "pad",
    "randn",
    "randn_like",
    "scope",
    "stack",
    "testing",
    "where",
    "zeros",
    "zeros_like",
]



def __getattr__(name: str):  # `ag.testing` imports hypothesis, so only load it when asked for
    if name == "testing":
        import importlib

        return importlib.import_module("autograd.testing")
    raise AttributeError(f"module 'autograd' has no attribute {name!r}")
