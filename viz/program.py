"""Which program turns DOT text into a picture, and running it.

The `graphviz` Python package only writes DOT text; the layout and drawing are done by a ``dot``
program, which a fresh machine lacks. We use, in this order:

1. a system ``dot`` (Graphviz) on ``PATH``, when one is installed;
2. ``graphviz-pure`` (PyPI package of the same name, a dependency of this project: a static build
   of Graphviz's dot layout with SVG and PNG output), found next to the running Python (the
   venv's ``bin/``) or on ``PATH``;
3. nothing: `RenderError` says how to get one, and `viz.render` still writes the ``.dot`` file.

`Drawing` is the `graphviz.Digraph` that `viz.draw_graph` returns: the same object, except that
``pipe()`` (and so its display in Jupyter) falls back to ``graphviz-pure`` when there is no ``dot``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import graphviz

FORMATS = ("svg", "png")  # what both programs can write
_TIMEOUT = 120  # seconds


class RenderError(RuntimeError):
    """No program to render DOT with, or the program failed."""


def find_program() -> list[str] | None:
    """The command that renders DOT: ``["dot"]``, ``["/path/to/graphviz-pure"]``, or None."""
    dot = shutil.which("dot")
    if dot:
        return [dot]
    beside_python = Path(sys.executable).parent / ("graphviz-pure.exe" if os.name == "nt" else "graphviz-pure")
    if beside_python.is_file():
        return [str(beside_python)]
    pure = shutil.which("graphviz-pure")
    return [pure] if pure else None


def how_to_render(dot_path: str | Path, fmt: str = "svg") -> str:
    """What to install and run to turn ``dot_path`` into a picture."""
    out = Path(dot_path).with_suffix("." + fmt)
    return (
        f"no Graphviz program found to render {dot_path}: install one, then run it on the file:\n"
        f"  pip install graphviz-pure   then   graphviz-pure -T{fmt} {dot_path} -o {out}\n"
        f"  or a system Graphviz (apt install graphviz, brew install graphviz)   then   dot -T{fmt} {dot_path} -o {out}"
    )


def run_program(source: str, fmt: str = "svg", dpi: float | None = None) -> bytes:
    """Render DOT text to ``fmt`` ("svg" or "png", at ``dpi`` dots per inch) and return the file's bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"viz: format must be one of {', '.join(FORMATS)}, got {fmt!r} (or write the DOT text)")
    command = find_program()
    if command is None:
        raise RenderError(how_to_render("graph.dot", fmt))
    arguments = [*command, f"-T{fmt}", "-q", *([f"-Gdpi={dpi:g}"] if dpi else [])]
    try:
        done = subprocess.run(arguments, input=source.encode("utf-8"), capture_output=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"{command[0]} took more than {_TIMEOUT} s to lay out the graph; draw it with a smaller "
            "depth= or max_nodes="
        ) from None
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise RenderError(f"{command[0]} failed (exit code {done.returncode}): {message}")
    return done.stdout


class Drawing(graphviz.Digraph):
    """A `graphviz.Digraph` that renders with ``graphviz-pure`` when no system ``dot`` is installed."""

    def pipe(self, format: str | None = None, *args: Any, encoding: str | None = None, **kwargs: Any) -> Any:  # noqa: A002
        if shutil.which("dot"):
            return super().pipe(format, *args, encoding=encoding, **kwargs)
        data = run_program(self.source, format or self.format)
        return data.decode(encoding) if encoding else data
