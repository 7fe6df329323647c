"""Numerical faults: NaN/Inf stops training with a message naming the first bad op (found with
`detect_anomaly`) and the line that created it, and keeps the last good checkpoint, in the loop and
through `demo.py`; gradient clipping keeps one step at a huge learning rate finite.

`tests/test_train.py` covers a NaN weight in the MLP and one AdamW step at lr 1e3; here: Inf and NaN
in other places, a fault only in the backward, the checkpoint kept bit for bit, the demo, and what
clipping itself contributes.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lm import GPT, GPTConfig, load_checkpoint
from tinygrad_lm.optim import SGD, clip_grad_norm
from tinygrad_lm.tasks import SortTask
from tinygrad_lm.train import TrainConfig, Trainer, TrainingDivergedError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings are expected here

ROOT = Path(__file__).resolve().parent.parent
TASK = SortTask(length=3)
CFG = GPTConfig(vocab_size=TASK.vocab_size, block_size=TASK.block_size, n_layer=1, n_head=2, n_embd=16)


def tiny_config(**overrides):
    options = dict(steps=10, batch_size=8, learning_rate=1e-2, warmup_steps=2, lr_decay_steps=40, eval_every=5,
                   eval_batches=2, checkpoint_every=2)  # fmt: skip
    return TrainConfig(**{**options, **overrides})


def trainer_saving_snapshots(model, out, **overrides):
    """A Trainer that also remembers the weights each checkpoint was written from."""
    trainer = Trainer(model, TASK, tiny_config(**overrides), out, progress=False)
    save, trainer.saved_weights = trainer.save, {}

    def remembering_save():
        path = save()
        trainer.saved_weights[trainer.step] = {k: v.copy() for k, v in model.state_dict().items()}
        return path

    trainer.save = remembering_save
    return trainer


def assert_kept(out, trainer, step):
    """The checkpoint on disk is the one of ``step``, bit for bit, and loads with finite weights."""
    saved = load_checkpoint(Path(out) / "checkpoint.npz", GPT(CFG, seed=3))
    assert saved["step"] == step
    for name, value in trainer.saved_weights[step].items():
        np.testing.assert_array_equal(saved["model"][name], value, err_msg=name)
        assert np.isfinite(value).all(), name


@pytest.mark.parametrize(
    ("value", "parameter"),
    [
        (np.inf, "transformer.h.0.attn.c_attn.weight"),
        (np.nan, "transformer.wte.weight"),
        (np.inf, "transformer.h.0.ln_1.weight"),
        (-np.inf, "transformer.h.0.mlp.c_proj.bias"),
    ],
)
def test_nan_or_inf_stops_training_at_the_first_bad_op_and_keeps_the_last_good_checkpoint(tmp_path, value, parameter):
    model = GPT(CFG, seed=0)
    trainer = trainer_saving_snapshots(model, tmp_path)
    train_step = trainer._train_step

    def poisoned_step():
        if trainer.step == 5:  # after the checkpoint of step 4 and one more step
            dict(model.named_parameters())[parameter].data[...] = value
        return train_step()

    trainer._train_step = poisoned_step
    with pytest.raises(TrainingDivergedError) as info:
        trainer.run()
    message = str(info.value)
    module = parameter.rsplit(".", 1)[0]
    assert re.search(r"training stopped: the loss is (nan|inf|-inf) at step 6", message), message
    assert "the last good checkpoint (step 4) is kept" in message
    assert re.search(rf"detect_anomaly: forward of '\w+' in {re.escape(module)}\b", message), message
    assert re.search(r"created at \S+\.py:\d+", message), message
    assert_kept(tmp_path, trainer, 4)


class GPTWithABadBackward(GPT):
    """Adds ``sqrt(0 * b)`` to the loss once ``poisoned``: 0 in the forward, NaN in the backward."""

    poisoned = False

    def forward(self, idx, targets=None):
        logits, loss = super().forward(idx, targets)
        if loss is not None and self.poisoned:
            loss = loss + (self.transformer.ln_f.bias * 0.0).sqrt().sum()  # the user-code line to be named
        return logits, loss


def test_nan_only_in_the_backward_is_caught_and_its_op_named(tmp_path):
    model = GPTWithABadBackward(CFG, seed=0)
    trainer = trainer_saving_snapshots(model, tmp_path)
    train_step = trainer._train_step

    def poisoned_step():
        model.poisoned = trainer.step == 5
        return train_step()

    trainer._train_step = poisoned_step
    with pytest.raises(TrainingDivergedError) as info:
        trainer.run()
    message = str(info.value)
    assert "the gradient norm is nan at step 6" in message and "last good checkpoint (step 4) is kept" in message
    assert "detect_anomaly: backward of 'sqrt'" in message
    assert f"{os.path.basename(__file__)}:" in message  # points at the line above that built the sqrt
    assert_kept(tmp_path, trainer, 4)


def test_demo_stops_on_nan_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    args = ["--task", "sort", "--steps", "40", "--out", str(tmp_path), "--lr", "1e5", "--n-layer", "1",
            "--n-head", "2", "--n-embd", "16", "--batch-size", "4", "--eval-every", "5", "--checkpoint-every", "2",
            "--quiet"]  # fmt: skip
    result = subprocess.run([sys.executable, str(ROOT / "demo.py"), *args], capture_output=True, text=True,
                            env=env, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    kept = re.search(r"training stopped: the (loss|gradient norm) is \S+ at step (\d+); the last good checkpoint "
                     r"\(step (\d+)\) is kept", result.stderr)  # fmt: skip
    assert kept, result.stderr
    assert re.search(r"detect_anomaly: (forward|backward) of '\w+' in transformer\.\S+", result.stderr)
    assert re.search(r"created at \S+\.py:\d+", result.stderr)
    stopped, last_good = int(kept.group(2)), int(kept.group(3))
    assert 0 < last_good < stopped < 40
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved["step"] == last_good and all(np.isfinite(a).all() for a in saved["model"].values())
    assert not (tmp_path / "summary.json").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, stopped))  # every finished step logged, the bad one not


# ---------------------------------------------------------------------------------------------------
# Gradient clipping
# ---------------------------------------------------------------------------------------------------


def grad_norm(parameters):
    return math.sqrt(sum(float(np.vdot(p.grad.data, p.grad.data)) for p in parameters if p.grad is not None))


@pytest.mark.parametrize("lr", [1e3, 1e6])
def test_one_step_at_a_huge_learning_rate_stays_finite_with_clipped_gradients(tmp_path, lr):
    model = GPT(CFG, seed=0)
    trainer = Trainer(model, TASK, tiny_config(steps=1, learning_rate=lr, warmup_steps=0), tmp_path, progress=False)
    step, seen = trainer.optimizer.step, []
    trainer.optimizer.step = lambda: (seen.append(grad_norm(model.parameters())), step())[1]
    record = trainer.run()
    assert record["grad_norm"] > 1.0 >= seen[0] - 1e-6  # the raw gradient was larger; AdamW got the clipped one
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    for state in trainer.optimizer.state.values():
        assert np.isfinite(state["exp_avg"]).all() and np.isfinite(state["exp_avg_sq"]).all()
    idx, targets = TASK.get_batch("train", 8, np.random.default_rng(1))
    assert math.isfinite(model(idx, targets)[1].item())  # and the model still computes a finite loss
    assert load_checkpoint(tmp_path / "checkpoint.npz")["step"] == 1


@pytest.mark.parametrize("clip", [False, True])
def test_clipping_is_what_keeps_a_huge_sgd_step_finite(clip):
    """With plain SGD the step is lr * gradient: at lr 1e36 a gradient entry above ~340 overflows
    float32. Clipping to norm 1 bounds every entry by 1, so the same step stays finite."""
    model = GPT(CFG, seed=0)
    idx, targets = TASK.get_batch("train", 8, np.random.default_rng(0))
    _, loss = model(idx, targets)
    (loss * 1e4).backward()  # a steep loss: gradient entries in the thousands
    assert max(np.abs(p.grad.data).max() for p in model.parameters()) > 1e3
    if clip:
        clip_grad_norm(model.parameters(), 1.0)
    SGD(model.parameters(), lr=1e36).step()
    assert all(np.isfinite(p.data).all() for p in model.parameters()) == clip
