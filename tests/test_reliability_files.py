"""Bad checkpoint files, and checkpoints that could not be written.

- Corruption: any sampled bit flip or truncation of a checkpoint is refused with a `CheckpointError`
  naming the file (or, for a flip in zip bookkeeping the data never depends on, loads the very same
  state); metadata that is well-formed JSON but wrong, nested too deep or of a future version is
  refused too; a refused load leaves model and optimizer untouched. `Trainer` and `demo.py --resume`
  refuse the same way, without a traceback, and leave the bad file as it was.
- Training never overwrites the last good checkpoint with a bad one: weights that turned NaN/Inf
  are not saved, and a save that fails (disk full, fsync or rename error) leaves the previous file
  intact, no temporary file behind, and a resume from it ends bit for bit like an uninterrupted run.
- No code execution on load: a pickle renamed to ``checkpoint.npz`` and an ``.npz`` with an object
  array are refused by `load_checkpoint`, `Trainer` and ``demo.py --resume`` / ``--sample``, and
  their payload (which creates a marker file when unpickled) never runs.

`tests/test_checkpoint.py` covers single flips, truncations and foreign files of `load_checkpoint`.
"""

import errno
import json
import os
import pathlib
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import assert_same_state, snapshot

from tinygrad_lm import GPT, CheckpointError, GPTConfig, load_checkpoint, save_checkpoint
from tinygrad_lm.checkpoint import _checksum
from tinygrad_lm.tasks import SortTask
from tinygrad_lm.train import TrainConfig, Trainer, TrainingDivergedError

ROOT = Path(__file__).resolve().parent.parent
TASK = SortTask(length=3)
CFG = GPTConfig(vocab_size=TASK.vocab_size, block_size=TASK.block_size, n_layer=1, n_head=2, n_embd=8, dropout=0.1)


def model_and_optimizer(seed=0, steps=1):
    model = GPT(CFG, seed=seed)
    opt = model.configure_optimizers(0.1, 1e-2)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx, targets = TASK.get_batch("train", 4, rng)
        model(idx, targets)[1].backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def refused(path, words, target=None):
    """Loading ``path`` raises CheckpointError naming the file and matching ``words``; the target
    model and optimizer are untouched."""
    model, opt = target or model_and_optimizer(seed=5)
    before = snapshot(model, opt)
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(path, model, opt)
    assert str(path) in str(info.value)
    assert_same_state(before, snapshot(model, opt))
    return str(info.value)


@pytest.fixture
def good(tmp_path):
    model, opt = model_and_optimizer()
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, model, opt, step=1)
    return path, snapshot(model, opt)


def entries_of(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def forge(path, entries, document=None, meta=None):
    """Write ``entries`` with new metadata (a document, or raw bytes) and a valid checksum: only the
    content is wrong."""
    entries = dict(entries)
    meta = json.dumps(document).encode() if document is not None else meta
    entries["__meta__"] = np.frombuffer(meta, np.uint8)
    entries["__checksum__"] = np.frombuffer(_checksum(entries).encode(), np.uint8)
    np.savez(path, **entries)


def demo(*args):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "demo.py"), *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Corruption
# ---------------------------------------------------------------------------------------------------


def stored_bytes(path):
    """The byte ranges holding the members' contents (the arrays, their .npy headers, the metadata)."""
    raw = path.read_bytes()
    ranges = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            start = (
                info.header_offset
                + 30
                + int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
            )
            start += int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
            ranges.append(range(start, start + info.compress_size))
    return ranges


