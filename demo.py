"""Train a toy transformer end to end and show what happened.

    python demo.py                       # the default: sentences of a small grammar, about a minute
    python demo.py --task sort           # learn to sort lists of digits
    python demo.py --task add --digits 2 # learn 2-digit addition
    python demo.py --text notes.txt      # a character-level model of your own text file
    python demo.py --out runs/grammar --resume --steps 4000     # train on to step 4000 in total
    python demo.py --out runs/grammar --overwrite               # start over where a run is (it is replaced)
    python demo.py --out runs/grammar --sample "the cat"        # sample from a trained model
    python demo.py --out runs/grammar --explain "a dog ran."    # one training step on it, explained
    python demo.py --pretrained gpt2 --sample "The cat"         # GPT-2 from a Hugging Face folder
    python demo.py --pretrained gpt2 --text notes.txt --steps 100 --out runs/notes   # fine-tune it
    python demo.py --pretrained gpt2 --explain "The cat sat." --out runs/gpt2        # GPT-2's step, explained

Every run writes into its --out folder (default runs/<task>/): summary.json, metrics.jsonl,
checkpoint.npz, loss.png, attention.png, graph.svg (one training step's graph, by module),
samples.txt and walkthrough.html (one training step on an example, forward and backward, with
every number), and prints where they are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import stat
import sys
import time
from types import SimpleNamespace
from typing import Any, NoReturn

import numpy as np

from tinygrad_lm import GPT, GPTConfig, load_checkpoint
from tinygrad_lm.optim import warmup_cosine_lr
from tinygrad_lm.tasks import TASKS, TextTask, tokenizer_from_dict
from tinygrad_lm.train import (
    CHECKPOINT_NAME,
    SAMPLE_STREAM,
    RunExistsError,
    RunInUseError,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    evaluate_loss,
    refuse_an_existing_run,
    run_lock,
    stream,
)  # fmt: skip

# Per task: the model and the training run that reach the targets on 2 CPU cores.
DEFAULTS: dict[str, dict[str, Any]] = {
    "grammar": dict(n_layer=2, n_head=4, n_embd=64, block_size=64, steps=1500, batch_size=16, lr=3e-3),
    "text": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, steps=2000, batch_size=16, lr=2e-3),
    "sort": dict(n_layer=2, n_head=4, n_embd=64, steps=1500, batch_size=64, lr=3e-3),
    "reverse": dict(n_layer=2, n_head=4, n_embd=64, steps=1500, batch_size=64, lr=3e-3),
    "add": dict(n_layer=2, n_head=4, n_embd=64, steps=2500, batch_size=64, lr=3e-3),
}
# Fine-tuning a pretrained GPT-2 (--pretrained with --text): its shape is the folder's; a context of
# 128 tokens (or the model's, if shorter) keeps a step of the 124M model within seconds on a CPU, and a
# small learning rate moves the weights without forgetting what they knew.
PRETRAINED_DEFAULTS: dict[str, Any] = dict(block_size=128, steps=100, batch_size=4, lr=1e-4)


# Options that shape a run; on --resume they come from the checkpoint instead (and are named as ignored).
RUN_SETTINGS = ("task", "seed", "n_layer", "n_head", "n_embd", "block_size", "dropout", "batch_size", "lr",
                "warmup_steps", "lr_decay_steps", "eval_every", "checkpoint_every", "digits", "length",
                "pretrained")  # fmt: skip
OPTION_DEFAULTS = {"seed": 0, "dropout": 0.0, "eval_every": 250, "checkpoint_every": 250, "digits": 2, "length": 6}


class DemoError(Exception):
    """A mistake in what demo.py was asked to do: printed as one ``demo: ...`` line, nothing written."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, as every other mistake gets (status 2, as argparse's)
        self.exit(2, f"demo: {message} (python demo.py --help lists the options)\n")


