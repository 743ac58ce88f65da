"""The node's /diagnostics status: counts, rates, stage times, and the one problem an operator should see first.

ROS-free (it builds a ``messages.Status``), so the priority of problems is tested without rclpy:
frames not arriving (the watchdog's text) > frames that do not decode (for ``UNDECODABLE_WARN_S``
after the last one) > random weights > skipped heads > "running".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from .messages import Level, Status
from .worker import Rates, WorkerStats

UNDECODABLE_WARN_S = 10.0  # the status stays WARN this long after an undecodable frame


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


class PipelineHealth:
    """Makes the pipeline's status; remembers when the count of undecodable frames last grew."""

    def __init__(self) -> None:
        self._undecodable = (0, float("-inf"))  # (count, time.monotonic() it last grew)

    def status(self, name: str, engine: Any, precision: str, stats: WorkerStats, rates: Rates,
               timings: Sequence[Any], frames_warning: str | None, now: float) -> Status:
        """``engine``: device, heads, failed, random_weights; ``timings``: recent ``FrameResult.timings``."""
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
        if stats.latencies:
            values["latency median (ms)"] = _ms(statistics.median(stats.latencies))
        if timings:
            values["preprocess median (ms)"] = _ms(statistics.median(t.preprocess for t in timings))
            values["backbone median (ms)"] = _ms(statistics.median(t.backbone for t in timings))
            for head in engine.heads:
                per_head = [t.heads[head] + t.postprocess[head] for t in timings if head in t.heads]
                if per_head:
                    values[f"{head} median (ms)"] = _ms(statistics.median(per_head))
        if stats.rejected != self._undecodable[0]:
            self._undecodable = (stats.rejected, now)
        undecodable_ago = now - self._undecodable[1]
        level, message = Level.OK, "running"
        if frames_warning:
            level, message = Level.WARN, frames_warning
        elif stats.rejected and undecodable_ago < UNDECODABLE_WARN_S:
            level, message = Level.WARN, (f"frames that cannot be decoded: {stats.rejected} so far, the last "
                                          f"{undecodable_ago:.0f} s ago (the log says why)")
        elif engine.random_weights:
            level, message = Level.WARN, "random weights: outputs are meaningless"
        elif engine.failed:
            level, message = Level.WARN, f"heads skipped: {', '.join(engine.failed)}"
        return Status(f"{name}: pipeline", str(engine.device), level, message, values)
