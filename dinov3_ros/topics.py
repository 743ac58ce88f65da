"""The node's output topics and the messages one frame gives them: one definition for the node and for bags.

Topic names are relative to the node's namespace (``/dinov3`` by default):

- ``overlay`` (Image rgb8): every head in one picture;
- per head ``<name>/detections`` (Detection2DArray), ``<name>/labels`` (Image
  mono8/mono16) or ``<name>/depth`` (Image 32FC1), by the task in its manifest;
- per head ``<name>/overlay`` (Image rgb8);
- per head with classes ``<name>/label_info`` (LabelInfo), published once and
  latched (transient local).

``dinov3 bag`` writes exactly these, so a bag played back looks to RViz like
the node running live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from dinov3_toolkit.engine import FrameResult
from dinov3_toolkit.heads.loader import LoadedHead
from dinov3_toolkit.overlays import FrameOverlays
from dinov3_toolkit.result_kinds import BY_TASK, ResultKind, kind_of
from dinov3_toolkit.results import DepthMap, Detections, FlowField, SemanticLabels

from . import messages
from .messages import MessageBackend

IMAGE = "sensor_msgs/msg/Image"
OVERLAY = "overlay"


@dataclass(frozen=True)
class ResultTopic:
    """Where one kind of result is published: ``<head>/<suffix>``, of ``msgtype``, built by ``build``."""

    suffix: str
    msgtype: str
    build: Callable[..., Any]  # (M, result, header, class_id) -> message, or None when there is nothing to send


# The ROS half of dinov3_toolkit.result_kinds, keyed the same way (by result class); a test keeps the
# two tables' keys equal. Publishers are made from a head's task through its kind, messages from the
# result through its kind: the engine refuses a head whose result contradicts its task, so they agree.
RESULT_TOPICS = {
    Detections: ResultTopic("detections", "vision_msgs/msg/Detection2DArray",
                            lambda M, result, header, class_id: messages.detections_to_msg(
                                M, result, header, class_id=class_id)),
    SemanticLabels: ResultTopic("labels", IMAGE,
                                lambda M, result, header, class_id: messages.labels_to_msg(M, result, header)),
    DepthMap: ResultTopic("depth", IMAGE,
                          lambda M, result, header, class_id: messages.depth_to_msg(M, result, header)),
    FlowField: ResultTopic("flow", IMAGE,  # None on a frame without flow: nothing is published
                           lambda M, result, header, class_id: messages.flow_to_msg(M, result, header)),
}


def result_topic(kind: ResultKind | None) -> ResultTopic | None:
    return RESULT_TOPICS.get(kind.result_type) if kind is not None else None


@dataclass(frozen=True)
class OutputTopic:
    """One topic the node publishes. Its QoS is reliable, keep last ``depth``, and transient local if latched."""

    name: str  # relative to the node's namespace
    msgtype: str  # "pkg/msg/Name"
    latched: bool = False  # transient local: LabelInfo, published once for late subscribers

    @property
    def depth(self) -> int:
        """A short queue for results (a late result is a stale one); one message for latched topics."""
        return 1 if self.latched else 2


def output_topics(heads: Mapping[str, LoadedHead]) -> list[OutputTopic]:
    """Every topic the node publishes for these heads (besides ``/diagnostics``)."""
    topics = [OutputTopic(OVERLAY, IMAGE)]
    for name, head in heads.items():
        if promised := result_topic(BY_TASK.get(head.manifest.task)):
            topics.append(OutputTopic(f"{name}/{promised.suffix}", promised.msgtype))
        topics.append(OutputTopic(f"{name}/overlay", IMAGE))
        if head.class_names:
            topics.append(OutputTopic(f"{name}/label_info", "vision_msgs/msg/LabelInfo", latched=True))
    return topics


def label_info_messages(M: MessageBackend, heads: Mapping[str, LoadedHead], header: Any) -> dict[str, Any]:
    """``<name>/label_info`` for every head with classes; the threshold is the value of the parameter its
    manifest names as ``threshold_param`` (0 when it names none)."""
    return {
        f"{name}/label_info": messages.label_info_to_msg(
            M, head.class_names, header, threshold=head.manifest.threshold(head.params)
        )
        for name, head in heads.items()
        if head.class_names
    }


class WantedOverlays(NamedTuple):
    """Which overlays to draw for a frame: these heads' own, and whether the composite."""

    heads: list[str]
    combined: bool


def overlays_wanted(results: Mapping[str, Any], wanted: Callable[[str], bool]) -> WantedOverlays:
    """The overlays whose topics ``wanted`` accepts (overlays cost time: only those are drawn)."""
    return WantedOverlays([name for name in results if wanted(f"{name}/overlay")], wanted(OVERLAY))


def frame_messages(
    M: MessageBackend,
    header: Any,
    frame: FrameResult,
    overlays: FrameOverlays,
    *,
    wanted: Callable[[str], bool],
    class_id: str = "name",
) -> dict[str, Any]:
    """The messages of one frame by topic, all carrying ``header``: results, and the overlays already drawn.

    A result goes to the topic of its kind (``RESULT_TOPICS``), if ``wanted`` accepts
    it: the node's ``wanted`` takes only topics it has publishers for, made from the
    heads' tasks, which the engine has checked against their results. ``overlays``
    were drawn by the caller (``dinov3_toolkit.overlays.draw_overlays``), for the
    overlay topics somebody watches (``overlays_wanted``).
    """
    out: dict[str, Any] = {}
    for name, result in frame.results.items():
        if (published := result_topic(kind_of(result))) and wanted(topic := f"{name}/{published.suffix}"):
            if (msg := published.build(M, result, header, class_id)) is not None:
                out[topic] = msg
    for name, image in overlays.heads.items():
        out[f"{name}/overlay"] = messages.rgb_to_msg(M, image, header)
    if overlays.combined is not None:
        out[OVERLAY] = messages.rgb_to_msg(M, overlays.combined, header)
    return out
