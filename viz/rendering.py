"""`render`: draw a graph into a file, with whichever Graphviz program this machine has."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import graphviz

from autograd import Tensor
from viz.draw import draw_graph
from viz.program import FORMATS, RenderError, find_program, how_to_render, run_program


def render(
    root: Tensor | graphviz.Digraph | str,
    path: str | Path,
    format: str | None = None,  # noqa: A002 (the graphviz package's name for it)
    *,
    dpi: float | None = None,
    **options: Any,
) -> Path:
    """Draw ``root``'s graph (see `viz.draw_graph` for ``options``) into ``path``; return the file.

    ``root`` may also be a drawn `graphviz.Digraph` or DOT text. ``format`` is "svg", "png" or "dot"
    (DOT text only); by default the path's suffix decides, else "svg" (the suffix is added).
    ``dpi``: the resolution of a PNG (Graphviz's default is 96).

    Rendering uses a system ``dot`` if installed, else the ``graphviz-pure`` program (installed with
    this project). With neither, the DOT text is written next to ``path`` (``.dot``) and
    `viz.RenderError` says how to render it.
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    if format is None:
        format = suffix if suffix in (*FORMATS, "dot") else "svg"  # noqa: A001
    if format not in (*FORMATS, "dot"):
        raise ValueError(f"viz.render: format must be 'svg', 'png' or 'dot', got {format!r}")
    if suffix != format:
        path = path.with_name(path.name + "." + format)
    if isinstance(root, str):
        source = root
    elif isinstance(root, graphviz.Digraph):
        source = root.source
    else:
        source = draw_graph(root, **options).source
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "dot":
        path.write_text(source, encoding="utf-8")
        return path
    if find_program() is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(source, encoding="utf-8")
        message = how_to_render(dot_path, format)
        print(message, file=sys.stderr)
        raise RenderError(message)
    path.write_bytes(run_program(source, format, dpi))
    return path
