"""Per-op overhead of the engine: microseconds per forward and per backward of small ops, next to
plain numpy doing the same arithmetic (and torch eager, if it is installed).

The arrays are tiny (16 x 16), so the numbers measure bookkeeping, not arithmetic: what every op
of a model pays on top of numpy. The implementations are timed in alternating rounds and each number
is the median over rounds, so a machine whose speed drifts from second to second (a shared VM) moves
them all alike; ``engine/torch`` is the median of the per-round ratios.
Run:  python benchmarks/bench_ops.py [--size 16] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

import numpy as np

import autograd as ag


def mean_us(fn: Callable[[], object], number: int) -> float:
    """Mean time of ``number`` calls of ``fn``, in microseconds."""
    return timeit.timeit(fn, number=number) / number * 1e6


def measure(impls: dict[str, dict], op: str, number: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """impl -> [(forward us, backward us)] per round; the implementations take turns in every round."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in impls}
    names = list(impls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            forward, both = impls[name][op]
            fwd = mean_us(forward, number)
            samples[name].append((fwd, mean_us(both, number) - fwd))
    return samples


def with_backward(ops: dict[str, Callable], seed: object, leaves: tuple) -> dict[str, tuple[Callable, Callable]]:
    """op -> (forward only, forward + backward), for an engine or for torch: both spell it the same."""

    def run_backward(op: Callable) -> Callable:
        def step() -> None:
            op().backward(seed)
            for leaf in leaves:
                leaf.grad = None

        return step

    return {name: (op, run_backward(op)) for name, op in ops.items()}


def engine_cases(n: int) -> dict[str, tuple[Callable, Callable]]:
    """op -> (forward only, forward + backward) on leaves that require grad."""
    rng = np.random.default_rng(0)
    a = ag.Tensor(rng.standard_normal((n, n), dtype=np.float32), requires_grad=True)
    b = ag.Tensor(rng.standard_normal((n, n), dtype=np.float32), requires_grad=True)
    ops = {"add": lambda: a + b, "mul": lambda: a * b, "matmul": lambda: a @ b, "tanh": lambda: a.tanh()}
    return with_backward(ops, np.ones((n, n), dtype=np.float32), (a, b))


def numpy_cases(n: int) -> dict[str, tuple[Callable, Callable]]:
    """The same work by hand: the forward, and the forward plus the vjps' arithmetic."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    g = np.ones((n, n), dtype=np.float32)
    return {
        "add": (lambda: a + b, lambda: (a + b, g.copy(), g.copy())),
        "mul": (lambda: a * b, lambda: (a * b, g * b, g * a)),
        "matmul": (lambda: a @ b, lambda: (a @ b, g @ b.T, a.T @ g)),
        "tanh": (lambda: np.tanh(a), lambda: (t := np.tanh(a), g * (1 - t * t))),
    }


def torch_cases(n: int) -> dict[str, tuple[Callable, Callable]] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    a = torch.randn(n, n, requires_grad=True)
    b = torch.randn(n, n, requires_grad=True)
    ops = {"add": lambda: a + b, "mul": lambda: a * b, "matmul": lambda: a @ b, "tanh": lambda: a.tanh()}
    return with_backward(ops, torch.ones(n, n), (a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16, help="square operands of this size")
    parser.add_argument("--number", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (medians are reported)")
    args = parser.parse_args()

    impls = {"engine": engine_cases(args.size), "numpy": numpy_cases(args.size)}
    torch = torch_cases(args.size)
    if torch is not None:
        impls["torch"] = torch
    print(f"per-op time in microseconds, {args.size}x{args.size} float32 operands, median of {args.rounds} rounds")
    header = f"{'op':8s}" + "".join(f" {name + ' fwd':>11s} {name + ' bwd':>11s}" for name in impls)
    header += f" {'overhead fwd':>13s} {'overhead bwd':>13s}"
    print(header + (f" {'engine/torch fwd':>17s} {'bwd':>5s}" if torch is not None else ""))
    for op in impls["engine"]:
        samples = measure(impls, op, args.number, args.rounds)
        median = {name: [statistics.median(s[k] for s in runs) for k in (0, 1)] for name, runs in samples.items()}
        row = f"{op:8s}" + "".join(f" {median[name][0]:11.2f} {median[name][1]:11.2f}" for name in impls)
        row += "".join(f" {median['engine'][k] - median['numpy'][k]:13.2f}" for k in (0, 1))
        if torch is not None:
            pairs = list(zip(samples["engine"], samples["torch"]))
            ratios = [statistics.median(e[k] / t[k] for e, t in pairs) for k in (0, 1)]
            row += f" {ratios[0]:17.2f} {ratios[1]:5.2f}"
        print(row)
    print("overhead = engine minus numpy doing the same arithmetic (bookkeeping per op)")


if __name__ == "__main__":
    main()
