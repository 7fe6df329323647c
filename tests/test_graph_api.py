"""The public graph API tools read: walk, node fields, scopes."""

import numpy as np
import pytest

import autograd as ag
from autograd import Tensor


def test_walk_gives_ops_inputs_shapes_values_and_grads():
    a = Tensor(np.array(2.0), requires_grad=True)
    b = Tensor(np.array(-3.0), requires_grad=True)
    a.name, b.name = "a", "b"
    loss = (a * b + 10.0).tanh()
    loss.backward(retain_graph=True)
    nodes = ag.graph.walk(loss)
    assert [n.op_name for n in nodes] == ["leaf", "leaf", "mul", "const", "add", "tanh"]
    mul = nodes[2]
    assert mul.inputs == (a.node, b.node) and mul.shape == () and mul.dtype == np.float64
    assert mul.value == -6.0  # scalars keep their value even when the tensor is gone
    assert nodes[0].name == "a" and nodes[0].is_leaf and nodes[0].grad is a.grad
    assert nodes[3].value == 10.0 and not nodes[3].requires_grad
    assert nodes[-1].tensor is loss


def test_attrs_are_public():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    node = x.sum(axis=1, keepdims=True).node
    assert node.attrs == {"axis": (1,), "keepdims": True}


def test_scopes_nest_like_a_name_stack():
    x = Tensor(np.ones(3), requires_grad=True)
    with ag.scope("block"):
        h = x * 2.0
        with ag.scope("attn"):
            assert ag.current_scope() == ("block", "attn")
            y = h.exp()
    z = y.sum()
    assert h.node.scope == ("block",) and y.node.scope == ("block", "attn") and z.node.scope == ()
    with pytest.raises(ValueError, match="non-empty string"), ag.scope(""):
        pass


def test_scope_is_restored_after_an_error():
    with pytest.raises(KeyError), ag.scope("oops"):
        raise KeyError("x")
    assert ag.current_scope() == ()


def test_backward_graph_nodes_point_at_the_forward_node_and_its_scope():
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    with ag.scope("layer"):
        y = x.tanh()
    loss = y.sum()
    grads = ag.graph.gradients(loss, create_graph=True)
    gx = grads[x.node]
    backward_nodes = [n for n in ag.graph.walk(gx) if n.vjp_of is not None]
    assert any(n.vjp_of is y.node for n in backward_nodes)
    assert all(n.scope == n.vjp_of.scope for n in backward_nodes)
    np.testing.assert_allclose(gx.data, 1 - np.tanh(x.data) ** 2)
