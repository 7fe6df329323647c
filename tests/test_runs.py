"""One folder, one run: no run mixes with another, resume keeps the run's own settings, and every
mistake on demo.py's command line gets one line and leaves every file as it was.

Most of these call `demo.main` in this process (a second each); the lock and the kills need real
processes.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lm import GPT, GPTConfig, load_checkpoint, save_checkpoint
from tinygrad_lm.optim import warmup_cosine_lr
from tinygrad_lm.tasks import SortTask
from tinygrad_lm.train import RunExistsError, RunInUseError, TrainConfig, Trainer, run_lock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import demo  # noqa: E402  (demo.py is a script at the root, not a package module)

TINY = ["--task", "sort", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "4",
        "--eval-every", "3", "--checkpoint-every", "3", "--quiet"]  # fmt: skip
TASK = SortTask(length=3)


def run_demo(*args):
    """``demo.main(args)``: the exit status and what it printed."""
    try:
        return demo.main([str(a) for a in args]), ""
    except SystemExit as stop:
        return (stop.code if isinstance(stop.code, int) else 1), (stop.code if isinstance(stop.code, str) else "")


def snapshot(folder):
    """Every file under ``folder`` with its bytes (and the folder's own listing)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def tiny_trainer(out, steps=4, seed=0, init_seed=None, **config):
    model = GPT(GPTConfig(TASK.vocab_size, TASK.block_size, n_layer=1, n_head=2, n_embd=16),
                seed=seed if init_seed is None else init_seed)  # fmt: skip
    settings = dict(steps=steps, batch_size=4, learning_rate=1e-2, warmup_steps=1, lr_decay_steps=8, eval_every=2,
                    eval_batches=1, checkpoint_every=2, seed=seed) | config  # fmt: skip
    return Trainer(model, TASK, TrainConfig(**settings), out, progress=False, outputs=("summary.json",))


def weights(path):
    return load_checkpoint(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------------------------------------------
# A fresh run never mixes with the run a folder holds
# ---------------------------------------------------------------------------------------------------


def test_a_fresh_run_over_an_existing_run_is_refused_and_leaves_it_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_demo(*TINY, "--steps", "3", "--out", out)[0] == 0
    before = snapshot(out)
    status, message = run_demo(*TINY, "--steps", "3", "--seed", "7", "--out", out)
    assert status == 1 and message.startswith("demo: ") and "\n" not in message
    assert "already holds a run" in message and "--resume" in message and "--overwrite" in message
    assert snapshot(out) == before
    with pytest.raises(RunExistsError, match="already holds a run at step 3"):  # the library says it too
        tiny_trainer(out).run()
    assert snapshot(out) == before


def test_overwrite_replaces_the_run_and_nothing_of_the_old_one_is_left(tmp_path, capsys):
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    assert run_demo(*TINY, "--steps", "6", "--seed", "3", "--out", old)[0] == 0
    assert run_demo(*TINY, "--steps", "3", "--seed", "4", "--out", old, "--overwrite")[0] == 0
    assert run_demo(*TINY, "--steps", "3", "--seed", "4", "--out", fresh)[0] == 0
    assert_same_weights(weights(old / "checkpoint.npz"), weights(fresh / "checkpoint.npz"))
    steps = [json.loads(line)["step"] for line in (old / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert json.loads((old / "summary.json").read_text())["steps"] == 3


def test_a_run_claims_its_folder_with_its_step_0_checkpoint_before_it_trains(tmp_path):
    """Killed at any moment after it starts, an --overwrite run resumes as itself, never as the run it
    replaces; killed before it claimed the folder, that folder is exactly as it was."""
    out, straight = tmp_path / "out", tmp_path / "straight"
    tiny_trainer(out, steps=4, seed=1).run()
    (out / "summary.json").write_text("{}")  # a result of the old run
    before = snapshot(out)

    class Killed(BaseException):
        pass

    # Killed before the claim (the step-0 save): the old run is untouched.
    trainer = tiny_trainer(out, steps=4, seed=2)
    trainer.save = lambda: (_ for _ in ()).throw(Killed())
    with pytest.raises(Killed):
        trainer.run(overwrite=True)
    after = snapshot(out)
    assert after.pop(".lock") != b"" and before.pop(".lock") is not None  # (the lock says who took it last)
    assert after == before

    # Killed just after it (in its first batch): the folder is the new run, at step 0.
    trainer = tiny_trainer(out, steps=4, seed=2)
    trainer.task = type("Dying", (), {"get_batch": lambda *a: (_ for _ in ()).throw(Killed())})()
    with pytest.raises(Killed):
        trainer.run(overwrite=True)
    assert load_checkpoint(out / "checkpoint.npz")["step"] == 0
    assert (out / "metrics.jsonl").read_text() == "" and not (out / "summary.json").exists()

    resumed = tiny_trainer(out, steps=4, seed=2, init_seed=99)  # another init: the weights come from the folder
    resumed.run(resume=True)
    tiny_trainer(straight, steps=4, seed=2).run()
    assert_same_weights(weights(out / "checkpoint.npz"), weights(straight / "checkpoint.npz"))
    assert (out / "metrics.jsonl").read_text().count("\n") == 4


def test_resume_on_a_folder_without_a_checkpoint_says_it_starts_from_step_0(tmp_path, capsys):
    assert run_demo(*TINY, "--steps", "2", "--out", tmp_path / "empty", "--resume")[0] == 0
    printed = capsys.readouterr().out
    assert "no checkpoint in" in printed and "yet: starting from step 0" in printed


# ---------------------------------------------------------------------------------------------------
# Two runs on one folder: the second is told who holds it
# ---------------------------------------------------------------------------------------------------


def test_a_second_run_on_the_same_folder_is_refused_and_told_who_holds_it(tmp_path):
    out = tmp_path / "busy"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    holder = subprocess.Popen(
        [sys.executable, str(ROOT / "demo.py"), *TINY, "--steps", "100000", "--checkpoint-every", "100000",
         "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
            assert holder.poll() is None, holder.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run never started training"
            time.sleep(0.05)
        before = (out / "checkpoint.npz").read_bytes()
        for extra in (["--resume"], ["--overwrite"]):
            second = subprocess.run([sys.executable, str(ROOT / "demo.py"), *TINY, "--steps", "3", "--out", str(out),
                                     *extra], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
            assert second.returncode == 1 and second.stdout == ""
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("demo: ") and "in use by another run" in lines[0]
            assert f"pid {holder.pid}" in lines[0] and "--steps 100000" in lines[0]
        assert (out / "checkpoint.npz").read_bytes() == before
        with pytest.raises(RunInUseError, match=f"pid {holder.pid}"), run_lock(out):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=60)
    with run_lock(out), run_lock(out):  # the holder's death freed it (the kernel's lock), and it nests
        pass


# ---------------------------------------------------------------------------------------------------
# The learning-rate schedule: fitted to a fresh run, kept by resume
# ---------------------------------------------------------------------------------------------------


def lrs(out):
    return [json.loads(line)["lr"] for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_a_fresh_run_fits_its_schedule_to_its_steps_and_says_so(tmp_path, capsys):
    out = tmp_path / "fit"
    assert run_demo(*TINY, "--steps", "30", "--lr", "0.01", "--out", out)[0] == 0
    printed = capsys.readouterr().out
    assert "learning rate: warmup over 3 steps to 0.01, cosine decay to 0.001 at step 30" in printed
    rates = lrs(out)
    assert rates[-1] == warmup_cosine_lr(29, 0.01, 3, 30, 0.001) and rates[-1] < 0.0011  # ends at its floor
    assert max(rates) == pytest.approx(0.01, rel=1e-2)
    saved = load_checkpoint(out / "checkpoint.npz")["train_config"]
    assert (saved["warmup_steps"], saved["lr_decay_steps"], saved["min_lr"]) == (3, 30, 0.001)


def test_given_warmup_and_decay_are_kept_and_a_short_run_says_where_it_stops(tmp_path, capsys):
    out = tmp_path / "given"
    assert run_demo(*TINY, "--steps", "4", "--warmup-steps", "2", "--lr-decay-steps", "40", "--out", out)[0] == 0
    assert "this run stops at step 4, at " in capsys.readouterr().out
    assert run_demo("--out", out, "--resume", "--steps", "6", "--warmup-steps", "0", "--lr-decay-steps", "6")[0] == 0
    err = capsys.readouterr().err
    assert "ignoring --warmup-steps, --lr-decay-steps" in err
    saved = load_checkpoint(out / "checkpoint.npz")["train_config"]
    assert (saved["warmup_steps"], saved["lr_decay_steps"], saved["steps"]) == (2, 40, 6)
    assert lrs(out) == [warmup_cosine_lr(i, 3e-3, 2, 40, 3e-4) for i in range(6)]


def test_resume_names_every_option_it_ignores_task_included(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_demo(*TINY, "--steps", "3", "--out", out)[0] == 0
    capsys.readouterr()
    status, _ = run_demo("--out", out, "--resume", "--steps", "4", "--task", "add", "--digits", "3", "--seed", "9",
                         "--n-embd", "32", "--lr", "1")  # fmt: skip
    assert status == 0
    captured = capsys.readouterr()
    assert "ignoring --task, --seed, --n-embd, --lr, --digits" in captured.err
    assert "task sort" in captured.out


# ---------------------------------------------------------------------------------------------------
# Text runs: the data cannot change under a run; sampling needs only the checkpoint
# ---------------------------------------------------------------------------------------------------

TEXT_OPTIONS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "4", "--block-size", "8",
                "--eval-every", "2", "--checkpoint-every", "2", "--quiet"]  # fmt: skip


def test_resuming_after_the_text_changed_is_refused(tmp_path, capsys):
    text, out = tmp_path / "notes.txt", tmp_path / "run"
    text.write_text("the cat sat on the mat. " * 20)
    assert run_demo("--text", text, "--steps", "2", "--out", out, *TEXT_OPTIONS)[0] == 0
    assert load_checkpoint(out / "checkpoint.npz")["text_sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()
    text.write_text("the dog sat on the log. " * 20)  # same characters, other data
    before = snapshot(out)
    status, message = run_demo("--out", out, "--resume", "--steps", "4")
    assert status == 1 and "is not the text this run was trained on" in message and "\n" not in message
    assert snapshot(out) == before
    text.write_text("the cat sat on the mat. " * 20)  # put back: resumes
    assert run_demo("--out", out, "--resume", "--steps", "4")[0] == 0


def test_sampling_needs_only_the_checkpoint(tmp_path, capsys):
    text, out = tmp_path / "notes.txt", tmp_path / "run"
    text.write_text("the cat sat on the mat. " * 20)
    assert run_demo("--text", text, "--steps", "2", "--out", out, *TEXT_OPTIONS)[0] == 0
    text.unlink()
    capsys.readouterr()
    assert run_demo("--out", out, "--sample", "the ", "--tokens", "5")[0] == 0
    assert capsys.readouterr().out.startswith("the ")


def test_the_final_line_says_which_loss_it_prints(tmp_path, capsys):
    assert run_demo(*TINY, "--steps", "3", "--out", tmp_path / "run")[0] == 0
    assert "validation loss" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_loss_kind"] == "validation"


# ---------------------------------------------------------------------------------------------------
# A checkpoint that is not a run's
# ---------------------------------------------------------------------------------------------------


def test_resume_of_a_checkpoint_that_is_not_a_run_says_so_in_one_line(tmp_path):
    out = tmp_path / "hand"
    out.mkdir()
    model = GPT(GPTConfig(TASK.vocab_size, TASK.block_size, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(out / "checkpoint.npz", model, step=1)  # as the README's own example writes one
    before = snapshot(out)
    for args in (["--resume", "--steps", "3"], ["--sample", "123"]):
        status, message = run_demo("--out", out, *args)
        assert status == 1 and "not of a demo.py run" in message and "\n" not in message, message
    assert snapshot(out) == before
    save_checkpoint(out / "checkpoint.npz", model, step="one")
    with pytest.raises(ValueError, match="not a training run's checkpoint"):  # the Trainer says it too
        tiny_trainer(out).run(resume=True)


@pytest.mark.parametrize(
    "forged",
    [
        {"task": "sort", "task_options": {"length": 3}, "train_config": {"steps": "many"}},
        {"task": "sort", "task_options": {"length": 3}, "train_config": {"steps": 4, "lr": 1}},
        {"task": "sort", "task_options": [3], "train_config": {}},
        {"task": "chess", "task_options": {}, "train_config": {}},
        {"task": "sort", "task_options": {"length": 3}, "train_config": {"steps": 4, "learning_rate": 1e400}},
        {"task": "sort", "task_options": {"length": 3}, "train_config": {"steps": 4}, "config": None},
    ],
)
def test_forged_run_metadata_is_refused_in_one_line(tmp_path, forged):
    out = tmp_path / "forged"
    out.mkdir()
    model = GPT(GPTConfig(TASK.vocab_size, TASK.block_size, n_layer=1, n_head=2, n_embd=16))
    forged = dict(forged)
    if "config" in forged:  # a config (checked by the format) that does not describe the weights: a huge model
        del forged["config"]
        model.config = GPTConfig(TASK.vocab_size, TASK.block_size, n_layer=10**6, n_head=2, n_embd=16)
    save_checkpoint(out / "checkpoint.npz", model, step=2, **forged)
    status, message = run_demo("--out", out, "--resume", "--steps", "3")
    assert status == 1 and "not of a demo.py run" in message and "\n" not in message, message


# ---------------------------------------------------------------------------------------------------
# demo.py: every mistake gets one line, and nothing is written
# ---------------------------------------------------------------------------------------------------

USAGE_MISTAKES = {
    "--steps -1": ["--steps", "-1"],
    "--steps 0": ["--steps", "0"],
    "--lr nan": ["--lr", "nan"],
    "--lr 0": ["--lr", "0"],
    "--lr inf": ["--lr", "inf"],
    "--dropout 2": ["--dropout", "2"],
    "--batch-size 0": ["--batch-size", "0"],
    "--n-layer 0": ["--n-layer", "0"],
    "--n-embd x": ["--n-embd", "x"],
    "--digits 0": ["--digits", "0"],
    "--resume --overwrite": ["--resume", "--overwrite"],
    "--sample with --resume": ["--sample", "x", "--resume"],
}


@pytest.mark.parametrize("name", sorted(USAGE_MISTAKES))
def test_usage_mistakes_get_one_line_exit_2_and_write_nothing(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        demo.main([*USAGE_MISTAKES[name], "--out", "run"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: ") and err.count("\n") == 1, err
    assert os.listdir(tmp_path) == []


def text_mistakes(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "latin1.txt").write_bytes("café au lait ".encode("latin-1") * 20)
    (tmp_path / "short.txt").write_text("a cat sat.")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "afile").write_text("x")
    return {
        ("--text", "empty.txt"): "is empty",
        ("--text", "binary.txt"): "binary file",
        ("--text", "latin1.txt"): "is not UTF-8 text",
        ("--text", "short.txt"): "too few for --block-size 64",
        ("--text", "folder"): "is a folder",
        ("--text", "pipe"): "not a regular file",
        ("--text", "missing.txt"): "no such file",
        ("--out", "afile"): "is a file, not a folder",
        ("--out", "afile/run"): "which is a file, not a folder",
        ("--n-head", "3"): "--n-embd 64 is not divisible by --n-head 3",
        ("--warmup-steps", "9", "--lr-decay-steps", "4"): "the warmup must end first",
    }


def test_bad_files_and_values_get_one_line_and_change_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, expected in text_mistakes(tmp_path).items():
        before = snapshot(tmp_path)
        out = [] if "--out" in args else ["--out", "run"]
        status, message = run_demo(*args, *out, "--steps", "1")
        assert status == 1 and message.startswith("demo: ") and "\n" not in message, (args, message)
        assert expected in message, (args, message)
        assert snapshot(tmp_path) == before, args


def test_an_out_folder_that_cannot_be_written_gets_one_line(tmp_path, monkeypatch):
    """A folder without write permission. Root may write anywhere (``os.access`` says yes to it
    whatever the mode bits), so as root the denial the kernel would give a user is simulated at the
    one place demo.py asks."""
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(demo.os, "access", lambda path, mode: False if Path(path) == locked else real(path, mode))
    before = snapshot(tmp_path)
    status, message = run_demo(*TINY, "--steps", "1", "--out", locked / "run")
    assert status == 1 and message.startswith("demo: ") and "\n" not in message, message
    assert "cannot write in" in message and "permission denied" in message
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------------
# Edges found in review
# ---------------------------------------------------------------------------------------------------


def test_resume_names_a_text_file_a_run_without_text_ignores(tmp_path, capsys):
    out, text = tmp_path / "run", tmp_path / "notes.txt"
    text.write_text("the cat sat on the mat. " * 20)
    assert run_demo(*TINY, "--steps", "2", "--out", out)[0] == 0
    capsys.readouterr()
    assert run_demo("--out", out, "--resume", "--steps", "3", "--text", text)[0] == 0
    assert "ignoring --text" in capsys.readouterr().err
    assert "text_sha256" not in load_checkpoint(out / "checkpoint.npz")


def test_a_finished_run_resumed_from_its_checkpoint_alone_reports_a_validation_loss(tmp_path, capsys):
    run, alone = tmp_path / "run", tmp_path / "alone"
    assert run_demo(*TINY, "--steps", "3", "--out", run)[0] == 0
    alone.mkdir()
    (alone / "checkpoint.npz").write_bytes((run / "checkpoint.npz").read_bytes())
    capsys.readouterr()
    assert run_demo("--out", alone, "--resume")[0] == 0
    assert "validation loss" in capsys.readouterr().out
    assert json.loads((alone / "summary.json").read_text())["final_loss"] is not None


def test_another_thread_of_the_same_process_cannot_take_a_held_folder(tmp_path):
    import threading

    errors = []
    with run_lock(tmp_path / "held"):

        def other():
            try:
                with run_lock(tmp_path / "held"):
                    pass
            except RunInUseError as error:
                errors.append(str(error))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert errors and "another thread of this process" in errors[0]
