"""Time one full GPT training step (forward, loss, backward, AdamW, zero grads) of this project.

Prints, for the three configs of the shared yardstick, ms per step (median), tokens per second,
MFU (model FLOPs per step / step time / the measured float32 matmul peak) and peak memory. Each
config runs in a fresh process, so memory numbers do not mix. No torch needed; the side-by-side
comparison with torch and a hand-written numpy GPT is `../shared/bench/bench_step.py`.

    python benchmarks/bench_train_step.py                         # tiny, small, medium
    python benchmarks/bench_train_step.py --configs small --steps 30

Model FLOPs per step = (6 N + 12 n_layer n_embd T) * tokens, N = parameters without the position
embedding (the PaLM / nanoGPT estimate; the second term is attention's QK^T and AV).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BenchConfig:
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    vocab_size: int = 65


CONFIGS = {
    "tiny": BenchConfig("tiny", n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=16),
    "small": BenchConfig("small", n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=32),
    "medium": BenchConfig("medium", n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=8),
}


def matmul_peak_gflops(n: int = 2048, repeat: int = 5) -> float:
    """Best float32 GFLOP/s of an n^3 matmul in this process (the MFU denominator)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_config(bc: BenchConfig, steps: int, warmup: int) -> dict:
    """Build the model, train ``warmup + steps`` steps on random tokens, report times and memory."""
    from autograd import memory
    from tinygrad_lm import GPT, GPTConfig
    from tinygrad_lm.optim import AdamW

    rss_start = rss_mib()
    config = GPTConfig(bc.vocab_size, bc.block_size, bc.n_layer, bc.n_head, bc.n_embd)
    model = GPT(config, seed=0).compile()  # the speed switches a training script turns on
    memory.keep_freed_memory()
    params = model.parameters()
    opt = AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=1e-3, betas=(0.9, 0.99), eps=1e-8,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    shape = (bc.batch_size, bc.block_size)
    batches = [(rng.integers(0, bc.vocab_size, shape), rng.integers(0, bc.vocab_size, shape)) for _ in range(4)]

    def step(i: int) -> None:
        idx, targets = batches[i % len(batches)]
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()

    for i in range(warmup):
        step(i)
    times = [_seconds(lambda i=i: step(i)) for i in range(steps)]
    n_params = sum(p.size for p in params) - model.transformer.wpe.weight.size
    tokens = bc.batch_size * bc.block_size
    flops = (6 * n_params + 12 * bc.n_layer * bc.n_embd * bc.block_size) * tokens
    return {
        "config": bc.name,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "tokens_per_step": tokens,
        "model_flops_per_step": flops,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_start_mib": rss_start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small,medium")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: about 10 s per config)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        bc = CONFIGS[args.child]
        steps = args.steps or {"tiny": 300, "small": 40, "medium": 8}[bc.name]
        print(json.dumps(run_config(bc, steps, args.warmup)))
        return

    peak = matmul_peak_gflops()
    print(f"numpy {np.__version__}; float32 matmul peak {peak:.0f} GFLOP/s (2048^3, best of 5)")
    print(f"{'config':7s} {'ms/step':>9s} {'min ms':>8s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'MFU':>6s} {'peak MiB':>9s}")
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"bench_train_step: unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        command = [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        gflops = r["model_flops_per_step"] / r["median_s"] / 1e9
        print(
            f"{name:7s} {r['median_s'] * 1e3:9.2f} {r['min_s'] * 1e3:8.2f} {r['tokens_per_step'] / r['median_s']:9.0f}"
            f" {gflops:8.1f} {gflops / peak:6.1%} {r['peak_rss_mib']:9.0f}"
        )


if __name__ == "__main__":
    main()
