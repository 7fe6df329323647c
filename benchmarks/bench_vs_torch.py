"""Time one training step of the engine's GPT beside the same GPT in PyTorch, on this machine.

    pip install -e ".[bench]"                          # torch (CPU) and threadpoolctl
    python benchmarks/bench_vs_torch.py                # tiny, small, medium: a few minutes
    python benchmarks/bench_vs_torch.py --configs small --rounds 20 --memory --json small.json
    python benchmarks/bench_vs_torch.py --impls engine,torch,torch_sdpa    # also torch's fused attention
    python benchmarks/bench_vs_torch.py --impls engine --configs tiny      # the engine alone: no torch needed
    python benchmarks/bench_vs_torch.py --check        # float64: the two GPTs compute the same thing

A step is what a training loop does: forward, loss, backward, AdamW, zero grads. The engine runs as
a training script runs it (`model.compile()` and `keep_freed_memory()`); torch runs eager
(`benchmarks/torch_gpt.py`: nanoGPT's layout, attention written out as the engine computes it, or
torch's fused `scaled_dot_product_attention` for `torch_sdpa`). Both start from the same weights
(the engine's seed-0 init, loaded into torch), train on the same batches with the same AdamW
settings, in float32, with the same number of threads (`--threads`, 2 by default).

How it measures on a shared machine: each implementation lives in its own process for the whole
run, so thread pools never compete and imports are paid once, and the processes take turns (round
1: engine then torch, round 2: torch then engine, ...). A turn times a block of steps; a round's
ratio engine/torch compares two blocks measured seconds apart, so a machine whose speed drifts from
minute to minute moves both sides alike. The table gives each side's median over rounds and the
median of the per-round ratios with their quartiles (how much the rounds disagree).

A step during which our threads waited for a CPU another process had is contended (its time is the
machine's, not the code's); a round in which some turn was mostly contended is left out. Before each
round the script waits a few seconds (`--quiet-wait`) for other processes to leave the CPUs. With
fewer than 3 clean rounds a config's figures cannot be trusted, and the table says so under it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import harness
import numpy as np

IMPLS = ("engine", "torch", "torch_sdpa")
# Steps a turn times unless --steps says: 0.5 to 3 s of steps on this project's 2-core VM.
DEFAULT_STEPS = {"tiny": 40, "small": 5, "medium": 2}
MIN_CLEAN_ROUNDS = 3  # fewer clean rounds than this, and the table says its figures cannot be trusted


def parse_impls(text: str) -> list[str]:
    """``"engine,torch"`` -> ``["engine", "torch"]``; unknown or repeated names are refused."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in IMPLS]
    if unknown or not names:
        what = f"unknown implementation {unknown[0]!r}" if unknown else "no implementation given"
        raise argparse.ArgumentTypeError(f"{what}; choose from {', '.join(IMPLS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an implementation is named twice in {text!r}")
    return names


def parse_configs(text: str) -> list[harness.BenchConfig]:
    try:
        return harness.parse_configs(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", type=parse_configs, default="tiny,small,medium", help="tiny, small, medium")
    parser.add_argument("--impls", type=parse_impls, default="engine,torch", help=", ".join(IMPLS))
    parser.add_argument("--rounds", type=harness.positive_int, default=10, help="turns each implementation takes")
    parser.add_argument(
        "--steps", type=harness.positive_int, help="timed steps per turn (default: tiny 40, small 5, medium 2)"
    )
    parser.add_argument("--warmup", type=harness.positive_int, default=3, help="untimed steps each process starts with")
    parser.add_argument(
        "--threads", type=harness.positive_int, default=2, help="BLAS and torch threads of each process"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="before each round, wait up to this long for other processes to leave the CPUs (0: never)",
    )
    parser.add_argument("--memory", action="store_true", help="also report each process's peak resident memory")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement to this file")
    parser.add_argument("--check", action="store_true", help="check in float64 that both GPTs agree, then exit")
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)  # one implementation's process
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def torch_is_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


