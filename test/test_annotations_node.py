"""dinov3_node publishes foxglove_msgs/ImageAnnotations where foxglove_msgs imports, and says once how to get it.

Each node runs only the detection head (ViT-S/16, random weights, 64x64, CPU; `ros_helpers.TINY_NODE`),
as users start it. One sees the foxglove_msgs that `make ros` generates into the venv; the other is
started with a foxglove_msgs on its path that fails to import, as on a ROS install without the package.
Skipped, with the reason, where rclpy, vision_msgs or foxglove_msgs is missing.
"""

from __future__ import annotations

import os

import pytest

from ros_helpers import (  # noqa: I001  (imports rclpy, or skips the module)
    TINY_NODE, NodeProcess, Probe, image_msg, poll, wait_until, with_stamp,
)
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

foxglove_msgs = pytest.importorskip("foxglove_msgs.msg", reason="foxglove_msgs is not installed (`make ros` generates "
                                    "it into the venv; on a ROS install: apt install ros-$ROS_DISTRO-foxglove-msgs)")

NODE = {**TINY_NODE, "heads": ["detection"], "detection.max_detections": 3}  # threshold 0: always 3 boxes
MISSING = "foxglove_msgs is not installed, so detection/annotations is not published"


@pytest.fixture(scope="module")
def probe():
    probe = Probe("annotations_probe")
    yield probe
    probe.close()


def _stamps(annotations) -> set[tuple[int, int]]:
    return {(a.timestamp.sec, a.timestamp.nanosec) for a in [*annotations.points, *annotations.texts]}


def test_annotations_carry_each_frames_boxes_and_stamp(probe, tmp_path):
    ns = "/annotated"
    node = NodeProcess(tmp_path, ns, NODE)
    try:
        probe.subscribe(foxglove_msgs.ImageAnnotations, f"{ns}/detection/annotations")
        probe.subscribe(Detection2DArray, f"{ns}/detection/detections")
        camera = probe.publisher(Image, f"{ns}/image")
        wait_until(lambda: camera.get_subscription_count() > 0, 60, "the node to subscribe to its image topic")

        def annotations_of(stamp: int) -> list:
            return [a for a in probe.received[f"{ns}/detection/annotations"] if _stamps(a) == {(stamp, 0)}]

        for stamp in (11, 12):  # again every half second until both outputs arrive: DDS may lose a frame
            frame = image_msg(stamp)
            wait_until(lambda: camera.publish(frame) or poll(lambda: annotations_of(stamp) and with_stamp(
                probe.received[f"{ns}/detection/detections"], stamp), 0.5), 60, f"the outputs of frame {stamp}")
            (detections,) = with_stamp(probe.received[f"{ns}/detection/detections"], stamp)[-1:]
            annotations = annotations_of(stamp)[-1]
            assert len(annotations.points) == len(annotations.texts) == len(detections.detections) == 3
            for box, d in zip(reversed(annotations.points), detections.detections):  # best box drawn last
                c = d.bbox.center.position
                xs, ys = [p.x for p in box.points], [p.y for p in box.points]
                assert (min(xs) + max(xs)) / 2 == pytest.approx(c.x) and (min(ys) + max(ys)) / 2 == pytest.approx(c.y)
        assert MISSING not in node.output()
    finally:
        node.close()


def test_without_foxglove_msgs_the_node_says_so_once_and_publishes_the_rest(probe, tmp_path):
    ns = "/plain"
    hidden = tmp_path / "hide" / "foxglove_msgs"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("foxglove_msgs hidden by the test")\n')
    path = os.pathsep.join(p for p in (str(hidden.parent), os.environ.get("PYTHONPATH")) if p)
    node = NodeProcess(tmp_path, ns, NODE, env={"PYTHONPATH": path})
    try:
        probe.subscribe(Detection2DArray, f"{ns}/detection/detections")
        camera = probe.publisher(Image, f"{ns}/image")
        wait_until(lambda: camera.get_subscription_count() > 0, 60, "the node to subscribe to its image topic")
        frame = image_msg(21)
        wait_until(lambda: camera.publish(frame) or poll(
            lambda: with_stamp(probe.received[f"{ns}/detection/detections"], 21), 0.5), 60, "detections of frame 21")
        output = node.output()
        assert output.count(MISSING) == 1, output[-3000:]
        assert "sudo apt install ros-$ROS_DISTRO-foxglove-msgs" in output
        assert probe.node.get_publishers_info_by_topic(f"{ns}/detection/annotations") == []
    finally:
        node.close()