def _integer(minimum: int, maximum: int | None = None) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def _number(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = True) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            left = f"> {low}" if low_open else f">= {low}"
            right = "" if high is None else f" and {'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be a number {left}{right}, got {text}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked; ``args.given`` lists the run settings given explicitly."""
    parser = _Parser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    what = parser.add_argument_group("what to learn")
    what.add_argument("--task", choices=sorted(TASKS) + ["text"], default=None,
                      help="grammar (default): sentences like 'a cat sat on the mat.', with a known best possible "
                      "loss; sort / reverse: lists of digits; add: n-digit addition; text: needs --text")  # fmt: skip
    what.add_argument("--text", metavar="FILE", help="train a character-level model on this UTF-8 text file "
                      "(with --pretrained: fine-tune that model on it, in its own tokens)")  # fmt: skip
    what.add_argument("--pretrained", metavar="DIR",
                      help="a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json or vocab.json "
                      "+ merges.txt, as 'hf download gpt2 --local-dir gpt2' fetches it): --sample from it, or "
                      "fine-tune it on --text FILE")  # fmt: skip
    what.add_argument("--digits", type=_integer(1, 9), help="add: digits per number, 1-9 (default 2)")
    what.add_argument("--length", type=_integer(1, 64), help="sort / reverse: digits per list, 1-64 (default 6)")
    run = parser.add_argument_group("the run")
    run.add_argument("--steps", type=_integer(1), help="train until this many steps in total (task default otherwise)")
    run.add_argument("--out", metavar="DIR", help="output folder (default runs/<task>)")
    run.add_argument("--seed", type=_integer(0), help="seeds the weights, the data order and dropout (default 0)")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out (if it has a checkpoint) with its own settings"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="start a new run in an --out that holds one, replacing it"
    )
    run.add_argument("--sample", metavar="PROMPT",
                     help="only sample from the checkpoint in --out (or --pretrained DIR), from PROMPT")  # fmt: skip
    run.add_argument("--tokens", type=_integer(1), default=200,
                     help="--sample: how many tokens to generate (characters, in a character-level model)")
    run.add_argument("--temperature", type=_number(0.0), default=1.0,
                     help="--sample: divide the logits by this before sampling; 0 always takes the most likely token")
    run.add_argument("--top-k", type=_integer(1), help="--sample: draw only from the K most likely tokens")
    run.add_argument(
        "--explain", metavar="TEXT", help="write walkthrough.html in --out: one training step of its model (or of "
        "--pretrained DIR) on TEXT, forward and backward, with every number (sort/add: TEXT gives the digits)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model and optimisation (task defaults unless given)")
    model.add_argument("--n-layer", type=_integer(1), help="transformer blocks")
    model.add_argument("--n-head", type=_integer(1), help="attention heads per block")
    model.add_argument("--n-embd", type=_integer(1), help="width of the token vectors (divisible by --n-head)")
    model.add_argument("--block-size", type=_integer(1), help="context length (text tasks)")
    model.add_argument("--dropout", type=_number(0.0, 1.0), help="dropout probability, in [0, 1) (default 0)")
    model.add_argument("--batch-size", type=_integer(1), help="sequences per step")
    model.add_argument("--lr", type=_number(0.0, low_open=True), help="peak learning rate (warmup, then cosine decay)")
    model.add_argument("--warmup-steps", type=_integer(0),
                       help="steps of linear warmup (default: a tenth of --steps, at most 100)")  # fmt: skip
    model.add_argument("--lr-decay-steps", type=_integer(1),
                       help="the step where the cosine decay reaches its floor, lr/10 (default: --steps)")  # fmt: skip
    model.add_argument("--eval-every", type=_integer(1), help="evaluate every N steps (default 250)")
    model.add_argument("--checkpoint-every", type=_integer(1), help="checkpoint every N steps (default 250)")
    args = parser.parse_args(argv)
    args.given = [f"--{name.replace('_', '-')}" for name in RUN_SETTINGS if getattr(args, name) is not None]
    for name, default in OPTION_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.text and args.task not in (None, "text"):
        parser.error(f"--text trains the 'text' task, not --task {args.task}")
    if args.task == "text" and not args.text:
        parser.error("--task text needs --text FILE")
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if args.sample is not None and (args.resume or args.overwrite):
        parser.error("--sample only reads the checkpoint in --out: it cannot be combined with --resume or --overwrite")
    if args.explain is not None and (args.resume or args.overwrite or args.sample is not None):
        parser.error("--explain explains the model trained in --out: give it without --resume, --overwrite, --sample")
    if args.pretrained is not None:
        if args.task not in (None, "text"):
            parser.error(f"--pretrained fine-tunes on a --text FILE, not on --task {args.task}")
        shaped = [f"--{name.replace('_', '-')}" for name in ("n_layer", "n_head", "n_embd") if getattr(args, name)]
        if shaped:
            parser.error(f"{', '.join(shaped)}: the model's shape comes from --pretrained {args.pretrained}")
        if args.sample is not None and (args.text or args.out):
            parser.error("--sample with --pretrained samples from that folder: give no --text or --out with it")
        if args.explain is not None and args.text:
            parser.error("--explain with --pretrained explains that model on its TEXT: give no --text with it")
        if args.sample is None and args.explain is None and not args.text and not args.resume:
            parser.error("--pretrained DIR needs --sample PROMPT (generate), --text FILE (fine-tune on that text) "
                         "or --explain TEXT (one training step, explained)")  # fmt: skip
    args.task = "text" if args.text or args.pretrained else (args.task or "grammar")
    if args.pretrained and args.explain is not None and not args.out:  # its page goes to runs/<the folder's name>
        args.out = os.path.join("runs", os.path.basename(os.path.normpath(args.pretrained)) or "pretrained")
    args.out = args.out or os.path.join("runs", args.task)
    return args