def test_every_sampled_bit_flip_is_refused_or_changes_nothing(good, tmp_path):
    path, saved = good
    original = path.read_bytes()
    n = len(original)
    rng = np.random.default_rng(11)
    # random places, plus all of the first zip header and of the end of the central directory
    positions = sorted(set(rng.integers(0, n, 160).tolist()) | set(range(48)) | set(range(n - 120, n)))
    content = stored_bytes(path)
    bad = tmp_path / "bad.npz"
    target = model_and_optimizer(seed=5)
    outcomes = {"refused": 0, "same state": 0}
    for position in positions:
        data = bytearray(original)
        data[position] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(data))
        before = snapshot(*target)
        try:
            load_checkpoint(bad, *target)
        except CheckpointError as error:
            assert str(bad) in str(error), error
            assert_same_state(before, snapshot(*target))
            outcomes["refused"] += 1
        else:  # zip bookkeeping (a time stamp, ...): then exactly what was saved is loaded
            assert not any(position in r for r in content), f"a flip at {position} of stored content was not caught"
            assert_same_state(saved, snapshot(*target))
            outcomes["same state"] += 1
    assert outcomes["refused"] >= sum(any(p in r for r in content) for p in positions) > 60, outcomes


def test_every_sampled_truncation_is_refused(good, tmp_path):
    path, _ = good
    original = path.read_bytes()
    n = len(original)
    lengths = sorted(set(np.random.default_rng(12).integers(0, n, 150).tolist()) | {0, 1, 4, n - 22, n - 1})
    bad = tmp_path / "bad.npz"
    target = model_and_optimizer(seed=5)
    for length in lengths:
        bad.write_bytes(original[:length])
        refused(bad, "empty file|truncated|corrupted|not a checkpoint", target)


def test_wrong_metadata_with_a_valid_checksum_is_refused(good, tmp_path):
    path, _ = good
    entries = entries_of(path)
    document = json.loads(entries["__meta__"].tobytes())
    bad = tmp_path / "forged.npz"

    def variant(**changes):
        return {**document, **changes}

    cases = [
        (variant(version=3), "format version 3, this code reads versions 1 to 2 .*newer"),
        (variant(format="someone.else"), "not a tinygrad_lm checkpoint"),
        (variant(model_keys=5), "malformed metadata"),
        (variant(tied=[]), "malformed metadata"),
        (variant(meta={"step": {"__array__": "meta/nothing"}}), "malformed metadata"),
        (variant(rng={"x": {"__generator__": {"bit_generator": "os.system"}}}), "malformed metadata"),
        (variant(optimizer="adam"), "does not fit the optimizer|malformed"),
        (variant(config={**document["config"], "n_embd": 16}), "another config"),
    ]
    for forged, words in cases:
        forge(bad, entries, forged)
        refused(bad, words)
    deep = json.dumps(variant(meta={"deep": "here"})).replace('"here"', "[" * 900 + "]" * 900)
    for text in ("[" * 100_000 + "]" * 100_000, deep):  # too deep for the JSON reader, or for unpacking
        forge(bad, entries, meta=text.encode())
        refused(bad, "unreadable metadata|malformed metadata")
    forge(bad, entries, meta=b"\xff\xfe not UTF-8")
    refused(bad, "unreadable metadata")
    (tmp_path / "a_folder.npz").mkdir()
    refused(tmp_path / "a_folder.npz", "cannot be read")


