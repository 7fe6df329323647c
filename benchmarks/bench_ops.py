"""Per-op overhead of the engine: microseconds per forward and per backward of small ops, next to
plain numpy doing the same arithmetic (and torch eager, if it is installed).

The arrays are tiny (16 x 16), so the numbers measure bookkeeping, not arithmetic: what every op
of a model pays on top of numpy. Run:  python benchmarks/bench_ops.py [--size 16] [--repeat 7]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import numpy as np

import autograd as ag


def best_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best-of-``repeat`` mean time of ``fn`` in microseconds (the least disturbed measurement)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


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
    parser.add_argument("--repeat", type=int, default=7, help="measurements (the best is kept)")
    args = parser.parse_args()

    impls = {"engine": engine_cases(args.size), "numpy": numpy_cases(args.size)}
    torch = torch_cases(args.size)
    if torch is not None:
        impls["torch"] = torch
    print(f"per-op time in microseconds, {args.size}x{args.size} float32 operands, best of {args.repeat}")
    header = f"{'op':8s}" + "".join(f" {name + ' fwd':>11s} {name + ' bwd':>11s}" for name in impls)
    print(header + f" {'overhead fwd':>13s} {'overhead bwd':>13s}")
    for op in impls["engine"]:
        row, times = f"{op:8s}", {}
        for name, cases in impls.items():
            forward, both = cases[op]
            fwd = best_us(forward, args.number, args.repeat)
            bwd = best_us(both, args.number, args.repeat) - fwd
            times[name] = (fwd, bwd)
            row += f" {fwd:11.2f} {bwd:11.2f}"
        over_fwd = times["engine"][0] - times["numpy"][0]
        over_bwd = times["engine"][1] - times["numpy"][1]
        print(row + f" {over_fwd:13.2f} {over_bwd:13.2f}")
    print("overhead = engine minus numpy doing the same arithmetic (bookkeeping per op)")


if __name__ == "__main__":
    main()