def check_out(out: str) -> None:
    """--out must be a folder this process can write in (or one it can create): checked before
    anything is written, so that a mistake there leaves no half-made run."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DemoError(f"--out {out} is a file, not a folder; choose another --out")
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise DemoError(f"--out {out} is inside {existing}, which is a file, not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DemoError(f"--out {out}: cannot write in {existing} (permission denied); choose another --out")


def read_text(path: str) -> tuple[str, str]:
    """The text of a --text file and the sha256 of its bytes, or a DemoError saying what is wrong with it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DemoError(f"--text {path}: no such file") from None
    except OSError as error:
        raise DemoError(f"--text {path}: cannot be read ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise DemoError(f"--text {path} is a folder; give a text file")
    if not stat.S_ISREG(mode):
        raise DemoError(f"--text {path} is not a regular file (a pipe or a device?); give a text file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise DemoError(f"--text {path}: cannot be read ({error.strerror})") from None
    if not raw.strip():
        raise DemoError(f"--text {path} is empty; give a file with some text in it")
    if b"\0" in raw:
        raise DemoError(f"--text {path} holds NUL bytes: a binary file, not text; give a UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DemoError(
            f"--text {path} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8 or give another file"
        ) from None
    return text, hashlib.sha256(raw).hexdigest()


def build_task(args: argparse.Namespace, saved: dict[str, Any] | None) -> Any:
    """The task, rebuilt exactly as saved when resuming (a text's vocabulary comes from its checkpoint)."""
    options = saved["task_options"] if saved else task_options(args)
    if args.task != "text":
        return TASKS[args.task](**options)
    text, digest = read_text(args.text)
    if saved and saved.get("text_sha256") not in (None, digest):
        raise DemoError(
            f"--text {args.text} is not the text this run was trained on (it changed since: sha256 {digest[:12]}..., "
            f"the run's {saved['text_sha256'][:12]}...); resuming would train on other data. Put the original "
            "text back, or start a new run on this one (--overwrite, or another --out)"
        )
    args.text_sha256 = digest
    if saved:
        tokenizer = tokenizer_from_dict(saved["tokenizer"])
    elif args.pretrained:
        tokenizer = pretrained_tokenizer(args.pretrained)
    else:
        tokenizer = None
    try:
        task = TextTask(text, tokenizer=tokenizer, **options)
    except ValueError as error:
        if "too short" in str(error):
            count = f"{len(text)} characters" if tokenizer is None else str(error).split(": ", 1)[1].split(" is ")[0]
            raise DemoError(
                f"--text {args.text} has {count}, too few for --block-size {options['block_size']} "
                f"(at least {2 * (options['block_size'] + 1)} needed); give a longer text or a smaller --block-size"
            ) from None
        raise DemoError(f"--text {args.text}: {error}") from None
    return task


def pretrained_tokenizer(path: str) -> Any:
    """GPT-2's tokenizer from the --pretrained folder, or a DemoError saying what is wrong with it."""
    from tinygrad_lm.tokenizer import Tokenizer

    try:
        return Tokenizer.from_pretrained(path)
    except ValueError as error:
        raise DemoError(f"--pretrained {path}: {error}") from None


def pretrained_config(path: str) -> GPTConfig:
    """The shape of the GPT-2 in the --pretrained folder, read from its config.json alone (checked)."""
    from tinygrad_lm.pretrained import config_from_hf, read_config

    try:
        return config_from_hf(read_config(path), path, dropout=0.0)
    except ValueError as error:
        raise DemoError(str(error)) from None


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.task == "text" and args.pretrained:  # windows no longer than the model's context
        limit = pretrained_config(args.pretrained).block_size
        if args.block_size is not None and args.block_size > limit:
            raise DemoError(f"--block-size {args.block_size} is longer than the context of --pretrained "
                            f"{args.pretrained} ({limit} tokens)")  # fmt: skip
        return {"block_size": _given(args.block_size, min(PRETRAINED_DEFAULTS["block_size"], limit))}
    if args.task in ("grammar", "text"):
        return {"block_size": _given(args.block_size, DEFAULTS[args.task]["block_size"])}
    if args.task == "add":
        return {"n_digits": args.digits}
    return {"length": args.length}


def _given(value: Any, default: Any) -> Any:
    """An option's value if it was given (0 included), else the default."""
    return default if value is None else value


def model_config(args: argparse.Namespace, task: Any) -> GPTConfig:
    d = DEFAULTS[args.task]
    try:
        return GPTConfig(
            vocab_size=task.vocab_size, block_size=task.block_size, n_layer=_given(args.n_layer, d["n_layer"]),
            n_head=_given(args.n_head, d["n_head"]), n_embd=_given(args.n_embd, d["n_embd"]), dropout=args.dropout,
        )  # fmt: skip
    except ValueError as error:
        if "divisible" in str(error):
            n_embd, n_head = _given(args.n_embd, d["n_embd"]), _given(args.n_head, d["n_head"])
            raise DemoError(
                f"--n-embd {n_embd} is not divisible by --n-head {n_head}: each head gets n_embd / n_head channels"
            ) from None
        raise DemoError(str(error)) from None


def train_config(args: argparse.Namespace) -> TrainConfig:
    """A fresh run's settings. Its learning-rate schedule fits the run: warmup for a tenth of the
    steps (at most 100), then cosine decay to a tenth of the peak at the last step, unless
    --warmup-steps / --lr-decay-steps say otherwise."""
    d = PRETRAINED_DEFAULTS if args.pretrained else DEFAULTS[args.task]
    steps = _given(args.steps, d["steps"])
    lr = _given(args.lr, d["lr"])
    decay = _given(args.lr_decay_steps, steps)
    warmup = _given(args.warmup_steps, min(100, decay // 10))
    if warmup > decay:
        raise DemoError(f"--warmup-steps {warmup} is more than --lr-decay-steps {decay}: the warmup must end first")
    return TrainConfig(
        steps=steps, batch_size=_given(args.batch_size, d["batch_size"]), learning_rate=lr, min_lr=lr / 10,
        lr_decay_steps=decay, warmup_steps=warmup, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )  # fmt: skip


def describe_schedule(config: TrainConfig) -> str:
    """The learning-rate schedule in words, with the rate the run ends at."""
    last = warmup_cosine_lr(config.steps - 1, config.learning_rate, config.warmup_steps, config.lr_decay_steps,
                            config.min_lr)  # fmt: skip
    text = (
        f"learning rate: warmup over {config.warmup_steps} steps to {config.learning_rate:g}, cosine decay to "
        f"{config.min_lr:g} at step {config.lr_decay_steps}"
    )
    if config.steps < config.lr_decay_steps:
        text += f"; this run stops at step {config.steps}, at {last / config.learning_rate:.0%} of the peak"
    elif config.steps > config.lr_decay_steps:
        text += f", then {config.min_lr:g} to step {config.steps}"
    return text


def run_settings(saved: dict[str, Any], path: str) -> dict[str, Any]:
    """The run's settings from its checkpoint's metadata, checked: a checkpoint that is not a demo
    run's (one written by `save_checkpoint` directly, say) gets a DemoError that says so."""

    def not_a_run(problem: str) -> DemoError:
        return DemoError(
            f"cannot resume: {path} is a checkpoint, but not of a demo.py run ({problem}); start a new run "
            "with another --out, or replace it with --overwrite"
        )

    task = saved.get("task")
    if task not in TASKS and task != "text":
        raise not_a_run(f"its task is {task!r}" if "task" in saved else "it names no task")
    for key, kind in (("task_options", dict), ("config", dict), ("train_config", dict)):
        if not isinstance(saved.get(key), kind):
            raise not_a_run(f"no {key!r}" if key not in saved else f"its {key!r} is not a {kind.__name__}")
    if task == "text" and not (isinstance(saved.get("tokenizer"), dict) and isinstance(saved.get("text_file"), str)):
        raise not_a_run("a text run without its tokenizer or text file")
    try:
        config = GPTConfig(**saved["config"])
        train = TrainConfig.from_dict(saved["train_config"])
        task_object = None if task == "text" else TASKS[task](**saved["task_options"])
    except (TypeError, ValueError) as error:
        raise not_a_run(str(error)) from None
    # The config must describe the weights the file holds before a model of that size is built.
    state = saved.get("model") or {}
    wte, wpe = state.get("transformer.wte.weight"), state.get("transformer.wpe.weight")
    blocks = {key.split(".")[2] for key in state if key.startswith("transformer.h.")}
    if (
        wte is None or wpe is None or wte.shape != (config.vocab_size, config.n_embd)
        or wpe.shape != (config.block_size, config.n_embd) or len(blocks) != config.n_layer
    ):  # fmt: skip
        raise not_a_run("its config does not describe its weights")
    return {"config": config, "train": train, "task": task_object}


def saved_meta(out: str) -> dict[str, Any] | None:
    path = os.path.join(out, CHECKPOINT_NAME)
    return load_checkpoint(path) if os.path.lexists(path) else None


# ---------------------------------------------------------------------------------------------------
# After training: what the run shows
# ---------------------------------------------------------------------------------------------------


def decode(tokenizer: Any, ids: Any) -> str:
    """The text of generated ``ids``. A model's vocabulary may be larger than its tokenizer's (GPT-2s
    trained with nanoGPT pad 50257 to 50304): an id the tokenizer lacks is shown as U+FFFD."""
    text, run = [], []
    for i in ids:
        if int(i) < tokenizer.vocab_size:
            run.append(int(i))
        else:
            text += [tokenizer.decode(run), "\ufffd"]
            run = []
    return "".join(text) + tokenizer.decode(run)


def write_samples(model: GPT, task: Any, path: str, seed: int) -> str:
    """samples.txt: held-out problems with the model's answers, or text continued from prompts."""
    rng = stream(seed, SAMPLE_STREAM, 0)
    lines = []
    if task.exact:
        problems = task.split_problems("test", 12, rng)
        answers = np.asarray(model.generate(problems, task.n_out, top_k=1, seed=seed))[:, task.n_in :]
        for problem, answer in zip(problems, answers):
            right = np.array_equal(answer, task.answers(problem[None])[0])
            lines.append(f"{task.describe(problem, answer)}   {'ok' if right else 'WRONG'}")
    else:
        for i in range(6):
            prompt = task.prompt(rng)
            out = model.generate(prompt[None], max_new_tokens=120, temperature=1.0, seed=seed + i)[0]
            lines.append(decode(task.tokenizer, out).rstrip("\n") + "\n---")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def write_pictures(model: GPT, task: Any, history: list[dict[str, Any]], out: str, seed: int) -> list[str]:
    """loss.png, attention.png and graph.svg; returns the names of the files written."""
    import viz

    floor = getattr(task, "entropy_floor", None)
    train = [(m["step"], m["loss"]) for m in history]
    val = [(m["step"], m["val_loss"]) for m in history if "val_loss" in m]
    viz.plot_losses(train=train, eval=val or None, path=os.path.join(out, "loss.png"), floor=floor,
                    floor_label="best possible (entropy)", title=f"{task.name}: loss per step")  # fmt: skip
    made = ["loss.png"]
    idx, targets = task.get_batch("val", 1, stream(seed, SAMPLE_STREAM, 1))
    shown = idx[:, :24]  # a causal model attends within a prefix exactly as within the whole
    notes = ["row: query, column: key"]
    split = None
    if hasattr(task, "tokenizer"):  # one label per token: a character, or a BPE piece such as " cat"
        pieces = [decode(task.tokenizer, [i]) for i in shown[0]]
        tokens = [piece.replace(" ", "_").replace("\n", "\\n") for piece in pieces]
        if any(" " in piece for piece in pieces):
            notes.append("'_' is a space")
    else:
        tokens = [str(i) for i in shown[0]]
    if task.exact:  # a problem, then its answer: the line marks where the answer begins
        split = task.n_in
        notes.append(f"the white line: the {task.n_in} digits of the question before it, the answer after")
    weights = model.attention_weights(shown)[-1][0]  # (n_head, T, T): the last block, the one example
    title = f"attention in the last block\n({'; '.join(notes)})"
    viz.plot_attention(weights, tokens, os.path.join(out, "attention.png"), title=title, max_cols=2, split=split)
    made.append("attention.png")
    _, loss = model(idx, targets)  # one training step's graph: forward and the derived backward
    try:
        title = f"{task.name}: one training step, by module"
        viz.render(loss, os.path.join(out, "graph.svg"), depth=1, backward=True, grad_health=True, title=title)
        made.append("graph.svg")
    except viz.RenderError as error:
        print(f"graph.svg not drawn: {error}")
    return made


def load_run(out: str) -> tuple[dict[str, Any], dict[str, Any], GPT]:
    """The run in ``out``: its checkpoint's metadata, its checked settings, and its model, loaded."""
    path = os.path.join(out, CHECKPOINT_NAME)
    saved = saved_meta(out)
    if saved is None:
        raise DemoError(f"no checkpoint in {out}; train first (python demo.py --out {out})")
    settings = run_settings(saved, path)
    model = GPT(settings["config"], seed=0)
    load_checkpoint(path, model)
    return saved, settings, model


def load_pretrained(directory: str) -> tuple[GPT, Any]:
    """A Hugging Face GPT-2 folder's model and tokenizer (a PretrainedError, a ValueError, says what is wrong)."""
    started = time.perf_counter()
    model = GPT.from_pretrained(directory)
    tokenizer = pretrained_tokenizer(directory)
    n_params = sum(p.size for p in model.parameters())
    print(f"loaded {directory}: {model.config.n_layer} layers, width {model.config.n_embd}, "
          f"{n_params:,} parameters, in {time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
    return model, tokenizer


def sample_only(args: argparse.Namespace) -> None:
    """``--sample PROMPT``: load the checkpoint in --out (or the --pretrained folder) and print what
    the model makes of PROMPT. Needs only the checkpoint: a text run's vocabulary is in it, not in its
    text file (a fine-tuned GPT-2's BPE too)."""
    if args.pretrained:
        model, tokenizer = load_pretrained(args.pretrained)
        sample_text(model, tokenizer, args)
        return
    saved, settings, model = load_run(args.out)
    model.eval()
    task = settings["task"]
    if task is not None and task.exact:
        digits = [int(c) for c in args.sample if c.isdigit()]
        if len(digits) != task.n_in:
            raise DemoError(f"{saved['task']} needs {task.n_in} digits in --sample, got {args.sample!r}")
        answer = np.asarray(model.generate(np.array([digits]), task.n_out, top_k=1))[0, task.n_in :]
        print(task.describe(digits, answer))
        return
    tokenizer = task.tokenizer if task is not None else tokenizer_from_dict(saved["tokenizer"])
    sample_text(model, tokenizer, args)


def sample_text(model: GPT, tokenizer: Any, args: argparse.Namespace) -> None:
    """Print PROMPT continued by --tokens tokens (KV-cached generation), and the speed on stderr."""
    prompt = np.asarray(tokenizer.encode(args.sample), dtype=np.int64)  # unknown characters: a clear error
    if prompt.size == 0:
        start = getattr(tokenizer, "special_tokens", {}).get("<|endoftext|>")
        if start is None:
            raise DemoError("--sample needs a prompt of at least one character")
        prompt = np.array([start])  # GPT-2's convention: an empty prompt starts after an end of text
    if int(prompt.max()) >= model.config.vocab_size:
        raise DemoError(f"the tokenizer gave id {int(prompt.max())}, but the model knows {model.config.vocab_size}")
    started = time.perf_counter()
    out = model.generate(prompt[None], max_new_tokens=args.tokens, temperature=args.temperature, top_k=args.top_k,
                         seed=args.seed)  # fmt: skip
    seconds = time.perf_counter() - started
    print(decode(tokenizer, out[0]))
    print(f"{args.tokens} tokens in {seconds:.2f} s: {args.tokens / seconds:.1f} tokens/s (with the KV cache)",
          file=sys.stderr)  # fmt: skip


def write_walkthrough(
    model: GPT, task: Any, out: str, *, text: str | None = None, lr: float, optimizer_state: dict | None = None
) -> str:
    """walkthrough.html: one training step of ``model`` on ``text`` (the task's example when None),
    forward and backward, every number from the engine (`tinygrad_lm.walkthrough`), drawn by
    `viz.walkthrough`; returns its path."""
    import viz
    from tinygrad_lm import walkthrough
    from viz import walkthrough as pages

    example = walkthrough.sentence(task, text)
    data = walkthrough.trace_step(
        model, example["ids"], example["targets"], tokens=example["tokens"], text=example["text"],
        vocab=example["vocab"], lr=lr, optimizer_state=optimizer_state,
    )  # fmt: skip
    with model.evaluating():
        _, loss = model(np.asarray(example["ids"])[None], np.asarray(example["targets"])[None])
    try:
        title = "one training step: block 0 opened, forward (yellow) and backward (red)"
        drawing = viz.draw_graph(loss, depth=1, expand="transformer.h.0", backward=True, title=title)
        svg = drawing.pipe(format="svg", encoding="utf-8")
    except viz.RenderError as error:
        print(f"walkthrough.html: the graph is not drawn: {error}")
        svg = None
    return str(pages.write(os.path.join(out, "walkthrough.html"), data, svg))


def explain_only(args: argparse.Namespace) -> None:
    """``--explain TEXT``: walkthrough.html for the model in --out (or the --pretrained folder's,
    written into --out), on TEXT. Needs only the checkpoint."""
    if args.pretrained:  # a GPT-2 as downloaded: fresh Adam moments, fine-tuning's default rate
        check_out(args.out)
        model, tokenizer = load_pretrained(args.pretrained)
        task = SimpleNamespace(name="gpt2", exact=False, tokenizer=tokenizer, block_size=model.config.block_size)
        lr, optimizer_state = PRETRAINED_DEFAULTS["lr"], None
    else:
        saved, settings, model = load_run(args.out)
        task = settings["task"]
        if task is None:  # a text run: its tokenizer is in the checkpoint (the text file is not needed)
            block_size = saved["task_options"].get("block_size", settings["config"].block_size)
            tokenizer = tokenizer_from_dict(saved["tokenizer"])
            task = SimpleNamespace(name="text", exact=False, tokenizer=tokenizer, block_size=block_size)
        train = settings["train"]
        lr = warmup_cosine_lr(saved["step"], train.learning_rate, train.warmup_steps, train.lr_decay_steps,
                              train.min_lr)  # fmt: skip (the rate the run's next step would take)
        optimizer_state = saved["optimizer"]
    started = time.perf_counter()
    with run_lock(args.out):
        written = write_walkthrough(model, task, args.out, text=args.explain, lr=lr, optimizer_state=optimizer_state)
    size = os.path.getsize(written) / 1e6
    print(f"wrote {written} ({size:.1f} MB, {time.perf_counter() - started:.1f} s): open it in a browser")


RESULT_FILES = ("summary.json", "samples.txt", "loss.png", "attention.png", "graph.svg", "walkthrough.html")


def main(argv: list[str] | None = None) -> int:
    """Train (or resume, or sample), then write and print what happened; returns the exit status.
    A mistake in what was asked exits with one ``demo: ...`` line, having written nothing."""
    args = parse_args(argv)
    try:
        if args.sample is not None or args.explain is not None:
            try:
                sample_only(args) if args.sample is not None else explain_only(args)
            except ValueError as error:  # a CheckpointError, or text the model has no tokens for
                raise DemoError(str(error)) from None
            return 0
        return train(args)
    except (DemoError, RunExistsError, RunInUseError) as error:
        raise SystemExit(f"demo: {error}") from None


def load_pretrained_model(path: str, dropout: float, seed: int) -> GPT:
    """The GPT-2 in ``path`` with the run's dropout, its dropout stream seeded by the run's seed."""
    from tinygrad_lm.pretrained import load_pretrained

    try:
        return load_pretrained(path, dropout=dropout, seed=seed)
    except ValueError as error:
        raise DemoError(str(error)) from None


def train(args: argparse.Namespace) -> int:
    check_out(args.out)
    path = os.path.join(args.out, CHECKPOINT_NAME)
    try:
        saved = saved_meta(args.out) if args.resume else None
    except ValueError as error:  # a CheckpointError names the file and the problem; the file is left as it is
        raise DemoError(f"cannot resume: {error}") from None
    if saved:  # the run's settings come from its checkpoint; only where it stops may change
        settings = run_settings(saved, path)
        if args.text and saved["task"] != "text":  # a --text for a run that trains on no text
            args.given.append("--text")
            args.text = None
        args.task = saved["task"]
        args.text = args.text or saved.get("text_file")
        tconfig = settings["train"]
        if args.steps is not None:
            tconfig = TrainConfig(**{**vars(tconfig), "steps": args.steps})
        task, config = build_task(args, saved), settings["config"]
    else:
        if not args.resume and not args.overwrite:
            refuse_an_existing_run(args.out)
        if args.task == "text" and not args.text:
            raise DemoError(f"--pretrained {args.pretrained} needs --text FILE to train on ({args.out} holds no run)")
        task = build_task(args, None)
        config = pretrained_config(args.pretrained) if args.pretrained else model_config(args, task)
        tconfig = train_config(args)
    pretrained = saved.get("pretrained") if saved else (os.path.abspath(args.pretrained) if args.pretrained else None)
    model = None
    if pretrained and not saved:  # a fresh fine-tune starts from the folder's weights (all checked before any write)
        model = load_pretrained_model(args.pretrained, args.dropout, tconfig.seed)
        config = model.config
    if pretrained and task.vocab_size > config.vocab_size:
        raise DemoError(f"the tokenizer of {pretrained} has {task.vocab_size} tokens, the model {config.vocab_size}")
    meta = {"task": args.task, "task_options": saved["task_options"] if saved else task_options(args)}
    if pretrained:
        meta["pretrained"] = pretrained
    if hasattr(task, "tokenizer"):
        meta["tokenizer"] = task.tokenizer.to_dict()
    if args.task == "text" and args.text:
        meta["text_file"] = os.path.abspath(args.text)
        meta["text_sha256"] = args.text_sha256
    with run_lock(args.out):  # held until the results are written: no other run writes here meanwhile
        if saved and args.given:
            print(f"demo: resuming with the run's saved settings; ignoring {', '.join(args.given)}", file=sys.stderr)
        if model is None:  # (a resumed run's weights come from its checkpoint)
            model = GPT(config, seed=tconfig.seed)
        n_params = sum(p.size for p in model.parameters())
        print(f"task {args.task}: {task.__doc__.strip().splitlines()[0].replace('``', '')}")
        if pretrained:
            print(f"fine-tuning GPT-2 from {pretrained}, in its own tokens (byte-level BPE)")
        print(
            f"model: {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, context "
            f"{config.block_size}, {n_params:,} parameters; {tconfig.steps} steps of {tconfig.batch_size} sequences"
        )
        print(describe_schedule(tconfig))
        if getattr(task, "entropy_floor", None):
            print(f"best possible loss (the grammar's entropy): {task.entropy_floor:.4f} nats/char")
        trainer = Trainer(model, task, tconfig, args.out, meta=meta, progress=not args.quiet, outputs=RESULT_FILES)
        started = time.perf_counter()
        try:
            last = trainer.run(resume=args.resume, overwrite=args.overwrite)
        except TrainingDivergedError as error:
            print(f"\n{error}", file=sys.stderr)
            return 1
        if trainer.step < tconfig.steps:  # interrupted (Ctrl-C): the checkpoint is saved
            return 130
        write_results(args, model, task, config, tconfig, trainer, last, started)
    return 0


def write_results(
    args: argparse.Namespace, model: GPT, task: Any, config: GPTConfig, tconfig: TrainConfig, trainer: Trainer,
    last: dict[str, Any], started: float,
) -> None:  # fmt: skip
    model.eval()
    if "val_loss" not in last and "loss" not in last:  # nothing logged: a finished run resumed without its metrics
        last = {"val_loss": evaluate_loss(model, task, tconfig, trainer.step)}
    kind = "validation" if "val_loss" in last else "training"
    summary: dict[str, Any] = {
        "task": args.task, "steps": trainer.step, "final_loss": last.get("val_loss", last.get("loss")),
        "final_loss_kind": kind, "train_loss": last.get("loss"), "checkpoint": CHECKPOINT_NAME,
        "seconds": round(trainer.seconds, 2), "config": {"model": config.to_dict(), "train": vars(tconfig) | {}},
    }  # fmt: skip
    if getattr(task, "entropy_floor", None):
        summary["entropy_floor"] = task.entropy_floor
    if trainer.meta.get("pretrained"):
        summary["pretrained"] = trainer.meta["pretrained"]
    seed = tconfig.seed  # the run's own seed (a resumed run keeps the one it started with)
    if task.exact:
        summary["accuracy"] = task.evaluate(model, 1000, stream(seed, SAMPLE_STREAM, 2))
    samples = write_samples(model, task, os.path.join(args.out, "samples.txt"), seed)
    pictures = write_pictures(model, task, trainer.history, args.out, seed)
    lr = warmup_cosine_lr(trainer.step, tconfig.learning_rate, tconfig.warmup_steps, tconfig.lr_decay_steps,
                          tconfig.min_lr)  # fmt: skip (the rate the next step would take)
    write_walkthrough(model, task, args.out, lr=lr, optimizer_state=trainer.optimizer.state_dict())
    pictures.append("walkthrough.html")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    report(summary, samples, pictures, args.out, time.perf_counter() - started)


def report(summary: dict[str, Any], samples: str, pictures: list[str], out: str, seconds: float) -> None:
    """The closing lines: loss (against the floor), accuracy, samples, and where the files are."""
    print(f"\nfinished in {seconds:.0f} s: {summary['final_loss_kind']} loss {summary['final_loss']:.4f}", end="")
    if "entropy_floor" in summary:
        floor = summary["entropy_floor"]
        print(f" (best possible {floor:.4f}, gap {summary['final_loss'] - floor:.4f})", end="")
    if "accuracy" in summary:
        print(f", exact-match accuracy on held-out problems {summary['accuracy']:.1%}", end="")
    print("\n\nsamples:\n" + "\n".join("  " + line for line in samples.splitlines()[:12]))
    print(f"\nwritten to {out}/:")
    for name in ["summary.json", "metrics.jsonl", CHECKPOINT_NAME, "samples.txt", *pictures]:
        print(f"  {os.path.join(out, name)}")


if __name__ == "__main__":
    sys.exit(main())
