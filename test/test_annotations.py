"""Detections as foxglove_msgs/ImageAnnotations: the definitions against the package's, CDR, the drawing, bags.

The definitions are checked two ways: field by field against the foxglove_msgs 3.x ``.msg`` files
(written out below as names and types), and by RIHS01 hash against what rosidl generates from them
(``make ros``), so that a field out of order cannot pass. Each message is written to CDR and read
back unchanged for Humble and Jazzy, and the boxes, labels, colours and stamps read back from it
are the detections and the overlay's colours.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from bag_fixtures import read_bag
from test_messages import cdr_round_trip, installed_type_hash

from dinov3_ros.cli import main
from dinov3_ros.foxglove_msgs_defs import FOXGLOVE_MSGS
from dinov3_ros.messages import DISTROS, ConversionError, bag_messages, detections_to_annotations, make_header
from dinov3_ros.topics import publishable_topics
from dinov3_toolkit.drawing import palette
from dinov3_toolkit.errors import MissingExtra
from dinov3_toolkit.results import Detections

ANNOTATIONS = "foxglove_msgs/msg/ImageAnnotations"
STAMP = (1_700_000_123, 456_789_012)
NAMES = ("person", "bicycle", "car", "banana")
# The fields of foxglove_msgs 3.0.0-3.2.x, in order, as its ros2/*.msg files declare them.
PACKAGE_FIELDS = {
    "foxglove_msgs/msg/Color": ["float64 r", "float64 g", "float64 b", "float64 a"],
    "foxglove_msgs/msg/Point2": ["float64 x", "float64 y"],
    "foxglove_msgs/msg/CircleAnnotation": [
        "builtin_interfaces/Time timestamp", "foxglove_msgs/Point2 position", "float64 diameter", "float64 thickness",
        "foxglove_msgs/Color fill_color", "foxglove_msgs/Color outline_color"],
    "foxglove_msgs/msg/PointsAnnotation": [
        "builtin_interfaces/Time timestamp", "uint8 type", "foxglove_msgs/Point2[] points",
        "foxglove_msgs/Color outline_color", "foxglove_msgs/Color[] outline_colors", "foxglove_msgs/Color fill_color",
        "float64 thickness"],
    "foxglove_msgs/msg/TextAnnotation": [
        "builtin_interfaces/Time timestamp", "foxglove_msgs/Point2 position", "string text", "float64 font_size",
        "foxglove_msgs/Color text_color", "foxglove_msgs/Color background_color"],
    "foxglove_msgs/msg/ImageAnnotations": [
        "foxglove_msgs/CircleAnnotation[] circles", "foxglove_msgs/PointsAnnotation[] points",
        "foxglove_msgs/TextAnnotation[] texts"],
}
POINTS_CONSTANTS = [("UNKNOWN", "uint8", 0), ("POINTS", "uint8", 1), ("LINE_LOOP", "uint8", 2),
                    ("LINE_STRIP", "uint8", 3), ("LINE_LIST", "uint8", 4)]
# RIHS01 hashes rosidl (Jazzy's rosidl_generator_type_description) computes from these definitions.
ROSIDL_TYPE_HASHES = {
    "foxglove_msgs/msg/Color": "RIHS01_ed1b16da40c954e6456b950c2ef4559c179e5cb98f1363cb28c3b90c6ee14120",
    "foxglove_msgs/msg/Point2": "RIHS01_d85e823b78e2e88bc31629e305558bcdd2ecc9225f5f9390f96d91930f5696f0",
    "foxglove_msgs/msg/CircleAnnotation": "RIHS01_d3d8a00505117be541fe8b4b601aa90d5088209a75f313e3779be54db324d15b",
    "foxglove_msgs/msg/PointsAnnotation": "RIHS01_61bd8dda01243d9c7232f00d9101577291b5a9bc1855b06ada4a29e0dc0496a7",
    "foxglove_msgs/msg/TextAnnotation": "RIHS01_c02ec64b79eb5682e73b2b2572f127a27baec868b6ad6acc085abc39355a5b2b",
    "foxglove_msgs/msg/ImageAnnotations": "RIHS01_47c6c0891ba263ec1b20d9b785c4261d4bc41051cbcc01668130e36aa2dcaee3",
}


@pytest.fixture(params=DISTROS)
def bag(request):
    pytest.importorskip("rosbags.interfaces", reason="the conversion tests need rosbags (pip install '.[test]')")
    return bag_messages(request.param)


def detections() -> Detections:
    return Detections(
        boxes=np.array([[10.25, 40.5, 300.75, 200.0], [0.0, 3.0, 1280.0, 720.0], [5.0, 6.0, 5.0, 6.0]], np.float32),
        scores=np.array([0.875, 0.5, 0.0625], np.float32),
        labels=np.array([2, 0, 3]),
        class_names=NAMES,
    )


def _spelled(typestore, typename: str) -> list[str]:
    """A type's fields as its .msg file spells them: ["float64 x", "foxglove_msgs/Point2[] points"]."""
    nodetype = pytest.importorskip("rosbags.interfaces").Nodetype

    def spell(kind, desc) -> str:
        if kind == nodetype.BASE:
            return desc[0]
        if kind == nodetype.NAME:
            return desc.replace("/msg/", "/")
        return spell(*desc[0]) + "[]"  # a sequence: these definitions have no fixed-size arrays

    return [f"{spell(*desc)} {name}" for name, desc in typestore.fielddefs[typename][1]]