# -- one implementation's process -----------------------------------------------------------------


def make_step(impl: str, bc: harness.BenchConfig, weights: dict[str, np.ndarray], threads: int) -> Callable[[], None]:
    """One training step of ``impl`` as a function of nothing: forward, loss, backward, AdamW, zero grads."""
    if impl == "engine":
        return harness.engine_step(bc, weights)
    import torch
    import torch_gpt

    torch.set_num_threads(threads)
    model = torch_gpt.build(bc, weights, sdpa=(impl == "torch_sdpa"))
    opt = torch_gpt.adamw(model)
    batches = itertools.cycle([(torch.from_numpy(x), torch.from_numpy(y)) for x, y in harness.make_batches(bc)])

    def step() -> None:
        idx, targets = next(batches)
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # torch's default: no pass over memory

    return step


def versions(impl: str) -> dict[str, Any]:
    """What this process runs: library versions, threads, and where the engine was imported from."""
    info: dict[str, Any] = {"numpy": np.__version__}
    if impl == "engine":
        import tinygrad_lm

        info["engine"] = os.path.dirname(os.path.abspath(tinygrad_lm.__file__))
    else:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    try:
        import threadpoolctl

        info["blas"] = [f"{p['internal_api']} {p['num_threads']} threads" for p in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    return info


def worker(impl: str, config: str, weights_path: str, threads: int, warmup: int) -> None:
    """An implementation's process: build, warm up, then time blocks of steps on request (harness.serve)."""
    if impl != "engine":
        import torch  # noqa: F401 (its import counts in the process's memory, as in a user's)
    rss_after_import = harness.rss_mib()
    with np.load(weights_path) as archive:
        weights = dict(archive)
    step = make_step(impl, harness.CONFIGS[config], weights, threads)
    warmup_s = [harness.timed(step)[0] for _ in range(warmup)]
    harness.serve(
        step, {"impl": impl, "warmup_s": warmup_s, "rss_after_import_mib": rss_after_import, **versions(impl)}
    )


def start_worker(
    impl: str, bc: harness.BenchConfig, weights_path: str, args: argparse.Namespace
) -> harness.StepProcess:
    """Start ``impl``'s process for ``bc``; it is warmed up when this returns."""
    threads = str(args.threads)
    # BLAS reads its thread count when it loads, so the environment is where to set it.
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    command = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--configs", bc.name,
               "--weights", weights_path, "--threads", threads, "--warmup", str(args.warmup)]  # fmt: skip
    return harness.StepProcess(impl, command, env)


# -- the parent: rounds, then the table -----------------------------------------------------------


def turn_order(impls: Sequence[str], round_index: int) -> list[str]:
    """Who goes first rotates from round to round, so each follows each other equally often."""
    k = round_index % len(impls)
    return list(impls[k:]) + list(impls[:k])


@dataclass(frozen=True)
class Turn:
    """One implementation's block of steps in one round."""

    median_s: float  # the block's median step: one slow step does not move it
    steps: int
    contended: int  # steps during which our threads waited for a CPU another process had

    @property
    def clean(self) -> bool:
        return self.contended <= self.steps / 2


def turn_from(samples: dict[str, list[float]]) -> Turn:
    """A Turn from a worker's answer: its steps' wall times and CPU waits."""
    walls, waits = samples["wall_s"], samples["wait_s"]
    return Turn(statistics.median(walls), len(walls), sum(harness.contended(w, q) for w, q in zip(walls, waits)))


