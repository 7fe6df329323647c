"""Which program turns DOT text into a picture, and running it.

The `graphviz` Python package only writes DOT text; the layout and drawing are done by a ``dot``
program, which a fresh machine lacks. We use, in this order:

1. a system ``dot`` (Graphviz) on ``PATH``, when one is installed;
2. ``graphviz-pure`` (PyPI package of the same name, a dependency of this project: a static build
   of Graphviz's dot layout with SVG and PNG output), found next to the running Python (the
   venv's ``bin/``) or on ``PATH``;
3. nothing: `RenderError` says how to get one, and `viz.render` still writes the ``.dot`` file.

`Drawing` is the `graphviz.Digraph` that `viz.draw_graph` returns, and `Source` the
`graphviz.Source` to wrap DOT text in (``viz.Source(viz.to_dot(loss))``): the same objects, except
that where a system ``dot`` is missing, ``pipe()`` (and so their display in Jupyter), ``render()``
and ``view()`` draw with ``graphviz-pure``, and ``unflatten()`` without Graphviz's ``unflatten``
program leaves the layout as it is (with a warning) instead of failing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
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


def _render_file(
    engine: str, format: str, filepath: str | os.PathLike,  # noqa: A002 (graphviz's names)
    renderer: str | None = None, formatter: str | None = None, neato_no_op: Any = None, quiet: bool = False, *,
    outfile: str | os.PathLike | None = None, raise_if_result_exists: bool = False, overwrite_filepath: bool = False,
) -> str:  # fmt: skip
    """`graphviz.render` (the call behind ``render()`` and ``view()``), with ``graphviz-pure`` when
    there is no system ``dot``: the DOT file ``filepath`` becomes ``outfile`` (by default
    ``filepath.<format>``, as Graphviz names it); returns the path written."""
    if shutil.which("dot"):
        return graphviz.render(engine, format, filepath, renderer, formatter, neato_no_op, quiet, outfile=outfile,
                               raise_if_result_exists=raise_if_result_exists,
                               overwrite_filepath=overwrite_filepath)  # fmt: skip
    if engine != "dot" or renderer or formatter or neato_no_op:
        raise RenderError(
            f"rendering with engine={engine!r}, renderer={renderer!r}, formatter={formatter!r} needs a system "
            "Graphviz (apt install graphviz, brew install graphviz); graphviz-pure draws the dot layout only"
        )
    out = Path(outfile) if outfile is not None else Path(f"{os.fspath(filepath)}.{format}")
    if raise_if_result_exists and out.exists():
        raise FileExistsError(f"output file exists: {os.fspath(out)!r}")
    out.write_bytes(run_program(Path(filepath).read_text(encoding="utf-8"), format))
    return os.fspath(out)


class _PureFallback:
    """What `Drawing` and `Source` change in the `graphviz` package's classes: the programs they call."""

    source: str
    format: str

    def pipe(self, format: str | None = None, *args: Any, encoding: str | None = None, **kwargs: Any) -> Any:  # noqa: A002
        if shutil.which("dot"):
            return super().pipe(format, *args, encoding=encoding, **kwargs)  # type: ignore[misc]
        data = run_program(self.source, format or self.format)
        return data.decode(encoding) if encoding else data

    @property
    def _render(self) -> Any:  # the graphviz package's own seam for the rendering call
        return _render_file

    def unflatten(self, stagger: int | None = None, fanout: bool = False, chain: int | None = None) -> Source:
        """Graphviz's ``unflatten`` (staggers the leaves of wide, flat graphs), or, without that program,
        the same graph with a warning: a viz graph is laid out by module, so it is rarely needed."""
        if shutil.which("unflatten"):
            return Source(super().unflatten(stagger=stagger, fanout=fanout, chain=chain).source, format=self.format)  # type: ignore[misc]
        warnings.warn(
            "viz: Graphviz's unflatten program is not installed (apt install graphviz, brew install graphviz): "
            "the layout is left as it is",
            stacklevel=2,
        )
        return Source(self.source, format=self.format)


class Drawing(_PureFallback, graphviz.Digraph):
    """A `graphviz.Digraph` that renders with ``graphviz-pure`` when no system ``dot`` is installed."""


class Source(_PureFallback, graphviz.Source):
    """``graphviz.Source`` for DOT text (``viz.Source(viz.to_dot(loss))``) that renders with
    ``graphviz-pure`` when no system ``dot`` is installed."""
