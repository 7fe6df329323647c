"""The neutral description of `viz.graph` as a `graphviz.Digraph`: labels, colours, boxes, legend.

Node shapes and fills (the legend in each picture repeats this):

    parameter      blue box          a leaf that requires grad, named by its parameter name
    constant       grey box          data, a mask, a number in an expression (shown as the number)
    op             yellow, rounded   the op, its attributes, and the shape and dtype of its output
    backward op    red, rounded      an op of the gradient computation (``backward=True``)
    module         green 3-d box     a collapsed module: parameter count, op count, output shape
    value          white record      "records" style: a tensor, as in micrograd (name | data | grad)

Edges: solid grey, data flowing into an op; dotted light grey, a forward tensor a backward op
reads; dashed red, "is the gradient of" (from a gradient to its forward tensor). With
``grad_health=True`` the fill is the gradient-norm colour of `viz.colors` instead.
"""

from __future__ import annotations

import html
import math

from viz import colors
from viz.graph import CONST, MODULE, OP, PARAM, SUMMARY, VALUE, VizEdge, VizGraph, VizNode
from viz.program import Drawing
from viz.text import format_count, format_number, format_shape, format_value, plural

OP_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@"}  # records style
SMALL = 9  # point size of the second and later label lines


def to_digraph(
    graph: VizGraph,
    *,
    rankdir: str = "TB",
    grad_health: bool = False,
    legend: bool = True,
    title: str | None = None,
) -> Drawing:
    """Emit ``graph`` as DOT (a `Drawing`, i.e. a `graphviz.Digraph`)."""
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"viz: rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")
    dot = Drawing(name="graph", format="svg")
    caption = _caption(graph, title)
    dot.attr(
        "graph", rankdir=rankdir, fontname=colors.FONT, fontsize="11", nodesep="0.25", ranksep="0.35",
        newrank="true", labelloc="t", labeljust="l", bgcolor="white",
    )  # fmt: skip
    if caption:
        dot.attr("graph", label=caption)
    dot.attr("node", fontname=colors.FONT, fontsize="10", margin="0.08,0.04", penwidth="1.2")
    dot.attr("edge", color=colors.EDGE, arrowsize="0.6", penwidth="1.0")

    children: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    members: dict[tuple[str, ...], list[VizNode]] = {}
    for node in graph.nodes.values():
        members.setdefault(node.scope, []).append(node)
        for i in range(len(node.scope)):
            children.setdefault(node.scope[:i], set()).add(node.scope[: i + 1])
    counter = iter(range(1, 1 << 30))

    def emit(target: Drawing, scope: tuple[str, ...]) -> None:
        for node in members.get(scope, []):
            target.node(node.id, **_node_attrs(node, graph.style, grad_health))
        for child in sorted(children.get(scope, ())):
            cluster = Drawing(name=f"cluster_{next(counter)}")
            fill = colors.CLUSTER_FILLS[(len(child) - 1) % len(colors.CLUSTER_FILLS)]
            cluster.attr(
                label=html.escape(child[-1]), style="rounded,filled", fillcolor=fill, color=colors.CLUSTER_BORDER,
                fontcolor="#2c3e50", fontsize="11", labeljust="l", labelloc="t", tooltip=child[-1],
            )  # fmt: skip
            emit(cluster, child)
            target.subgraph(cluster)

    emit(dot, ())
    for edge in graph.edges:
        attrs = _edge_attrs(edge)
        if edge.kind in ("backward", "grad_of"):
            # Drawn upward: the backward runs from the loss (at the bottom) back up beside the
            # forward, each gradient level with its tensor.
            dot.edge(edge.dst, edge.src, dir="back", **attrs)
        else:
            dot.edge(edge.src, edge.dst, **attrs)
    if legend:
        dot.node("legend", label=_legend(graph, grad_health), shape="plaintext", margin="0")
    return dot


def _caption(graph: VizGraph, title: str | None) -> str:
    lines = [f'<font point-size="14"><b>{html.escape(title)}</b></font>'] if title else []
    lines += [f'<font color="{colors.NOTE_TEXT}" point-size="{SMALL}">{html.escape(n)}</font>' for n in graph.notes]
    return "<" + '<br align="left"/>'.join(lines) + '<br align="left"/>>' if lines else ""


# ---------------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------------


