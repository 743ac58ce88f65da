"""/diagnostics in a bag: the statuses the node would publish, made from an offline run's own counts.

The node builds its statuses (``health.PipelineHealth``) from its worker's counts every
``diagnostics_period``. An offline run has no worker and drops no frame, so the counts come from
the frames it processes: a frame's index in its source says how many were read (those read but
never processed could not be decoded), its stamp is the clock, and the engine's time for it is
its latency. A bag gets one DiagnosticArray per frame, stamped and recorded with the frame, so a
player shows the counts growing with the images.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from dinov3_toolkit.engine import FrameResult, StageTimings
from dinov3_toolkit.offline.sources import SourceFrame

from .health import PipelineHealth
from .messages import Status
from .names import join_topic
from .problems import FrameCounts, HeadFailures
from .topics import OutputTopic
from .worker import Rates, WorkerStats

DIAGNOSTICS = OutputTopic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")  # absolute, like the node's
NODE_NAME = "dinov3_node"  # the node's name, which prefixes every status
KEPT = 100  # frames over which medians and the rate are taken, as the node keeps its timings


class BagDiagnostics:
    """The node's statuses after each frame of a run; fed every processed frame, in order.

    ``engine``: its device, heads, failed and random_weights (what the node reports);
    ``namespace``: the node's, which names the statuses (``/dinov3/dinov3_node: pipeline``).
    """

    def __init__(self, engine: Any, precision: str, namespace: str = "/dinov3") -> None:
        self.engine = engine
        self.precision = precision
        self.node = join_topic(namespace, NODE_NAME)
        self._health = PipelineHealth()
        self._timings: deque[StageTimings] = deque(maxlen=KEPT)
        self._stamps: deque[int] = deque(maxlen=KEPT)
        self._failures: dict[str, HeadFailures] = {}
        self._processed = 0

    def statuses(self, item: SourceFrame, frame: FrameResult) -> list[Status]:
        """The pipeline's status and one per head, counting ``frame``."""
        self._processed += 1
        self._timings.append(frame.timings)
        self._stamps.append(item.stamp_ns)
        for head, error in frame.errors.items():
            self._failures[head] = HeadFailures(self._failures.get(head, HeadFailures(0, "")).frames + 1, str(error))
        received = max(item.index + 1, self._processed)
        stats = WorkerStats(received=received, processed=self._processed, rejected=received - self._processed,
                            dropped=0, errors=0, waiting=0, busy=0,
                            latencies=tuple(t.total for t in self._timings), last_received_at=None)
        rate = self._rate()
        counts = FrameCounts(self._processed, dict(self._failures))
        return self._health.statuses(self.node, self.engine, self.precision, stats, Rates(rate, rate),
                                     list(self._timings), None, counts, item.stamp_ns / 1e9)

    def _rate(self) -> float:
        """Frames per second of stamp time over the frames kept (0 until two frames apart in time)."""
        span_s = (self._stamps[-1] - self._stamps[0]) / 1e9
        return (len(self._stamps) - 1) / span_s if span_s > 0 else 0.0
