"""The hypothesis settings every property test of the fuzz suite runs under (test_fuzz_*.py).

Derandomized, so a CI run tries the same examples every time and can only fail on a real
change; no example database, so nothing is written beside the tests; no deadline, because a
2-core machine shared with other jobs makes per-example timings meaningless. Each test picks
its own number of examples (``examples(n)``) so that the whole suite stays well under a minute.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dinov3-fuzz",
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("dinov3-fuzz")


def examples(n: int) -> settings:
    """The suite's settings with ``n`` examples."""
    return settings(FUZZ, max_examples=n)
