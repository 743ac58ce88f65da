"""The node's output topics and the messages one frame gives them: one definition for the node and for bags.

Topic names are relative to the node's namespace (``/dinov3`` by default):

- ``overlay`` (Image rgb8): every head in one picture;
- per head ``<name>/detections`` (Detection2DArray), ``<name>/labels`` (Image
  mono8/mono16) or ``<name>/depth`` (Image 32FC1), by the task in its manifest;
- per detection head ``<name>/annotations`` (foxglove_msgs ImageAnnotations), for Foxglove's Image
  panel; optional: the node skips it where foxglove_msgs is not installed, bags always record it;
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
from dinov3_toolkit.errors import MissingExtra
from dinov3_toolkit.heads.loader import LoadedHead
from dinov3_toolkit.overlays import FrameOverlays
from dinov3_toolkit.result_kinds import BY_TASK, ResultKind, kind_of
from dinov3_toolkit.results import DepthMap, Detections, FlowField, SemanticLabels

from . import messages
from .messages import MessageBackend

IMAGE = "sensor_msgs/msg/Image"
IMAGE_TYPES = (IMAGE, "sensor_msgs/msg/CompressedImage")  # what a camera publishes
ANNOTATIONS = "foxglove_msgs/msg/ImageAnnotations"
OVERLAY = "overlay"
# The node's namespace unless remapped (launch, `-r __ns:=...`), and the result topics' in a bag: the docs'
# tables, config/dinov3.rviz and the demo bag all read /dinov3/...
DEFAULT_NAMESPACE = "/dinov3"


@dataclass(frozen=True)
class ResultTopic:
    """Where one kind of result is published: ``<head>/<suffix>``, of ``msgtype``, built by ``build``."""

    suffix: str
    msgtype: str
    # (M, result, header, *, class_id, image_size) -> message, or None when there is nothing to send
    build: Callable[..., Any]
    optional: bool = False  # its message package is not in every ROS install: the node may go without it


# The ROS half of dinov3_toolkit.result_kinds, keyed the same way (by result class); a test keeps the
# two tables' keys equal. Publishers are made from a head's task through its kind, messages from the
# result through its kind: the engine refuses a head whose result contradicts its task, so they agree.
RESULT_TOPICS: dict[type, tuple[ResultTopic, ...]] = {
    Detections: (
        ResultTopic("detections", "vision_msgs/msg/Detection2DArray",
                    lambda M, result, header, class_id, **_: messages.detections_to_msg(
                        M, result, header, class_id=class_id)),
        ResultTopic("annotations", ANNOTATIONS,
                    lambda M, result, header, image_size, **_: messages.detections_to_annotations(
                        M, result, header, image_size), optional=True),
    ),
    SemanticLabels: (ResultTopic("labels", IMAGE, lambda M, result, header, **_: messages.labels_to_msg(
        M, result, header)),),
    DepthMap: (ResultTopic("depth", IMAGE, lambda M, result, header, **_: messages.depth_to_msg(M, result, header)),),
    FlowField: (ResultTopic("flow", IMAGE,  # None on a frame without flow: nothing is published
                            lambda M, result, header, **_: messages.flow_to_msg(M, result, header)),),
}


def result_topics(kind: ResultKind | None) -> tuple[ResultTopic, ...]:
    return RESULT_TOPICS.get(kind.result_type, ()) if kind is not None else ()


@dataclass(frozen=True)
class OutputTopic:
    """One topic the node publishes. Its QoS is reliable, keep last ``depth``, and transient local if latched."""

    name: str  # relative to the node's namespace
    msgtype: str  # "pkg/msg/Name"
    latched: bool = False  # transient local: LabelInfo, published once for late subscribers
    optional: bool = False  # published only where its message package is installed; bags always record it

    @property
    def depth(self) -> int:
        """A short queue for results (a late result is a stale one); one message for latched topics."""
        return 1 if self.latched else 2


def output_topics(heads: Mapping[str, LoadedHead]) -> list[OutputTopic]:
    """Every topic the node publishes for these heads (besides ``/diagnostics``)."""
    topics = [OutputTopic(OVERLAY, IMAGE)]
    for name, head in heads.items():
        for promised in result_topics(BY_TASK.get(head.manifest.task)):
            topics.append(OutputTopic(f"{name}/{promised.suffix}", promised.msgtype, optional=promised.optional))
        topics.append(OutputTopic(f"{name}/overlay", IMAGE))
        if head.class_names:
            topics.append(OutputTopic(f"{name}/label_info", "vision_msgs/msg/LabelInfo", latched=True))
    return topics


def publishable_topics(
    heads: Mapping[str, LoadedHead], message_class: Callable[[str], type]
) -> tuple[dict[OutputTopic, type], str | None]:
    """The output topics of these heads with their message classes (``message_class("pkg/msg/Name")``),
    less the optional ones whose package is not installed; and a line for the log naming those and how
    to get them (None when none is left out).

    A missing package of any other topic raises ``MissingExtra``: the node cannot run without it.
    """
    classes: dict[OutputTopic, type] = {}
    skipped: dict[str, list[str]] = {}  # package -> topics left out
    for topic in output_topics(heads):
        try:
            classes[topic] = message_class(topic.msgtype)
        except MissingExtra:
            if not topic.optional:
                raise
            skipped.setdefault(topic.msgtype.split("/")[0], []).append(topic.name)
    if not skipped:
        return classes, None
    return classes, "; ".join(
        f"{package} is not installed, so {', '.join(names)} {'is' if len(names) == 1 else 'are'} not published "
        f"(bags still record them); to publish: sudo apt install ros-$ROS_DISTRO-{package.replace('_', '-')}"
        for package, names in skipped.items()
    )


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

    A result goes to each topic of its kind (``RESULT_TOPICS``) that ``wanted`` accepts:
    the node's ``wanted`` takes only topics it has publishers for, made from the
    heads' tasks, which the engine has checked against their results. ``overlays``
    were drawn by the caller (``dinov3_toolkit.overlays.draw_overlays``), for the
    overlay topics somebody watches (``overlays_wanted``).
    """
    out: dict[str, Any] = {}
    for name, result in frame.results.items():
        for published in result_topics(kind_of(result)):
            if wanted(topic := f"{name}/{published.suffix}") and (msg := published.build(
                    M, result, header, class_id=class_id, image_size=frame.image_size)) is not None:
                out[topic] = msg
    for name, image in overlays.heads.items():
        out[f"{name}/overlay"] = messages.rgb_to_msg(M, image, header)
    if overlays.combined is not None:
        out[OVERLAY] = messages.rgb_to_msg(M, overlays.combined, header)
    return out
