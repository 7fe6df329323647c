"""demo.py end to end with tiny settings: files written, resume, sampling, Ctrl-C, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lm import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "4", "--eval-every", "3",
        "--checkpoint-every", "3", "--quiet"]  # fmt: skip


def demo(*args, check=True):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "demo.py"), *args], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"demo.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.mark.parametrize("task", ["grammar", "sort"])
def test_a_run_writes_every_file(tmp_path, task):
    out = tmp_path / task
    result = demo("--task", task, "--steps", "6", "--out", str(out), *TINY)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == task and summary["steps"] == 6 and summary["checkpoint"] == "checkpoint.npz"
    assert np.isfinite(summary["final_loss"]) and summary["seconds"] > 0 and "model" in summary["config"]
    assert ("accuracy" in summary) == (task == "sort") and ("entropy_floor" in summary) == (task == "grammar")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 7))
    assert load_checkpoint(out / summary["checkpoint"])["step"] == 6
    for picture in ("loss.png", "attention.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = ET.parse(out / "graph.svg").getroot()
    assert svg.tag.endswith("svg") and "transformer.h.0" in (out / "graph.svg").read_text()
    assert (out / "samples.txt").read_text().strip()
    assert str(out / "summary.json") in result.stdout


def test_resume_continues_to_the_same_weights_as_one_run(tmp_path):
    demo("--task", "sort", "--seed", "5", "--steps", "8", "--out", str(tmp_path / "straight"), *TINY)
    # A fresh run fits its schedule to its --steps: the split run asks for the 8-step schedule outright.
    demo("--task", "sort", "--seed", "5", "--steps", "4", "--lr-decay-steps", "8", "--out", str(tmp_path / "split"),
         *TINY)  # fmt: skip
    resumed = demo("--out", str(tmp_path / "split"), "--resume", "--steps", "8")  # as INTERFACE.md writes it
    assert "task sort" in resumed.stdout  # the task, seed and sizes come from the checkpoint
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.npz")["model"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for name in ("samples.txt",):
        assert (tmp_path / "straight" / name).read_text() == (tmp_path / "split" / name).read_text()
    ignored = demo("--out", str(tmp_path / "split"), "--resume", "--steps", "8", "--lr", "1")
    assert "ignoring --lr" in ignored.stderr


def test_resume_in_an_empty_folder_starts_from_zero(tmp_path):
    demo("--task", "reverse", "--steps", "3", "--out", str(tmp_path), "--resume", *TINY)
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3


def test_sampling_from_a_checkpoint(tmp_path):
    demo("--steps", "3", "--out", str(tmp_path), *TINY)
    result = demo("--out", str(tmp_path), "--sample", "the cat", "--tokens", "10")
    assert result.stdout.startswith("the cat") and len(result.stdout.rstrip("\n")) >= len("the cat") + 1
    bad = demo("--out", str(tmp_path), "--sample", "the cow!", check=False)
    assert bad.returncode != 0 and "not in the vocabulary: '!'" in bad.stderr
    missing = demo("--out", str(tmp_path / "nothing"), "--sample", "x", check=False)
    assert missing.returncode != 0 and "no checkpoint" in missing.stderr


def test_text_file_task(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("".join(f"note number {i} says hello\n" for i in range(100)))
    demo("--text", str(text), "--steps", "3", "--block-size", "16", "--out", str(tmp_path / "run"), *TINY)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["task"] == "text"
    assert demo("--out", str(tmp_path / "run"), "--sample", "note", "--tokens", "5").stdout.startswith("note")


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    args = [sys.executable, str(ROOT / "demo.py"), "--task", "sort", "--steps", "100000", "--out", str(tmp_path),
            "--checkpoint-every", "100000", *TINY[:-5], "--quiet"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "metrics.jsonl").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130 and "saved step" in stdout
    step = load_checkpoint(tmp_path / "checkpoint.npz")["step"]
    assert step > 0
    demo("--task", "sort", "--steps", str(step + 2), "--out", str(tmp_path), "--resume", *TINY)
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == step + 2


def test_bad_arguments_are_explained():
    result = demo("--task", "sort", "--text", "x.txt", check=False)
    assert result.returncode == 2 and "--text trains the 'text' task" in result.stderr
    result = demo("--text", "/no/such/file.txt", "--steps", "1", check=False)
    assert result.returncode != 0 and "no such file" in result.stderr
    assert "--resume" in demo("--help").stdout
