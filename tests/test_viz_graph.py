"""viz: the drawn graph of small known expressions: nodes, edges, labels, module boxes, depth, backward."""

import re
import warnings

import numpy as np
import pytest

import autograd as ag
import viz
from autograd import Tensor
from viz import colors
from viz.graph import MODULE, OP, PARAM, SUMMARY, VALUE, build_graph
from viz.text import describe_attrs, describe_index


def dot_nodes(source: str) -> list[str]:
    """Ids of the nodes a DOT text declares (the legend too)."""
    return [n for n in re.findall(r"^\s*(\w+) \[", source, flags=re.M) if n not in ("graph", "node", "edge")]


def dot_edges(source: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*(\w+) -> (\w+)", source, flags=re.M)


def named(value, name, requires_grad=True):
    t = Tensor(np.array(value, dtype=np.float64), requires_grad=requires_grad)
    t.name = name
    return t


def neuron():
    """micrograd's neuron: o = tanh(x1 w1 + x2 w2 + b)."""
    x1, x2, w1, w2 = named(2.0, "x1"), named(0.0, "x2"), named(-3.0, "w1"), named(1.0, "w2")
    b = named(6.8813735870195432, "b")
    return (x1 * w1 + x2 * w2 + b).tanh(), (x1, x2, w1, w2, b)


# ---------------------------------------------------------------------------------------------------
# Small expressions: exact structure
# ---------------------------------------------------------------------------------------------------


def test_compact_style_has_one_node_per_tensor_input_and_per_op():
    o, _ = neuron()
    graph = build_graph(o, style="compact")
    kinds = sorted(n.kind for n in graph.nodes.values())
    assert kinds == [OP] * 5 + [PARAM] * 5  # x1 w1 x2 w2 b; mul mul add add tanh
    assert len(graph.edges) == 9  # 2 per binary op, 1 into tanh
    source = viz.to_dot(o, style="compact", legend=False)
    assert len(dot_nodes(source)) == 10 and len(dot_edges(source)) == 9


def test_records_style_is_micrograds_draw_dot():
    o, _ = neuron()
    source = viz.to_dot(o, style="records", values=True, grads=True, legend=False)
    assert len(dot_nodes(source)) == 15  # 5 leaves + 5 ops + 5 op results
    assert len(dot_edges(source)) == 14  # 9 inputs + 5 op -> result
    assert "data 0.7071" in source and "grad 1<" in source  # the output and its gradient
    assert ">x1<" in source and "grad -1.5" in source  # d o / d x1 = w1 (1 - o^2) = -1.5
    assert ">w2<" in source and "grad 0<" in source


def test_auto_style_uses_records_for_small_graphs_only():
    o, _ = neuron()
    assert build_graph(o).style == "records"
    x = Tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(30):
        y = y * 1.5
    assert build_graph(y.sum()).style == "compact"


def test_labels_show_op_shape_dtype_and_names():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    w = Tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)
    y = (x @ w).sum(axis=1)
    source = viz.to_dot(y, style="compact", names={"weights": w, "inputs": x})
    assert "<b>weights</b>" in source and "<b>inputs</b>" in source
    assert "(3, 4) float32" in source and "(2, 3) float32" in source and "(2, 4) float32" in source
    assert "<b>matmul</b>" in source and "<b>sum</b>" in source and "axis=1" in source


def test_names_may_map_tensors_to_names_and_name_intermediates():
    x = Tensor(np.ones(3), requires_grad=True)
    h = x.exp()
    y = h.sum()
    source = viz.to_dot(y, style="compact", names={x: "input", h: "hidden"})
    assert "<b>input</b>" in source and "<i>hidden</i>" in source
    with pytest.raises(TypeError, match="names must map"):
        viz.to_dot(y, names={"x": 3})


def test_number_constants_show_their_value_and_arrays_their_stats():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * 2.5).sum()
    source = viz.to_dot(y, style="compact", values=True)
    assert "<b>2.5</b>" in source
    assert "mean 2 std 0.8165 [1, 3]" in source  # x's statistics


