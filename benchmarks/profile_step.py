"""Where a training step of the GPT spends its time: forward, backward and optimizer, and inside
them each primitive's forward and each of its vjps.

    python benchmarks/profile_step.py                 # the tiny benchmark config
    python benchmarks/profile_step.py --config small  # or small, medium

Every primitive's forward and vjps are wrapped with a timer that counts its own time only: a vjp
that calls other primitives (softmax's calls a sum) is charged without them, and they are charged
as forwards. The totals include a little of the timers' own cost (about 0.2 us a call). What is
not inside any of them is the model's Python and the engine's own work: recording the graph, and
in backward the walk, summing the gradients of tensors used twice and reducing the gradients of
broadcast ones (bias gradients, for instance).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable

import harness

from autograd import ops
from autograd.primitive import Primitive

CONFIGS = harness.CONFIGS


PHASE = {"now": "forward"}  # which part of the step is running, for the timers
_CHILDREN = [0.0]  # a stack: the time spent in timed calls inside the timed call now running


def timed(fn: Callable, key: tuple, totals: Counter, calls: Counter) -> Callable:
    """``fn``, charging its own time (minus that of the timed calls inside it) to ``key``."""

    def wrapper(*args, **kwargs):
        _CHILDREN.append(0.0)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            own = elapsed - _CHILDREN.pop()
            _CHILDREN[-1] += elapsed
            totals[key] += own
            totals[PHASE["now"]] += own
            calls[key] += 1

    return wrapper


def instrument(totals: Counter, calls: Counter) -> None:
    """Wrap every primitive's forward and vjps (in place, for this process)."""
    for primitive in {p for p in vars(ops).values() if isinstance(p, Primitive)}:
        primitive.forward = timed(primitive.forward, (primitive.name, "forward"), totals, calls)
        if primitive.vjps is not None:
            primitive.vjps = tuple(
                None if vjp is None else timed(vjp, (primitive.name, f"vjp {i}"), totals, calls)
                for i, vjp in enumerate(primitive.vjps)
            )
        if primitive.variadic_vjp is not None:
            primitive.variadic_vjp = timed(primitive.variadic_vjp, (primitive.name, "vjp"), totals, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--steps", type=int, default=20, help="steps measured (after 5 to warm up)")
    parser.add_argument("--top", type=int, default=20, help="rows of the per-op table")
    args = parser.parse_args()

    model, opt = harness.build_engine(CONFIGS[args.config])  # compiled, keep_freed_memory, as a training script
    idx, targets = harness.make_batches(CONFIGS[args.config], n=1)[0]
    totals, calls = Counter(), Counter()
    instrument(totals, calls)
    phases = Counter()
    for step in range(5 + args.steps):
        if step == 5:
            totals.clear(), calls.clear(), phases.clear()
        start = time.perf_counter()
        PHASE["now"] = "forward"
        _, loss = model(idx, targets)
        forward = time.perf_counter()
        PHASE["now"] = "backward"
        loss.backward()
        backward = time.perf_counter()
        PHASE["now"] = "optimizer"
        opt.step()
        opt.zero_grad()
        phases["forward"] += forward - start
        phases["backward"] += backward - forward
        phases["optimizer"] += time.perf_counter() - backward

    per_step = {name: seconds / args.steps * 1e3 for name, seconds in phases.items()}
    print(f"{args.config}: {sum(per_step.values()):.2f} ms per step")
    for phase in ("forward", "backward"):
        ops_ms = totals.pop(phase, 0.0) / args.steps * 1e3
        print(f"  {phase:9s} {per_step[phase]:8.2f} ms, of which in primitives {ops_ms:.2f} ms"
              f" (the rest: {per_step[phase] - ops_ms:.2f} ms)")  # fmt: skip
    totals.pop("optimizer", None)
    print(f"  optimizer {per_step['optimizer']:8.2f} ms")
    print(f"\n{'ms/step':>9s} {'calls':>6s}  primitive")
    for (name, kind), seconds in totals.most_common(args.top):
        print(f"{seconds / args.steps * 1e3:9.3f} {calls[name, kind] // args.steps:6d}  {name} {kind}")


if __name__ == "__main__":
    main()
