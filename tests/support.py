"""Helpers shared by the fuzz tests."""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ALLOWED = (ValueError, TypeError, IndexError)  # what bad input may raise


class Hang(BaseException):
    """Raised by the alarm. A BaseException, so no ``except Exception`` in the code under test hides it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail a call that does not return within ``seconds`` (instead of hanging the test run)."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"the call did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(model: Any, opt: Any) -> tuple:
    """Everything a checkpoint restores, copied: weights, random streams, optimizer groups and state."""
    import numpy as np

    sd = opt.state_dict()
    return (
        {k: v.copy() for k, v in model.state_dict().items()},
        [g.bit_generator.state for _, g in model.named_generators()],
        sd["param_groups"],
        {i: {k: np.copy(v) for k, v in s.items()} for i, s in sd["state"].items()},
    )


def assert_same_state(a: tuple, b: tuple) -> None:
    """Two `snapshot`s are equal, bit for bit."""
    import numpy as np

    assert a[0].keys() == b[0].keys() and all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1] and a[2] == b[2] and a[3].keys() == b[3].keys()
    for i in a[3]:
        assert a[3][i].keys() == b[3][i].keys() and all(np.array_equal(a[3][i][k], b[3][i][k]) for k in a[3][i])