def test_root_is_emphasised_and_legend_lists_what_is_drawn():
    o, _ = neuron()
    graph = build_graph(o, style="compact")
    roots = [n for n in graph.nodes.values() if n.is_root]
    assert len(roots) == 1 and roots[0].title == "tanh"
    source = viz.to_dot(o, style="compact")
    assert "legend" in dot_nodes(source) and "parameter (requires grad)" in source
    assert "module" not in source.split("legend [")[1]  # no module in this picture, so not in its legend


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_rankdir(rankdir):
    o, _ = neuron()
    assert f"rankdir={rankdir}" in viz.to_dot(o, rankdir=rankdir)
    with pytest.raises(ValueError, match="rankdir"):
        viz.to_dot(o, rankdir="up")


def test_draw_graph_returns_a_graphviz_digraph():
    import graphviz

    o, _ = neuron()
    drawing = viz.draw_graph(o)
    assert isinstance(drawing, graphviz.Digraph) and drawing.source == viz.to_dot(o)
    with pytest.raises(TypeError, match="Tensor"):
        viz.draw_graph(np.ones(3))


def test_op_attributes_are_described_briefly():
    assert describe_attrs("sum", {"axis": (1,), "keepdims": True}) == "axis=1 keepdims"
    assert describe_attrs("permute", {"axes": (0, 2, 1, 3)}) == "(0, 2, 1, 3)"
    assert describe_attrs("reshape", {"shape": (2, 3)}) == ""
    assert describe_index((slice(None), -1)) == "[:, -1]"
    assert describe_index((np.arange(10),)) == "[array(10,)]"


# ---------------------------------------------------------------------------------------------------
# Gradients: values, norms, health colours
# ---------------------------------------------------------------------------------------------------


def test_grads_are_computed_for_every_node_without_touching_dot_grad():
    o, leaves = neuron()
    graph = build_graph(o, grads=True, style="compact")
    assert graph.grads == "all"
    assert all(n.grad is not None for n in graph.nodes.values())
    assert all(leaf.grad is None for leaf in leaves)
    by_title = {n.title: n for n in graph.nodes.values()}
    assert by_title["x1"].grad == pytest.approx(-1.5) and by_title["w1"].grad == pytest.approx(1.0)


def test_after_a_plain_backward_only_leaf_grads_are_drawn():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = (x * 3.0).tanh().sum()
    y.backward()  # frees the graph
    graph = build_graph(y, grads=True, style="compact")
    assert graph.grads == "leaves" and any("leaves only" in note for note in graph.notes)
    norms = {n.title: n.grad_norm for n in graph.nodes.values()}
    assert norms["param"] == pytest.approx(np.linalg.norm(x.grad.data))
    assert norms["tanh"] is None
    assert "leaves only" in viz.to_dot(y, grads=True)


def test_gradient_health_colours_follow_the_log_norm():
    assert colors.health_color(1e-12) == colors.health_color(1e-8) == "#213e8c"
    assert colors.health_color(1e9) == "#bd0026"
    assert colors.health_color(float("nan")) == colors.NON_FINITE
    assert colors.health_color(0.0) == colors.health_color(1e-8)
    x = Tensor(np.array([1e-7, 1.0]), requires_grad=True)
    y = (x * 1e-6).sum()  # d y / d x = 1e-6: a vanishing gradient
    source = viz.to_dot(y, grad_health=True, style="compact")
    assert colors.health_color(np.sqrt(2) * 1e-6) in source
    assert "gradient norm" in source  # the scale in the legend


# ---------------------------------------------------------------------------------------------------
# Modules: nested boxes, depth, expand
# ---------------------------------------------------------------------------------------------------


def tiny_model(n_blocks=3, width=4):
    """Blocks of attn + mlp, each a scope with a named parameter, like a GPT's module scopes."""
    rng = np.random.default_rng(0)
    params = {}

    def param(name, shape):
        t = Tensor(rng.normal(size=shape), requires_grad=True)
        t.name = name
        params[name] = t
        return t

    x = Tensor(rng.normal(size=(2, width)))
    for i in range(n_blocks):
        block = f"h.{i}"
        with ag.scope(block):
            with ag.scope(f"{block}.attn"):
                a = (x @ param(f"{block}.attn.weight", (width, width))).softmax(axis=-1)
            x = x + a
            with ag.scope(f"{block}.mlp"):
                m = (x @ param(f"{block}.mlp.weight", (width, width))).relu()
            x = x + m
    return (x * x).mean(), params


