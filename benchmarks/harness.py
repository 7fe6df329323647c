"""What the benchmark scripts share: the configs, the engine's training step, the batches, and the
arithmetic of paired rounds.

One place for these so that every script times the same model doing the same work: the configs
are the sizes the project has always reported (tiny, small, medium), and the AdamW settings are
nanoGPT's shakespeare-char ones, used by the engine and by the torch reference alike.

The scripts run as files (``python benchmarks/bench_vs_torch.py``), so Python puts this folder on
the path and ``import harness`` finds this module. The engine is imported inside the functions,
from whatever checkout is on the path: compare_checkouts.py runs this code against another
checkout's engine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BenchConfig:
    """A GPT and the batch it trains on (every sequence is ``block_size`` tokens long)."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    vocab_size: int = 65  # characters of tiny-shakespeare, as nanoGPT's shakespeare-char

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    def describe(self) -> str:
        """``L2 H4 C64, T32, B16``: layers, heads, width, sequence length, batch."""
        return f"L{self.n_layer} H{self.n_head} C{self.n_embd}, T{self.block_size}, B{self.batch_size}"


CONFIGS = {
    "tiny": BenchConfig("tiny", n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=16),
    "small": BenchConfig("small", n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=32),
    "medium": BenchConfig("medium", n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=8),
}

# nanoGPT's shakespeare-char AdamW; weight decay on matrices and embeddings only (see adamw_groups).
ADAMW: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}

BENCH_EXTRA_HINT = 'pip install -e ".[bench]"'

# A pause before timing anything after another process computed: OpenBLAS's threads keep spinning
# for about 0.1 s after a call, holding a core the next measurement needs.
BLAS_SPIN_S = 0.2


def positive_int(text: str) -> int:
    """An argparse type: an int of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_configs(text: str, known: dict[str, BenchConfig] = CONFIGS) -> list[BenchConfig]:
    """``"tiny,small"`` -> their configs; a ValueError names an unknown one and the choices."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"no config given; choose from {', '.join(known)}")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown config {unknown[0]!r}; choose from {', '.join(known)}")
    return [known[name] for name in names]