def summarize(rounds: Sequence[dict[str, Turn]]) -> dict[str, Any]:
    """Each implementation's median over rounds, and the engine's paired per-round ratio to each other.

    Rounds in which some turn was mostly contended (another process took our CPUs) are left out,
    as long as MIN_CLEAN_ROUNDS clean ones remain; otherwise every round counts and ``trusted`` is
    False: the figures then say as much about the machine's other load as about the code.
    """
    clean = [r for r in rounds if all(turn.clean for turn in r.values())]
    trusted = len(clean) >= MIN_CLEAN_ROUNDS
    used = clean if trusted else list(rounds)
    impls = list(rounds[0])
    contended = {impl: [sum(r[impl].contended for r in rounds), sum(r[impl].steps for r in rounds)] for impl in impls}
    problem = None
    if len(rounds) < MIN_CLEAN_ROUNDS:
        problem = (
            f"{len(rounds)} rounds are too few to tell the code from the machine's noise (take {MIN_CLEAN_ROUNDS}+)"
        )
    elif not trusted:
        waited = ", ".join(f"{impl} {c} of {n}" for impl, (c, n) in contended.items())
        problem = (
            f"only {len(clean)} of {len(rounds)} rounds ran without another process taking our CPUs (steps that"
            f" waited for a CPU: {waited}); the machine was busy, run again when it is quieter"
        )
    summary: dict[str, Any] = {
        "rounds": len(rounds),
        "clean_rounds": len(clean),
        "trusted": trusted,
        "problem": problem,
        "ms": {impl: harness.median_and_quartiles([r[impl].median_s for r in used])[0] * 1e3 for impl in impls},
        "ratios": {},
        "contended_steps": contended,
    }
    if "engine" in impls:
        engine = [r["engine"].median_s for r in used]
        for impl in impls:
            if impl != "engine":
                ratios = harness.paired_ratios(engine, [r[impl].median_s for r in used])
                summary["ratios"][impl] = harness.median_and_quartiles(ratios)
    return summary


def bench_config(bc: harness.BenchConfig, args: argparse.Namespace, weights_dir: str) -> dict[str, Any]:
    """Start a process per implementation, let them take ``args.rounds`` turns each, stop them."""
    weights_path = os.path.join(weights_dir, f"{bc.name}.npz")
    np.savez(weights_path, **harness.engine_gpt(bc).state_dict())  # both sides start from these
    steps = args.steps or DEFAULT_STEPS[bc.name]
    workers: dict[str, harness.StepProcess] = {}
    rounds: list[dict[str, Turn]] = []
    try:
        for impl in args.impls:  # one after the other: warm-ups do not compete
            workers[impl] = start_worker(impl, bc, weights_path, args)
        for r in range(args.rounds):
            quiet = harness.wait_until_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
            this_round = {}
            for impl in turn_order(args.impls, r):
                time.sleep(harness.BLAS_SPIN_S)  # the last turn's BLAS threads stop spinning
                this_round[impl] = turn_from(workers[impl].run(steps))
            rounds.append({impl: this_round[impl] for impl in args.impls})
            progress = ", ".join(f"{impl} {turn.median_s * 1e3:.1f} ms" for impl, turn in rounds[-1].items())
            busy = "" if quiet is not False else " (started while the machine was busy)"
            print(f"{bc.name} round {r + 1}/{args.rounds}: {progress}{busy}", file=sys.stderr, flush=True)
        hellos = {impl: w.hello for impl, w in workers.items()}
        peaks = {impl: workers.pop(impl).stop() for impl in list(workers)}
    finally:
        for w in workers.values():  # only after an error: end the processes still running
            w.kill()
    return {
        "config": asdict(bc),
        "steps_per_turn": steps,
        "per_round_s": {impl: [r[impl].median_s for r in rounds] for impl in args.impls},
        "peak_rss_mib": peaks,
        "processes": hellos,
        **summarize(rounds),
    }


