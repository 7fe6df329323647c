"""The training loop: batches, AdamW with warmup + cosine decay, clipping, evaluation, checkpoints.

A run is a pure function of its seed and step count. The batch of step ``i`` comes from a random
stream keyed by ``(seed, i)``, evaluation and sampling use streams of their own, and the
learning-rate schedule has its own length (``lr_decay_steps``), so stopping at step N and
resuming (`Trainer.run(resume=True)`) gives the same weights, bit for bit, as never stopping.

    trainer = Trainer(model, task, TrainConfig(steps=2000), out_dir="runs/grammar")
    result = trainer.run(resume=True)     # continues from out_dir/checkpoint.npz if there is one

One folder holds one run. A run writes its checkpoint at step 0 before it trains, so from its first
moment the folder's checkpoint says whose it is; a fresh run refuses a folder that holds another
run unless told to replace it (``overwrite=True``), and two processes never write one folder at
once (`run_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

import autograd as ag
from tinygrad_lm.checkpoint import CheckpointError, load_checkpoint, remove_stale_temporaries, save_checkpoint
from tinygrad_lm.model import GPT
from tinygrad_lm.optim import clip_grad_norm, warmup_cosine_lr
from tinygrad_lm.progress import ProgressBar

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"
LOCK_NAME = ".lock"
TRAIN_STREAM, EVAL_STREAM, SAMPLE_STREAM = 0, 1, 2


def stream(seed: int, purpose: int, step: int) -> np.random.Generator:
    """The random stream for one purpose (training data, evaluation, sampling) at one step."""
    return np.random.default_rng([seed, purpose, step])


@dataclass
class TrainConfig:
    """How to train: ``steps`` (where the run stops), ``batch_size`` sequences per step; AdamW with
    ``learning_rate`` warmed up linearly for ``warmup_steps``, then cosine-decayed to ``min_lr`` at
    ``lr_decay_steps`` (the schedule's own length), ``weight_decay`` on matrices, ``beta1``/``beta2``;
    gradients clipped to norm ``grad_clip``; every ``eval_every`` steps the mean loss of
    ``eval_batches`` held-out batches, every ``checkpoint_every`` a checkpoint, every ``log_every`` a
    line of metrics; ``seed`` keys the data, evaluation and sampling streams."""

    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    lr_decay_steps: int = 2000  # the schedule's own length: a run's --steps only says where it stops
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 8
    checkpoint_every: int = 250
    log_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ValueError(f"TrainConfig: {name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0 or self.min_lr < 0 or self.grad_clip <= 0:
            raise ValueError("TrainConfig: learning_rate and grad_clip must be > 0 and min_lr >= 0")
        if not 0 <= self.warmup_steps <= self.lr_decay_steps:
            raise ValueError(
                f"TrainConfig: need 0 <= warmup_steps <= lr_decay_steps, got {self.warmup_steps}, "
                f"{self.lr_decay_steps}"
            )


    @classmethod
    def from_dict(cls, saved: Any) -> TrainConfig:
        """A config as a checkpoint stored it, checked field by field (a ValueError names the field)."""
        if not isinstance(saved, dict):
            raise ValueError(f"train_config is a {type(saved).__name__}, not a mapping")
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(saved) - set(known))
        if unknown:
            raise ValueError(f"train_config has unknown fields {unknown}")
        for name, value in saved.items():
            wanted = (int,) if known[name] == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, wanted):
                raise ValueError(f"train_config.{name} is {value!r}, not a number of type {known[name]}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"train_config.{name} is {value!r}")
        return cls(**saved)


class TrainingDivergedError(RuntimeError):
    """The loss or the gradients became NaN/Inf; the last good checkpoint was kept."""


class RunExistsError(FileExistsError):
    """A fresh run was asked for in a folder that already holds a run."""


class RunInUseError(RuntimeError):
    """Another process is running in the same folder."""


def run_in(out_dir: str | os.PathLike) -> int | None:
    """The step of the run that ``out_dir`` holds (its checkpoint's), or None if it holds none.

    A folder with metrics but no checkpoint holds an attempt killed before it saved anything: that
    is not a run (an older version of this code could leave one); ``-1`` says so."""
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, CHECKPOINT_NAME)
    if os.path.lexists(path):
        try:
            step = load_checkpoint(path).get("step")
        except CheckpointError:
            return -1
        return step if isinstance(step, int) and not isinstance(step, bool) else -1
    return -1 if _read_metrics(os.path.join(out_dir, METRICS_NAME)) else None


def refuse_an_existing_run(out_dir: str | os.PathLike) -> None:
    """Raise `RunExistsError` if ``out_dir`` holds a run (see `run_in`): a fresh run goes elsewhere."""
    existing = run_in(out_dir)
    if existing is not None:
        held = f"a run at step {existing}" if existing >= 0 else "the files of an earlier run"
        raise RunExistsError(
            f"{os.fspath(out_dir)} already holds {held}; continue it with --resume, or replace it with --overwrite "
            "(Trainer.run(resume=True) or (overwrite=True))"
        )


_HELD: dict[str, tuple[int, int, int]] = {}  # folder -> (lock file descriptor, times taken, the holding thread)


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``out_dir`` for one run: a second process that asks for it gets `RunInUseError` saying
    which process holds it. The lock is the kernel's (``flock`` on ``out_dir/.lock``), so it ends
    with the process however that ends, even killed: no stale lock is ever left to clean up. The same
    process may take it again (the demo holds it around its `Trainer`, which takes it too)."""
    out_dir = os.path.realpath(os.fspath(out_dir))
    if out_dir in _HELD:
        fd, count, owner = _HELD[out_dir]
        if owner != threading.get_ident():  # the kernel's lock is the process's: threads are told apart here
            raise RunInUseError(f"{out_dir} is in use by another thread of this process; use another --out")
        _HELD[out_dir] = (fd, count + 1, owner)
        try:
            yield
        finally:
            fd, count, owner = _HELD[out_dir]
            _HELD[out_dir] = (fd, count - 1, owner)
        return
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode("utf-8", errors="replace").strip() or "a process that has not said"
        os.close(fd)
        raise RunInUseError(
            f"{out_dir} is in use by another run ({holder}); wait for it to finish, or use another --out"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    command = " ".join([os.path.basename(sys.argv[0]) or "python", *sys.argv[1:]])[:300]
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {command}".encode(), 0)
    _HELD[out_dir] = (fd, 1, threading.get_ident())
    try:
        yield
    finally:
        fd, count, owner = _HELD[out_dir]
        if count > 1:
            _HELD[out_dir] = (fd, count - 1, owner)
        else:
            del _HELD[out_dir]
            os.close(fd)  # (which releases the lock; the file stays, empty of meaning, for the next run)


@ag.no_grad()
def evaluate_loss(model: GPT, task: Any, config: TrainConfig, step: int) -> float:
    """Mean loss over ``eval_batches`` held-out batches (eval mode: no dropout)."""
    rng = stream(config.seed, EVAL_STREAM, step)
    with model.evaluating():
        losses = [model(*task.get_batch("val", config.batch_size, rng))[1].item() for _ in range(config.eval_batches)]
    return float(np.mean(losses))


class Trainer:
    """Trains ``model`` on ``task``; writes ``metrics.jsonl`` and ``checkpoint.npz`` into ``out_dir``.

    ``outputs``: the names of other files a run writes into ``out_dir`` (its results); a fresh run
    removes an earlier run's once it has claimed the folder."""

    def __init__(
        self,
        model: GPT,
        task: Any,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        *,
        meta: dict[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
        progress: bool = True,
        outputs: tuple[str, ...] = (),
    ) -> None:
        self.model, self.task, self.config = model, task, config
        model.compile()  # replay the blocks from a trace: the speed switch a training script turns on
        ag.memory.keep_freed_memory()  # reuse freed activation memory instead of faulting it in every step
        self.out_dir = os.fspath(out_dir)
        self.optimizer = model.configure_optimizers(
            config.weight_decay, config.learning_rate, betas=(config.beta1, config.beta2)
        )  # AdamW; weight decay on matrices and embeddings only
        self.meta = dict(meta or {})  # saved with every checkpoint (task, tokenizer, configs, ...)
        self.log = log or print
        self.progress = progress
        self.outputs = outputs  # files besides checkpoint and metrics that a run leaves in out_dir (results)
        self.step = 0
        self.seconds = 0.0  # training time over all sessions of this run
        self.history: list[dict[str, Any]] = []
        self._interrupted = False

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.out_dir, CHECKPOINT_NAME)

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.out_dir, METRICS_NAME)

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self) -> str:
        """Checkpoint the state after ``self.step`` steps (refusing weights, or optimizer moments,
        that are not finite: the last good checkpoint stays the last good one)."""
        for name, p in self.model.named_parameters():
            if not np.isfinite(p.data).all():
                raise TrainingDivergedError(f"refusing to checkpoint: parameter {name} holds NaN/Inf")
            for key, value in self.optimizer.state.get(p, {}).items():
                if isinstance(value, np.ndarray) and not np.isfinite(value).all():
                    what = f"optimizer state {key} of {name}"
                    raise TrainingDivergedError(f"refusing to checkpoint: {what} holds NaN/Inf")
        return save_checkpoint(
            self.checkpoint_path, self.model, self.optimizer, step=self.step, seconds=self.seconds,
            train_config=asdict(self.config), **self.meta,
        )  # fmt: skip

    def resume(self) -> bool:
        """Restore model, optimizer and step from ``out_dir``'s checkpoint; False if there is none.

        A checkpoint that is not a training run's (no step, say: one written by `save_checkpoint`
        directly) raises `CheckpointError`, and nothing is restored."""
        if not os.path.lexists(self.checkpoint_path):
            return False
        meta = load_checkpoint(self.checkpoint_path)  # checked before anything is restored
        step, seconds = meta.get("step"), meta.get("seconds", 0.0)
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path}: not a training run's checkpoint (its 'step' is {step!r}, "
                "not a step count)"
            )
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise CheckpointError(f"checkpoint {self.checkpoint_path}: its 'seconds' is {seconds!r}, not a time")
        load_checkpoint(self.checkpoint_path, self.model, self.optimizer)
        self.step, self.seconds = step, float(seconds)
        self.history = [m for m in _read_metrics(self.metrics_path) if m.get("step", math.inf) <= self.step]
        _write_metrics(self.metrics_path, self.history)  # drop what a killed session logged after it
        return True

    # -- the loop --------------------------------------------------------------------------------
    def run(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Train until ``config.steps``; return the last logged metrics. Ctrl-C saves and stops.

        ``resume``: continue the run in ``out_dir`` (from step 0 if it has no checkpoint yet). Without
        it, a folder that already holds a run raises `RunExistsError` and is left as it is, unless
        ``overwrite``: then this run replaces it. Another process training in ``out_dir`` raises
        `RunInUseError`."""
        if not resume and not overwrite:
            refuse_an_existing_run(self.out_dir)  # before the lock too: a refused folder is left exactly as it was
        with run_lock(self.out_dir):
            return self._run(resume, overwrite)

    def _run(self, resume: bool, overwrite: bool) -> dict[str, Any]:
        remove_stale_temporaries(self.checkpoint_path)  # of writes a killed session never finished
        if resume and self.resume():
            self.log(f"resumed from {self.checkpoint_path} at step {self.step}")
        else:
            if not resume and not overwrite:
                refuse_an_existing_run(self.out_dir)  # again under the lock: another run may have started meanwhile
            if resume:
                self.log(f"no checkpoint in {self.out_dir} yet: starting from step 0")
            # The checkpoint of step 0 claims the folder in one atomic rename: an earlier run's
            # checkpoint is gone from that moment, and a kill after it resumes this run, never that one.
            self.save()
            _write_metrics(self.metrics_path, [])  # what an earlier run or attempt logged
            for name in self.outputs:  # and the results it left
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.out_dir, name))
        config = self.config
        bar = ProgressBar(config.steps, start=self.step) if self.progress else None
        in_main_thread = threading.current_thread() is threading.main_thread()  # signals need it
        previous_handler = signal.signal(signal.SIGINT, self._on_interrupt) if in_main_thread else None
        started = time.perf_counter()
        try:
            while self.step < config.steps and not self._interrupted:
                record = self._train_step()
                done = self.step
                if done % config.eval_every == 0 or done == config.steps:
                    record["val_loss"] = evaluate_loss(self.model, self.task, config, done)
                if done % config.log_every == 0 or "val_loss" in record:
                    self.seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    record["seconds"] = round(self.seconds, 3)
                    self._append_metrics(record)
                if bar is not None:
                    extra = f"val {record['val_loss']:.4f}" if "val_loss" in record else ""
                    bar.update(done, record["loss"], record["tokens"], extra)
                if done % config.checkpoint_every == 0 or done == config.steps:
                    self.save()
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_handler)
            if bar is not None:
                bar.close()
        self.seconds += time.perf_counter() - started
        if self._interrupted:
            self.save()
            self.log(f"interrupted: saved step {self.step} to {self.checkpoint_path}; continue with --resume")
        return self.history[-1] if self.history else {}

    def _train_step(self) -> dict[str, Any]:
        config, step = self.config, self.step
        lr = warmup_cosine_lr(step, config.learning_rate, config.warmup_steps, config.lr_decay_steps, config.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx, targets = self.task.get_batch("train", config.batch_size, stream(config.seed, TRAIN_STREAM, step))
        self.model.train()
        t0 = time.perf_counter()
        _, loss = self.model(idx, targets)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise self._diverged(f"the loss is {loss_value} at step {step + 1}", idx, targets)
        loss.backward()
        grad_norm = clip_grad_norm(self.model.parameters(), config.grad_clip)
        if not math.isfinite(grad_norm):
            raise self._diverged(f"the gradient norm is {grad_norm} at step {step + 1}", idx, targets)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step = step + 1
        elapsed = time.perf_counter() - t0
        return {
            "step": self.step, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
            "tokens": int(idx.size), "ms_per_step": round(elapsed * 1e3, 2),
        }  # fmt: skip

    def _diverged(self, what: str, idx: np.ndarray, targets: np.ndarray) -> TrainingDivergedError:
        """Re-run the bad step under detect_anomaly to name the first op that made a NaN/Inf."""
        culprit = "detect_anomaly found no single culprit op (the weights may already hold NaN/Inf)"
        try:
            with ag.detect_anomaly():
                _, loss = self.model(idx, targets)
                loss.backward()
        except ag.AnomalyError as error:
            culprit = str(error)
        finally:
            self.optimizer.zero_grad()
        saved = self._saved_step()
        kept = f"the last good checkpoint (step {saved}) is kept" if saved is not None else "there is no checkpoint yet"
        return TrainingDivergedError(
            f"training stopped: {what}; {kept}. Try a lower learning rate or stronger clipping.\n{culprit}"
        )

    def _saved_step(self) -> int | None:
        if not os.path.exists(self.checkpoint_path):
            return None
        try:
            step = load_checkpoint(self.checkpoint_path).get("step")
        except ValueError:
            return None
        return step if isinstance(step, int) else None

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        """First Ctrl-C: finish the current step, save, stop. A second one stops at once."""
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True
        self.log("\nCtrl-C: finishing this step and saving a checkpoint (press again to stop at once)")

    def _append_metrics(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _read_metrics(path: str) -> list[dict[str, Any]]:
    """Lines of a metrics file (a torn last line, from a killed process, is skipped)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _write_metrics(path: str, records: list[dict[str, Any]]) -> None:
    """Replace the metrics file atomically."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
