"""The walkthrough page: one training step of a GPT, forward and backward, drawn from its numbers.

`page(data, graph_svg)` turns the dictionary `tinygrad_lm.walkthrough.trace_step` returns into one
self-contained HTML file: no script runs, nothing is fetched (heatmaps are small PNGs inlined as
data URIs, charts are inline SVG), so it opens from ``file://`` and shows every number with scripts
off. All the numbers are embedded as JSON in ``<script type="application/json" id="walkthrough-data">``
for anyone who wants to read them with a program. The sections follow the seed text's order and
carry the ids ``tokens embeddings blocks logits loss backward gradcheck update graph``.

This module only draws: it reads the dictionary and computes no number of the step itself.
"""

from __future__ import annotations

import base64
import html
import json
import math
import struct
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SECTIONS = ("tokens", "embeddings", "blocks", "logits", "loss", "backward", "gradcheck", "update", "graph")
ROW_PIXELS = 12  # screen pixels per heatmap row: room for a token's label
WIDTH = 900  # the widest a heatmap is drawn, in pixels: columns get 12 pixels, fewer when there are many
MAX_CELLS = 300  # heatmap columns beyond this are averaged in groups (a wide MLP, a big vocabulary)

# ---------------------------------------------------------------------------------------------------
# Pictures: PNG heatmaps (tiny, inlined) and SVG charts
# ---------------------------------------------------------------------------------------------------

_DIVERGING = [(-1.0, (33, 102, 172)), (-0.5, (146, 197, 222)), (0.0, (247, 247, 247)), (0.5, (244, 165, 130)),
              (1.0, (178, 24, 43))]  # fmt: skip  blue (negative) - white (0) - red (positive)
_SEQUENTIAL = [(0.0, (255, 255, 255)), (0.25, (198, 219, 239)), (0.5, (107, 174, 214)), (0.75, (33, 113, 181)),
               (1.0, (8, 48, 107))]  # fmt: skip  white (0) - dark blue (1): probabilities, attention