def test_ops_are_boxed_in_nested_module_clusters():
    loss, _ = tiny_model(n_blocks=2)
    source = viz.to_dot(loss, max_nodes=None)
    labels = re.findall(r"subgraph cluster_\d+ \{\n[^\n]* label=\"([\w.]+)\"", source)
    assert sorted(labels) == ["h.0", "h.0.attn", "h.0.mlp", "h.1", "h.1.attn", "h.1.mlp"]
    block = source[source.index('label="h.0"') : source.index('label="h.1"')]
    assert 'label="h.0.attn"' in block and 'label="h.0.mlp"' in block  # boxes nested in the block's box
    graph = build_graph(loss)
    weight = next(n for n in graph.nodes.values() if n.title == "h.1.mlp.weight")
    assert weight.scope == ("h.1", "h.1.mlp")  # a parameter sits in its module


def test_depth_collapses_modules_into_one_node_each():
    loss, params = tiny_model(n_blocks=3)
    one = build_graph(loss, depth=1)
    modules = sorted(n.title for n in one.nodes.values() if n.kind == MODULE)
    assert modules == ["h.0", "h.1", "h.2"]
    ops = [n.title for n in one.nodes.values() if n.kind == OP]
    assert sorted(ops) == ["mean", "mul"]  # the loss, at the top level: (x * x).mean()
    block = next(n for n in one.nodes.values() if n.title == "h.0")
    assert block.params == 32 and block.shape == (2, 4) and block.ops == 6

    two = build_graph(loss, depth=2)
    modules = sorted(n.title for n in two.nodes.values() if n.kind == MODULE)
    assert modules == [f"h.{i}.{m}" for i in range(3) for m in ("attn", "mlp")]
    assert all(n.scope == (n.title.rsplit(".", 1)[0],) for n in two.nodes.values() if n.kind == MODULE)
    assert sum(1 for n in two.nodes.values() if n.title == "add") == 6  # residual adds stay in the blocks
    source = viz.to_dot(loss, depth=1)
    assert "16 params" not in source and "32 params" in source and "out (2, 4) float64" in source


def test_expand_opens_one_module_whatever_the_depth():
    loss, _ = tiny_model(n_blocks=3)
    graph = build_graph(loss, depth=1, expand="h.1.attn")
    titles = [n.title for n in graph.nodes.values()]
    assert "softmax" in titles and "h.1.attn.weight" in titles
    modules = {n.title: n for n in graph.nodes.values() if n.kind == MODULE}
    assert set(modules) == {"h.0", "h.2", "h.1.mlp"}  # the block around it is opened one level
    assert modules["h.1.mlp"].scope == ("h.1",)
    assert titles.count("add") == 2  # h.1's residual adds
    with pytest.raises(ValueError, match="no module named 'h.9'"):
        build_graph(loss, depth=1, expand="h.9")


def test_a_tensor_used_by_several_modules_sits_outside_them():
    shared = Tensor(np.ones(3), requires_grad=True)
    with ag.scope("a"):
        y = shared * 2.0
    with ag.scope("b"):
        z = shared * 3.0
    graph = build_graph((y + z).sum(), style="compact")
    leaf = next(n for n in graph.nodes.values() if n.kind == PARAM)
    assert leaf.scope == ()


def test_depth_must_be_positive():
    loss, _ = tiny_model(1)
    with pytest.raises(ValueError, match="depth"):
        build_graph(loss, depth=0)


# ---------------------------------------------------------------------------------------------------
# Backward
# ---------------------------------------------------------------------------------------------------


