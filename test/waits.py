"""How long a test waits for an event before it fails: a generous ceiling, longer on a slow or busy machine.

Tests never sleep for work to finish; they wait for its sign (a message, a log line, a process
exit) and give up only at a ceiling, which matters only when the test is failing anyway. The
ceilings written in the tests are for an idle 2-core machine with several times its need to spare.
``ceiling`` stretches them:

- ``DINOV3_TEST_TIME_SCALE`` (default 1) multiplies every ceiling, for a machine known to be slow
  (an emulated aarch64 runner, a Jetson in its low-power mode): ``DINOV3_TEST_TIME_SCALE=4 make test``;
- a machine busier than its cores (the 1-minute load average above the CPU count, as on a shared CI
  runner) multiplies them by load / cores, read when the wait starts.
"""

from __future__ import annotations

import os

_SCALE_VARIABLE = "DINOV3_TEST_TIME_SCALE"


def time_scale() -> float:
    """The factor ``ceiling`` applies now: the variable's times the machine's load per core (at least 1)."""
    text = os.environ.get(_SCALE_VARIABLE, "1")
    try:
        scale = float(text)
    except ValueError:
        raise ValueError(f"{_SCALE_VARIABLE}={text!r}: expected a number >= 1, such as 4") from None
    if not scale >= 1:
        raise ValueError(f"{_SCALE_VARIABLE}={text!r}: expected a number >= 1, such as 4")
    load = os.getloadavg()[0] / (os.cpu_count() or 1) if hasattr(os, "getloadavg") else 1.0
    return scale * max(1.0, load)


def ceiling(seconds: float) -> float:
    """``seconds``, the wait written for an idle machine, scaled to this one (``time_scale``)."""
    return seconds * time_scale()
