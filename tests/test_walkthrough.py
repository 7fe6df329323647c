"""The walkthrough page: its numbers against the model, for every task demo.py trains, and the page
itself (self-contained, every section, the data as JSON). The browser's view is in
tests/test_walkthrough_browser.py."""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import autograd as ag
from tinygrad_lm import GPT, GPTConfig, walkthrough
from tinygrad_lm.tasks import AddTask, GrammarTask, SortTask, TextTask
from viz import walkthrough as pages

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("text", "tokens", "ids", "targets", "config", "loss", "logits", "probs", "dlogits", "attention",
        "grad_norms", "gradcheck", "update")  # fmt: skip  (INTERFACE.md, "The walkthrough page")

TEXT = "".join(f"note {i}: the cat sat on the mat, and the dog ran.\n" for i in range(30))
TASKS = {
    "grammar": (lambda: GrammarTask(), "a cat sat on a mat."),
    "sort": (lambda: SortTask(length=4), "3 1 4 1"),
    "add": (lambda: AddTask(n_digits=2), "12 + 09"),
    "text": (lambda: TextTask(TEXT, block_size=16), "the cat sat"),
}


def traced(name, n_layer=2, seed=0):
    make, text = TASKS[name]
    task = make()
    model = GPT(GPTConfig(task.vocab_size, task.block_size, n_layer=n_layer, n_head=2, n_embd=16), seed=seed)
    example = walkthrough.sentence(task, text)
    data = walkthrough.trace_step(model, example["ids"], example["targets"], tokens=example["tokens"],
                                  text=example["text"], vocab=example["vocab"], lr=1e-2)  # fmt: skip
    return task, model, example, data


@pytest.fixture(scope="module", params=sorted(TASKS))
def step(request):
    return (request.param, *traced(request.param))


def test_the_json_has_the_interfaces_keys_and_is_plain_json(step):
    _, _, model, example, data = step
    assert set(KEYS) <= set(data)
    assert json.loads(json.dumps(data, allow_nan=False)) == data  # nothing a JSON reader cannot read back
    T, V = len(example["ids"]), model.config.vocab_size
    assert len(data["tokens"]) == len(data["ids"]) == len(data["targets"]) == T
    assert np.shape(data["logits"]) == np.shape(data["probs"]) == np.shape(data["dlogits"]) == (T, V)
    assert np.shape(data["attention"]) == (model.config.n_layer, model.config.n_head, T, T)
    assert data["config"] == model.config.to_dict()


def test_the_loss_is_the_models_loss(step):
    _, _, model, example, data = step
    with ag.no_grad(), model.evaluating():
        _, loss = model(np.asarray(example["ids"])[None], np.asarray(example["targets"])[None])
    assert data["loss"] == loss.item()
    scored = [x for x in data["nll"] if x is not None]
    assert math.isclose(float(np.mean(scored)), data["loss"], rel_tol=1e-5)


def test_attention_rows_sum_to_one_and_never_look_ahead(step):
    *_, data = step
    attention = np.asarray(data["attention"])
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    T = attention.shape[-1]
    assert not attention[..., np.triu_indices(T, k=1)[0], np.triu_indices(T, k=1)[1]].any()


def test_dlogits_is_softmax_minus_one_hot_over_n(step):
    *_, example, data = step
    probs = np.asarray(data["probs"])
    targets = np.asarray(data["targets"])
    expected = probs.copy()
    scored = targets >= 0
    expected[np.arange(len(targets))[scored], targets[scored]] -= 1.0
    expected[~scored] = 0.0
    expected /= scored.sum()
    np.testing.assert_allclose(np.asarray(data["dlogits"]), expected, atol=2e-6, rtol=1e-4)


def test_gradient_norms_are_those_of_a_plain_backward(step):
    _, _, model, example, data = step
    model.zero_grad()
    with model.evaluating():
        _, loss = model(np.asarray(example["ids"])[None], np.asarray(example["targets"])[None])
    loss.backward()
    plain = {name: float(np.linalg.norm(p.grad.data.astype(np.float64))) for name, p in model.named_parameters()}
    model.zero_grad()
    assert data["grad_norms"].keys() == plain.keys()
    for name, norm in plain.items():
        assert math.isclose(data["grad_norms"][name], norm, rel_tol=1e-6, abs_tol=1e-12), name


