"""docs/tutorial.ipynb runs, top to bottom, in a fresh Jupyter kernel, and its graphs are SVG drawn
without a system Graphviz (the kernel's PATH has no ``dot``)."""

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import make_tutorial  # noqa: E402


def test_the_committed_notebook_is_what_make_tutorial_writes():
    committed = nbformat.read(make_tutorial.NOTEBOOK, as_version=4)
    built = make_tutorial.build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells], (
        "docs/tutorial.ipynb differs from the cells in docs/make_tutorial.py: run make tutorial"
    )
    shown = [o for c in committed.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    assert len(shown) == 4, "the committed notebook was not run (three graphs and a plot): run make tutorial"


def test_the_notebook_runs_in_a_fresh_kernel_and_draws_svg_without_a_system_dot(tmp_path, monkeypatch):
    without_dot = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not shutil.which("dot", path=d)]
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), *without_dot]))
    notebook = make_tutorial.execute(nbformat.read(make_tutorial.NOTEBOOK, as_version=4), tmp_path, timeout=300)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    graphs = [o.data["image/svg+xml"] for o in outputs if "data" in o and "image/svg+xml" in o.data]
    assert len(graphs) == 3 and all("<svg" in g and "</svg>" in g for g in graphs)
    assert "grad 0.5" in graphs[0] and "transformer.h.0.attn" in graphs[2]  # the neuron's, the attention's
    assert any("data" in o and "image/png" in o.data for o in outputs)  # the loss curve
    printed = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "matches central differences on 30 generated shape pairs" in printed


@pytest.mark.parametrize("name", ["nbclient", "ipykernel", "nbformat"])
def test_the_notebook_tools_come_with_the_dev_extras(name):
    text = (ROOT / "pyproject.toml").read_text()
    assert f'"{name}' in text
