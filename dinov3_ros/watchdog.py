"""The frame watchdog: when no camera frame arrives, say why and what to try, instead of silence.

"The node runs but publishes nothing" is the most common complaint on the peers' trackers. Its
usual causes can be told apart from the publishers on the image topic (``ros2 topic info -v``):
nobody publishes (driver down, topic not remapped), the publisher sends another type
(CompressedImage vs Image), its QoS cannot match ours, or it matches but large frames are lost
on the way (best effort between processes with Fast DDS's default transports). This module turns
what the node sees into one message. It has no ROS imports, so every case is tested without rclpy;
the node feeds it ``Node.get_publishers_info_by_topic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Publisher:
    """One publisher on the image topic, as ``ros2 topic info --verbose`` shows it."""

    node: str  # fully qualified node name
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    reliability: str  # "reliable", "best_effort", ...
    durability: str  # "volatile", "transient_local", ...
    # No history depth: discovery does not carry it, so a remote publisher's reads 0 ("unknown").

    def describe(self) -> str:
        return f"{self.node} ({self.msgtype}, {self.reliability}, {self.durability})"


class FrameWatchdog:
    """Tells whether frames stopped arriving (``silent_for``) and what the user should try (``explain``).

    Silence is counted from the later of the last frame and ``start()`` (activation), so a node
    that just became active is given ``timeout_s`` before it complains. ``timeout_s`` 0 disables it.
    """

    def __init__(self, timeout_s: float, *, topic: str, msgtype: str, reliability: str) -> None:
        if timeout_s < 0:
            raise ValueError(f"timeout_s: expected seconds >= 0 (0 disables the watchdog), got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.topic = topic
        self.msgtype = msgtype
        self.reliability = reliability
        self._started_at: float | None = None

    def start(self, now: float) -> None:
        self._started_at = now

    def silent_for(self, now: float, last_frame_at: float | None) -> float | None:
        """Seconds without a frame once that reaches ``timeout_s``, else None (times: ``time.monotonic()``)."""
        if not self.timeout_s or self._started_at is None:
            return None
        silent = now - max(self._started_at, last_frame_at or self._started_at)
        return silent if silent >= self.timeout_s else None

    def explain(self, publishers: Sequence[Publisher]) -> str:
        """Why no frame arrives, from who publishes on the topic, and what to try.

        The text depends only on the topic's publishers, so the node logs it once per change.
        """
        head = f"no frame on {self.topic} for {self.timeout_s:g} s"
        if not publishers:
            return (f"{head}: nothing publishes on it. Is the camera driver running, and is image_topic "
                    f"remapped to its topic? `ros2 topic list -t` lists the image topics.")
        listed = "; ".join(p.describe() for p in publishers)
        same_type = [p for p in publishers if p.msgtype == self.msgtype]
        if not same_type:
            other_types = ", ".join(sorted({p.msgtype for p in publishers}))
            switch = "compressed:=false" if self.msgtype.endswith("CompressedImage") else "compressed:=true"
            return (f"{head}: it is published as {other_types}, but this node subscribes to "
                    f"{self.msgtype} ({switch} changes that). Publishers: {listed}.")
        matching = [p for p in same_type if self.reliability != "reliable" or p.reliability != "best_effort"]
        if not matching:
            return (f"{head}: every {self.msgtype} publisher is best effort and this subscription is reliable, "
                    f"so they cannot match; set image_reliability:=best_effort. Publishers: {listed}.")
        tries = ["image_reliability:=reliable if the camera publishes reliable: large frames sent best effort "
                 "between processes are often lost whole"] if self.reliability != "reliable" else []
        tries += ["the compressed topic (compressed:=true image_topic:=<topic>/compressed)",
                  "the DDS settings for large messages (README, QoS)"]
        return (f"{head} although {len(matching)} of {len(publishers)} publisher(s) match. Publishers: {listed}. "
                "Try " + "; or ".join(tries) + ".")