def test_backward_draws_the_gradient_ops_linked_to_their_forward_tensors():
    x = named(np.array([0.5, -1.0]), "x")
    with ag.scope("layer"):
        y = x.tanh()
    loss = y.sum()
    graph = build_graph(loss, backward=True, style="compact")
    backward_ops = [n for n in graph.nodes.values() if n.backward and n.kind == OP]
    assert {n.title for n in backward_ops} >= {"mul", "sub"}  # tanh's vjp: g * (1 - out * out)
    assert all(n.scope == ("layer",) for n in backward_ops)  # in the module of the op they differentiate
    links = [(e.src, e.dst) for e in graph.edges if e.kind == "grad_of"]
    forward_ids = {n.id for n in graph.nodes.values() if not n.backward}
    linked = {dst for _, dst in links}
    assert linked == {n.id for n in graph.nodes.values() if not n.backward and n.kind in (OP, PARAM)}
    assert all(src not in forward_ids for src, _ in links)
    x_node = next(n for n in graph.nodes.values() if n.title == "x")
    x_grad = next(src for src, dst in links if dst == x_node.id)
    assert graph.nodes[x_grad].title == "mul" and graph.nodes[x_grad].backward
    assert any(e.kind == "saved" for e in graph.edges)  # tanh's output, read by its vjp
    assert x.grad is None  # drawing computes gradients without touching .grad


def test_backward_edges_are_drawn_upward_beside_the_forward():
    x = named(np.array([0.5, -1.0]), "x")
    loss = (x.tanh() * 2.0).sum()
    source = viz.to_dot(loss, backward=True)
    assert 'dir=back' in source and colors.GRAD_EDGE in source
    assert "is the gradient of" in source and "backward (gradient) op" in source


def test_backward_of_collapsed_modules_are_separate_nodes():
    loss, _ = tiny_model(n_blocks=2)
    graph = build_graph(loss, backward=True, depth=1)
    modules = sorted((n.title, n.backward) for n in graph.nodes.values() if n.kind == MODULE)
    assert modules == [("h.0", False), ("h.0", True), ("h.1", False), ("h.1", True)]
    by_key = {(n.title, n.backward): n.id for n in graph.nodes.values() if n.kind == MODULE}
    links = {(e.src, e.dst) for e in graph.edges if e.kind == "grad_of"}
    assert (by_key[("h.0", True)], by_key[("h.0", False)]) in links
    assert "backward of h.0" in viz.to_dot(loss, backward=True, depth=1)


def test_backward_after_the_graph_was_freed_draws_the_forward_and_says_why():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = x.exp().sum()
    loss.backward()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = build_graph(loss, backward=True)
    assert any("freed" in str(w.message) for w in caught)
    assert not any(n.backward for n in graph.nodes.values())
    assert any("retain_graph" in note for note in graph.notes)


def test_records_style_with_backward_keeps_records_for_tensors():
    o, _ = neuron()
    graph = build_graph(o, backward=True, style="records")
    gradients = {n.id for n in graph.nodes.values() if n.kind == VALUE and n.backward}
    assert gradients
    into_gradients = [e for e in graph.edges if e.dst in gradients]
    assert into_gradients and all(e.kind == "backward" for e in into_gradients)  # all drawn the backward way


# ---------------------------------------------------------------------------------------------------
# Big graphs stay readable
# ---------------------------------------------------------------------------------------------------


def test_max_nodes_collapses_to_the_deepest_depth_that_fits():
    loss, _ = tiny_model(n_blocks=6)
    full = build_graph(loss, max_nodes=None)
    assert len(full.nodes) > 40
    graph = build_graph(loss, max_nodes=40)
    assert len(graph.nodes) <= 40 and graph.depth == 2
    assert any("max_nodes=40" in note for note in graph.notes)
    graph = build_graph(loss, max_nodes=12)
    assert len(graph.nodes) <= 12 and graph.depth == 1


def test_max_nodes_summarises_a_long_unscoped_graph():
    x = Tensor(np.ones(4), requires_grad=True)
    y = x
    for i in range(500):
        y = (y * 1.001).tanh() if i % 2 else y + 0.5
    graph = build_graph(y.sum(), max_nodes=50)
    assert len(graph.nodes) == 50
    summary = next(n for n in graph.nodes.values() if n.kind == SUMMARY)
    assert summary.ops > 400 and summary.op_counts["add"] > 200
    assert any(n.is_root for n in graph.nodes.values())  # the output is kept
    source = viz.to_dot(y.sum(), max_nodes=50)
    assert "more nodes" in source and "max_nodes=50" in source
