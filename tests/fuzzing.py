"""Hypothesis settings shared by the fuzz tests: the same examples on every run, more on demand.

``VOLPIPE_FUZZ_EXAMPLES=N`` runs N examples per fuzz test instead of its default;
``VOLPIPE_FUZZ_RANDOM=1`` draws fresh examples each run instead of the fixed (derandomized) ones,
so a long exploratory run covers new ground while CI stays deterministic (docs/hostile-input.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def fuzz_settings(examples: int) -> settings:
    """Settings for a fuzz test that runs ``examples`` examples unless the environment asks for more."""
    return settings(
        max_examples=int(os.environ.get("VOLPIPE_FUZZ_EXAMPLES", examples)),
        deadline=None,
        derandomize=os.environ.get("VOLPIPE_FUZZ_RANDOM") != "1",
        database=None,
        # Batches of many (sometimes megabyte) records are slow and large to generate on purpose.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
