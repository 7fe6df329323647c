"""viz: rendering for real (SVG, PNG) with the Graphviz program this machine has, and without one."""

import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import autograd as ag
import viz
import viz.program
import viz.rendering
from autograd import Tensor

SVG = "{http://www.w3.org/2000/svg}"


LEAVES = []  # a leaf's name is read from its tensor, so the tensors must stay alive


def expression():
    a = Tensor(np.array(2.0), requires_grad=True)
    b = Tensor(np.array(-3.0), requires_grad=True)
    a.name, b.name = "a", "b"
    LEAVES[:] = [a, b]
    with ag.scope("block"):
        y = (a * b + 10.0).tanh()
    return y


def svg_nodes(path) -> dict[str, str]:
    """{node id: all text drawn in it} from an SVG written by dot."""
    root = ET.parse(path).getroot()
    nodes = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node":
            title = group.find(f"{SVG}title").text
            nodes[title] = " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
    return nodes


def test_a_renderer_is_found():
    assert viz.program.find_program() is not None  # CI has graphviz-pure, installed with the project


def test_render_svg_has_every_node_and_its_labels(tmp_path):
    y = expression()
    path = viz.render(y, tmp_path / "graph.svg", values=True, grads=True)
    assert path == tmp_path / "graph.svg"
    nodes = svg_nodes(path)
    source = viz.to_dot(y, values=True, grads=True)
    assert set(nodes) == {"n0", "n1", "n2", "n2v", "n3", "n4", "n4v", "n5", "n5v", "legend"}
    assert len(nodes) == source.count(" [label=")
    assert "a" in nodes["n0"].split() and "data 2" in nodes["n0"] and "grad" in nodes["n0"]
    assert nodes["n3"].strip() == "10"  # the constant
    assert "tanh" in nodes["n5"]
    clusters = [g for g in ET.parse(path).getroot().iter(f"{SVG}g") if g.get("class") == "cluster"]
    assert len(clusters) == 1 and "block" in " ".join(t.text or "" for t in clusters[0].iter(f"{SVG}text"))