def test_the_gradients_are_checked_exact_and_the_update_lowers_the_loss(step):
    *_, data = step
    check = data["gradcheck"]
    assert check["checked"] >= 10 and check["max_rel_error"] < 1e-5
    assert len({e["param"] for e in check["entries"]}) >= 4
    update = data["update"]
    assert update["loss_after"] < update["loss_before"] and update["lr"] == 1e-2
    assert all(p["after"] != p["before"] for p in update["params"])


def test_every_stage_names_the_vjps_that_made_its_gradient_with_their_line_in_ops(step):
    *_, data = step
    sources = data["vjps"]
    ops_lines = (ROOT / "autograd" / "ops.py").read_text().splitlines()
    for key, source in sources.items():
        assert source["file"] == "autograd/ops.py", key
        assert source["code"].splitlines()[0].strip() == ops_lines[source["line"] - 1].strip(), key
    block = data["blocks"][0]["stages"]
    assert block["attention"]["vjps"] == ["matmul/0"]  # attention @ v: the matmul's vjp for its first input
    assert block["scores"]["vjps"] == ["softmax/0"]  # the masked scores: softmax's input
    assert data["final"]["logits"]["vjps"] == ["reshape/0"]  # cross-entropy first flattens the logits


def test_the_model_is_left_as_it_was(tmp_path):
    task, model, example, _ = traced("grammar")
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    assert all(p.grad is None for p in model.parameters())
    walkthrough.trace_step(model, example["ids"], example["targets"], tokens=example["tokens"], text="x")
    assert all(p.grad is None for p in model.parameters()) and model.training
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, before[name], err_msg=name)


# ---------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------


def test_the_page_is_one_self_contained_file_with_every_section_and_the_data(step, tmp_path):
    *_, data = step
    html = pages.page(data, "<svg><g id='graph-here'></g></svg>")
    for section in pages.SECTIONS:
        assert f"<section id='{section}'>" in html, section
    found = re.search(r"<script type='application/json' id='walkthrough-data'>(.*?)</script>", html, re.S)
    assert json.loads(found.group(1)) == json.loads(json.dumps(data))
    assert "graph-here" in html
    # Nothing fetched: no http(s) resource, no external script or stylesheet; only inline pictures.
    assert not re.search(r"""(src|href)=["']https?:""", html)
    assert "<link" not in html and "<script src" not in html
    assert len([m for m in re.finditer(r"<script", html)]) == 1  # the JSON, which runs nothing
    # The core numbers are text, readable with scripts off.
    assert f"{data['loss']:.4f}" in html and f"{data['gradcheck']['max_rel_error']:.1e}" in html
    path = pages.write(tmp_path / "walkthrough.html", data)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_heatmaps_are_small_pngs():
    figure = pages.heatmap(np.linspace(-1, 1, 64 * 18).reshape(18, 64), rows=[str(i) for i in range(18)])
    png = re.search(r"base64,([A-Za-z0-9+/=]+)", figure).group(1)
    import base64

    data = base64.b64decode(png)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < 8000
    assert "18×64" in figure


# ---------------------------------------------------------------------------------------------------
# demo.py --explain, and a run's page
# ---------------------------------------------------------------------------------------------------


def demo_main(*args):
    sys.path.insert(0, str(ROOT))
    import demo

    try:
        return demo.main([str(a) for a in args]), ""
    except SystemExit as stop:
        return (stop.code if isinstance(stop.code, int) else 1), (stop.code if isinstance(stop.code, str) else "")


TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "4", "--quiet"]


