"""The gallery shows what the code draws: every committed graph picture has its DOT text beside it,
and drawing the same graph again must give that text (DOT is deterministic; PNG bytes depend on
the renderer). When a change to the engine or to viz alters a picture, this fails until
``make gallery`` is run and the new pictures are committed."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
import make_gallery  # noqa: E402

PICTURES = make_gallery.graph_pictures()


@pytest.mark.parametrize("picture", PICTURES, ids=[name for name, _, _ in PICTURES])
def test_each_graph_picture_is_what_the_code_draws(picture):
    name, root, options = picture
    committed = DOCS / name
    assert committed.exists(), f"docs/{name} is missing: run make gallery"
    dot = committed.with_suffix(".dot")
    assert dot.exists(), f"docs/{dot.name} is missing: run make gallery"
    assert make_gallery.dot_text(root, options) == dot.read_text(encoding="utf-8"), (
        f"docs/{name} no longer matches what the code draws: run `make gallery` and commit the pictures"
    )


def test_every_picture_the_gallery_shows_exists_and_every_graph_is_checked():
    text = (DOCS / "GALLERY.md").read_text()
    shown = set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text))
    assert shown and all((DOCS / name).exists() for name in shown)
    graphs = {name for name, _, _ in PICTURES}
    plots = {"losses.png", "attention_heatmap.png"}  # matplotlib plots of a training run, not graphs
    assert shown == graphs | plots


def test_the_numbers_the_gallery_quotes_are_the_pictures():
    text = (DOCS / "GALLERY.md").read_text()
    quoted = re.search(r"`backward of\s+transformer\.h\.0`: (\d+) ops", text)
    drawn = re.search(r"backward of transformer\.h\.0</b><br/><font[^>]*>(\d+) ops", (DOCS / "gpt_backward_depth1.dot")
                      .read_text())  # fmt: skip
    assert quoted and drawn and quoted.group(1) == drawn.group(1)
