"""Train a toy transformer end to end and show what happened.

    python demo.py                       # the default: sentences of a small grammar, about a minute
    python demo.py --task sort           # learn to sort lists of digits
    python demo.py --task add --digits 2 # learn 2-digit addition
    python demo.py --text notes.txt      # a character-level model of your own text file
    python demo.py --out runs/grammar --resume --steps 4000     # train on to step 4000 in total
    python demo.py --out runs/grammar --sample "the cat"        # sample from a trained model

Every run writes into its --out folder (default runs/<task>/): summary.json, metrics.jsonl,
checkpoint.npz, loss.png, attention.png, graph.svg (one training step's graph, by module) and
samples.txt, and prints where they are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from tinygrad_lm import GPT, GPTConfig, load_checkpoint
from tinygrad_lm.tasks import TASKS, CharTokenizer, TextTask
from tinygrad_lm.train import CHECKPOINT_NAME, SAMPLE_STREAM, TrainConfig, Trainer, TrainingDivergedError, stream

# Per task: the model and the training run that reach the targets on 2 CPU cores.
DEFAULTS: dict[str, dict[str, Any]] = {
    "grammar": dict(n_layer=2, n_head=4, n_embd=64, block_size=64, steps=1500, batch_size=16, lr=3e-3),
    "text": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, steps=2000, batch_size=16, lr=2e-3),
    "sort": dict(n_layer=2, n_head=4, n_embd=64, steps=1500, batch_size=64, lr=3e-3),
    "reverse": dict(n_layer=2, n_head=4, n_embd=64, steps=1500, batch_size=64, lr=3e-3),
    "add": dict(n_layer=2, n_head=4, n_embd=64, steps=2500, batch_size=64, lr=3e-3),
}


# Options that shape a run; on --resume they come from the checkpoint instead.
RUN_SETTINGS = ("seed", "n_layer", "n_head", "n_embd", "block_size", "dropout", "batch_size", "lr", "eval_every",
                "checkpoint_every", "digits", "length")  # fmt: skip
OPTION_DEFAULTS = {"seed": 0, "dropout": 0.0, "eval_every": 250, "checkpoint_every": 250, "digits": 2, "length": 6}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked; ``args.given`` lists the run settings given explicitly."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    what = parser.add_argument_group("what to learn")
    what.add_argument("--task", choices=sorted(TASKS) + ["text"], default=None,
                      help="grammar (default): sentences like 'a cat sat on the mat.', with a known best possible "
                      "loss; sort / reverse: lists of digits; add: n-digit addition; text: needs --text")  # fmt: skip
    what.add_argument("--text", metavar="FILE", help="train a character-level model on this text file")
    what.add_argument("--digits", type=int, help="add: digits per number (default 2)")
    what.add_argument("--length", type=int, help="sort / reverse: digits per list (default 6)")
    run = parser.add_argument_group("the run")
    run.add_argument("--steps", type=int, help="train until this many steps in total (task default otherwise)")
    run.add_argument("--out", metavar="DIR", help="output folder (default runs/<task>)")
    run.add_argument("--seed", type=int, help="seeds the weights, the data order and dropout (default 0)")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out (if it has a checkpoint) with its own settings"
    )
    run.add_argument("--sample", metavar="PROMPT", help="only sample from the checkpoint in --out, from PROMPT")
    run.add_argument("--tokens", type=int, default=200, help="--sample: how many characters to generate")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model and optimisation (task defaults unless given)")
    model.add_argument("--n-layer", type=int, help="transformer blocks")
    model.add_argument("--n-head", type=int, help="attention heads per block")
    model.add_argument("--n-embd", type=int, help="width of the token vectors (divisible by --n-head)")
    model.add_argument("--block-size", type=int, help="context length (text tasks)")
    model.add_argument("--dropout", type=float, help="dropout probability (default 0)")
    model.add_argument("--batch-size", type=int, help="sequences per step")
    model.add_argument("--lr", type=float, help="peak learning rate (warmup, then cosine decay)")
    model.add_argument("--eval-every", type=int, help="evaluate every N steps (default 250)")
    model.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default 250)")
    args = parser.parse_args(argv)
    args.given = [f"--{name.replace('_', '-')}" for name in RUN_SETTINGS if getattr(args, name) is not None]
    for name, default in OPTION_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.text and args.task not in (None, "text"):
        parser.error(f"--text trains the 'text' task, not --task {args.task}")
    if args.task == "text" and not args.text:
        parser.error("--task text needs --text FILE")
    args.task = "text" if args.text else (args.task or "grammar")
    args.out = args.out or os.path.join("runs", args.task)
    return args


def build_task(args: argparse.Namespace, saved: dict[str, Any] | None) -> Any:
    """The task, rebuilt exactly as saved when resuming (a text's vocabulary comes from its checkpoint)."""
    options = (saved or {}).get("task_options") or task_options(args)
    if args.task == "text":
        if not os.path.exists(args.text):
            raise SystemExit(f"demo: --text {args.text}: no such file")
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
        tokenizer = CharTokenizer.from_dict(saved["tokenizer"]) if saved and "tokenizer" in saved else None
        return TextTask(text, tokenizer=tokenizer, **options)
    return TASKS[args.task](**options)


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.task in ("grammar", "text"):
        return {"block_size": args.block_size or DEFAULTS[args.task]["block_size"]}
    if args.task == "add":
        return {"n_digits": args.digits}
    return {"length": args.length}


def model_config(args: argparse.Namespace, task: Any) -> GPTConfig:
    d = DEFAULTS[args.task]
    return GPTConfig(
        vocab_size=task.vocab_size, block_size=task.block_size, n_layer=args.n_layer or d["n_layer"],
        n_head=args.n_head or d["n_head"], n_embd=args.n_embd or d["n_embd"], dropout=args.dropout,
    )  # fmt: skip


def train_config(args: argparse.Namespace) -> TrainConfig:
    d = DEFAULTS[args.task]
    steps = args.steps if args.steps is not None else d["steps"]
    return TrainConfig(
        steps=steps, batch_size=args.batch_size or d["batch_size"], learning_rate=args.lr or d["lr"],
        min_lr=(args.lr or d["lr"]) / 10, lr_decay_steps=max(d["steps"], 1), warmup_steps=min(100, d["steps"] // 10),
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
    )  # fmt: skip


def saved_meta(out: str) -> dict[str, Any] | None:
    path = os.path.join(out, CHECKPOINT_NAME)
    return load_checkpoint(path) if os.path.exists(path) else None


# ---------------------------------------------------------------------------------------------------
# After training: what the run shows
# ---------------------------------------------------------------------------------------------------


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
            lines.append(task.tokenizer.decode(out).rstrip("\n") + "\n---")
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
    if hasattr(task, "tokenizer"):
        tokens = [{" ": "_", "\n": "\\n"}.get(c, c) for c in task.tokenizer.decode(shown[0])]
    else:
        tokens = [str(i) for i in shown[0]]
    weights = model.attention_weights(shown)[-1][0]  # (n_head, T, T): the last block, the one example
    title = "attention in the last block (row: query, column: key; '_' is a space)"
    viz.plot_attention(weights, tokens, os.path.join(out, "attention.png"), title=title, max_cols=2)
    made.append("attention.png")
    _, loss = model(idx, targets)  # one training step's graph: forward and the derived backward
    try:
        title = f"{task.name}: one training step, by module"
        viz.render(loss, os.path.join(out, "graph.svg"), depth=1, backward=True, grad_health=True, title=title)
        made.append("graph.svg")
    except viz.RenderError as error:
        print(f"graph.svg not drawn: {error}")
    return made


def sample_only(args: argparse.Namespace) -> None:
    """``--sample PROMPT``: load the checkpoint in --out and print what the model makes of PROMPT."""
    saved = saved_meta(args.out)
    if saved is None:
        raise SystemExit(f"demo: no checkpoint in {args.out}; train first (python demo.py --out {args.out})")
    args.task = saved.get("task", args.task)
    if args.task == "text" and not args.text:
        args.text = saved.get("text_file")
    task = build_task(args, saved)
    model = GPT(GPTConfig(**saved["config"]), seed=0)
    load_checkpoint(os.path.join(args.out, CHECKPOINT_NAME), model)
    model.eval()
    if task.exact:
        digits = [int(c) for c in args.sample if c.isdigit()]
        if len(digits) != task.n_in:
            raise SystemExit(f"demo: {args.task} needs {task.n_in} digits in --sample, got {args.sample!r}")
        answer = np.asarray(model.generate(np.array([digits]), task.n_out, top_k=1))[0, task.n_in :]
        print(task.describe(digits, answer))
        return
    prompt = task.tokenizer.encode(args.sample)  # unknown characters: a clear error
    print(task.tokenizer.decode(model.generate(prompt[None], max_new_tokens=args.tokens, seed=args.seed)[0]))


def main(argv: list[str] | None = None) -> int:
    """Train (or resume, or sample), then write and print what happened; returns the exit status."""
    args = parse_args(argv)
    if args.sample is not None:
        try:
            sample_only(args)
        except ValueError as error:
            raise SystemExit(f"demo: {error}") from None
        return 0
    try:
        saved = saved_meta(args.out) if args.resume else None
    except ValueError as error:  # a CheckpointError names the file and the problem; the file is left as it is
        raise SystemExit(f"demo: cannot resume: {error}") from None
    if saved:  # the run's settings come from its checkpoint; only where it stops may change
        if args.given:
            print(f"demo: resuming with the run's saved settings; ignoring {', '.join(args.given)}", file=sys.stderr)
        args.task = saved.get("task", args.task)
        args.text = args.text or saved.get("text_file")
        steps = args.steps if args.steps is not None else saved["train_config"]["steps"]
        tconfig = TrainConfig(**{**saved["train_config"], "steps": steps})
    task = build_task(args, saved)
    config = GPTConfig(**saved["config"]) if saved else model_config(args, task)
    if not saved:
        tconfig = train_config(args)
    model = GPT(config, seed=tconfig.seed)
    n_params = sum(p.size for p in model.parameters())
    print(f"task {args.task}: {task.__doc__.strip().splitlines()[0].replace('``', '')}")
    print(
        f"model: {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, context {config.block_size}, "
        f"{n_params:,} parameters; {tconfig.steps} steps of {tconfig.batch_size} sequences"
    )
    if getattr(task, "entropy_floor", None):
        print(f"best possible loss (the grammar's entropy): {task.entropy_floor:.4f} nats/char")
    meta = {"task": args.task, "task_options": saved["task_options"] if saved else task_options(args)}
    if hasattr(task, "tokenizer"):
        meta["tokenizer"] = task.tokenizer.to_dict()
    if args.text:
        meta["text_file"] = os.path.abspath(args.text)
    trainer = Trainer(model, task, tconfig, args.out, meta=meta, progress=not args.quiet)
    started = time.perf_counter()
    try:
        last = trainer.run(resume=args.resume)
    except TrainingDivergedError as error:
        print(f"\n{error}", file=sys.stderr)
        return 1
    if trainer.step < tconfig.steps:  # interrupted (Ctrl-C): the checkpoint is saved
        return 130
    model.eval()
    summary: dict[str, Any] = {
        "task": args.task, "steps": trainer.step, "final_loss": last.get("val_loss", last.get("loss")),
        "train_loss": last.get("loss"), "checkpoint": CHECKPOINT_NAME, "seconds": round(trainer.seconds, 2),
        "config": {"model": config.to_dict(), "train": vars(tconfig) | {}},
    }  # fmt: skip
    if getattr(task, "entropy_floor", None):
        summary["entropy_floor"] = task.entropy_floor
    seed = tconfig.seed  # the run's own seed (a resumed run keeps the one it started with)
    if task.exact:
        summary["accuracy"] = task.evaluate(model, 1000, stream(seed, SAMPLE_STREAM, 2))
    samples = write_samples(model, task, os.path.join(args.out, "samples.txt"), seed)
    pictures = write_pictures(model, task, trainer.history, args.out, seed)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    report(summary, samples, pictures, args.out, time.perf_counter() - started)
    return 0


def report(summary: dict[str, Any], samples: str, pictures: list[str], out: str, seconds: float) -> None:
    """The closing lines: loss (against the floor), accuracy, samples, and where the files are."""
    print(f"\nfinished in {seconds:.0f} s: loss {summary['final_loss']:.4f}", end="")
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