def test_a_run_writes_its_page_and_explain_writes_one_for_any_text(tmp_path, capsys):
    out = tmp_path / "run"
    assert demo_main("--steps", "2", "--out", out, *TINY)[0] == 0
    first = (out / "walkthrough.html").read_text(encoding="utf-8")
    assert "a cat sat on a mat." in first and str(out / "walkthrough.html") in capsys.readouterr().out
    assert demo_main("--out", out, "--explain", "the dog ran.")[0] == 0
    page = (out / "walkthrough.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r"id='walkthrough-data'>(.*?)</script>", page, re.S).group(1))
    assert data["text"] == "the dog ran." and data["update"]["resumed_moments"]
    status, message = demo_main("--out", out, "--explain", "the cow!")
    assert status == 1 and "not in the vocabulary" in message and "\n" not in message
    status, message = demo_main("--out", tmp_path / "nothing", "--explain", "a cat")
    assert status == 1 and "no checkpoint" in message


@pytest.mark.parametrize("task", ["sort", "add"])
def test_exact_tasks_explain_a_question_and_its_answer(tmp_path, task):
    out = tmp_path / task
    assert demo_main("--task", task, "--steps", "1", "--out", out, *TINY)[0] == 0
    digits = "3 1 4 1 5 9" if task == "sort" else "12 + 09"
    assert demo_main("--out", out, "--explain", digits)[0] == 0
    page = (out / "walkthrough.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r"id='walkthrough-data'>(.*?)</script>", page, re.S).group(1))
    n_in = 6 if task == "sort" else 4
    assert data["targets"][: n_in - 1] == [-1] * (n_in - 1) and all(t >= 0 for t in data["targets"][n_in - 1 :])


def test_a_hugging_face_gpt2_folder_is_explained_in_its_own_bpe_tokens(tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "tiny_gpt2"
    out = tmp_path / "gpt2"
    assert demo_main("--pretrained", fixture, "--explain", "The cat sat on the mat.", "--out", out)[0] == 0
    page = (out / "walkthrough.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r"id='walkthrough-data'>(.*?)</script>", page, re.S).group(1))
    from tinygrad_lm.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_pretrained(fixture)
    ids = tokenizer.encode("The cat sat on the mat.")
    assert data["ids"] == ids[:-1] and data["targets"] == ids[1:]
    assert "".join(data["tokens"]) + tokenizer.decode(ids[-1:]) == "The cat sat on the mat."
    model = GPT.from_pretrained(fixture)
    with ag.no_grad(), model.evaluating():  # (GPT-2's config trains with dropout; a walkthrough step has none)
        _, loss = model(np.asarray(ids[:-1])[None], np.asarray(ids[1:])[None])
    assert data["loss"] == loss.item() and data["update"]["loss_after"] < data["update"]["loss_before"]


# ---------------------------------------------------------------------------------------------------
# Edges found in review
# ---------------------------------------------------------------------------------------------------


def test_exact_tasks_of_any_length_have_an_example_and_refuse_a_wrong_number_of_digits():
    for task in (SortTask(length=11), SortTask(length=64), AddTask(n_digits=9)):
        example = walkthrough.sentence(task)  # the digits of pi, as many as the question has
        assert len(example["ids"]) == task.n_in + task.n_out - 1
    with pytest.raises(ValueError, match="needs 4 digits, got 6"):
        walkthrough.sentence(SortTask(length=4), "3 1 4 1 5 9")


def test_a_one_wide_model_is_explained():
    task = SortTask(length=3)
    model = GPT(GPTConfig(task.vocab_size, task.block_size, n_layer=1, n_head=1, n_embd=1), seed=0)
    example = walkthrough.sentence(task, "3 1 2")
    data = walkthrough.trace_step(model, example["ids"], example["targets"], tokens=example["tokens"], text="x")
    assert len(data["update"]["params"]) >= 2


def test_masked_heatmaps_wider_than_the_page_keep_their_mask():
    n = 301
    figure = pages.heatmap(np.random.default_rng(0).random((n, n)), masked=np.triu(np.ones((n, n), bool), 1),
                           signed=False)  # fmt: skip
    assert "columns averaged in groups of 2" in figure


def test_no_text_can_break_the_embedded_json():
    *_, data = traced("grammar")
    data = dict(data, text="a <!--<script> b </script> c")
    html = pages.page(data)
    found = re.search(r"<script type='application/json' id='walkthrough-data'>(.*?)</script>", html, re.S)
    assert json.loads(found.group(1))["text"] == data["text"]
    assert "<" not in found.group(1)
