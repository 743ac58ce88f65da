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


_TOPICS_SHOWN = 8  # image topics a warning names; a big graph has dozens
_CAMERA_SUFFIXES = ("image_raw", "image_rect", "image_color", "image_rect_color", "image")  # the drivers' names


def camera_topics_first(topics: Sequence[str]) -> list[str]:
    """``topics`` sorted with a camera driver's raw topics (``.../image_raw``, ``.../image_rect``, ...) first,
    then their compressed forms, then the rest (other nodes' overlays, say), each group by name."""
    def rank(topic: str) -> tuple[int, str]:
        last = topic.rsplit("/", 2)
        if last[-1] in _CAMERA_SUFFIXES:
            return 0, topic
        return (1 if len(last) > 1 and last[-1] == "compressed" and last[-2] in _CAMERA_SUFFIXES else 2), topic

    return sorted(topics, key=rank)


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

    def explain(self, publishers: Sequence[Publisher], image_topics: Sequence[str] = ()) -> str:
        """Why no frame arrives, from who publishes on the topic, and what to try.

        ``image_topics``: the other Image and CompressedImage topics in the graph, named when nothing
        publishes on ours (the usual cause: the camera's topic was not remapped), a camera's own first
        (``camera_topics_first``). The text depends only on these, so the node logs it once per change.
        """
        head = f"no frame on {self.topic} for {self.timeout_s:g} s"
        if not publishers:
            if not image_topics:
                return (f"{head}: nothing publishes on it, and no other image topic exists. Is the camera "
                        f"driver running?")
            ranked = camera_topics_first(image_topics)
            shown = ", ".join(ranked[:_TOPICS_SHOWN]) + (f" and {len(ranked) - _TOPICS_SHOWN} more"
                                                          if len(ranked) > _TOPICS_SHOWN else "")
            return (f"{head}: nothing publishes on it. Image topics that exist: {shown}. "
                    f"Remap the camera's: image_topic:={ranked[0]} (launch) or -r image:={ranked[0]}.")
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
                  "the DDS settings for large messages (docs/ros.md, QoS)"]
        return (f"{head} although {len(matching)} of {len(publishers)} publisher(s) match. Publishers: {listed}. "
                "Try " + "; or ".join(tries) + ".")
