"""Keep freed array memory in the process instead of handing it back to the OS after every op.

A training step allocates and frees the same large activation and gradient arrays again and
again. glibc's malloc serves blocks above a (dynamic) threshold with fresh ``mmap`` pages and trims
the heap's free top back to the OS, so each step page-faults its arrays in anew (for a small GPT, a
large share of the step: ``PERFORMANCE.md``). Two ``mallopt`` settings make freed blocks reusable
instead:

    M_MMAP_THRESHOLD = 32 MiB   blocks below this come from the heap (and are reused)
    M_TRIM_THRESHOLD = 1 GiB    the heap's free top is given back only beyond this

(the same as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment). Peak
memory is unchanged: what is kept is what the step needs again.

This changes the allocator of the whole process, so importing `autograd` never does it: a training
script asks for it, once, with `keep_freed_memory()` (the `Trainer`, ``demo.py`` and the benchmarks
do). Linux with glibc only; ``AUTOGRAD_MALLOPT=0`` in the environment turns the call into a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (the two settings above), for the rest of
    the process; True if they were applied."""
    if os.environ.get("AUTOGRAD_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return bool(applied and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
