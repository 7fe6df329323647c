"""A one-line progress bar: step, loss, tokens per second and time left (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class ProgressBar:
    """``step 1200/2000 [############------] loss 0.412 | 41k tok/s | ETA 00:38``.

    On a terminal the line is redrawn in place (at most ``refresh`` times a second); elsewhere (a
    log file, CI) a line is printed every ``every`` steps instead, so logs stay readable.
    """

    def __init__(
        self, total: int, start: int = 0, stream: TextIO | None = None, width: int = 24, every: int = 100
    ) -> None:
        self.total, self.start, self.width, self.every = total, start, width, every
        self.stream = stream if stream is not None else sys.stdout
        self.interactive = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last_draw = 0.0
        self.tokens = 0

    def update(self, step: int, loss: float, tokens: int, extra: str = "") -> None:
        """Report that ``step`` (1-based count of finished steps) is done."""
        self.tokens += tokens
        now = time.perf_counter()
        done = step - self.start
        elapsed = now - self.t0
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (self.total - step) if done > 0 else 0.0
        filled = int(self.width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"step {step:>{len(str(self.total))}}/{self.total} [{bar}] loss {loss:.4f} | "
            f"{_thousands(rate)} tok/s | ETA {format_seconds(eta)}" + (f" | {extra}" if extra else "")
        )
        if self.interactive:
            if now - self.last_draw > 0.1 or step == self.total:
                self.stream.write("\r" + line.ljust(100))
                self.stream.flush()
                self.last_draw = now
        elif step % self.every == 0 or step == self.total:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def _thousands(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