def _colors(values: np.ndarray, anchors: list) -> np.ndarray:
    """RGB (uint8) for values already scaled to the anchors' range, by linear interpolation."""
    xs = np.array([a[0] for a in anchors])
    rgb = np.array([a[1] for a in anchors], dtype=np.float64)
    clipped = np.clip(values, xs[0], xs[-1])
    channels = [np.interp(clipped, xs, rgb[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
    """A PNG file of an (h, w, 3) uint8 image: the few bytes a browser needs, written by hand."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)  # filter type 0 for each scanline

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _squeeze_columns(array: np.ndarray) -> tuple[np.ndarray, int]:
    """At most `MAX_CELLS` columns: wider arrays are averaged in groups of ``k`` columns."""
    cols = array.shape[1]
    if cols <= MAX_CELLS:
        return array, 1
    k = math.ceil(cols / MAX_CELLS)
    padded = np.pad(array, ((0, 0), (0, (-cols) % k)), constant_values=np.nan)
    return np.nanmean(padded.reshape(array.shape[0], -1, k), axis=2), k


def heatmap(
    values: Any, *, rows: Sequence[str] | None = None, cols: Sequence[str] | None = None, signed: bool = True,
    title: str = "", note: str = "", masked: np.ndarray | None = None,
) -> str:  # fmt: skip
    """An inline heatmap of a 2-D array (a PNG scaled up, crisp), with row and column labels.

    ``signed``: blue (negative) - white - red (positive), scaled by the largest magnitude, for
    activations and gradients; otherwise white (0) to dark blue (1), for probabilities. ``masked``
    (a boolean array): cells drawn grey, e.g. the future a causal mask hides.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if masked is not None:  # masked cells are NaN from here on, so that averaged columns keep the mask
        array = np.where(np.asarray(masked, dtype=bool), np.nan, array)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the mean of an all-masked group is NaN: masked)
        array, group = _squeeze_columns(array)
    hidden = np.isnan(array) if masked is not None else np.zeros(array.shape, dtype=bool)
    if signed:
        shown = np.abs(array[~hidden & np.isfinite(array)])  # masked cells (a mask's huge numbers) set no scale
        scale = float(shown.max()) if shown.size else 1.0
        scale = scale or 1.0
        rgb = _colors(np.nan_to_num(array) / scale, _DIVERGING)
        legend = f"blue -{_fmt(scale)} · white 0 · red +{_fmt(scale)}"
    else:  # on a square-root scale: a row of small weights (attention spread over many keys) stays visible
        rgb = _colors(np.sqrt(np.clip(np.nan_to_num(array), 0.0, 1.0)), _SEQUENTIAL)
        legend = "white 0 · dark blue 1 (square-root scale)"
    rgb[hidden] = (225, 225, 225)
    height, width = array.shape
    image = base64.b64encode(_png(rgb)).decode("ascii")
    label_width = 0 if rows is None else min(110, 7 * max((len(r) for r in rows), default=1) + 10)
    col_height = 0 if cols is None or group > 1 else min(90, 7 * max((len(c) for c in cols), default=1) + 10)
    cell = max(3, min(ROW_PIXELS, WIDTH // max(width, 1)))  # a column's width
    if cell < 9:  # too narrow to label each column
        cols, col_height = None, 0
    w, h = width * cell, height * ROW_PIXELS
    parts = [f'<svg class="heat" width="{label_width + w + 2}" height="{col_height + h + 2}" role="img">']
    if title:
        parts.append(f"<title>{html.escape(title)}</title>")
    parts.append(
        f'<image x="{label_width}" y="{col_height}" width="{w}" height="{h}" preserveAspectRatio="none" '
        f'style="image-rendering:pixelated" href="data:image/png;base64,{image}"/>'
    )
    parts.append(f'<rect x="{label_width}" y="{col_height}" width="{w}" height="{h}" class="frame"/>')
    if rows is not None:
        for i, label in enumerate(rows):
            y = col_height + i * ROW_PIXELS + ROW_PIXELS * 0.8
            parts.append(f'<text x="{label_width - 4}" y="{y:.1f}" text-anchor="end">{html.escape(label)}</text>')
    if cols is not None and group == 1:
        for j, label in enumerate(cols):
            x = label_width + j * cell + cell * 0.75
            parts.append(
                f'<text transform="translate({x:.1f},{col_height - 4}) rotate(-90)">{html.escape(label)}</text>'
            )
    parts.append("</svg>")
    caption = " · ".join(x for x in (f"{height}×{array.shape[1] * group}", legend, note) if x)
    if group > 1:
        caption += f" · columns averaged in groups of {group}"
    return f'<figure class="heatmap">{"".join(parts)}<figcaption>{html.escape(caption)}</figcaption></figure>'


def bars(items: Sequence[tuple[str, float]], *, highlight: str | None = None, width: int = 160) -> str:
    """A small horizontal bar chart of probabilities (HTML, so it reads with scripts off)."""
    rows = []
    for label, p in items:
        cls = ' class="target"' if label == highlight else ""
        rows.append(
            f"<tr{cls}><td class='tok'>{_token(label)}</td><td>{_bar(p, width)}</td><td class='num'>{p:.3f}</td></tr>"
        )
    return f"<table class='bars'>{''.join(rows)}</table>"


def _bar(fraction: float, width: int) -> str:
    return f"<div class='bar' style='width:{max(1, round(fraction * width))}px'></div>"


def gelu_curve(pre_activations: Any) -> str:
    """GELU (tanh form) on [-4, 4], over a histogram of where this step's inputs to it fall."""
    values = np.asarray(pre_activations, dtype=np.float64).ravel()
    width, height, lo, hi = 320, 160, -4.0, 4.0

    def sx(x: float) -> float:
        return (x - lo) / (hi - lo) * width

    def sy(y: float) -> float:
        return height - 10 - (y + 0.5) / 4.5 * (height - 20)

    xs = np.linspace(lo, hi, 161)
    ys = 0.5 * xs * (1 + np.tanh(math.sqrt(2 / math.pi) * (xs + 0.044715 * xs**3)))
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=48, range=(lo, hi))
    peak = counts.max() or 1
    rects = "".join(
        f'<rect x="{sx(a):.1f}" y="{height - 10 - c / peak * (height - 30):.1f}" width="{sx(b) - sx(a) - 0.5:.1f}" '
        f'height="{c / peak * (height - 30):.1f}" class="hist"/>'
        for a, b, c in zip(edges[:-1], edges[1:], counts)
    )
    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    axes = (f'<line x1="0" y1="{sy(0):.1f}" x2="{width}" y2="{sy(0):.1f}" class="axis"/>'
            f'<line x1="{sx(0):.1f}" y1="0" x2="{sx(0):.1f}" y2="{height}" class="axis"/>')  # fmt: skip
    ticks = "".join(
        f'<text x="{sx(t):.1f}" y="{height - 1}" text-anchor="middle">{t:g}</text>' for t in (-4, -2, 0, 2, 4)
    )
    return (
        f'<figure><svg width="{width}" height="{height}" class="gelu">{rects}{axes}'
        f'<polyline points="{line}" class="curve"/>{ticks}</svg>'
        f"<figcaption>the curve: gelu(x); grey: where this step's {values.size} inputs to it fall "
        f"(min {_fmt(values.min())}, max {_fmt(values.max())})</figcaption></figure>"
    )


# ---------------------------------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    if x is None:
        return "–"
    x = float(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def _token(t: str) -> str:
    """A token as shown: spaces and newlines made visible."""
    shown = t.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return f"<span class='t'>{html.escape(shown)}</span>"


def _shown(t: str) -> str:
    return t.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def _vjps(keys: Sequence[str], sources: dict[str, dict[str, Any]]) -> str:
    """Which vjps made a gradient, each linked to its line in the engine's source."""
    if not keys:
        return "<p class='vjp'>no op used this tensor: its gradient is zero</p>"
    items = []
    for key in dict.fromkeys(keys):  # in order, once each
        src = sources.get(key, {})
        where = f"{src.get('file')}:{src.get('line')}" if src.get("line") else "?"
        link = f"<a href='file://{html.escape(src['path'])}'>{html.escape(where)}</a>" if src.get("path") else where
        code = f"<code>{html.escape(src['code'].splitlines()[0][:140])}</code>" if src.get("code") else ""
        items.append(f"<li>vjp of <b>{html.escape(src.get('op', key))}</b> for its input {src.get('input')}"
                     f" ({link}) {code}</li>")  # fmt: skip
    total = "the sum of " if len(keys) > 1 else ""
    return f"<div class='vjp'>made by {total}<ul>{''.join(items)}</ul></div>"


# ---------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------


def page(data: dict[str, Any], graph_svg: str | None = None, *, title: str | None = None) -> str:
    """The whole HTML page for ``data`` (from `tinygrad_lm.walkthrough.trace_step`)."""
    tokens = data["tokens"]
    labels = [_shown(t) for t in tokens]
    config = data["config"]
    n_head, n_embd = config["n_head"], config["n_embd"]
    head_size = n_embd // n_head
    title = title or f"One training step, forward and backward: “{data['text']}”"
    body = [
        f"<header><h1>{html.escape(title)}</h1><p class='lead'>Every number below comes from the engine: the "
        "model's own forward on this text, and the gradients of its one backward (<code>ag.graph.gradients</code>), "
        "read off the recorded graph (in evaluation mode: no dropout). Nothing on this page computes a derivative by "
        "hand; the central differences "
        f"in <a href='#gradcheck'>gradcheck</a> are the check. Model: {config['n_layer']} blocks, {n_head} heads, "
        f"width {n_embd}, vocabulary {config['vocab_size']}, context {config['block_size']}. "
        f"Loss on this text: <b>{data['loss']:.4f}</b>.</p>{_contents()}</header>",
        _tokens_section(data, labels),
        _embeddings_section(data, labels),
        _blocks_section(data, labels, n_head, head_size),
        _logits_section(data, labels),
        _loss_section(data, labels),
        _backward_section(data, labels, n_head),
        _gradcheck_section(data),
        _update_section(data),
        _graph_section(graph_svg),
    ]
    # No "<" inside the script element at all (as \u003c, which JSON reads back the same): no text of the
    # data can end the element or put the HTML parser in another state ("<!--<script").
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
        + "".join(body)
        + f"</main><script type='application/json' id='walkthrough-data'>{payload}</script></body></html>"
    )


def write(path: str | Path, data: dict[str, Any], graph_svg: str | None = None) -> Path:
    """Write the page to ``path`` (atomically: a reader never sees half a page); returns the path."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(page(data, graph_svg), encoding="utf-8")
    temporary.replace(path)
    return path


def _contents() -> str:
    names = {"tokens": "1 tokens", "embeddings": "2 embeddings", "blocks": "3 blocks", "logits": "4 logits",
             "loss": "loss", "backward": "5 backward", "gradcheck": "6 gradcheck", "update": "7 update",
             "graph": "8 graph"}  # fmt: skip
    return "<nav>" + " · ".join(f"<a href='#{s}'>{names[s]}</a>" for s in SECTIONS) + "</nav>"


def _section(sid: str, heading: str, *parts: str) -> str:
    return f"<section id='{sid}'><h2>{heading}</h2>{''.join(parts)}</section>"


def _formula(text: str) -> str:
    return f"<p class='formula'>{html.escape(text)}</p>"


def _tokens_section(data: dict[str, Any], labels: list[str]) -> str:
    chips = "".join(
        f"<div class='chip'>{_token(t)}<span class='id'>{i}</span><span class='next'>→ "
        f"{_token(data['vocab'][n]) if data['vocab'] and n >= 0 else ('–' if n < 0 else n)}</span></div>"
        for t, i, n in zip(data["tokens"], data["ids"], data["targets"])
    )
    vocab = ""
    if data["vocab"] and len(data["vocab"]) <= 200:
        vocab = ("<details><summary>the vocabulary: " + str(len(data["vocab"])) + " tokens</summary><div class='vocab'>"
                 + "".join(f"<span>{i}&nbsp;{_token(t)}</span>" for i, t in enumerate(data["vocab"]))
                 + "</div></details>")  # fmt: skip
    scored = data["scored"]
    return _section(
        "tokens", "1 · Tokens: text → tokens → ids",
        f"<p>The text <b>“{html.escape(data['text'])}”</b> is cut into tokens and each token becomes its id in the "
        f"vocabulary. The model reads the first {len(data['ids'])} and, at every position, predicts the next one "
        f"(under each chip: its id, and → the token it should predict; {scored} positions are scored).</p>",
        f"<div class='chips'>{chips}</div>", vocab,
    )  # fmt: skip


def _embeddings_section(data: dict[str, Any], labels: list[str]) -> str:
    e = data["embeddings"]
    T, C = e["x"]["shape"]
    return _section(
        "embeddings", "2 · Embeddings: what each token is, plus where it is",
        "<p>Each id picks a row of the token embedding <code>wte</code>, each position a row of the position "
        "embedding <code>wpe</code>; their sum is the vector the blocks work on.</p>",
        _formula(f"x[t] = wte[id_t] + wpe[t]     ({T}, {C}) = ({T}, {C}) + ({T}, {C})"),
        "<div class='row'>",
        heatmap(e["token"]["value"], rows=labels, title="token embedding", note="wte[id]"),
        heatmap(e["position"]["value"], rows=[str(t) for t in range(T)], title="position embedding", note="wpe[t]"),
        heatmap(e["x"]["value"], rows=labels, title="x", note="x = their sum"),
        "</div>",
    )  # fmt: skip


def _heads(array: Any, labels: list[str], *, signed: bool = True, causal: bool = False, note: str = "") -> str:
    """One small heatmap per head of an (n_head, T, ·) array."""
    array = np.asarray(array, dtype=np.float64)
    figures = []
    for h in range(array.shape[0]):
        mask = np.triu(np.ones(array.shape[1:], dtype=bool), k=1) if causal else None
        cols = labels if causal else None
        picture = heatmap(array[h], rows=labels, cols=cols, signed=signed, masked=mask, note=note)
        figures.append(f"<div><h5>head {h}</h5>{picture}</div>")
    return f"<div class='row heads'>{''.join(figures)}</div>"


def _block_forward(block: dict[str, Any], labels: list[str], n_head: int, head_size: int) -> str:
    s = block["stages"]
    T, C = s["ln_1"]["shape"]
    scale = block.get("scale")
    return "".join([
        "<h4>LayerNorm</h4>",
        _formula(f"ln_1(x) = (x - mean(x)) / sqrt(var(x) + 1e-5) * weight + bias     ({T}, {C})"),
        heatmap(s["ln_1"]["value"], rows=labels),
        "<h4>Queries, keys and values, per head</h4>",
        _formula(f"[Q K V] = ln_1(x) W_attn^T + b     ({T}, {3 * C}), split into {n_head} heads of {head_size}"),
        "<p>What each token looks for (Q), what it contains (K), what it says (V).</p>",
        "<h5>Q</h5>", _heads(s["q"]["value"], labels), "<h5>K</h5>", _heads(s["k"]["value"], labels),
        "<h5>V</h5>", _heads(s["v"]["value"], labels),
        "<h4>Scores, with the causal mask</h4>",
        _formula(f"scores = Q K^T / sqrt({head_size}) + mask  (the 1/sqrt(d_k) = {scale:.4g} is applied to Q)"
                 if scale else f"scores = Q K^T / sqrt({head_size}) + mask"),  # fmt: skip
        "<p>Row: a query position; column: a key position. Grey: the future, which the mask hides (a huge "
        "negative number is added there, so softmax gives it exactly 0).</p>",
        _heads(s["scores"]["value"], labels, causal=True),
        "<h4>Softmax: the attention weights</h4>",
        _formula("attention = softmax(scores + mask)     each row sums to 1"),
        _heads(s["attention"]["value"], labels, signed=False, causal=True),
        "<h4>The weighted values, the heads joined, W_O</h4>",
        _formula(f"head_h = attention_h V_h  ({T}, {head_size});  joined = [head_0 ... head_{n_head - 1}]  ({T}, {C})"),
        _heads(s["weighted"]["value"], labels),
        "<div class='row'>", heatmap(s["joined"]["value"], rows=labels, note="the heads side by side"),
        heatmap(s["attn_out"]["value"], rows=labels, note="joined W_O^T + b"), "</div>",
        "<h4>The residual</h4>", _formula("x = x + attention(ln_1(x))"),
        heatmap(s["residual_1"]["value"], rows=labels),
        "<h4>The MLP: LayerNorm, widen, GELU, narrow</h4>",
        _formula(f"h = gelu(ln_2(x) W_fc^T + b)  ({T}, {4 * C});   mlp = h W_proj^T + b  ({T}, {C})"),
        "<div class='row'>", heatmap(s["ln_2"]["value"], rows=labels, note="ln_2(x)"),
        heatmap(s["fc"]["value"], rows=labels, note="widened (before GELU)"), "</div>",
        gelu_curve(s["fc"]["value"]),
        "<div class='row'>", heatmap(s["gelu"]["value"], rows=labels, note="after GELU"),
        heatmap(s["mlp_out"]["value"], rows=labels, note="narrowed"), "</div>",
        "<h4>The residual again: the block's output</h4>", _formula("x = x + mlp(ln_2(x))"),
        heatmap(s["out"]["value"], rows=labels),
    ])  # fmt: skip


def _blocks_section(data: dict[str, Any], labels: list[str], n_head: int, head_size: int) -> str:
    blocks = []
    for i, block in enumerate(data["blocks"]):
        summary = f"block {i} ({block['name']})"
        opened = " open" if i == 0 else ""
        blocks.append(f"<details{opened}><summary>{summary}</summary>"
                      f"{_block_forward(block, labels, n_head, head_size)}</details>")  # fmt: skip
    return _section(
        "blocks", "3 · Blocks: attention, then the MLP, each added back",
        "<p>Each block normalises x, lets every token look at the tokens before it (attention) and adds the result "
        "back; then normalises again, computes per token (the MLP) and adds that back too. The first block is open; "
        "the others are folded.</p>",
        *blocks,
    )


def _logits_section(data: dict[str, Any], labels: list[str]) -> str:
    vocab = data["vocab"]
    cols = [_shown(v) for v in vocab] if vocab and len(vocab) <= MAX_CELLS else None
    rows = []
    for t, top in enumerate(data["top"]):
        target = data["targets"][t]
        target_label = vocab[target] if vocab and target >= 0 else None
        items = [(c["token"], c["p"]) for c in top]
        rows.append(f"<div class='cand'><div class='pos'>{_token(data['tokens'][t])} →</div>"
                    f"{bars(items, highlight=target_label)}</div>")  # fmt: skip
    T, V = len(data["logits"]), len(data["logits"][0])
    return _section(
        "logits", "4 · Logits: a score for every possible next token",
        _formula(f"logits = ln_f(x) wte^T     ({T}, {V}): the unembedding is the token embedding matrix itself (tied)"),
        "<div class='row'>",
        heatmap(data["final"]["ln_f"]["value"], rows=labels, note="ln_f(x)"),
        heatmap(data["logits"], rows=labels, cols=cols, note="logits"),
        "</div>",
        _formula("p = softmax(logits)     per position, over the vocabulary"),
        heatmap(data["probs"], rows=labels, cols=cols, signed=False, note="probabilities"),
        "<p>The most likely next tokens at each position (the one it should predict is marked):</p>",
        f"<div class='cands'>{''.join(rows)}</div>",
    )  # fmt: skip


def _loss_section(data: dict[str, Any], labels: list[str]) -> str:
    rows = []
    for t, (label, target, nll) in enumerate(zip(data["tokens"], data["targets"], data["nll"])):
        if nll is None:
            rows.append(f"<tr class='skip'><td>{t}</td><td>{_token(label)}</td><td>–</td><td>not scored</td></tr>")
            continue
        shown = data["vocab"][target] if data["vocab"] else str(target)
        p = math.exp(-nll)
        rows.append(f"<tr><td>{t}</td><td>{_token(label)}</td><td>{_token(shown)}</td><td class='num'>{p:.4f}</td>"
                    f"<td class='num'>{nll:.4f}</td></tr>")  # fmt: skip
    return _section(
        "loss", "The loss: how surprised the model is by each next token",
        _formula(f"loss = mean over the {data['scored']} scored positions of -log p(next token)"),
        "<table class='loss'><tr><th>t</th><th>token</th><th>next</th><th>p(next)</th><th>-log p</th></tr>"
        + "".join(rows) + f"<tr class='total'><td colspan='4'>mean</td><td class='num'>{data['loss']:.4f}</td></tr>"
        "</table>",
    )  # fmt: skip


def _grad_map(stage: dict[str, Any], labels: list[str], sources: dict, note: str = "") -> str:
    return heatmap(stage["grad"], rows=labels, note=note) + _vjps(stage["vjps"], sources)


def _backward_section(data: dict[str, Any], labels: list[str], n_head: int) -> str:
    sources = data["vjps"]
    vocab = data["vocab"]
    cols = [_shown(v) for v in vocab] if vocab and len(vocab) <= MAX_CELLS else None
    final = data["final"]
    parts = [
        "<p>The backward runs the same stages in reverse. At each one: the gradient of the loss with respect to what "
        "the forward showed there (same layout; blue negative, red positive), and the vjps of the engine that "
        "produced it. It starts at the logits:</p>",
        _formula(f"dL/dlogits = (softmax(logits) - one_hot(next)) / {data['scored']}   (0 at positions not scored)"),
        heatmap(data["dlogits"], rows=labels, cols=cols, note="dL/dlogits"),
        _vjps(final["logits"]["vjps"], sources),
        "<h4>Through the unembedding and the final LayerNorm</h4>",
        _formula("dL/d ln_f(x) = dL/dlogits · wte      (and dL/dwte += dL/dlogits^T · ln_f(x))"),
        _grad_map(final["ln_f"], labels, sources, "dL/d ln_f(x)"),
    ]
    for i in reversed(range(len(data["blocks"]))):
        s = data["blocks"][i]["stages"]
        inner = [
            "<h4>the block's output, and the MLP</h4>", _grad_map(s["out"], labels, sources, "dL/d out"),
            _grad_map(s["mlp_out"], labels, sources, "dL/d mlp"), _grad_map(s["gelu"], labels, sources, "dL/d gelu"),
            _grad_map(s["fc"], labels, sources, "dL/d (before GELU) = dL/d gelu · gelu'(x)"),
            _grad_map(s["ln_2"], labels, sources, "dL/d ln_2(x)"),
            "<h4>the residual, and attention</h4>", _grad_map(s["residual_1"], labels, sources, "dL/d x (mid-block)"),
            _grad_map(s["attn_out"], labels, sources, "dL/d attention output"),
            _grad_map(s["joined"], labels, sources, "dL/d joined heads"),
            "<h5>dL/d weighted values, per head</h5>", _heads(s["weighted"]["grad"], labels),
            _vjps(s["weighted"]["vjps"], sources),
            "<h5>dL/d attention weights, per head</h5>", _heads(s["attention"]["grad"], labels, causal=True),
            _vjps(s["attention"]["vjps"], sources),
            "<h5>dL/d scores, through softmax: dL/ds = p * (g - sum(p * g)) for g = dL/dp</h5>",
            _heads(s["scores"]["grad"], labels, causal=True), _vjps(s["scores"]["vjps"], sources),
            "<h5>dL/dQ, per head</h5>", _heads(s["q"]["grad"], labels), _vjps(s["q"]["vjps"], sources),
            "<h5>dL/dK, per head</h5>", _heads(s["k"]["grad"], labels), _vjps(s["k"]["vjps"], sources),
            "<h5>dL/dV, per head</h5>", _heads(s["v"]["grad"], labels), _vjps(s["v"]["vjps"], sources),
            _grad_map(s["ln_1"], labels, sources, "dL/d ln_1(x)"),
        ]  # fmt: skip
        opened = " open" if i == len(data["blocks"]) - 1 else ""  # the first the backward reaches
        parts.append(f"<details{opened}><summary>block {i}, backward</summary>{''.join(inner)}</details>")
    e = data["embeddings"]
    T = len(labels)
    parts += [
        "<h4>Back to the embeddings</h4>",
        _formula("dL/dwte[id_t] += dL/dx[t]   (rows of the tokens used);   dL/dwpe[t] = dL/dx[t]"),
        "<div class='row'>",
        _grad_map(e["x"], labels, sources, "dL/dx"),
        _grad_map(e["token"], labels, sources, "dL/d token embedding rows"),
        _grad_map(e["position"], [str(t) for t in range(T)], sources, "dL/d position embedding rows"),
        "</div>",
        "<p>The token embedding also receives the unembedding's gradient (it is the same matrix): "
        f"|dL/dwte| = {_fmt(data['grad_norms'].get('transformer.wte.weight'))} in all.</p>",
        _grad_norm_table(data["grad_norms"]),
    ]
    return _section("backward", "5 · Backward: the same stages in reverse", *parts)


def _grad_norm_table(norms: dict[str, float]) -> str:
    top = max(norms.values(), default=1.0) or 1.0
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{_bar(v / top, 160)}</td><td class='num'>{_fmt(v)}</td></tr>"
        for name, v in norms.items()
    )
    summary = "<summary>the gradient norm of every parameter</summary>"
    return f"<details>{summary}<table class='bars'>{rows}</table></details>"


def _gradcheck_section(data: dict[str, Any]) -> str:
    check = data["gradcheck"]
    rows = "".join(
        f"<tr><td><code>{html.escape(e['param'])}</code></td><td>{tuple(e['index'])}</td>"
        f"<td class='num'>{e['engine']:.10g}</td><td class='num'>{e['numerical']:.10g}</td>"
        f"<td class='num'>{e['rel_error']:.1e}</td></tr>"
        for e in check["entries"]
    )
    return _section(
        "gradcheck", "6 · Gradcheck: these gradients are exact",
        f"<p>{check['checked']} entries of several parameters, on a float64 copy of the model: the engine's "
        f"gradient against central differences (L(p + ε) - L(p - ε)) / 2ε with ε = {check['eps']:g}. The largest "
        f"relative error is <b>{check['max_rel_error']:.1e}</b>: what float64 differences can resolve, so the "
        "backward is exact, not approximate.</p>",
        "<table class='check'><tr><th>parameter</th><th>entry</th><th>engine</th><th>central difference</th>"
        f"<th>relative error</th></tr>{rows}</table>",
    )  # fmt: skip


def _update_section(data: dict[str, Any]) -> str:
    u = data["update"]
    rows = "".join(
        f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{tuple(p['index'])}</td>"
        f"<td class='num'>{p['before']:.6f}</td><td class='num'>{p['grad']:.3e}</td>"
        f"<td class='num'>{p['after']:.6f}</td><td class='num'>{p['after'] - p['before']:+.2e}</td></tr>"
        for p in u["params"]
    )
    if u.get("resumed_moments"):
        moments = "with the run's own Adam moments (from its checkpoint)"
    else:
        moments = "with fresh Adam moments (the first step of an optimizer moves each weight by about lr)"
    return _section(
        "update", "7 · Update: one AdamW step on this text",
        f"<p>AdamW with learning rate {u['lr']:g} and weight decay {u['weight_decay']:g}, {moments}, on a copy of the "
        f"model. The loss on this text goes from <b>{u['loss_before']:.4f}</b> to <b>{u['loss_after']:.4f}</b>.</p>",
        _formula("m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;  p -= lr (m̂ / (sqrt(v̂) + eps) + wd p)"),
        "<table class='check'><tr><th>parameter</th><th>entry</th><th>before</th><th>gradient</th><th>after</th>"
        f"<th>change</th></tr>{rows}</table>",
    )  # fmt: skip


def _graph_section(svg: str | None) -> str:
    if not svg:
        return _section("graph", "8 · Graph", "<p>(the graph was not drawn: no Graphviz program was found)</p>")
    start = svg.find("<svg")
    return _section(
        "graph", "8 · The step's graph, forward and backward",
        "<p>Drawn by <code>viz</code> from the same recorded graph: the first block opened op by op (yellow), the "
        "backward the engine derived from it (red), each dashed red arrow from a gradient to the tensor it is the "
        "gradient of.</p>",
        f"<div class='graph'>{svg[start:] if start >= 0 else svg}</div>",
    )  # fmt: skip


_CSS = """
body{margin:0;font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;
background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 80px;background:#fff}
h1{font-size:26px;margin:8px 0}h2{font-size:21px;margin:40px 0 8px;padding-top:12px;border-top:1px solid #ddd}
h4{margin:22px 0 4px;font-size:16px}h5{margin:10px 0 2px;font-size:13px;color:#555}
.lead{color:#444}nav{margin:10px 0;font-size:14px}nav a{color:#2a5d9f;text-decoration:none}
code{font:13px/1.4 Menlo,Consolas,monospace;background:#f3f3f3;padding:1px 4px;border-radius:3px}
.formula{font:14px/1.5 Menlo,Consolas,monospace;background:#f6f8fc;border-left:3px solid #8da2c0;padding:6px 10px;
margin:8px 0;white-space:pre-wrap}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.heads>div{display:inline-block}
figure{margin:6px 0}figcaption{font-size:12px;color:#666}
svg.heat text{font:10px Menlo,Consolas,monospace;fill:#333}svg.heat .frame{fill:none;stroke:#bbb}
.chips{display:flex;flex-wrap:wrap;gap:6px}.chip{border:1px solid #ccd;border-radius:6px;padding:4px 8px;
text-align:center;background:#f7f9ff}.chip .id{display:block;font-size:12px;color:#555}
.chip .next{display:block;font-size:11px;color:#888}
.t{font-family:Menlo,Consolas,monospace;background:#fff3c4;padding:0 3px;border-radius:3px}
.vocab{display:flex;flex-wrap:wrap;gap:6px;font-size:13px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left}
.num{text-align:right;font-family:Menlo,Consolas,monospace}
table.loss tr.skip{color:#aaa}table.loss tr.total td{border-top:1px solid #999;font-weight:bold}
table.check td,table.check th{border-bottom:1px solid #eee}
.bars .bar{height:10px;background:#6baed6;border-radius:2px}.bars tr.target .bar{background:#e6550d}
.bars tr.target td{font-weight:bold}
.cands{display:flex;flex-wrap:wrap;gap:14px}.cand{border:1px solid #eee;padding:4px;border-radius:6px}
.cand .pos{font-size:12px;color:#555}
.vjp{font-size:12px;color:#444;margin:2px 0 14px}.vjp ul{margin:2px 0;padding-left:20px}
.vjp code{font-size:11px}
svg.gelu .hist{fill:#ddd}svg.gelu .curve{fill:none;stroke:#c0392b;stroke-width:2}svg.gelu .axis{stroke:#999}
svg.gelu text{font-size:10px;fill:#666}
details{margin:10px 0;border:1px solid #e4e4e4;border-radius:6px;padding:4px 12px}
summary{cursor:pointer;font-weight:bold;padding:4px 0}
.graph{overflow:auto;border:1px solid #eee;max-height:1200px}.graph svg{max-width:none}
"""