# ---- the definitions ----------------------------------------------------------------------------


def test_definitions_have_the_packages_fields_in_its_order(bag):
    assert sorted(FOXGLOVE_MSGS) == sorted(PACKAGE_FIELDS)
    for typename, fields in PACKAGE_FIELDS.items():
        assert _spelled(bag.typestore, typename) == fields, typename
    assert bag.typestore.fielddefs["foxglove_msgs/msg/PointsAnnotation"][0] == POINTS_CONSTANTS


@pytest.mark.parametrize("typename", sorted(ROSIDL_TYPE_HASHES))
def test_definitions_hash_as_rosidl_generates_them(bag, typename):
    assert bag.typestore.hash_rihs01(typename) == ROSIDL_TYPE_HASHES[typename]


@pytest.mark.parametrize("typename", sorted(ROSIDL_TYPE_HASHES))
def test_the_foxglove_msgs_the_node_imports_hash_like_ours(typename):
    """The foxglove_msgs `make ros` generates (or a ROS install provides) carries the definitions bags record."""
    assert installed_type_hash(typename) == ROSIDL_TYPE_HASHES[typename], (
        "the installed foxglove_msgs is not the 3.0-3.2 layout bags record")


# ---- detections -> annotations ------------------------------------------------------------------


def test_annotations_survive_cdr_and_give_back_the_boxes_in_their_colours(bag):
    header = make_header(bag, *STAMP, "cam")
    msg = cdr_round_trip(bag, detections_to_annotations(bag, detections(), header, (720, 1280)))
    det = detections()
    order = [2, 1, 0]  # the best box last, drawn on top, as in the overlay
    assert msg.circles == [] and len(msg.points) == len(msg.texts) == 3
    colours = palette(len(NAMES)) / 255.0
    for box, text, k in zip(msg.points, msg.texts, order):
        x1, y1, x2, y2 = det.boxes[k].astype(np.float64)
        assert box.type == 2  # LINE_LOOP: closed through the four corners
        assert [(p.x, p.y) for p in box.points] == [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        r, g, b = colours[det.labels[k]]
        assert (box.outline_color.r, box.outline_color.g, box.outline_color.b, box.outline_color.a) == (r, g, b, 1.0)
        assert box.fill_color.a == 0.0 and box.outline_colors == [] and box.thickness == 3.0  # 720 / 240
        assert text.text == f"{NAMES[det.labels[k]]} {det.scores[k]:.2f}"
        assert (text.background_color.r, text.background_color.g, text.background_color.b) == (r, g, b)
        assert text.font_size == 24.0  # 720 / 30
        assert (text.position.x, text.position.y) == (x1, max(y1, 24.0))  # its bottom-left: on the box's top edge
        for annotation in (box, text):
            assert (annotation.timestamp.sec, annotation.timestamp.nanosec) == STAMP
    assert [t.text for t in msg.texts] == ["banana 0.06", "person 0.50", "car 0.88"]


def test_text_is_black_on_light_class_colours_and_white_on_dark_ones(bag):
    header = make_header(bag, *STAMP)
    msg = detections_to_annotations(bag, detections(), header, (48, 64))
    for text in msg.texts:
        c = text.background_color
        luma = 255 * (0.299 * c.r + 0.587 * c.g + 0.114 * c.b)
        expected = 0.0 if luma > 140 else 1.0
        assert (text.text_color.r, text.text_color.g, text.text_color.b, text.text_color.a) == (*[expected] * 3, 1.0)
    assert {t.text_color.r for t in msg.texts} == {0.0, 1.0}, "pick classes with both light and dark colours"


def test_line_and_font_grow_with_the_image_and_have_a_floor(bag):
    header = make_header(bag, *STAMP)
    small = detections_to_annotations(bag, detections(), header, (48, 64))
    large = detections_to_annotations(bag, detections(), header, (2160, 3840))
    assert (small.points[0].thickness, small.texts[0].font_size) == (2.0, 12.0)
    assert (large.points[0].thickness, large.texts[0].font_size) == (9.0, 72.0)


def test_no_detections_is_an_empty_message(bag):
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), NAMES)
    msg = cdr_round_trip(bag, detections_to_annotations(bag, empty, make_header(bag, *STAMP), (10, 10)))
    assert (msg.circles, msg.points, msg.texts) == ([], [], [])


