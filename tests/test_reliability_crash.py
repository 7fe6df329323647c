"""Crash safety and determinism, with real processes.

`demo.py` is killed with SIGKILL at seeded random moments (during start-up, before the first
checkpoint, in the middle of a step, in the middle of writing a checkpoint) and resumed with
``--resume`` after each kill: the run ends with the same weights, optimizer state, dropout stream
and metrics, bit for bit, as one uninterrupted run. After every kill the checkpoint on disk loads
and the metrics file is consistent. The same seed gives the same weights in another process;
another seed gives other weights.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lm import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
STEPS = 80
# Tiny model, dropout on (its random stream must survive the kills too), a checkpoint every 2 steps
# so that kills often land between checkpoints or in the middle of writing one.
TINY = ["--task", "sort", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "4",
        "--dropout", "0.1", "--eval-every", "5", "--checkpoint-every", "2", "--quiet"]  # fmt: skip
TIMING = {"seconds", "ms_per_step"}  # wall-clock fields: the only ones that may differ between runs
TEMPORARY = re.compile(r"^\.checkpoint\.npz\..*\.tmp$")  # how checkpoint.py names a file being written
DEADLINE = 60.0  # seconds any one wait may take before the test gives up (never hangs)


def command(out, *extra, seed=0):
    return [sys.executable, str(ROOT / "demo.py"), *TINY, "--steps", str(STEPS), "--seed", str(seed),
            "--out", str(out), *extra]  # fmt: skip


def environment(hash_seed="0"):
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": hash_seed}


def demo(out, *extra, seed=0, hash_seed="0"):
    result = subprocess.run(command(out, *extra, seed=seed), capture_output=True, text=True,
                            env=environment(hash_seed), timeout=300)  # fmt: skip
    assert result.returncode == 0, f"demo.py failed ({result.returncode}):\n{result.stderr}"
    return result


def metric_lines(out):
    """The complete lines of metrics.jsonl (a killed process may leave a torn last line)."""
    path = Path(out) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))  # a complete line always parses
    return records


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def temporaries(out):
    return sorted(name for name in os.listdir(out) if TEMPORARY.match(name)) if os.path.isdir(out) else []


def assert_same_run(a, b):
    """Two checkpoints hold the same state, bit for bit: step, weights, optimizer, dropout stream."""
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        np.testing.assert_array_equal(a["model"][name], b["model"][name], err_msg=name)
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for i, state in oa["state"].items():
        for key, value in state.items():
            np.testing.assert_array_equal(value, ob["state"][i][key], err_msg=f"optimizer state {i}/{key}")
    assert {k: g.bit_generator.state for k, g in a["rng"].items()} == {
        k: g.bit_generator.state for k, g in b["rng"].items()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of STEPS steps."""
    out = tmp_path_factory.mktemp("uninterrupted")
    demo(out)
    return out


# ---------------------------------------------------------------------------------------------------
# Killing a run
# ---------------------------------------------------------------------------------------------------


