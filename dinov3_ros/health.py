"""The node's /diagnostics: the pipeline's status and one status per head.

ROS-free (it builds ``messages.Status``), so which problem wins is tested without rclpy. The
pipeline's message is the most urgent of, in order:

1. frames not arriving (the watchdog's text): nothing else can be judged without frames;
2. frames that do not decode, for ``PROBLEM_WARN_S`` after the last one: every head lacks input;
3. a head failing on frames, for ``PROBLEM_WARN_S`` after its last failure: its outputs are
   missing while the other heads publish;
4. random weights: every output is meaningless, but by choice (smoke tests, the test suite), so
   it must not hide a real failure;
5. heads skipped at configure (logged then, and each has its own status);
6. "running".

Each head also has its own status, ``<node>: head <name>``, so that rqt_robot_monitor and
Foxglove show which head fails: WARN while it fails (``PROBLEM_WARN_S`` after its last failure)
or when it was skipped at configure, else OK; its counts stay in its values either way.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .messages import Level, Status
from .problems import FrameCounts, HeadFailures
from .worker import Rates, WorkerStats

PROBLEM_WARN_S = 10.0  # a status stays WARN this long after an undecodable frame, or a head's failure


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


class _LastGrowth:
    """When a count last changed, to warn for ``PROBLEM_WARN_S`` after each new problem."""

    def __init__(self) -> None:
        self._count, self._at = 0, float("-inf")  # the count, and the time.monotonic() it last changed

    def recent(self, count: int, now: float) -> float | None:
        """Seconds since ``count`` last grew while that is under ``PROBLEM_WARN_S``, else None."""
        if count != self._count:
            self._count, self._at = count, now
        ago = now - self._at
        return ago if count and ago < PROBLEM_WARN_S else None


class PipelineHealth:
    """Makes the /diagnostics statuses; remembers when each problem count last grew."""

    def __init__(self) -> None:
        self._undecodable = _LastGrowth()
        self._head_failures: defaultdict[str, _LastGrowth] = defaultdict(_LastGrowth)

    def statuses(self, name: str, engine: Any, precision: str, stats: WorkerStats, rates: Rates,
                 timings: Sequence[Any], frames_warning: str | None, counts: FrameCounts, now: float) -> list[Status]:
        """The pipeline's status, then one per head (running, then skipped).

        ``engine``: device, heads, failed, random_weights; ``timings``: recent ``FrameResult.timings``;
        ``counts``: the heads' failures (``problems.Problems.snapshot``); ``now``: ``time.monotonic()``.
        """
        failing = {head: failures for head, failures in counts.failures.items()
                   if self._head_failures[head].recent(failures.frames, now) is not None}
        pipeline = self._pipeline(f"{name}: pipeline", engine, precision, stats, rates, timings, frames_warning,
                                  counts, failing, now)
        device = str(engine.device)
        running = [_running_head(name, head, device, counts, head in failing) for head in engine.heads]
        skipped = [Status(f"{name}: head {head}", device, Level.WARN, f"skipped: {error}", {})
                   for head, error in engine.failed.items()]
        return [pipeline, *running, *skipped]

    def _pipeline(self, name: str, engine: Any, precision: str, stats: WorkerStats, rates: Rates,
                  timings: Sequence[Any], frames_warning: str | None, counts: FrameCounts,
                  failing: Mapping[str, HeadFailures], now: float) -> Status:
        values = {
            "device": str(engine.device),
            "precision": precision,
            "heads": ", ".join(engine.heads),
            "input rate (Hz)": f"{rates.input_fps:.2f}",
            "output rate (Hz)": f"{rates.output_fps:.2f}",
            "frames received": str(stats.received),
            "frames processed": str(stats.processed),
            "frames dropped (newer frame arrived first)": str(stats.dropped),
            "frames failed": str(stats.errors),
            "frames undecodable": str(stats.rejected),
        }
        for head in engine.heads:
            values[f"{head} failed frames"] = str(counts.failures.get(head, HeadFailures(0, "")).frames)
        if stats.latencies:
            values["latency median (ms)"] = _ms(statistics.median(stats.latencies))
        if timings:
            values["preprocess median (ms)"] = _ms(statistics.median(t.preprocess for t in timings))
            values["backbone median (ms)"] = _ms(statistics.median(t.backbone for t in timings))
            for head in engine.heads:
                per_head = [t.heads[head] + t.postprocess[head] for t in timings if head in t.heads]
                if per_head:
                    values[f"{head} median (ms)"] = _ms(statistics.median(per_head))
        undecodable_ago = self._undecodable.recent(stats.rejected, now)
        level, message = Level.OK, "running"
        if frames_warning:
            level, message = Level.WARN, frames_warning
        elif undecodable_ago is not None:
            level, message = Level.WARN, (f"frames that cannot be decoded: {stats.rejected} so far, the last "
                                          f"{undecodable_ago:.0f} s ago (the log says why)")
        elif failing:
            worst = max(failing, key=lambda head: failing[head].frames)
            others = f" ({len(failing) - 1} more head(s) failing: see their statuses)" if len(failing) > 1 else ""
            level, message = Level.WARN, (f"head {worst} failed on {failing[worst].frames} of {counts.frames} "
                                          f"frames{others}: {failing[worst].last_error}")
        elif engine.random_weights:
            level, message = Level.WARN, "random weights: outputs are meaningless"
        elif engine.failed:
            level, message = Level.WARN, f"heads skipped: {', '.join(engine.failed)}"
        return Status(name, str(engine.device), level, message, values)


def _running_head(node: str, head: str, device: str, counts: FrameCounts, failing: bool) -> Status:
    """A running head's status: WARN while it fails, its counts (and last error) as values."""
    name = f"{node}: head {head}"
    failures = counts.failures.get(head)
    values = {"frames run": str(counts.frames), "frames failed": str(failures.frames if failures else 0)}
    if failures is None:
        return Status(name, device, Level.OK, "running", values)
    values["last error"] = failures.last_error
    counted = f"failed on {failures.frames} of {counts.frames} frames"
    if failing:
        return Status(name, device, Level.WARN, f"{counted}: {failures.last_error}", values)
    return Status(name, device, Level.OK, f"running; {counted}, none for {PROBLEM_WARN_S:g} s", values)