def test_render_png_and_dot(tmp_path):
    y = expression()
    png = viz.render(y, tmp_path / "graph.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = viz.render(y, tmp_path / "graph", format="dot")
    assert dot.name == "graph.dot" and dot.read_text().startswith("digraph")
    svg = viz.render(viz.draw_graph(y), tmp_path / "from_digraph")  # a Digraph; the suffix is added
    assert svg.name == "from_digraph.svg" and svg_nodes(svg)
    with pytest.raises(ValueError, match="format"):
        viz.render(y, tmp_path / "graph.pdf", format="pdf")


def test_the_returned_digraph_renders_without_a_system_dot():
    drawing = viz.draw_graph(expression())
    svg = drawing.pipe(format="svg", encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "tanh" in svg
    assert "image/svg+xml" in drawing._repr_mimebundle_()  # what Jupyter calls to show it


@pytest.fixture
def no_system_graphviz(monkeypatch):
    """A machine without Graphviz's programs (``dot``, ``unflatten``): only graphviz-pure draws."""
    real = viz.program.shutil.which
    monkeypatch.setattr(viz.program.shutil, "which", lambda name: None if name in ("dot", "unflatten") else real(name))
    assert viz.program.find_program() is not None and "graphviz-pure" in viz.program.find_program()[0]


def picture_kind(path):
    data = path.read_bytes()
    return "png" if data.startswith(b"\x89PNG") else "svg" if b"<svg" in data[:400] else "other"


def test_the_graphviz_idioms_work_without_a_system_dot(tmp_path, no_system_graphviz, monkeypatch):
    """What users of the graphviz package write, on what viz returns: render(), view(), Source."""
    monkeypatch.chdir(tmp_path)
    drawing = viz.draw_graph(expression())
    assert drawing.render("out", format="png") == "out.png"  # graphviz's names: the DOT as 'out', the picture
    assert picture_kind(tmp_path / "out.png") == "png" and (tmp_path / "out").read_text() == drawing.source
    assert drawing.render(outfile="graph.svg") == "graph.svg" and picture_kind(tmp_path / "graph.svg") == "svg"
    assert "tanh" in (tmp_path / "graph.svg").read_text()
    assert drawing.render("clean", format="svg", cleanup=True) == "clean.svg" and not (tmp_path / "clean").exists()
    with pytest.raises(FileExistsError):
        drawing.render(outfile="graph.svg", raise_if_result_exists=True)

    opened = []
    monkeypatch.setattr(type(drawing), "_view", lambda self, path, format, quiet: opened.append((path, format)))  # noqa: A006
    assert drawing.format == "svg"  # (viz's drawings default to SVG; graphviz's own default, pdf, needs dot)
    assert drawing.view("shown") == "shown.svg" and opened == [("shown.svg", "svg")]
    assert picture_kind(tmp_path / "shown.svg") == "svg"

    source = viz.Source(viz.to_dot(expression()))  # instead of graphviz.Source(...), which needs dot
    assert source.render("source", format="png") == "source.png" and picture_kind(tmp_path / "source.png") == "png"
    assert "image/svg+xml" in source._repr_mimebundle_()  # shown inline in Jupyter
    with pytest.warns(UserWarning, match="unflatten program is not installed"):
        flat = drawing.unflatten(stagger=3)
    assert isinstance(flat, viz.Source) and flat.source == drawing.source
    assert flat.render("flat", format="svg") == "flat.svg" and picture_kind(tmp_path / "flat.svg") == "svg"


def test_a_layout_graphviz_pure_cannot_draw_says_what_to_install(tmp_path, no_system_graphviz):
    drawing = viz.draw_graph(expression())
    drawing.engine = "neato"
    with pytest.raises(viz.RenderError, match="needs a system Graphviz"):
        drawing.render(tmp_path / "out", format="svg")


def test_without_any_program_the_dot_file_is_written_and_the_error_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.rendering, "find_program", lambda: None)
    with pytest.raises(viz.RenderError) as error:
        viz.render(expression(), tmp_path / "graph.svg")
    dot_file = tmp_path / "graph.dot"
    assert dot_file.read_text().startswith("digraph")
    message = str(error.value)
    assert str(dot_file) in message and "pip install graphviz-pure" in message
    assert f"graphviz-pure -Tsvg {dot_file} -o {tmp_path / 'graph.svg'}" in message and "dot -Tsvg" in message


def test_program_search_order(monkeypatch, tmp_path):
    monkeypatch.setattr(viz.program.shutil, "which", lambda name: "/usr/bin/dot" if name == "dot" else None)
    assert viz.program.find_program() == ["/usr/bin/dot"]  # a system dot first
    fake_python = tmp_path / "bin" / "python"
    fake_python.parent.mkdir()
    (tmp_path / "bin" / "graphviz-pure").write_text("")
    monkeypatch.setattr(viz.program.sys, "executable", str(fake_python))
    monkeypatch.setattr(viz.program.shutil, "which", lambda name: None)
    assert viz.program.find_program() == [str(tmp_path / "bin" / "graphviz-pure")]  # then the venv's
    (tmp_path / "bin" / "graphviz-pure").unlink()
    assert viz.program.find_program() is None


def test_a_big_graph_renders_in_seconds(tmp_path):
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(4, 16)))
    for i in range(12):
        with ag.scope(f"layer{i}"), ag.scope(f"layer{i}.inner"):
            w = Tensor(rng.normal(size=(16, 16)) * 0.3, requires_grad=True)
            x = (x @ w).tanh() + x * 0.5
    loss = (x * x).mean()
    start = time.perf_counter()
    path = viz.render(loss, tmp_path / "big.svg", backward=True, max_nodes=150)
    assert time.perf_counter() - start < 20
    assert 1 < len(svg_nodes(path)) <= 151  # + the legend