def machine() -> str:
    """The CPU model and count, for the header: figures mean little without the machine."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{platform.node()}, {model}, {os.cpu_count()} CPUs"


def describe_processes(hellos: dict[str, dict[str, Any]]) -> str:
    """One line on what each process ran: versions, BLAS threads, where the engine came from."""
    parts = []
    for impl, info in hellos.items():
        what = f"engine from {info['engine']}" if impl == "engine" else f"torch {info['torch']}"
        blas = f", {'; '.join(info['blas'])}" if info.get("blas") else ""
        threads = f", {info['torch_threads']} torch threads" if "torch_threads" in info else ""
        parts.append(f"{impl}: {what}, numpy {info['numpy']}{blas}{threads}")
    return "; ".join(parts)


def format_table(results: list[dict[str, Any]], impls: Sequence[str], memory: bool) -> list[str]:
    """The table's lines: ms per step of each implementation, the paired ratios, clean rounds,
    peak memory (with ``memory``), and a note under it for every config whose figures cannot be trusted."""
    others = [impl for impl in impls if impl != "engine"] if "engine" in impls else []
    header = f"{'config':7s} {'model':21s}" + "".join(f" {impl + ' ms':>14s}" for impl in impls)
    header += "".join(f" {'engine/' + impl + ' (IQR)':>26s}" for impl in others) + f" {'clean':>7s}"
    header += "".join(f" {impl + ' MiB (imports)':>24s}" for impl in impls) if memory else ""
    lines, notes = [header], []
    for res in results:
        bc = harness.BenchConfig(**res["config"])
        row = f"{bc.name:7s} {bc.describe():21s}" + "".join(f" {res['ms'][impl]:14.2f}" for impl in impls)
        for impl in others:
            median, q1, q3 = res["ratios"][impl]
            row += f"{median:.3f} ({q1:.2f}-{q3:.2f})".rjust(27)
        row += f"{res['clean_rounds']}/{res['rounds']}".rjust(8)
        if memory:
            for impl in impls:
                imports = res["processes"][impl]["rss_after_import_mib"]
                row += f"{res['peak_rss_mib'][impl]:.0f} ({imports:.0f})".rjust(25)
        lines.append(row)
        if res["problem"]:
            notes.append(f"{bc.name}: cannot be trusted: {res['problem']}")
    if others:
        notes.append(
            "engine/X: the median of the per-round ratios (their quartiles), over the clean rounds"
            " (over all rounds where the figures cannot be trusted)"
        )
    if memory:
        notes.append(
            "MiB: each process's peak resident memory over the whole run; in brackets, its memory once its"
            " imports were done (numpy, the engine or torch), before it built the model"
        )
    return lines + notes


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.configs[0].name, args.weights, args.threads, args.warmup)
        return
    needs_torch = args.check or any(impl != "engine" for impl in args.impls)
    if needs_torch and not torch_is_installed():
        sys.exit(f"bench_vs_torch: torch is not installed; install the bench extra: {harness.BENCH_EXTRA_HINT}"
                 " (or time the engine alone: --impls engine)")  # fmt: skip
    if args.check:
        return check(args.configs[0].name)

    harness.end_children_on_sigterm()
    started = datetime.datetime.now()
    print(f"bench_vs_torch {started:%Y-%m-%d %H:%M}, {machine()}; {args.threads} threads a process")
    results = []
    with tempfile.TemporaryDirectory() as weights_dir:
        for bc in args.configs:
            results.append(bench_config(bc, args, weights_dir))
    print("\n".join(format_table(results, args.impls, args.memory)))
    print(describe_processes(results[0]["processes"]))
    print(f"took {(datetime.datetime.now() - started).total_seconds() / 60:.1f} min")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started.isoformat(timespec="seconds"), "machine": machine(),
                       "argv": sys.argv, "results": results}, f, indent=1)  # fmt: skip


def check(config: str) -> None:
    """``--check``: train both GPTs three AdamW steps in float64 and compare (torch_gpt.check_agreement)."""
    import torch_gpt

    worst = torch_gpt.check_agreement(config)
    print(f"float64, {config}, 3 AdamW steps from the same weights on the same batches: worst relative difference")
    for what, difference in worst.items():
        print(f"  {what:11s} {difference:.1e}")
    if max(worst.values()) > torch_gpt.CHECK_TOLERANCE:
        sys.exit(f"bench_vs_torch: the engine and the torch GPT disagree (tolerance {torch_gpt.CHECK_TOLERANCE:.0e})")
    print(f"agree: every difference is below {torch_gpt.CHECK_TOLERANCE:.0e}")


if __name__ == "__main__":
    main()
