# examples/test_gradient_properties.py: a pytest file (run it with `pytest examples/`; `make test` does)
from hypothesis import given
from hypothesis import strategies as st

import autograd as ag
from autograd.testing import arrays, broadcastable_shapes, shape_and_axis


@given(shapes=broadcastable_shapes(2), data=st.data())
def test_mul(shapes, data):
    x, y = data.draw(arrays(shapes[0])), data.draw(arrays(shapes[1]))
    assert ag.gradcheck(lambda a, b: a * b, [x, y])


@given(shape_axis=shape_and_axis(), data=st.data())
def test_max(shape_axis, data):
    shape, axis = shape_axis
    x = data.draw(arrays(shape, distinct=True))  # no ties: max is differentiable there
    assert ag.gradcheck(lambda t: t.max(axis=axis), [x])