def test_trainer_refuses_a_corrupted_checkpoint_and_leaves_everything_as_it_was(good):
    path, _ = good
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x08
    path.write_bytes(bytes(data))
    (path.parent / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    model, _ = model_and_optimizer(seed=5, steps=0)
    config = TrainConfig(steps=4, batch_size=4, warmup_steps=1, eval_every=2, eval_batches=1, checkpoint_every=2)
    trainer = Trainer(model, TASK, config, path.parent, progress=False)
    before = snapshot(model, trainer.optimizer)
    with pytest.raises(CheckpointError, match="corrupted|checksum") as info:
        trainer.run(resume=True)
    assert str(path) in str(info.value)
    assert trainer.step == 0 and trainer.history == []
    assert_same_state(before, snapshot(model, trainer.optimizer))
    assert path.read_bytes() == bytes(data)  # the bad file is kept for a human to look at
    assert (path.parent / "metrics.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n'


@pytest.mark.parametrize("damage", ["truncated", "flipped", "foreign"])
def test_demo_resume_refuses_a_bad_checkpoint_clearly_and_keeps_it(good, damage):
    path, _ = good
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 3]
    elif damage == "flipped":
        data = data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x40]) + data[len(data) // 2 + 1 :]
    else:
        data = b"step,loss\n1,2.5\n"
    path.write_bytes(data)
    result = demo("--task", "sort", "--out", str(path.parent), "--resume", "--steps", "3", "--quiet")
    assert result.returncode == 1
    assert f"checkpoint {path}: " in result.stderr and "Traceback" not in result.stderr
    problem = {"truncated": "truncated or corrupted", "flipped": "corrupted", "foreign": "not a checkpoint"}[damage]
    assert problem in result.stderr
    assert path.read_bytes() == data and not (path.parent / "summary.json").exists()


# ---------------------------------------------------------------------------------------------------
# Training never replaces the last good checkpoint with a bad one
# ---------------------------------------------------------------------------------------------------


def tiny_trainer(out, steps, seed=0):
    model = GPT(CFG, seed=seed)
    config = TrainConfig(steps=steps, batch_size=4, learning_rate=1e-2, warmup_steps=1, lr_decay_steps=20,
                         eval_every=3, eval_batches=1, checkpoint_every=2)  # fmt: skip
    return Trainer(model, TASK, config, out, progress=False)


def run_files(out):
    """The files in a run's folder, but the run lock's (which stays, empty of meaning, between runs)."""
    return sorted(name for name in os.listdir(out) if name != ".lock")


def metrics(out):
    lines = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k not in ("seconds", "ms_per_step")} for m in lines]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_weights_that_turn_non_finite_are_never_checkpointed(tmp_path, value):
    trainer = tiny_trainer(tmp_path, steps=8)
    step = trainer.optimizer.step

    def poisoned_step():
        step()
        if trainer.step == 3:  # the update of step 4 (a checkpoint step) leaves a bad weight
            trainer.model.transformer.h[0].attn.c_proj.weight.data[1, 2] = value

    trainer.optimizer.step = poisoned_step
    with pytest.raises(TrainingDivergedError, match=r"refusing to checkpoint: parameter transformer.h.0.attn.c_proj"):
        trainer.run()
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved["step"] == 2 and all(np.isfinite(a).all() for a in saved["model"].values())
    assert run_files(tmp_path) == ["checkpoint.npz", "metrics.jsonl"]


class DiskFull:
    """A file that takes ``room`` bytes, then fails the way a full disk does."""

    def __init__(self, file, room):
        self.file, self.room = file, room

    def write(self, data):
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.file.__exit__(*exc)


def fail(error_number):
    def failing(*args, **kwargs):
        raise OSError(error_number, os.strerror(error_number))

    return failing


def disk_full(mp, room=3000):
    real = os.fdopen
    mp.setattr(os, "fdopen", lambda *args, **kwargs: DiskFull(real(*args, **kwargs), room))


