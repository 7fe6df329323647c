"""viz on a real GPT: module boxes per block, attention and MLP, parameter names, depth, backward, speed."""

import html
import re
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import viz
from tinygrad_lm import GPT, GPTConfig
from viz.graph import MODULE, OP, PARAM, build_graph

TOP_LEVEL = ["cross_entropy", "lm_head", "transformer.ln_f", "transformer.wpe", "transformer.wte"]  # (the loss too)


def gpt_loss(n_layer=2, n_embd=32, n_head=4, T=8, seed=0):
    model = GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=n_layer, n_head=n_head, n_embd=n_embd), seed=seed)
    idx = np.random.default_rng(seed).integers(0, 17, size=(2, T))
    _, loss = model(idx, np.roll(idx, -1, axis=1))
    return model, loss


@pytest.fixture(scope="module")
def gpt():
    return gpt_loss()


def test_every_block_attention_and_mlp_has_its_box(gpt):
    model, loss = gpt
    source = viz.to_dot(loss, max_nodes=None)
    boxes = set(re.findall(r'label="([\w.]+)" labeljust', source))
    for i in range(2):
        assert {f"transformer.h.{i}", f"transformer.h.{i}.attn", f"transformer.h.{i}.mlp"} <= boxes
        assert {f"transformer.h.{i}.attn.c_attn", f"transformer.h.{i}.ln_1"} <= boxes
    block = source[source.index('label="transformer.h.0"') : source.index('label="transformer.h.1"')]
    assert 'label="transformer.h.0.attn"' in block and 'label="transformer.h.0.mlp"' in block


def test_parameter_names_are_on_the_leaves(gpt):
    model, loss = gpt
    graph = build_graph(loss, max_nodes=None)
    leaves = {n.title for n in graph.nodes.values() if n.kind == PARAM}
    assert leaves == {name for name, _ in model.named_parameters()}
    c_attn = next(n for n in graph.nodes.values() if n.title == "transformer.h.1.attn.c_attn.weight")
    assert c_attn.scope == ("transformer.h.1", "transformer.h.1.attn", "transformer.h.1.attn.c_attn")
    assert c_attn.shape == (96, 32)


def test_depth_1_is_embeddings_blocks_and_head(gpt):
    model, loss = gpt
    graph = build_graph(loss, depth=1)
    modules = {n.title: n for n in graph.nodes.values() if n.kind == MODULE}
    assert sorted(modules) == sorted(TOP_LEVEL + ["transformer.h.0", "transformer.h.1"])
    sizes = dict((name, p.size) for name, p in model.named_parameters())
    block_params = sum(size for name, size in sizes.items() if name.startswith("transformer.h.0."))
    assert modules["transformer.h.0"].params == block_params
    assert modules["transformer.wte"].params == sizes["transformer.wte.weight"]
    assert modules["lm_head"].uses == ["transformer.wte.weight"]  # the tied unembedding
    assert modules["transformer.h.1"].shape == (2, 8, 32) and modules["lm_head"].shape == (2, 8, 17)
    assert all(n.scope == () for n in graph.nodes.values())  # nothing left inside a box
    assert [n.title for n in graph.nodes.values() if n.kind == OP] == ["add"]  # the embeddings' sum; the loss is named
    h0, h1 = modules["transformer.h.0"].id, modules["transformer.h.1"].id
    assert any(e.src == h0 and e.dst == h1 for e in graph.edges)


def test_depth_2_opens_the_blocks(gpt):
    _, loss = gpt
    graph = build_graph(loss, depth=2)
    modules = sorted(n.title for n in graph.nodes.values() if n.kind == MODULE)
    per_block = [f"transformer.h.{i}.{m}" for i in range(2) for m in ("attn", "ln_1", "ln_2", "mlp")]
    assert modules == sorted(TOP_LEVEL + per_block)
    adds = [n for n in graph.nodes.values() if n.title == "add" and n.scope == ("transformer.h.0",)]
    assert len(adds) == 2  # the two residual connections


def test_expand_zooms_into_one_attention(gpt):
    _, loss = gpt
    graph = build_graph(loss, depth=1, expand="transformer.h.0.attn")
    ops = {n.title for n in graph.nodes.values() if n.kind == OP and n.scope[:2] == ("transformer.h.0",
                                                                                        "transformer.h.0.attn")}
    assert "softmax" in ops and "matmul" in ops
    modules = {n.title for n in graph.nodes.values() if n.kind == MODULE}
    assert {"transformer.h.1", "transformer.h.0.mlp", "transformer.h.0.ln_1"} <= modules


