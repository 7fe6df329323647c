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
