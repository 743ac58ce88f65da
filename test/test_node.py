"""dinov3_node inside the test process: the Python API (trigger_* transitions, parameter overrides, the
shipped params file) with outputs, LabelInfo, live parameters and the lifecycle.

`test_node_process.py` runs the node as users do (the console script); this file drives the same
class in-process. Needs rclpy and vision_msgs: `make test` installs them from PyPI
(scripts/setup_ros_wheels.py), a sourced ROS 2 workspace has them. The node runs a random-weights
ViT-S+/16 at 64x64 on the CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from waits import ceiling

from ros_helpers import rclpy  # noqa: I001  (imports rclpy, or skips the module saying how to get it)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import State as StateMsg  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from dinov3_ros.node import Dinov3Node  # noqa: E402

HEIGHT, WIDTH = 48, 80


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def make_node(**overrides) -> Dinov3Node:
    params = {"random_weights": True, "device": "cpu", "image_size": 64, "autostart": False,
              "detection.score_threshold": 0.0, **overrides}
    return Dinov3Node(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def image_msg(stamp_sec: int, frame_id: str = "camera_optical") -> Image:
    rgb = np.random.default_rng(stamp_sec).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", is_bigendian=0, step=WIDTH * 3)
    msg.data = rgb.tobytes()
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = frame_id
    return msg


def spin_until(executor, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + ceiling(timeout)
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert condition(), "timed out waiting for the node"


def state_id(node, executor) -> int:
    """The node's lifecycle state through its get_state service, as a lifecycle manager reads it."""
    client = node.create_client(GetState, f"{node.get_fully_qualified_name()}/get_state")
    future = client.call_async(GetState.Request())
    spin_until(executor, future.done)
    node.destroy_client(client)
    return future.result().current_state.id


def test_outputs_label_info_parameters_and_lifecycle(ros):
    node = make_node()
    probe = rclpy.create_node("probe")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    received: dict[str, list] = {}

    def keep(topic):
        return lambda msg: received.setdefault(topic, []).append(msg)

    for topic, msg_type in [("detection/detections", Detection2DArray), ("segmentation/labels", Image),
                            ("depth/depth", Image), ("overlay", Image), ("detection/overlay", Image)]:
        probe.create_subscription(msg_type, topic, keep(topic), 10)
    probe.create_subscription(DiagnosticArray, "/diagnostics", keep("diagnostics"), 10)
    camera = probe.create_publisher(Image, "image", 10)

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert state_id(node, executor) == StateMsg.PRIMARY_STATE_INACTIVE
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert state_id(node, executor) == StateMsg.PRIMARY_STATE_ACTIVE

    # A late subscriber still gets the LabelInfo (transient local).
    late = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.create_subscription(LabelInfo, "detection/label_info", keep("label_info"), late)

    expected = {"detection/detections", "segmentation/labels", "depth/depth", "overlay", "detection/overlay",
                "label_info", "diagnostics"}
    stamp = 1
    deadline = time.monotonic() + ceiling(120)
    while not expected <= received.keys() and time.monotonic() < deadline:
        camera.publish(image_msg(stamp))
        stamp += 1
        for _ in range(4):
            executor.spin_once(timeout_sec=0.1)
    assert expected <= received.keys(), f"missing outputs: {expected - received.keys()}"

    for topic in ["detection/detections", "segmentation/labels", "depth/depth", "overlay"]:
        msg = received[topic][-1]
        assert msg.header.frame_id == "camera_optical" and msg.header.stamp.sec >= 1, topic
    labels, depth = received["segmentation/labels"][-1], received["depth/depth"][-1]
    assert (labels.height, labels.width, labels.encoding) == (HEIGHT, WIDTH, "mono8")
    assert (depth.height, depth.width, depth.encoding) == (HEIGHT, WIDTH, "32FC1")
    detections = received["detection/detections"][-1]
    assert len(detections.detections) == 100  # score_threshold 0: capped by max_detections
    for d in detections.detections:
        assert 0 <= d.bbox.center.position.x <= WIDTH and 0 <= d.bbox.center.position.y <= HEIGHT
        assert d.results[0].hypothesis.class_id  # a class name
    info = received["label_info"][0]
    assert [c.class_name for c in info.class_map][:2] == ["person", "bicycle"]

    # A live threshold change is validated, then applied to the next frames.
    bad = node.set_parameters([Parameter("detection.score_threshold", value=1.5)])[0]
    assert not bad.successful and "score_threshold" in bad.reason
    assert node.set_parameters([Parameter("detection.max_detections", value=5)])[0].successful
    count = len(received["detection/detections"])
    while len(received["detection/detections"]) < count + 2:
        camera.publish(image_msg(stamp))
        stamp += 1
        executor.spin_once(timeout_sec=0.2)
    assert len(received["detection/detections"][-1].detections) == 5
    # Model parameters cannot change under a running model.
    refused = node.set_parameters([Parameter("image_size", value=128)])[0]
    assert not refused.successful and "configure" in refused.reason

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert state_id(node, executor) == StateMsg.PRIMARY_STATE_INACTIVE
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert state_id(node, executor) == StateMsg.PRIMARY_STATE_UNCONFIGURED and node._engine is None
    assert node.set_parameters([Parameter("image_size", value=128)])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node._engine.extractor.preprocess.size == 128
    node.trigger_shutdown()
    executor.shutdown()
    node.destroy_node()
    probe.destroy_node()


def test_configure_fails_with_the_loaders_message_when_weights_are_missing(ros, tmp_path):
    node = make_node(random_weights=False, backbone_weights=str(tmp_path / "missing.pth"))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    assert state_id(node, executor) == StateMsg.PRIMARY_STATE_UNCONFIGURED
    executor.shutdown()
    node.destroy_node()


def test_the_shipped_params_file_configures(ros):
    """The installed config/params.yaml as a launch passes it (empty lists reach rclpy as unset values)."""
    params_file = Path(__file__).resolve().parents[1] / "config" / "params.yaml"
    node = Dinov3Node(cli_args=["--ros-args", "--params-file", str(params_file), "-p", "random_weights:=true",
                                "-p", "device:=cpu", "-p", "image_size:=64", "-p", "autostart:=false",
                                "-p", "detection.score_threshold:=1"])  # an int for a float parameter
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert sorted(node._engine.heads) == ["depth", "detection", "segmentation"]
    assert node._engine.heads["detection"].params["score_threshold"] == 1.0
    node.trigger_shutdown()
    node.destroy_node()


def test_autostart_reaches_active(ros):
    node = make_node(autostart=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin_until(executor, lambda: state_id(node, executor) == StateMsg.PRIMARY_STATE_ACTIVE)
    executor.shutdown()
    node.destroy_node()