def _node_attrs(node: VizNode, style: str, grad_health: bool) -> dict[str, str]:
    fill, border = colors.FILLS[_fill_kind(node)]
    norm = node.grad_norm if node.grad_norm is not None else (abs(node.grad) if node.grad is not None else None)
    if grad_health and norm is not None:
        fill = colors.health_color(norm)
    ink = colors.text_color(fill)
    attrs = {"fillcolor": fill, "color": border, "fontcolor": ink, "tooltip": node.tooltip or node.title}
    if style == "records" and node.kind in (PARAM, CONST, VALUE):
        width = 3 if node.is_root else 1
        attrs.update(shape="plaintext", margin="0", label=_record_label(node, fill, border, ink, width))
        return attrs
    attrs["label"] = "<" + '<br/>'.join(_lines(node, style, ink)) + ">"
    if node.kind == OP:
        attrs.update(shape="ellipse" if style == "records" else "box", style="rounded,filled")
    elif node.kind == MODULE:
        attrs.update(shape="box3d", style="filled")
    elif node.kind == SUMMARY:
        attrs.update(shape="note", style="filled")
    else:
        attrs.update(shape="box", style="filled")
    if node.is_root:
        attrs["penwidth"] = "2.6"
    return attrs


def _fill_kind(node: VizNode) -> str:
    """Which entry of `colors.FILLS` a node is drawn with."""
    if node.backward and node.kind in (OP, MODULE):
        return "backward"
    if node.backward and node.kind == VALUE:
        return "backward_value"
    if node.kind == CONST and node.title == "grad" and not node.name:
        return "grad_leaf"
    return node.kind


def _lines(node: VizNode, style: str, ink: str) -> list[str]:
    """The label, line by line (HTML): a bold title, then small grey facts."""
    soft = "#444444" if ink == "#000000" else "#eeeeee"

    def small(text: str) -> str:
        return f'<font point-size="{SMALL}" color="{soft}">{html.escape(text)}</font>'

    if node.kind == SUMMARY:
        common = ", ".join(f"{op} x{n}" for op, n in node.op_counts.most_common(4))
        return [f"<b>{html.escape(node.title)}</b>", small(f"{plural(node.ops, 'op')}: {common}" if common else "")]
    if node.kind == OP and style == "records":
        symbol = OP_SYMBOLS.get(node.title, node.title)
        head = f'<font point-size="13"><b>{html.escape(symbol)}</b></font>'
        return [head + (" " + small(node.detail) if node.detail else "")]
    if node.kind == MODULE:
        title = ("backward of " if node.backward else "") + node.title
        facts = [f"{format_count(node.params)} params" if node.params else "", plural(node.ops, "op")]
        lines = [f"<b>{html.escape(title)}</b>", small(" · ".join(f for f in facts if f))]
        if node.shape is not None:
            lines.append(small(f"out {format_shape(node.shape)} {node.dtype}"))
        lines += [small(f"uses {name}") for name in node.uses]
    elif node.kind == CONST and not node.name and node.shape == () and node.value is not None:
        return [f"<b>{format_number(node.value)}</b>"]
    else:
        title = node.title
        if node.kind == OP and node.detail:
            title = f"<b>{html.escape(title)}</b> {small(node.detail)}"
        else:
            title = f"<b>{html.escape(title)}</b>"
        lines = [title]
        if node.kind == OP and node.name:
            lines.append(f"<i>{html.escape(node.name)}</i>")
        lines.append(small(f"{format_shape(node.shape)} {node.dtype}"))
        if node.value is not None:
            lines.append(small(format_value(node.value)))
    grad = format_grad(node)
    if grad:
        lines.append(small(grad))
    return lines


def _record_label(node: VizNode, fill: str, border: str, ink: str, width: int) -> str:
    """micrograd's record: ``name | data 2.0 | grad -1.5`` (non-scalars: shape, stats, grad norm)."""
    if node.kind == CONST and not node.name and node.shape == () and node.value is not None:
        cells = [format_number(node.value)]
    else:
        cells = [node.name or ("" if node.kind == VALUE else node.title)]
        if node.shape == () and node.value is not None:
            cells.append(f"data {format_number(node.value)}")
        else:
            cells.append(f"{format_shape(node.shape)} {node.dtype}")
            if node.value is not None:
                cells.append(format_value(node.value))
        grad = format_grad(node)
        if grad:
            cells.append(grad)
    tds = "".join(f'<td><font color="{ink}">{html.escape(c)}</font></td>' for c in cells if c)
    return (
        f'<<table border="{width}" cellborder="1" cellspacing="0" cellpadding="4" bgcolor="{fill}" '
        f'color="{border}"><tr>{tds}</tr></table>>'
    )


