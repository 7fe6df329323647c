"""detect_anomaly names the first op producing NaN/Inf, forward or backward, and where it was written."""

import numpy as np
import pytest

import autograd as ag
from autograd import Tensor


def test_forward_nan_names_the_op_and_the_line():
    x = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    with ag.detect_anomaly(), pytest.raises(ag.AnomalyError) as info, np.errstate(invalid="ignore"):
        y = x * 2.0
        z = y.log()  # the culprit  # noqa: F841
    message = str(info.value)
    assert "forward of 'log'" in message and "1 NaN" in message
    assert "test_anomaly.py" in message and "z = y.log()  # the culprit" in message


def test_backward_inf_names_the_op_and_where_it_was_created():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with ag.detect_anomaly():
        y = x.sqrt()  # finite forward, infinite derivative at 0
        loss = y.sum()
        with pytest.raises(ag.AnomalyError) as info, np.errstate(divide="ignore"):
            loss.backward()
    message = str(info.value)
    assert "backward of 'sqrt'" in message and "Inf" in message
    assert "y = x.sqrt()  # finite forward" in message


def test_backward_anomaly_without_recorded_site_says_how_to_get_it():
    x = Tensor(np.array([0.0]), requires_grad=True)
    y = x.sqrt().sum()
    hint = "run the forward pass inside detect_anomaly"
    with ag.detect_anomaly(), pytest.raises(ag.AnomalyError, match=hint), np.errstate(divide="ignore"):
        y.backward()


def test_no_anomaly_no_error_and_mode_is_restored():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with ag.detect_anomaly():
        x.log().sum().backward()
    with np.errstate(invalid="ignore"):
        assert np.isnan((Tensor(np.array([-1.0])).log()).data).all()  # off again: no error
