"""demo.py --pretrained on the tiny GPT-2 fixture: greedy sampling as transformers does it, a
fine-tune that resumes bit for bit and samples from its checkpoint alone, and refusals in one line."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from test_demo import demo

from tinygrad_lm import GPT, load_checkpoint
from tinygrad_lm.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import demo as demo_module  # noqa: E402  (demo.py is a script at the root, not a package module)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_gpt2"
TEXT = FIXTURE.parent / "tiny_gpt2_text.txt"
REFERENCE = json.loads((FIXTURE / "reference.json").read_text(encoding="utf-8"))
SMALL = ["--batch-size", "2", "--block-size", "32", "--eval-every", "3", "--checkpoint-every", "2", "--quiet",
         "--dropout", "0.1"]  # fmt: skip


def test_sample_at_temperature_0_is_transformers_greedy_text_and_says_how_fast(tmp_path):
    prompt = REFERENCE["prompts"][1]
    text = Tokenizer.from_pretrained(FIXTURE).decode(prompt["ids"])
    result = demo("--pretrained", str(FIXTURE), "--sample", text, "--temperature", "0", "--tokens", "20")
    assert result.stdout == Tokenizer.from_pretrained(FIXTURE).decode(prompt["ids"] + prompt["greedy"]) + "\n"
    assert "20 tokens in" in result.stderr and "tokens/s (with the KV cache)" in result.stderr
    assert "40,320 parameters" in result.stderr


def test_fine_tune_resumes_bit_for_bit_and_needs_only_its_checkpoint_after(tmp_path):
    pretrained = tmp_path / "gpt2"
    shutil.copytree(FIXTURE, pretrained)
    args = ["--pretrained", str(pretrained), "--text", str(TEXT), "--seed", "3", *SMALL]
    straight = demo(*args, "--steps", "6", "--out", str(tmp_path / "straight"))
    assert "fine-tuning GPT-2 from" in straight.stdout and "40,320 parameters" in straight.stdout
    demo(*args, "--steps", "3", "--lr-decay-steps", "6", "--out", str(tmp_path / "split"))
    shutil.rmtree(pretrained)  # from here on, the runs have only their checkpoints (and the text)
    demo("--out", str(tmp_path / "split"), "--resume", "--steps", "6")
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.npz")
    assert a["step"] == b["step"] == 6 and a["pretrained"] == str(pretrained)
    for name in a["model"]:
        np.testing.assert_array_equal(a["model"][name], b["model"][name], err_msg=name)
    name = "transformer.h.0.mlp.c_fc.weight"
    assert not np.array_equal(a["model"][name], GPT.from_pretrained(FIXTURE).state_dict()[name])  # it trained
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["pretrained"] == str(pretrained) and np.isfinite(summary["final_loss"])
    assert (tmp_path / "straight" / "samples.txt").read_text() == (tmp_path / "split" / "samples.txt").read_text()
    sampled = demo("--out", str(tmp_path / "split"), "--sample", "a cat", "--tokens", "5", "--temperature", "0")
    assert sampled.stdout.startswith("a cat") and "tokens/s" in sampled.stderr


def test_mistakes_with_pretrained_get_one_line_and_write_nothing(tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(FIXTURE / "config.json", pickled)
    shutil.copy(FIXTURE / "tokenizer.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    out = tmp_path / "out"
    cases = [
        (["--pretrained", str(pickled), "--sample", "a"], "refusing", 1),
        (["--pretrained", str(pickled), "--text", str(TEXT), "--out", str(out)], "it is a pickle", 1),
        (["--pretrained", str(FIXTURE), "--text", str(TEXT), "--block-size", "65", "--out", str(out)],
         "--block-size 65 is longer than the context of --pretrained", 1),
        (["--pretrained", str(tmp_path / "nothing"), "--sample", "a"], "no such folder", 1),
        (["--pretrained", str(FIXTURE)], "needs --sample PROMPT", 2),
        (["--pretrained", str(FIXTURE), "--task", "sort"], "not on --task sort", 2),
        (["--pretrained", str(FIXTURE), "--n-embd", "64", "--text", str(TEXT)], "shape comes from --pretrained", 2),
    ]  # fmt: skip
    for args, needle, status in cases:
        result = demo(*args, check=False)
        assert result.returncode == status, (args, result.stderr)
        assert result.stderr.startswith("demo: ") and needle in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        assert not out.exists(), args


def test_ids_past_the_tokenizers_vocabulary_show_as_replacement_characters():
    """A model may have more token ids than its tokenizer (a vocabulary padded to a round number):
    what it samples there is shown, not a crash."""
    tokenizer = Tokenizer.from_pretrained(FIXTURE)
    ids = tokenizer.encode("a cat")
    assert demo_module.decode(tokenizer, [*ids, 400, 50303, *ids]) == "a cat\ufffd\ufffda cat"
