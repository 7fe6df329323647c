"""Time a training step of two checkouts of this project, in alternating processes: before and after.

    git worktree add ../before HEAD~3                        # the commit before a change
    python benchmarks/compare_checkouts.py ../before . --config small --rounds 8

Each round runs one process per checkout (in alternating order), each importing the engine from its
checkout, and times forward, backward and a whole step (forward, loss, backward, AdamW, zero grads)
of the GPT with `model.compile()` (where the checkout has it) and `keep_freed_memory()`. It prints
the medians and the median of the per-round ratios b/a, which cancels most of a shared machine's
drift (on a busy VM, compare these ratios, not milliseconds across runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import harness

CONFIGS = {
    **harness.CONFIGS,
    # tiny's model on 2 tokens: the arrays are so small this times the Python
    "overhead": harness.BenchConfig("overhead", n_layer=2, n_head=4, n_embd=64, block_size=2, batch_size=1),
}
PHASES = ("forward", "backward", "step")


def child(config: str, steps: int, warmup: int) -> None:
    """In the checkout's process: train ``warmup + steps`` steps, print the median times as JSON."""
    model, opt = harness.build_engine(CONFIGS[config])  # imports the engine of the checkout on PYTHONPATH
    batches = harness.make_batches(CONFIGS[config])
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for i in range(warmup + steps):
        idx, targets = batches[i % len(batches)]
        start = time.perf_counter()
        _, loss = model(idx, targets)
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        opt.step()
        opt.zero_grad()
        end = time.perf_counter()
        if i >= warmup:
            for phase, seconds in zip(PHASES, (forward - start, backward - forward, end - start)):
                times[phase].append(seconds * 1e3)
    print(json.dumps({phase: statistics.median(values) for phase, values in times.items()}))


def run_child(checkout: str, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(checkout)}
    command = [sys.executable, os.path.abspath(__file__), "--child", args.config, str(args.steps), str(args.warmup)]
    result = subprocess.run(command, env=env, cwd=checkout, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"compare_checkouts: the run in {checkout} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="a checkout of the project (the one before)")
    parser.add_argument("b", help="another checkout (the one after)")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of one process per checkout")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per process (default: by config)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = {"tiny": 60, "small": 10, "medium": 4, "overhead": 200}[args.config]
    results: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    for round_ in range(args.rounds):
        for name in ("a", "b") if round_ % 2 == 0 else ("b", "a"):
            results[name].append(run_child(getattr(args, name), args))
    print(f"{args.config}: {args.rounds} rounds of {args.steps} steps; a = {args.a}, b = {args.b}")
    print(f"{'phase':9s} {'a ms':>9s} {'b ms':>9s} {'b/a (paired median)':>20s}")
    for phase in PHASES:
        a = statistics.median(r[phase] for r in results["a"])
        b = statistics.median(r[phase] for r in results["b"])
        b_over_a = harness.paired_ratios([r[phase] for r in results["b"]], [r[phase] for r in results["a"]])
        ratio = statistics.median(b_over_a)
        print(f"{phase:9s} {a:9.2f} {b:9.2f} {ratio:20.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
