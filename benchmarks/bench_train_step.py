"""Time one full GPT training step (forward, loss, backward, AdamW, zero grads) of this project.

Prints, for the tiny, small and medium configs, ms per step (median), tokens per second, the model
FLOP/s, MFU and peak memory. Each config trains in a process of its own, so memory numbers do not
mix. No torch needed; the side-by-side comparison with torch is `bench_vs_torch.py`.

    python benchmarks/bench_train_step.py                         # tiny, small, medium
    python benchmarks/bench_train_step.py --configs small --steps 30

Model FLOPs per step = (6 N + 12 n_layer n_embd T) * tokens, N = parameters without the position
embedding (the PaLM / nanoGPT estimate; the second term is attention's QK^T and AV).

MFU = model FLOP/s / the machine's float32 matmul peak, and a peak measured at another moment than
the steps means nothing on a machine whose speed changes from minute to minute (this script once
printed "MFU 129.5%": its peak had been measured while another process had the CPUs). So the peak
is measured alongside the steps: between every two blocks of steps, while the training process
waits, by this process with the same BLAS. MFU is taken against the best peak seen, and when the
peaks disagree widely or MFU comes out above 100%, the table prints no MFU and says why.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

import harness
import numpy as np

DEFAULT_STEPS = {"tiny": 300, "small": 40, "medium": 8}  # about 10 s each on the project's VM
# The peak measurements of one run may differ by this factor before the MFU is called untrustworthy:
# a shared VM drifts by 20-30% from minute to minute; twice as fast means it was busy part of the time.
MAX_PEAK_SPREAD = 1.5


@dataclass(frozen=True)
class MFU:
    """Model FLOPs utilisation, and whether it can be believed."""

    value: float  # model FLOP/s over the best matmul peak seen
    best_peak_gflops: float
    worst_peak_gflops: float
    problem: str | None  # why the value cannot be trusted; None when it can

    def __str__(self) -> str:
        return "n/a" if self.problem else f"{self.value:.1%}"


def mfu(model_flops_per_step: float, step_s: float, peaks_gflops: list[float], contended_share: float = 0.0) -> MFU:
    """MFU of a step of ``step_s`` seconds against the best of ``peaks_gflops`` (GFLOP/s of a float32
    matmul, measured between the blocks of steps), with the reason it cannot be trusted, if any.

    Three signs that the machine was busy: MFU above 100% (the steps ran faster than the best
    matmul measured, so every peak measurement was slowed down); peak measurements that disagree by
    more than MAX_PEAK_SPREAD (the machine's speed changed during the run, so the steps and the
    best peak were not measured on the same machine); most steps contended (``contended_share``:
    our threads waited for CPUs another process had, so the steps ran slower than the code).
    """
    if not peaks_gflops or min(peaks_gflops) <= 0:
        raise ValueError(f"mfu: need positive peak measurements, got {peaks_gflops}")
    best, worst = max(peaks_gflops), min(peaks_gflops)
    value = model_flops_per_step / step_s / (best * 1e9)
    problem = None
    if value > 1.0:
        problem = (
            f"it would read {value:.1%}, above 100%: the steps ran faster than the best matmul measured"
            f" ({best:.1f} GFLOP/s), so the peak was measured while another process had the CPUs"
        )
    elif best / worst > MAX_PEAK_SPREAD:
        problem = (
            f"the matmul peak measured between the blocks of steps ranged from {worst:.1f} to {best:.1f}"
            f" GFLOP/s ({best / worst:.1f}x): the machine was busy during the run, so the steps and the peak"
            " were not measured on the same machine"
        )
    elif contended_share > 0.5:
        problem = (
            f"{contended_share:.0%} of the steps waited for a CPU another process had: the machine was busy,"
            " so the steps ran slower than the code"
        )
    return MFU(value, best, worst, problem)


def matmul_gflops(a: np.ndarray, b: np.ndarray, out: np.ndarray, repeat: int = 2) -> float:
    """Best float32 GFLOP/s of ``a @ b`` over ``repeat`` calls: one peak measurement."""
    time.sleep(harness.BLAS_SPIN_S)  # the training process's BLAS threads stop spinning
    best = min(harness.timed(lambda: np.matmul(a, b, out=out))[0] for _ in range(repeat))
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9


def model_flops_per_step(bc: harness.BenchConfig) -> int:
    """(6 N + 12 n_layer n_embd T) * tokens, N = parameters without the position embedding."""
    model = harness.engine_gpt(bc)
    n_params = sum(p.size for p in model.parameters()) - model.transformer.wpe.weight.size
    return (6 * n_params + 12 * bc.n_layer * bc.n_embd * bc.block_size) * bc.tokens_per_step


def child(config: str, warmup: int) -> None:
    """The training process: build, warm up, then time blocks of steps on request (harness.serve)."""
    rss_start = harness.rss_mib()
    step = harness.engine_step(harness.CONFIGS[config])
    for _ in range(warmup):
        step()
    harness.serve(step, {"rss_start_mib": rss_start})


def split(steps: int, blocks: int) -> list[int]:
    """``steps`` as ``blocks`` nearly equal blocks (fewer when there are fewer steps)."""
    blocks = max(1, min(blocks, steps))
    return [steps // blocks + (i < steps % blocks) for i in range(blocks)]


def run_config(bc: harness.BenchConfig, args: argparse.Namespace) -> dict:
    """Train ``bc`` in a process of its own; measure the matmul peak here before, between and after
    its blocks of steps, while it waits."""
    command = [sys.executable, os.path.abspath(__file__), "--child", bc.name, "--warmup", str(args.warmup)]
    n = args.peak_size
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)  # start BLAS's threads
    process = harness.StepProcess(bc.name, command)
    try:
        peaks = [matmul_gflops(a, b, out)]
        times, waits = [], []
        for block in split(args.steps or DEFAULT_STEPS[bc.name], args.blocks):
            samples = process.run(block)
            times += samples["wall_s"]
            waits += samples["wait_s"]
            peaks.append(matmul_gflops(a, b, out))
        peak_rss = process.stop()
    finally:
        process.kill()
    return {
        "config": bc.name,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "contended_steps": sum(harness.contended(w, q) for w, q in zip(times, waits)),
        "steps": len(times),
        "tokens_per_step": bc.tokens_per_step,
        "model_flops_per_step": model_flops_per_step(bc),
        "peaks_gflops": peaks,
        "peak_rss_mib": peak_rss,
        "rss_start_mib": process.hello["rss_start_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small,medium")
    parser.add_argument(
        "--steps", type=harness.positive_int, help="timed steps (default: tiny 300, small 40, medium 8)"
    )
    parser.add_argument("--warmup", type=harness.positive_int, default=3)
    parser.add_argument(
        "--blocks",
        type=harness.positive_int,
        default=4,
        help="blocks of steps, with the matmul peak measured around each",
    )
    parser.add_argument(
        "--peak-size", type=harness.positive_int, default=2048, help="the peak is that of an n^3 float32 matmul"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every measurement to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.warmup)
        return
    try:
        configs = harness.parse_configs(args.configs)
    except ValueError as error:
        parser.error(f"argument --configs: {error}")

    harness.end_children_on_sigterm()
    started = time.strftime("%Y-%m-%d %H:%M")
    print(f"bench_train_step {started}; numpy {np.__version__}; MFU against the best float32 {args.peak_size}^3"
          " matmul peak measured between the blocks of steps")  # fmt: skip
    header = f"{'config':7s} {'ms/step':>9s} {'min ms':>8s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'peak GFLOP/s':>15s}"
    print(header + f" {'MFU':>6s} {'peak MiB':>9s}")
    results, notes = [], []
    for bc in configs:
        r = run_config(bc, args)
        gflops = r["model_flops_per_step"] / r["median_s"] / 1e9
        m = mfu(r["model_flops_per_step"], r["median_s"], r["peaks_gflops"], r["contended_steps"] / r["steps"])
        r["mfu"], r["mfu_problem"] = m.value, m.problem
        results.append(r)
        peak_range = f"{m.worst_peak_gflops:.0f}-{m.best_peak_gflops:.0f}"
        tokens_per_s = r["tokens_per_step"] / r["median_s"]
        print(
            f"{bc.name:7s} {r['median_s'] * 1e3:9.2f} {r['min_s'] * 1e3:8.2f} {tokens_per_s:9.0f}"
            f" {gflops:8.1f} {peak_range:>15s} {m!s:>6s} {r['peak_rss_mib']:9.0f}"
        )
        if m.problem:
            notes.append(f"{bc.name}: MFU cannot be trusted: {m.problem}")
    print("\n".join(notes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started, "argv": sys.argv, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