def wait_for(process, condition, what, pause=0.002):
    """Poll until ``condition()``; fail if the process exits first or the deadline passes."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"demo.py exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)


def last_step(out):
    lines = metric_lines(out)
    return lines[-1]["step"] if lines else 0


def kill_during_startup(process, out, rng):
    time.sleep(rng.uniform(0.0, 0.8))  # imports, loading the checkpoint, rewriting metrics, first steps


def kill_before_the_first_checkpoint(process, out, rng):
    assert not (out / "checkpoint.npz").exists()
    wait_for(process, lambda: last_step(out) >= 1, "the first step was logged")


def kill_mid_step(process, out, rng):
    target = last_step(out) + int(rng.integers(1, 6))
    wait_for(process, lambda: last_step(out) >= target, f"step {target} was logged")
    time.sleep(rng.uniform(0.0, 0.03))  # somewhere inside the next step (a step takes ~10-30 ms)


def kill_mid_write(process, out, rng):
    """Kill as soon as the n-th new checkpoint write has created its temporary file."""
    seen = set(temporaries(out))  # left behind by earlier kills
    wanted = int(rng.integers(1, 4))
    new = set()

    def writing():
        current = set(temporaries(out)) - seen
        new.update(current)
        return len(new) >= wanted and current

    wait_for(process, writing, f"checkpoint write number {wanted}", pause=0)  # busily: a write lasts milliseconds


def kill_while_writing_the_results(process, out, rng):
    """After the last step: while summary, samples and pictures are written (about a second)."""
    wait_for(process, lambda: last_step(out) >= STEPS, "the last step was logged")
    time.sleep(rng.uniform(0.05, 0.5))


MOMENTS = [
    kill_before_the_first_checkpoint,  # in a fresh folder: --resume starts from step 0
    kill_during_startup,
    kill_mid_step,
    kill_mid_write,
    kill_mid_step,
    kill_mid_write,
    kill_during_startup,
    kill_mid_write,
    kill_mid_step,
    kill_while_writing_the_results,  # then --resume has no step left to train, only the results to write
]


def test_killed_at_random_moments_and_resumed_equals_one_uninterrupted_run(reference, tmp_path):
    rng = np.random.default_rng(20240607)
    out = tmp_path / "killed"
    saved_steps = [0]
    landed_mid_write = 0
    for moment in MOMENTS:
        process = subprocess.Popen(command(out, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=environment())  # fmt: skip
        try:
            before = set(temporaries(out))
            moment(process, out, rng)
        finally:
            process.send_signal(signal.SIGKILL)
            _, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == -signal.SIGKILL, f"{moment.__name__}: the run ended first:\n{stderr.decode()}"
        if moment is kill_mid_write and set(temporaries(out)) - before:
            landed_mid_write += 1  # its temporary file is still there: the kill interrupted the write

        # After any kill: the checkpoint (if any) loads, and never goes back in time ...
        if (out / "checkpoint.npz").exists():
            step = load_checkpoint(out / "checkpoint.npz")["step"]
            assert step % 2 == 0 and step >= saved_steps[-1], (moment.__name__, step, saved_steps)
            saved_steps.append(step)
        # ... and the metrics are steps 1, 2, ... once each, covering every checkpointed step.
        steps = [m["step"] for m in metric_lines(out)]
        assert steps == list(range(1, len(steps) + 1)), f"after {moment.__name__}: metrics steps {steps}"
        assert len(steps) >= saved_steps[-1]
    assert landed_mid_write >= 1, "no kill landed in the middle of a checkpoint write"
    assert not (out / "summary.json").exists()  # no process got to the end

    demo(out, "--resume")
    assert_same_run(load_checkpoint(out / "checkpoint.npz"), load_checkpoint(reference / "checkpoint.npz"))
    assert without_timing(metric_lines(out)) == without_timing(metric_lines(reference))
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    assert (summary["steps"], summary["final_loss"], summary["accuracy"]) == (
        expected["steps"], expected["final_loss"], expected["accuracy"]
    )  # fmt: skip
    assert temporaries(out) == [], "temporary files of killed writes were left behind"


# ---------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_weights_in_another_process(reference, tmp_path):
    demo(tmp_path / "again", hash_seed="4242")  # another process, another hash seed (set and dict orders)
    again = tmp_path / "again"
    assert_same_run(load_checkpoint(again / "checkpoint.npz"), load_checkpoint(reference / "checkpoint.npz"))
    assert without_timing(metric_lines(again)) == without_timing(metric_lines(reference))
    assert (again / "samples.txt").read_text() == (reference / "samples.txt").read_text()


def test_another_seed_gives_other_weights(reference, tmp_path):
    demo(tmp_path / "other", seed=1)
    other = load_checkpoint(tmp_path / "other" / "checkpoint.npz")["model"]
    same = load_checkpoint(reference / "checkpoint.npz")["model"]
    assert other.keys() == same.keys()
    assert [name for name in same if np.array_equal(other[name], same[name])] == []


# ---------------------------------------------------------------------------------------------------
# The same, in process: what the kills above rely on
# ---------------------------------------------------------------------------------------------------


def test_resume_without_a_checkpoint_drops_the_metrics_of_the_killed_attempt(tmp_path):
    from tinygrad_lm import GPT, GPTConfig
    from tinygrad_lm.tasks import SortTask
    from tinygrad_lm.train import TrainConfig, Trainer

    task = SortTask(length=3)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 9.0}\n{"st')
    model = GPT(GPTConfig(task.vocab_size, task.block_size, n_layer=1, n_head=2, n_embd=16), seed=0)
    config = TrainConfig(steps=3, batch_size=4, warmup_steps=1, eval_every=3, eval_batches=1, checkpoint_every=3)
    Trainer(model, task, config, tmp_path, progress=False).run(resume=True)
    lines = metric_lines(tmp_path)
    assert [m["step"] for m in lines] == [1, 2, 3] and all(m["loss"] != 9.0 for m in lines)


def test_a_run_removes_the_temporary_files_of_killed_writes_and_nothing_else(tmp_path):
    from tinygrad_lm.checkpoint import remove_stale_temporaries

    stale = [".checkpoint.npz.0123456789ab.tmp", ".checkpoint.npz.ba9876543210.tmp"]
    kept = ["checkpoint.npz", "metrics.jsonl", ".other.npz.0123456789ab.tmp", ".checkpoint.npz.notours.tmp", "x.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"PK\x03\x04 half a zip")
    removed = remove_stale_temporaries(tmp_path / "checkpoint.npz")
    assert sorted(os.path.basename(p) for p in removed) == stale
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "nowhere" / "checkpoint.npz") == []
