"""The training loop: it learns, resumes bit for bit, and stops cleanly on NaN."""

import json

import numpy as np
import pytest

from tinygrad_lm import GPT, GPTConfig, load_checkpoint
from tinygrad_lm.tasks import GrammarTask, SortTask
from tinygrad_lm.train import TRAIN_STREAM, TrainConfig, Trainer, TrainingDivergedError, stream


def tiny_model(task, seed=0, dropout=0.0):
    config = GPTConfig(task.vocab_size, task.block_size, n_layer=1, n_head=2, n_embd=16, dropout=dropout)
    return GPT(config, seed=seed)


def tiny_config(**overrides):
    options = dict(steps=12, batch_size=8, learning_rate=1e-2, warmup_steps=2, lr_decay_steps=40,
                   eval_every=6, eval_batches=2, checkpoint_every=4, log_every=1)  # fmt: skip
    return TrainConfig(**{**options, **overrides})


def weights(model):
    return {name: p.data.copy() for name, p in model.named_parameters()}


def test_a_short_run_lowers_the_loss(tmp_path):
    task = SortTask(length=4)
    model = tiny_model(task)
    Trainer(model, task, tiny_config(steps=40), tmp_path, progress=False).run()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 41))
    assert np.mean([m["loss"] for m in lines[-5:]]) < 0.8 * np.mean([m["loss"] for m in lines[:5]])
    assert "val_loss" in lines[-1] and load_checkpoint(tmp_path / "checkpoint.npz")["step"] == 40


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_resume_equals_one_uninterrupted_run_bit_for_bit(tmp_path, dropout):
    task = GrammarTask(block_size=24)
    straight = tiny_model(task, dropout=dropout)
    Trainer(straight, task, tiny_config(steps=12), tmp_path / "a", progress=False).run()

    first = tiny_model(task, dropout=dropout)
    Trainer(first, task, tiny_config(steps=5), tmp_path / "b", progress=False).run()  # stops at 5 (saved at 4, 5)
    resumed = tiny_model(task, seed=123, dropout=dropout)  # different init: everything must come from the file
    trainer = Trainer(resumed, task, tiny_config(steps=12), tmp_path / "b", progress=False)
    trainer.run(resume=True)
    assert trainer.step == 12
    for name, value in weights(straight).items():
        np.testing.assert_array_equal(weights(resumed)[name], value, err_msg=name)
    a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in b] == [m["step"] for m in a]
    assert [m["loss"] for m in b] == [m["loss"] for m in a]


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    task = SortTask(length=3)
    Trainer(tiny_model(task), task, tiny_config(steps=6), tmp_path, progress=False).run()
    with open(tmp_path / "metrics.jsonl", "a") as f:  # as if a killed run had logged steps 7-8, then a torn line
        f.write(json.dumps({"step": 7, "loss": 1.0}) + "\n" + json.dumps({"step": 8, "loss": 1.0}) + "\n" + '{"st')
    trainer = Trainer(tiny_model(task), task, tiny_config(steps=8), tmp_path, progress=False)
    trainer.resume()
    assert trainer.step == 6 and [m["step"] for m in trainer.history] == [1, 2, 3, 4, 5, 6]


def test_nan_stops_training_names_the_op_and_keeps_the_last_good_checkpoint(tmp_path):
    task = SortTask(length=3)
    model = tiny_model(task)
    trainer = Trainer(model, task, tiny_config(steps=20), tmp_path, progress=False)
    original = trainer._train_step

    def poisoned_step():
        if trainer.step == 6:  # after the checkpoint at step 4, a weight turns into NaN
            model.transformer.h[0].mlp.c_fc.weight.data[0, 0] = np.nan
        return original()

    trainer._train_step = poisoned_step
    with pytest.raises(TrainingDivergedError) as info:
        trainer.run()
    message = str(info.value)
    assert "the loss is nan at step 7" in message
    assert "last good checkpoint (step 4) is kept" in message
    assert "detect_anomaly: forward of" in message and "in transformer.h.0.mlp.c_fc" in message
    assert load_checkpoint(tmp_path / "checkpoint.npz")["step"] == 4


def test_gradient_clipping_hands_the_optimizer_gradients_of_norm_grad_clip(tmp_path):
    """AdamW's step is bounded whatever the gradient, so "the weights stay finite" cannot tell whether
    clipping ran: check what the optimizer was handed. The same direction, rescaled to norm
    ``grad_clip`` when the raw norm is larger, and the raw norm logged."""
    task = SortTask(length=3)
    model = tiny_model(task)
    trainer = Trainer(model, task, tiny_config(steps=1, learning_rate=1e3, warmup_steps=0, grad_clip=0.25), tmp_path,
                      progress=False)  # fmt: skip
    idx, targets = task.get_batch("train", 8, stream(0, TRAIN_STREAM, 0))
    reference = tiny_model(task)
    reference(idx, targets)[1].backward()
    raw = np.concatenate([p.grad.data.ravel() for p in reference.parameters()])
    step, handed = trainer.optimizer.step, []
    trainer.optimizer.step = lambda: (handed.append([p.grad.data.copy() for p in model.parameters()]), step())[1]
    record = trainer.run()
    clipped = np.concatenate([g.ravel() for g in handed[0]])
    assert record["grad_norm"] == pytest.approx(np.linalg.norm(raw), rel=1e-5) and record["grad_norm"] > 0.25
    assert np.linalg.norm(clipped) == pytest.approx(0.25, rel=1e-5)
    np.testing.assert_allclose(clipped, raw * (0.25 / np.linalg.norm(raw)), rtol=1e-4, atol=1e-9)
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_bad_train_config():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="warmup_steps <= lr_decay_steps"):
        TrainConfig(warmup_steps=10, lr_decay_steps=5)