def test_backward_at_depth_1_pairs_each_module_with_its_backward():
    _, loss = gpt_loss()
    graph = build_graph(loss, depth=1, backward=True)
    forward = {n.title: n.id for n in graph.nodes.values() if n.kind == MODULE and not n.backward}
    backward = {n.title: n.id for n in graph.nodes.values() if n.kind == MODULE and n.backward}
    assert set(backward) == set(forward)
    links = {(e.src, e.dst) for e in graph.edges if e.kind == "grad_of"}
    for name in ("transformer.h.0", "transformer.h.1", "transformer.ln_f"):
        assert (backward[name], forward[name]) in links
    assert backward["transformer.h.0"] in {e.dst for e in graph.edges if e.kind == "backward"}
    assert "backward of transformer.h.1" in viz.to_dot(loss, depth=1, backward=True)


def test_gradient_health_on_modules():
    model, loss = gpt_loss()
    graph = build_graph(loss, depth=1, grads=True)
    block = next(n for n in graph.nodes.values() if n.title == "transformer.h.0")
    loss.backward()
    expected = np.sqrt(sum(float((p.grad.data**2).sum()) for name, p in model.named_parameters()
                           if name.startswith("transformer.h.0.")))  # fmt: skip
    assert block.grad_norm == pytest.approx(expected, rel=1e-4)


def test_a_6_layer_gpt_renders_in_seconds(tmp_path):
    _, loss = gpt_loss(n_layer=6, n_embd=48, T=16)
    start = time.perf_counter()
    path = viz.render(loss, tmp_path / "gpt.svg", depth=1)
    depth_1 = time.perf_counter() - start
    start = time.perf_counter()
    full = viz.render(loss, tmp_path / "gpt_full.svg")  # the max_nodes guard collapses what does not fit
    guarded = time.perf_counter() - start
    assert depth_1 < 10 and guarded < 20
    svg = "{http://www.w3.org/2000/svg}"
    drawn = [g.find(f"{svg}title").text for g in ET.parse(path).getroot().iter(f"{svg}g") if g.get("class") == "node"]
    not_modules = [n for n in build_graph(loss, depth=1).nodes.values() if n.kind != MODULE]
    assert len(drawn) == 6 + 5 + len(not_modules) + 1  # blocks, top-level modules (the loss too), other ops, legend
    assert "max_nodes=300" in full.read_text()


def legend_rows(source):
    """(swatch fill, text) of each legend row of a DOT text."""
    legend = html.unescape(source[source.index("<b>legend</b>") :])
    return re.findall(r'<td bgcolor="(#[0-9a-f]{6})" color="#[0-9a-f]{6}" border="1" width="18"> </td>'
                      r'<td align="left" colspan="7">([^<]*)</td>', legend)  # fmt: skip


def test_the_loss_is_named_and_the_title_is_at_the_top(gpt):
    _, loss = gpt
    graph = build_graph(loss, max_nodes=None)
    scopes = {n.scope for n in graph.nodes.values() if n.title in ("log_softmax", "getitem", "sum")}
    assert ("cross_entropy",) in scopes
    source = viz.to_dot(loss, depth=1, title="one step")
    assert "labelloc=t" in source.split("\n\tnode")[0] and "one step" in source


def test_the_legend_explains_the_backwards_grad_and_const_boxes(gpt):
    _, loss = gpt
    rows = dict((text, fill) for fill, text in legend_rows(viz.to_dot(loss, backward=True, max_nodes=None)))
    assert any(text.startswith("grad: a gradient made from the loss's seed alone") for text in rows)
    assert "constant: input data, or a number or mask a vjp uses" in rows
    forward_only = dict((text, fill) for fill, text in legend_rows(viz.to_dot(loss, max_nodes=None)))
    assert "constant / input data" in forward_only


def test_gradient_health_colours_are_not_the_legends_kind_colours(gpt):
    from viz import colors

    _, loss = gpt
    rows = legend_rows(viz.to_dot(loss, depth=1, grad_health=True))
    kinds = {text: fill for fill, text in rows}
    assert kinds["op: output shape, dtype (fill: its gradient norm)"] == "#ffffff"
    assert kinds["module: params, ops, output (fill: its gradient norm)"] == "#ffffff"
    assert colors.FILLS["op"][0] not in kinds.values() and colors.FILLS["module"][0] not in kinds.values()
