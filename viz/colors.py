"""What the colours of a drawing mean: one fill per kind of node, and the gradient-health scale.

The health scale colours a node by ``log10`` of its gradient norm, from blue (vanishing: nothing
reaches it) through green (healthy) to red (exploding):

    <= 1e-8  dark blue   ...  1e-4 light blue  ...  1e-2 .. 1 green  ...  1e+2 orange  ...  >= 1e+4 red

and marks a NaN or Inf gradient in purple.
"""

from __future__ import annotations

import math

FONT = "Helvetica"
EDGE = "#555555"
SAVED_EDGE = "#b3b3b3"  # a forward tensor that a backward op reads
GRAD_EDGE = "#c0392b"  # "is the gradient of"
BACKWARD_EDGE = "#b05a4f"  # gradients flowing backward
CLUSTER_BORDER = "#8da2c0"
CLUSTER_FILLS = ("#f6f8fc", "#edf2f9", "#e4ecf6", "#dbe6f3")  # by nesting level
NOTE_TEXT = "#6b6b6b"

# kind -> (fill, border)
FILLS = {
    "param": ("#cfe2ff", "#3b6fb6"),
    "const": ("#eeeeee", "#9a9a9a"),
    "op": ("#fff2cc", "#c9a227"),
    "value": ("#ffffff", "#6b6b6b"),
    "module": ("#dcefd5", "#5b9a45"),
    "summary": ("#f4f4f4", "#9a9a9a"),
    "backward": ("#fbdcd7", "#c0392b"),
    "backward_value": ("#fff6f4", "#c0392b"),
    "grad_leaf": ("#fff6f4", "#c0392b"),  # a gradient made from the seed alone: no op of it is recorded
}

# The health scale: (log10 of the gradient norm, RGB) anchors, interpolated in between.
HEALTH_LOW, HEALTH_HIGH = -8.0, 4.0
_HEALTH_ANCHORS = [
    (-8.0, (33, 62, 140)),
    (-5.0, (107, 163, 214)),
    (-3.0, (199, 228, 240)),
    (-1.0, (186, 228, 160)),
    (1.0, (253, 208, 120)),
    (2.5, (240, 120, 60)),
    (4.0, (189, 0, 38)),
]
NON_FINITE = "#8e44ad"
HEALTH_TICKS = (-8, -6, -4, -2, 0, 2, 4)


def health_color(norm: float) -> str:
    """The fill for a gradient of this norm (see the module docstring)."""
    if not math.isfinite(norm):
        return NON_FINITE
    level = HEALTH_LOW if norm <= 0 else min(max(math.log10(norm), HEALTH_LOW), HEALTH_HIGH)
    for (x0, c0), (x1, c1) in zip(_HEALTH_ANCHORS, _HEALTH_ANCHORS[1:]):
        if level <= x1:
            t = (level - x0) / (x1 - x0)
            return "#" + "".join(f"{round(a + t * (b - a)):02x}" for a, b in zip(c0, c1))
    return "#bd0026"


def text_color(fill: str) -> str:
    """Black or white, whichever reads better on ``fill`` (a ``#rrggbb`` colour)."""
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"