FAULTS = {
    "disk full mid-write": disk_full,
    "fsync fails": lambda mp: mp.setattr(os, "fsync", fail(errno.EIO)),
    "rename fails": lambda mp: mp.setattr(os, "replace", fail(errno.EACCES)),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failed_save_keeps_the_previous_checkpoint_and_the_run_resumes_bit_for_bit(tmp_path, fault):
    straight = tiny_trainer(tmp_path / "straight", steps=6)
    straight.run()

    out = tmp_path / "faulty"
    trainer = tiny_trainer(out, steps=6)
    save, good_bytes = trainer.save, {}

    def faulty_save():
        if trainer.step != 4:
            path = save()
            good_bytes[trainer.step] = Path(path).read_bytes()
            return path
        with pytest.MonkeyPatch.context() as mp:  # the fault hits only the write of step 4
            FAULTS[fault](mp)
            return save()

    trainer.save = faulty_save
    with pytest.raises(OSError) as info:
        trainer.run()
    assert info.value.errno in (errno.ENOSPC, errno.EIO, errno.EACCES)
    assert (out / "checkpoint.npz").read_bytes() == good_bytes[2]  # the previous file, byte for byte
    assert load_checkpoint(out / "checkpoint.npz")["step"] == 2
    assert run_files(out) == ["checkpoint.npz", "metrics.jsonl"]  # no temporary file left

    resumed = tiny_trainer(out, steps=6, seed=9)  # another init: everything must come from the file
    resumed.run(resume=True)
    assert resumed.step == 6
    assert_same_state(snapshot(straight.model, straight.optimizer), snapshot(resumed.model, resumed.optimizer))
    assert metrics(out) == metrics(tmp_path / "straight")


# ---------------------------------------------------------------------------------------------------
# No code execution on load
# ---------------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def booby_traps(folder, marker):
    """The two files: a pickle renamed to checkpoint.npz, and an .npz whose metadata entry is a
    pickled object array. Checks first that each payload really runs when unpickled."""
    raw = pickle.dumps(Payload(marker))
    pickle.loads(raw)
    assert marker.exists()
    marker.unlink()
    objects = np.empty(2, dtype=object)
    objects[:] = [Payload(marker), "x"]
    np.savez(folder / "objects.npz", __meta__=objects, __checksum__=np.zeros(64, np.uint8))  # np.savez pickles it
    with np.load(folder / "objects.npz", allow_pickle=True) as data:
        data["__meta__"]
    assert marker.exists()
    marker.unlink()
    objects = (folder / "objects.npz").read_bytes()
    return {"pickle": (raw, "found a pickle"), "object array": (objects, "pickled object")}


def test_no_payload_runs_through_load_checkpoint_or_the_trainer(tmp_path):
    marker = tmp_path / "payload_ran"
    for content, words in booby_traps(tmp_path, marker).values():
        out = tmp_path / "run"
        out.mkdir(exist_ok=True)
        (out / "checkpoint.npz").write_bytes(content)
        refused(out / "checkpoint.npz", words)
        with pytest.raises(CheckpointError, match=words):
            tiny_trainer(out, steps=2).run(resume=True)
        assert not marker.exists()


@pytest.mark.parametrize("trap", ["pickle", "object array"])
def test_no_payload_runs_through_demo_resume_or_sample(tmp_path, trap):
    marker = tmp_path / "payload_ran"
    content, words = booby_traps(tmp_path, marker)[trap]
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(content)
    for args in (["--task", "sort", "--resume", "--steps", "2", "--quiet"], ["--sample", "123456"]):
        result = demo("--out", str(out), *args)
        assert result.returncode == 1, result.stderr
        assert f"checkpoint {out / 'checkpoint.npz'}: " in result.stderr and words in result.stderr
        assert "Traceback" not in result.stderr
        assert not marker.exists(), f"the payload ran in demo.py {' '.join(args)}"
    assert (out / "checkpoint.npz").read_bytes() == content


def test_optimizer_moments_that_turn_non_finite_are_never_checkpointed(tmp_path):
    """The Trainer keeps the same promise for the optimizer's state as for the weights (and
    `save_checkpoint` itself would refuse it): the run stops, the last good checkpoint stays."""
    trainer = tiny_trainer(tmp_path, steps=8)
    step = trainer.optimizer.step

    def poisoned_step():
        step()
        if trainer.step == 3:
            p = trainer.model.transformer.h[0].mlp.c_fc.weight
            trainer.optimizer.state[p]["exp_avg_sq"][0, 0] = np.inf

    trainer.optimizer.step = poisoned_step
    with pytest.raises(TrainingDivergedError, match=r"optimizer state exp_avg_sq of transformer.h.0.mlp.c_fc.weight"):
        trainer.run()
    assert load_checkpoint(tmp_path / "checkpoint.npz")["step"] == 2
