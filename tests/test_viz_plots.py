"""viz: attention heatmaps and loss curves saved as PNG."""

import struct

import numpy as np
import pytest

import viz
from autograd import Tensor


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def causal_attention(n_head, T, seed=0):
    scores = np.random.default_rng(seed).normal(size=(n_head, T, T))
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def test_plot_attention_draws_one_heatmap_per_head_with_token_labels(tmp_path):
    tokens = list("hello")
    fig = viz.plot_attention(causal_attention(4, 5), tokens, tmp_path / "att.png", title="layer 0")
    width, height = png_size(tmp_path / "att.png")
    assert width > height > 100
    heads = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert len(heads) == 4
    assert [t.get_text() for t in heads[0].get_xticklabels()] == tokens
    assert [t.get_text() for t in heads[0].get_yticklabels()] == tokens


def test_plot_attention_accepts_one_head_a_batch_of_one_and_tensors(tmp_path):
    one = viz.plot_attention(Tensor(causal_attention(1, 3)[0]), ["a", "b", "c"], tmp_path / "one.png")
    assert [ax.get_title() for ax in one.axes][0] == "attention"
    batch = viz.plot_attention(causal_attention(2, 3)[None], ["a", "b", "c"])
    assert len([ax for ax in batch.axes if ax.get_title().startswith("head")]) == 2
    with pytest.raises(ValueError, match="tokens"):
        viz.plot_attention(causal_attention(1, 3), ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        viz.plot_attention(np.ones((2, 3, 4)), ["a", "b", "c"])


def test_plot_attention_marks_where_the_answer_begins():
    fig = viz.plot_attention(causal_attention(2, 6), list("314134"), split=3)
    for ax in [ax for ax in fig.axes if ax.get_title().startswith("head")]:
        lines = [(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in ax.get_lines()]
        assert ((2.5, 2.5), (0, 1)) in lines and ((0, 1), (2.5, 2.5)) in lines  # down and across, before 3
    for bad in (0, 6, 2.5):
        with pytest.raises(ValueError, match="split must be a position in 1..5"):
            viz.plot_attention(causal_attention(1, 6), list("314134"), split=bad)


def test_the_demo_heatmap_explains_what_its_tokens_are(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import demo

    drawn = {}

    def plot_attention(weights, tokens, path, **options):
        drawn.update(options, tokens=tokens)

    monkeypatch.setattr(viz, "plot_attention", plot_attention)
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "4", "--quiet"]
    assert demo.main(["--task", "sort", "--steps", "1", "--out", str(tmp_path / "sort"), *tiny]) == 0
    assert drawn["split"] == 6 and "_" not in drawn["tokens"] and "'_' is a space" not in drawn["title"]
    assert "the white line: the 6 digits of the question before it, the answer after" in drawn["title"]
    assert demo.main(["--task", "grammar", "--steps", "1", "--out", str(tmp_path / "grammar"), *tiny]) == 0
    assert drawn["split"] is None and "_" in drawn["tokens"] and "'_' is a space" in drawn["title"]


def test_plot_losses_accepts_pairs_dicts_lists_and_a_floor(tmp_path):
    train = [(step, 4.0 * 0.99**step) for step in range(0, 300, 10)]
    evals = {0: 4.1, 100: 1.6, 200: 0.7, 290: 0.4}
    fig = viz.plot_losses(train=train, eval=evals, path=tmp_path / "loss.png", floor=0.3, title="sort")
    png_size(tmp_path / "loss.png")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["train", "eval", "floor (0.3)"]
    np.testing.assert_allclose(ax.get_lines()[1].get_xdata(), [0, 100, 200, 290])
    from_list = viz.plot_losses([3.0, 2.0, 1.5])
    np.testing.assert_allclose(from_list.axes[0].get_lines()[0].get_xdata(), [0, 1, 2])
    from_columns = viz.plot_losses(train=([0, 5], [2.0, 1.0]), log_y=True)
    assert from_columns.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="train"):
        viz.plot_losses()