# ---------------------------------------------------------------------------------------------------
# Edges
# ---------------------------------------------------------------------------------------------------


def _edge_attrs(edge: VizEdge) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if edge.count > 1:
        attrs["penwidth"] = f"{min(1.0 + 0.5 * math.log2(edge.count), 3.0):.2f}"
        attrs["tooltip"] = f"{edge.count} edges"
    if edge.kind == "saved":
        attrs.update(color=colors.SAVED_EDGE, style="dotted", constraint="false")
    elif edge.kind == "backward":
        attrs.update(color=colors.BACKWARD_EDGE)
    elif edge.kind == "grad_of":
        attrs.update(color=colors.GRAD_EDGE, style="dashed", arrowhead="empty")
    return attrs


# ---------------------------------------------------------------------------------------------------
# The legend: only what this picture uses
# ---------------------------------------------------------------------------------------------------


def _legend(graph: VizGraph, grad_health: bool) -> str:
    kinds = {_fill_kind(n) for n in graph.nodes.values()}
    # Kinds whose fill the gradient-health scale replaces: their swatch shows only the border (the
    # shape says what they are), so the legend's colours are never confused with the scale's.
    by_health = {_fill_kind(n) for n in graph.nodes.values() if grad_health and _health_coloured(n)}
    backward = bool(graph.backward)
    entries = [
        (PARAM, "parameter (requires grad)"),
        (CONST, "constant: input data, or a number or mask a vjp uses" if backward else "constant / input data"),
        ("grad_leaf", "grad: a gradient made from the loss's seed alone (no parameter in it, so no ops drawn)"),
        (VALUE, "tensor: name | data | grad"),
        ("backward_value", "a gradient (a tensor of the backward)"),
        (OP, "op" if graph.style == "records" else "op: output shape, dtype"),
        (MODULE, "module: params, ops, output"),
        ("backward", "backward (gradient) op"),
        (SUMMARY, "summary of hidden nodes"),
    ]
    rows = []
    for kind, text in entries:
        if kind in kinds:
            fill, border = colors.FILLS[kind]
            if kind in by_health:
                fill, text = "#ffffff", f"{text} (fill: its gradient norm)"
            rows.append(
                f'<tr><td bgcolor="{fill}" color="{border}" border="1" width="18"> </td>'
                f'<td align="left" colspan="7">{html.escape(text)}</td></tr>'
            )
    kinds_of_edges = {e.kind for e in graph.edges}
    if "grad_of" in kinds_of_edges:
        rows.append(_edge_row(colors.GRAD_EDGE, "- - ->", "is the gradient of"))
    if "saved" in kinds_of_edges:
        rows.append(_edge_row(colors.SAVED_EDGE, "......>", "read by the backward"))
    if grad_health and graph.grads:
        cells = "".join(
            f'<td bgcolor="{colors.health_color(10.0**t)}" border="1" color="#999999">'
            f'<font point-size="8" color="{colors.text_color(colors.health_color(10.0**t))}">1e{t:+d}</font></td>'
            for t in colors.HEALTH_TICKS
        )
        rows.append('<tr><td colspan="8" align="left"><b>gradient norm</b> (log scale)</td></tr>')
        rows.append(f'<tr><td> </td>{cells}</tr>')
        rows.append('<tr><td colspan="8" align="left"><font point-size="8">vanishing ... healthy ... exploding'
                    '</font></td></tr>')  # fmt: skip
    return (
        '<<table border="1" cellborder="0" cellspacing="2" cellpadding="2" color="#bbbbbb" bgcolor="#ffffff">'
        '<tr><td colspan="8" align="left"><b>legend</b></td></tr>' + "".join(rows) + "</table>>"
    )


def _health_coloured(node: VizNode) -> bool:
    """Whether `_node_attrs` fills this node with the gradient-health colour."""
    return node.grad_norm is not None or node.grad is not None


def _edge_row(color: str, arrow: str, text: str) -> str:
    return (
        f'<tr><td><font color="{color}"><b>{html.escape(arrow)}</b></font></td>'
        f'<td align="left" colspan="7">{html.escape(text)}</td></tr>'
    )


def format_grad(node: VizNode) -> str:
    if node.grad is not None and node.shape == ():
        return f"grad {format_number(node.grad)}"
    if node.grad_norm is not None:
        what = "|grad params|" if node.kind == MODULE and node.params else "|grad|"
        return f"{what} {format_number(node.grad_norm)}"
    return ""
