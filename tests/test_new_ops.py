"""The ops users reach for (issue 17): values against numpy, gradients against central differences.

Each differentiable op has a `gradcheck` property over generated shapes (with broadcasting for clip's
bounds), in float64 with `ag.gradcheck`'s default tolerances, on inputs kept away from the op's kinks;
the kinks themselves are tested separately, with the exact gradient expected there. Ops with a second
derivative also get `gradgradcheck` (linear ones inside a square, so that their vjp runs on Tensors).
"""

import numpy as np
import pytest

import autograd as ag
from autograd import Tensor

AxisError = np.exceptions.AxisError

# ---------------------------------------------------------------------------------------------------
# An axis out of range is numpy's AxisError, a ValueError and an IndexError
# ---------------------------------------------------------------------------------------------------

AXIS_CALLS = {
    "sum": lambda x: x.sum(axis=2),
    "mean": lambda x: x.mean(axis=(0, -3)),
    "max": lambda x: x.max(axis=5),
    "var": lambda x: x.var(axis=-3),
    "softmax": lambda x: x.softmax(axis=2),
    "log_softmax": lambda x: x.log_softmax(axis=-3),
    "squeeze": lambda x: x.squeeze(2),
    "unsqueeze": lambda x: x.unsqueeze(4),
    "transpose": lambda x: x.transpose(0, 2),
    "permute": lambda x: x.permute(0, 2),
    "concatenate": lambda x: ag.concatenate([x, x], axis=2),
    "stack": lambda x: ag.stack([x, x], axis=-4),
}


@pytest.mark.parametrize("name", AXIS_CALLS)
def test_axis_out_of_range_is_numpys_axis_error(name):
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(AxisError, match=rf"{name}: axis -?\d is out of range"):
        AXIS_CALLS[name](x)
    with pytest.raises(ValueError):  # numpy's AxisError is both, so either `except` catches it
        AXIS_CALLS[name](x)
    with pytest.raises(IndexError):
        AXIS_CALLS[name](x)
