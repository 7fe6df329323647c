"""Hypothesis profiles: `ci` is deterministic (derandomized) for reproducible CI runs; `dev` explores.

Choose with HYPOTHESIS_PROFILE (the Makefile's `make test` uses `ci`). No deadlines: timings on
shared 2-core machines vary too much to mean anything.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