def make_batches(bc: BenchConfig, n: int = 4, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` batches of random (input, target) token ids: the same for every implementation.

    A few different batches, cycled, so no implementation can profit from seeing one input twice
    in a row; random ids cost the same arithmetic as text.
    """
    rng = np.random.default_rng(seed)
    shape = (bc.batch_size, bc.block_size)
    return [(rng.integers(0, bc.vocab_size, shape), rng.integers(0, bc.vocab_size, shape)) for _ in range(n)]


def adamw_groups(named: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    """nanoGPT's two parameter groups: weight decay on tensors of 2 or more dimensions, none on
    biases and LayerNorm weights. Works for the engine's parameters and for torch's alike."""
    params = [p for _, p in named]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": ADAMW["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def engine_gpt(bc: BenchConfig, state_dict: dict[str, np.ndarray] | None = None) -> Any:
    """The engine's GPT for ``bc`` (seed 0, or the given weights), uncompiled, float32."""
    from tinygrad_lm import GPT, GPTConfig

    model = GPT(GPTConfig(bc.vocab_size, bc.block_size, bc.n_layer, bc.n_head, bc.n_embd), seed=0)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def build_engine(bc: BenchConfig, state_dict: dict[str, np.ndarray] | None = None) -> tuple[Any, Any]:
    """The engine's GPT and AdamW as a training script sets them up: ``(model, optimizer)``.

    It turns on the two speed switches a training script turns on (README, "Performance"):
    ``model.compile()`` and ``autograd.memory.keep_freed_memory()``. An older checkout without
    ``compile`` (compare_checkouts.py measures those too) runs uncompiled.
    """
    from autograd import memory

    model = engine_gpt(bc, state_dict)
    if hasattr(model, "compile"):
        model.compile()
    memory.keep_freed_memory()
    return model, engine_adamw(model)


def engine_adamw(model: Any) -> Any:
    """The engine's AdamW over ``model``'s parameters with ADAMW's settings, in adamw_groups."""
    from tinygrad_lm.optim import AdamW

    hyper = {k: v for k, v in ADAMW.items() if k != "weight_decay"}
    return AdamW(adamw_groups(model.named_parameters()), **hyper)


def engine_step(bc: BenchConfig, state_dict: dict[str, np.ndarray] | None = None) -> Callable[[], None]:
    """One training step of the engine as a function of nothing: forward, loss, backward, AdamW,
    zero grads, on the next of make_batches(bc)'s batches."""
    model, opt = build_engine(bc, state_dict)
    batches = itertools.cycle(make_batches(bc))

    def step() -> None:
        idx, targets = next(batches)
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; NaN where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux; NaN elsewhere)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """The most resident memory this process has had, in MiB.

    The kernel's high-water mark of this program (``VmHWM``), not ``ru_maxrss``: Linux carries
    ``ru_maxrss`` over an ``execve``, so a worker started by a parent holding 200 MiB would report
    at least 200 MiB whatever it did itself. Where there is no /proc, ``ru_maxrss`` (KiB on Linux).
    """
    peak = _status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if math.isnan(peak) else peak


def cpu_wait_s() -> float:
    """Seconds this process's threads have spent ready to run while another process had the CPU.

    Linux counts it per thread (``/proc/self/task/<tid>/schedstat``, second field, ns). Read before
    and after a step, it says whether the machine was taken from us during that step: on a shared
    machine a step that waited is slower for reasons that are not the code's. 0.0 where the
    kernel does not expose it.
    """
    total = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass  # the thread ended meanwhile, or no schedstat
    return total / 1e9


# A step counts as contended when our threads waited for a CPU for more than this share of it.
CONTENDED_WAIT_SHARE = 0.05


def contended(wall_s: float, wait_s: float) -> bool:
    """Whether a step of ``wall_s`` seconds, during which our threads waited ``wait_s``, was slowed
    by another process (see cpu_wait_s)."""
    return wait_s > CONTENDED_WAIT_SHARE * wall_s


def timed(step: Callable[[], object]) -> tuple[float, float]:
    """``(wall seconds, seconds our threads waited for a CPU)`` of one call of ``step``."""
    wait = cpu_wait_s()
    start = time.perf_counter()
    step()
    wall = time.perf_counter() - start
    return wall, max(0.0, cpu_wait_s() - wait)


def _cpu_jiffies() -> tuple[int, int]:
    """``(idle, total)`` CPU time of the whole machine so far, from /proc/stat (in jiffies)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait, everything


def machine_busy_share(window_s: float = 0.25) -> float:
    """The share of all CPUs that were busy during a short sleep of ours: other processes' load.

    0.0 where /proc/stat cannot be read (the machine's load is then unknown, not assumed).
    """
    try:
        idle0, total0 = _cpu_jiffies()
        time.sleep(window_s)
        idle1, total1 = _cpu_jiffies()
    except (OSError, ValueError):
        return 0.0
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_until_quiet(timeout_s: float, max_busy: float = 0.15) -> bool:
    """Sleep until other processes leave the CPUs nearly idle, for at most ``timeout_s``.

    A benchmark that starts its round while a test suite runs beside it measures the test suite as
    much as its code; waiting a little costs less than a round thrown away. True if it got quiet.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if machine_busy_share() <= max_busy:
            return True
    return False


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """``a[r] / b[r]`` for every round ``r``: each ratio compares two measurements taken seconds
    apart, so a machine whose speed drifts over minutes moves both sides of it alike."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_ratios: need the same number (> 0) of rounds, got {len(a)} and {len(b)}")
    return [x / y for x, y in zip(a, b)]


def median_and_quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """``(median, lower quartile, upper quartile)``; the quartiles show how much rounds disagree."""
    if not values:
        raise ValueError("median_and_quartiles: no values")
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q1, q3


# -- a process that times steps on request ---------------------------------------------------------
#
# A benchmark runs each thing it times in a process of its own: its memory is its own (its peak
# means something), its thread pool never competes with another's, and its imports are paid once.
# The parent asks for blocks of steps between which it may do something else: run another
# process's block, or measure the machine's matmul peak.


def end_children_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, ``timeout``) into SystemExit, so the parent's ``finally`` blocks run
    and end its StepProcesses instead of leaving them behind."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def serve(step: Callable[[], object], hello: dict[str, Any]) -> None:
    """The child's side: say ``hello``, then answer requests, one a line on stdin.

    ``run N`` times N steps and answers ``{"wall_s": [...], "wait_s": [...]}`` (see timed);
    ``stop`` answers ``{"peak_rss_mib": ...}`` and returns. Every answer is one JSON line on stdout.
    """
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        request = line.split()
        if request and request[0] == "run":
            samples = [timed(step) for _ in range(int(request[1]))]
            print(json.dumps({"wall_s": [w for w, _ in samples], "wait_s": [q for _, q in samples]}), flush=True)
        elif request and request[0] == "stop":
            print(json.dumps({"peak_rss_mib": peak_rss_mib()}), flush=True)
            return


class StepProcess:
    """The parent's handle on a process that calls serve(): start it, ask for blocks, stop it.

    The child's stderr is the parent's, so its errors show where they happen.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            self.hello = self._receive()
        except BaseException:  # stopped while the child builds and warms up: it must not outlive us
            self.kill()
            raise

    def _receive(self) -> dict[str, Any]:
        for line in self.process.stdout:
            if line.startswith("{"):  # a library printing on import is not an answer
                return json.loads(line)
        status = self.process.wait()
        raise SystemExit(f"{os.path.basename(sys.argv[0])}: the {self.name} process ended (exit status {status})")

    def _ask(self, request: str) -> dict[str, Any]:
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        return self._receive()

    def run(self, steps: int) -> dict[str, list[float]]:
        """Time ``steps`` steps in the child: their wall times and CPU waits (see timed)."""
        return self._ask(f"run {steps}")

    def stop(self) -> float:
        """End the process; returns its peak resident memory in MiB."""
        peak = self._ask("stop")["peak_rss_mib"]
        self.process.wait()
        return peak

    def kill(self) -> None:
        """End the process now (after an error elsewhere)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