def test_a_label_outside_the_class_names_is_named(bag):
    det = detections()
    bad = Detections(det.boxes, det.scores, np.array([2, 7, 3]), NAMES)
    with pytest.raises(ConversionError, match=r"labels must index the 4 class names, got \[7\]"):
        detections_to_annotations(bag, bad, make_header(bag, *STAMP), (10, 10))


# ---- where the node publishes them --------------------------------------------------------------


def _heads():
    from types import SimpleNamespace

    from dinov3_toolkit.heads import HeadManifest

    manifest = HeadManifest(name="detection", folder=Path("."), task="detection", module="m", class_name="H")
    return {"detection": SimpleNamespace(manifest=manifest, class_names=NAMES, params={})}


def test_without_foxglove_msgs_the_annotations_are_left_out_and_the_log_says_how_to_get_them(monkeypatch):
    from dinov3_ros.messages import ros_messages

    monkeypatch.setitem(sys.modules, "foxglove_msgs", None)  # as if not installed: importing it fails
    monkeypatch.setitem(sys.modules, "foxglove_msgs.msg", None)
    M = ros_messages()
    classes, note = publishable_topics(_heads(), lambda typename: _class_unless_foxglove(M, typename))
    assert sorted(topic.name for topic in classes) == ["detection/detections", "detection/label_info",
                                                       "detection/overlay", "overlay"]
    assert note == ("foxglove_msgs is not installed, so detection/annotations is not published (bags still record "
                    "them); to publish: sudo apt install ros-$ROS_DISTRO-foxglove-msgs")


def _class_unless_foxglove(M, typename: str) -> type:
    """The real backend for foxglove_msgs (whose import the test made fail), a stand-in class for the rest."""
    return M.message_class(typename) if typename.startswith("foxglove_msgs/") else type(typename, (), {})


def test_a_required_package_missing_still_fails():
    def no_vision_msgs(typename: str) -> type:
        if typename.startswith("vision_msgs/"):
            raise MissingExtra(f"{typename} is missing")
        return type(typename, (), {})

    with pytest.raises(MissingExtra, match="vision_msgs/msg/Detection2DArray is missing"):
        publishable_topics(_heads(), no_vision_msgs)


def test_every_topic_is_kept_and_nothing_said_when_every_package_is_there():
    classes, note = publishable_topics(_heads(), lambda typename: type(typename, (), {}))
    assert "detection/annotations" in {topic.name for topic in classes} and note is None


def test_the_bag_of_dinov3_run_has_one_annotations_message_per_frame_with_its_stamp(tmp_path, no_weights):
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"f{i}.png"), np.random.default_rng(i).integers(0, 256, (40, 56, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["run", str(images), "--bag", "--heads", "detection", "--backbone", "vits16", "--device", "cpu",
                 "--size", "32", "--random-weights", "--param", "detection.score_threshold=0", "--param",
                 "detection.max_detections=4", "--no-overlay", "--quiet", "--out", str(out)]) == 0
    bag, connections = read_bag(out / "bag")
    assert connections["/dinov3/detection/annotations"].msgtype == ANNOTATIONS
    images_in, annotations, detections_out = (bag[t] for t in ("/camera/image_raw", "/dinov3/detection/annotations",
                                                               "/dinov3/detection/detections"))
    assert len(annotations) == len(images_in) == 3
    for image, annotation, detection in zip(images_in, annotations, detections_out):
        assert annotation.log_time_ns == image.log_time_ns
        stamp = (image.msg.header.stamp.sec, image.msg.header.stamp.nanosec)
        assert len(annotation.msg.points) == len(detection.msg.detections) == 4
        for a in [*annotation.msg.points, *annotation.msg.texts]:
            assert (a.timestamp.sec, a.timestamp.nanosec) == stamp
