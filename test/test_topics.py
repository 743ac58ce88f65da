"""The node's topic table and the messages one frame gives it: what the node publishes and bags record."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from message_readers import msg_to_detections, msg_to_label_info

from dinov3_ros import messages
from dinov3_ros.messages import raw_array
from dinov3_ros.topics import (
    RESULT_TOPICS,
    OutputTopic,
    frame_messages,
    label_info_messages,
    output_topics,
    overlays_wanted,
)
from dinov3_toolkit.engine import Engine, FrameResult, StageTimings
from dinov3_toolkit.heads import HeadManifest
from dinov3_toolkit.overlays import FrameOverlays, composite, draw_overlays
from dinov3_toolkit.result_kinds import KINDS
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels

M = messages.bag_messages("jazzy")
HEADER = messages.make_header(M, 12, 345, "cam")


def head(task: str, class_names: tuple[str, ...] = (), threshold_param: str | None = None,
         **params) -> SimpleNamespace:
    """The parts of a LoadedHead the topic table reads."""
    manifest = HeadManifest(name=task, folder=Path("."), task=task, module="model", class_name="H",
                            threshold_param=threshold_param)
    return SimpleNamespace(manifest=manifest, class_names=class_names, params=params)


HEADS = {
    "detection": head("detection", ("person", "car"), "score_threshold", score_threshold=0.3),
    "segmentation": head("segmentation", ("background", "road")),
    "depth": head("depth"),
    "probe": head("embedding"),  # a task the node has no message for: overlay only
}


def frame() -> tuple[np.ndarray, FrameResult]:
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    results = {
        "detection": Detections(np.array([[2, 3, 20, 15]], np.float32), np.array([0.9], np.float32),
                                np.array([1]), ("person", "car")),
        "segmentation": SemanticLabels(np.ones((24, 32), np.uint8), ("background", "road")),
        "depth": DepthMap(np.full((24, 32), 2.5, np.float32)),
        "probe": SemanticLabels(np.zeros((24, 32), np.uint8), ("a", "b")),
    }
    timings = StageTimings(0.0, 0.0, {}, {})
    return rgb, FrameResult(results=results, errors={}, timings=timings, image_size=(24, 32))


def test_output_topics_follow_each_heads_task_and_classes():
    image, dets, info = "sensor_msgs/msg/Image", "vision_msgs/msg/Detection2DArray", "vision_msgs/msg/LabelInfo"
    assert output_topics(HEADS) == [
        OutputTopic("overlay", image),
        OutputTopic("detection/detections", dets),
        OutputTopic("detection/annotations", "foxglove_msgs/msg/ImageAnnotations", optional=True),
        OutputTopic("detection/overlay", image),
        OutputTopic("detection/label_info", info, latched=True),
        OutputTopic("segmentation/labels", image),
        OutputTopic("segmentation/overlay", image),
        OutputTopic("segmentation/label_info", info, latched=True),
        OutputTopic("depth/depth", image),
        OutputTopic("depth/overlay", image),
        OutputTopic("probe/overlay", image),
    ]


def messages_of(rgb, result, wanted, *, notice=None, class_id="name"):
    """What the node does per frame: the wanted overlays drawn first, then every message built."""
    heads, combined = overlays_wanted(result.results, wanted)
    overlays = draw_overlays(rgb, result.results, heads=heads, combined=combined, notice=notice)
    return frame_messages(M, HEADER, result, overlays, wanted=wanted, class_id=class_id)


def test_frame_messages_fill_exactly_the_declared_topics_with_the_input_header():
    rgb, result = frame()
    declared = {t.name for t in output_topics(HEADS)}
    messages = messages_of(rgb, result, declared.__contains__)
    # probe's labels have no declared topic (its task is not segmentation), so only its overlay goes out
    assert sorted(messages) == sorted(declared - {"detection/label_info", "segmentation/label_info"})
    annotations = messages.pop("detection/annotations")  # no header: each annotation carries the stamp
    stamps = [(a.timestamp.sec, a.timestamp.nanosec) for a in [*annotations.points, *annotations.texts]]
    assert stamps == [(12, 345)] * 2  # one box: its outline and its label
    for msg in messages.values():
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 345, "cam")
    assert msg_to_detections(messages["detection/detections"], ("person", "car")).labels.tolist() == [1]
    assert (raw_array(messages["segmentation/labels"]) == 1).all()
    assert (raw_array(messages["depth/depth"]) == 2.5).all()
    assert np.array_equal(raw_array(messages["overlay"]), composite(rgb, result.results))


def test_overlays_are_drawn_only_when_wanted_and_messages_carry_the_ones_drawn(monkeypatch):
    rgb, result = frame()

    def no_drawing(*args, **kwargs):
        raise AssertionError("an overlay nobody wants was drawn")

    monkeypatch.setattr("dinov3_toolkit.overlays.composite", no_drawing)
    monkeypatch.setattr("dinov3_toolkit.result_kinds.draw", no_drawing)
    messages = messages_of(rgb, result, lambda topic: not topic.endswith("overlay"))
    assert sorted(messages) == ["depth/depth", "detection/annotations", "detection/detections", "probe/labels",
                                "segmentation/labels"]

    given = np.full((24, 64, 3), 7, np.uint8)
    messages = frame_messages(M, HEADER, result, FrameOverlays(combined=given), wanted=lambda topic: False)
    assert list(messages) == ["overlay"]
    assert np.array_equal(raw_array(messages["overlay"]), given)


def test_the_random_weights_notice_is_on_every_overlay():
    rgb, result = frame()
    plain = messages_of(rgb, result, lambda t: t.endswith("overlay"))
    noted = messages_of(rgb, result, lambda t: t.endswith("overlay"), notice="RANDOM WEIGHTS")
    for topic in plain:
        top_rows = raw_array(noted[topic])[:3]
        assert not np.array_equal(top_rows, raw_array(plain[topic])[:3]), topic


def test_annotations_are_sized_for_the_frame_the_results_are_in():
    _, result = frame()
    hd = dataclasses.replace(result, image_size=(720, 1280))
    messages = frame_messages(M, HEADER, hd, FrameOverlays(), wanted=lambda topic: topic == "detection/annotations")
    assert list(messages) == ["detection/annotations"]
    assert messages["detection/annotations"].points[0].thickness == 3.0  # 720 / 240; 24x32 would give the floor, 2


@pytest.mark.parametrize("class_id, expected", [("name", "car"), ("index", "1")])
def test_class_id_mode_reaches_the_detections(class_id, expected):
    rgb, result = frame()
    messages = messages_of(rgb, result, lambda t: t == "detection/detections", class_id=class_id)
    assert messages["detection/detections"].detections[0].results[0].hypothesis.class_id == expected


def test_label_info_for_heads_with_classes_carries_the_score_threshold():
    messages = label_info_messages(M, HEADS, HEADER)
    assert sorted(messages) == ["detection/label_info", "segmentation/label_info"]
    assert msg_to_label_info(messages["detection/label_info"]) == (("person", "car"), pytest.approx(0.3))
    assert msg_to_label_info(messages["segmentation/label_info"]) == (("background", "road"), 0.0)


def test_the_example_heads_label_info_threshold_is_its_own_threshold_parameter(no_weights):
    """LabelInfo.threshold reports the parameter the manifest names (threshold_param), whatever it is called."""
    probe = Path(__file__).resolve().parents[1] / "examples" / "head_linear_probe"
    engine = Engine.create(backbone="vits16", device="cpu", size=32, heads=["linear_probe"], head_dirs=[probe],
                           random_weights=True, head_params={"linear_probe": {"min_confidence": 0.25}})
    (msg,) = label_info_messages(M, engine.heads, HEADER).values()
    assert msg.threshold == pytest.approx(0.25)
    engine.set_params("linear_probe", min_confidence=0.75)
    (msg,) = label_info_messages(M, engine.heads, HEADER).values()
    assert msg.threshold == pytest.approx(0.75)


def test_every_result_kind_has_its_topic_and_no_other():
    """The ROS table is the toolkit's result-kind table's other half, keyed the same way."""
    assert set(RESULT_TOPICS) == {kind.result_type for kind in KINDS}
