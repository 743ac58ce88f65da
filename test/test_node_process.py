"""dinov3_node as users run it: the console script with --ros-args, talked to over DDS from another process.

Each node runs ViT-S/16 on random weights at 64x64 on the CPU (`ros_helpers.TINY_NODE`). The
probe publishes frames and reads every output, /diagnostics, /rosout and the node's services;
the node's own log is read from its output file. Skipped, with the reason, where rclpy or
vision_msgs is missing (`make test` installs both).
"""

from __future__ import annotations

import time

import pytest
from waits import ceiling

from ros_helpers import (  # noqa: I001  (imports rclpy, or skips the module)
    ACTIVE, FINALIZED, HEIGHT, INACTIVE, PIXEL_BYTES, TINY_NODE, UNCONFIGURED, WIDTH, NodeProcess, Probe,
    compressed_msg, image_msg, pipeline_status, poll, wait_until, with_stamp,
)
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from dinov3_ros.messages import SUPPORTED_ENCODINGS  # noqa: E402

NS = "/main"
OUTPUTS = {"detection/detections": Detection2DArray, "segmentation/labels": Image, "depth/depth": Image,
           "overlay": Image, "detection/overlay": Image, "segmentation/overlay": Image, "depth/overlay": Image}


def _subscribe_outputs(probe: Probe, namespace: str) -> None:
    for topic, msg_type in OUTPUTS.items():
        probe.subscribe(msg_type, f"{namespace}/{topic}")
    probe.subscribe(DiagnosticArray, "/diagnostics")


def _outputs_of(probe: Probe, namespace: str, stamp: int) -> dict[str, object]:
    """The output of each topic for the frame stamped ``stamp`` (those that arrived)."""
    found = {}
    for topic in OUTPUTS:
        matching = with_stamp(probe.received[f"{namespace}/{topic}"], stamp)
        if matching:
            found[topic] = matching[-1]
    return found


def _send_and_collect(probe: Probe, camera, namespace: str, msg, timeout: float = 60.0) -> dict[str, object]:
    """Publish ``msg`` (again every half second: DDS may lose one) until every output for it arrived."""
    stamp = msg.header.stamp.sec
    deadline = time.monotonic() + ceiling(timeout)
    while time.monotonic() < deadline:
        camera.publish(msg)
        if poll(lambda: len(_outputs_of(probe, namespace, stamp)) == len(OUTPUTS), 0.5):
            break
    found = _outputs_of(probe, namespace, stamp)
    assert found.keys() == OUTPUTS.keys(), f"frame {stamp}: missing outputs {set(OUTPUTS) - found.keys()}"
    return found


def _diagnostics_after(probe: Probe, node: NodeProcess, since: float) -> tuple[int, str, dict]:
    """The node's pipeline status in a /diagnostics message sent after ``since`` (time.monotonic())."""
    def newer() -> int:
        return sum(pipeline_status([array], node.name) is not None for array in probe.received["/diagnostics"])

    count = newer()
    # Two more: the first may have been on its way already at `since`.
    wait_until(lambda: time.monotonic() > since and newer() > count + 1, 30, f"diagnostics of {node.name}")
    return pipeline_status(probe.received["/diagnostics"], node.name)


@pytest.fixture(scope="module")
def probe():
    probe = Probe()
    probe.subscribe(Log, "/rosout", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                               durability=DurabilityPolicy.TRANSIENT_LOCAL))
    _subscribe_outputs(probe, NS)
    yield probe
    probe.close()


@pytest.fixture(scope="module")
def node(probe, tmp_path_factory):
    """One autostarted node with every built-in head, publishing under /main.

    Its watchdog waits 30 s, longer than any pause between tests, so that only the watchdog test
    (which shortens it, live) sees its warning.
    """
    process = NodeProcess(tmp_path_factory.mktemp("node-logs"), NS, {**TINY_NODE, "frame_timeout": 30.0})
    yield process
    process.close()


@pytest.fixture(scope="module")
def camera(probe, node):
    camera = probe.publisher(Image, f"{NS}/image")
    wait_until(lambda: camera.get_subscription_count() > 0, 60, "the node to subscribe to its image topic")
    return camera


def test_autostart_reaches_active(probe, node, camera):
    assert probe.state(node.name) == ACTIVE
    assert "active: subscribed to /main/image (reliable)" in node.output()


def test_every_encoding_gives_every_output_with_the_input_header_and_size(probe, node, camera):
    assert set(PIXEL_BYTES) == set(SUPPORTED_ENCODINGS), "a supported encoding has no test case"
    for i, encoding in enumerate(SUPPORTED_ENCODINGS):
        stamp = 100 + i
        outputs = _send_and_collect(probe, camera, NS, image_msg(stamp, encoding, frame_id=f"cam_{encoding}"))
        for topic, msg in outputs.items():
            assert msg.header.frame_id == f"cam_{encoding}", (encoding, topic)
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (stamp, 0), (encoding, topic)
        for topic in ("segmentation/labels", "depth/depth"):
            assert (outputs[topic].height, outputs[topic].width) == (HEIGHT, WIDTH), (encoding, topic)
        for topic in ("detection/overlay", "segmentation/overlay", "overlay"):  # the random-weights banner: above
            assert outputs[topic].height > HEIGHT and outputs[topic].width >= WIDTH, (encoding, topic)
        assert outputs["detection/overlay"].width == WIDTH
        assert (outputs["segmentation/labels"].encoding, outputs["depth/depth"].encoding) == ("mono8", "32FC1")
        for d in outputs["detection/detections"].detections:
            assert 0 <= d.bbox.center.position.x <= WIDTH and 0 <= d.bbox.center.position.y <= HEIGHT, encoding


def test_label_info_reaches_a_late_subscriber(probe, node, camera):
    late = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.subscribe(LabelInfo, f"{NS}/detection/label_info", late)
    probe.subscribe(LabelInfo, f"{NS}/segmentation/label_info", late)
    detection = wait_until(lambda: probe.received[f"{NS}/detection/label_info"], 30, "detection LabelInfo")[0]
    segmentation = wait_until(lambda: probe.received[f"{NS}/segmentation/label_info"], 30, "segmentation LabelInfo")[0]
    assert [c.class_name for c in detection.class_map][:2] == ["person", "bicycle"]
    assert [c.class_id for c in detection.class_map] == list(range(len(detection.class_map)))
    assert detection.threshold == pytest.approx(0.0)  # detection.score_threshold as configured
    assert len(segmentation.class_map) > 1


def test_diagnostics_carry_rates_counts_latency_and_stage_times(probe, node, camera):
    _send_and_collect(probe, camera, NS, image_msg(200))
    level, message, values = _diagnostics_after(probe, node, time.monotonic())
    for key in ("device", "precision", "heads", "input rate (Hz)", "output rate (Hz)", "frames received",
                "frames processed", "frames dropped (newer frame arrived first)", "frames failed",
                "frames undecodable", "latency median (ms)", "backbone median (ms)", "detection median (ms)"):
        assert key in values, key
    assert values["device"] == "cpu" and set(values["heads"].split(", ")) == {"detection", "segmentation", "depth"}
    assert int(values["frames processed"]) >= 1  # this test's frame (earlier tests' frames count too)
    assert float(values["latency median (ms)"]) > 0
    assert level == 1 and "random weights" in message  # WARN: this node runs on random weights


def test_live_parameter_change_applies_and_a_refusal_says_why(probe, node, camera):
    (ok,) = probe.set_parameters(node.name, **{"detection.max_detections": 3})
    assert ok.successful
    assert len(_send_and_collect(probe, camera, NS, image_msg(300))["detection/detections"].detections) == 3
    (bad,) = probe.set_parameters(node.name, **{"detection.score_threshold": 1.5})
    assert not bad.successful and "score_threshold" in bad.reason and "1.5" in bad.reason
    (model,) = probe.set_parameters(node.name, image_size=128)
    assert not model.successful and "configure" in model.reason
    assert len(_send_and_collect(probe, camera, NS, image_msg(301))["detection/detections"].detections) == 3


def test_undecodable_frames_are_logged_once_each_counted_apart_and_the_node_goes_on(probe, node, camera):
    """Bug 1: frames that did not decode were counted as processed, and as output in the rates."""
    before = _diagnostics_after(probe, node, time.monotonic())[2]
    unknown = image_msg(400)
    unknown.encoding = "weird8"
    truncated = image_msg(401)
    truncated.data = truncated.data[: len(truncated.data) // 2]

    def undecodable() -> int:
        status = pipeline_status(probe.received["/diagnostics"], node.name)
        return int(status[2]["frames undecodable"]) - int(before["frames undecodable"])

    for i, msg in enumerate([unknown, truncated] * 3):
        camera.publish(msg)  # one at a time: each is counted before the next is sent, so none replaces another
        wait_until(lambda: undecodable() == i + 1, 30, f"bad frame {i + 1} to be counted")
    level, message, values = _diagnostics_after(probe, node, time.monotonic())
    assert undecodable() == 6
    assert values["frames processed"] == before["frames processed"], "an undecodable frame is no processed frame"
    assert values["frames failed"] == before["frames failed"]
    assert level == 1 and "frames that cannot be decoded: " in message, message
    output = node.output()
    assert output.count("unsupported encoding 'weird8'") == 1, "logged once per kind of problem"
    assert output.count("skipping frames that cannot be decoded") == 2
    assert probe.received[f"{NS}/detection/detections"][-1].header.stamp.sec not in (400, 401)
    # Still alive: a good frame gets every output.
    _send_and_collect(probe, camera, NS, image_msg(402))
    assert node.process.poll() is None


def test_a_flood_leaves_no_backlog_and_drops_are_counted(probe, node, camera):
    outputs = probe.received[f"{NS}/detection/detections"]
    first = 10_000
    for stamp in range(first, first + 150):  # far faster than the node processes
        camera.publish(image_msg(stamp))
        time.sleep(0.003)
    last = first + 149
    # No backlog: the newest frame's output comes within a few inferences of the end of the flood.
    wait_until(lambda: with_stamp(outputs, last), 30, "the output of the last frame of the flood")
    processed_in_flood = [m for m in outputs if m.header.stamp.sec >= first]
    assert len(processed_in_flood) < 150 / 2, "most frames must be dropped, not queued"
    count = len(outputs)
    time.sleep(1.0)
    assert len(outputs) == count, "nothing may still be in the pipeline after the newest frame's output"
    _, _, values = _diagnostics_after(probe, node, time.monotonic())
    received, processed = int(values["frames received"]), int(values["frames processed"])
    dropped, undecodable = int(values["frames dropped (newer frame arrived first)"]), int(values["frames undecodable"])
    assert dropped > 0
    assert received == processed + dropped + undecodable, values


def test_library_log_lines_reach_rosout_under_the_nodes_name(probe, node, camera):
    """Bug 3: the weights messages went to the process's stderr only."""
    ours = [m for m in probe.received["/rosout"] if m.name == "main.dinov3_node"]
    assert any("RANDOM weights" in m.msg and m.level == Log.WARN for m in ours), [m.msg for m in ours]
    assert "[WARN]" in node.output() and "[main.dinov3_node]" in node.output()


def test_watchdog_warns_while_a_publisher_sends_nothing_and_clears_when_frames_flow(probe, node, camera):
    """Bug 2: the node must say why no frame arrives, in the log and in /diagnostics."""
    (ok,) = probe.set_parameters(node.name, frame_timeout=1.0)  # a live parameter
    assert ok.successful
    _send_and_collect(probe, camera, NS, image_msg(499))  # frames flow; silence starts now
    start = len(node.output())
    warning = ("no frame on /main/image for 1 s although 1 of 1 publisher(s) match. "
               "Publishers: /probe (sensor_msgs/msg/Image, reliable, volatile)")
    node.wait_for_output(warning, 30, start=start)
    level, message, _ = _diagnostics_after(probe, node, time.monotonic())
    assert level == 1 and message.startswith("no frame on /main/image") and "/probe" in message
    start = len(node.output())
    _send_and_collect(probe, camera, NS, image_msg(500))
    node.wait_for_output("frames arrive on /main/image again", 30, start=start)
    (ok,) = probe.set_parameters(node.name, frame_timeout=30.0)  # no new warning while diagnostics are read
    assert ok.successful
    level, message, _ = _diagnostics_after(probe, node, time.monotonic())
    assert not message.startswith("no frame"), message


def test_sigint_stops_the_node_cleanly(node):
    assert node.interrupt() == 0
    assert "Traceback" not in node.output(), node.output()[-3000:]


def test_compressed_input_gives_every_output(probe, tmp_path):
    ns = "/compressed"
    process = NodeProcess(tmp_path, ns, {**TINY_NODE, "compressed": True})
    try:
        _subscribe_outputs(probe, ns)
        camera = probe.publisher(CompressedImage, f"{ns}/image")
        wait_until(lambda: camera.get_subscription_count() > 0, 60, "the node to subscribe")
        for stamp, fmt in [(1, "jpeg"), (2, "png")]:
            outputs = _send_and_collect(probe, camera, ns, compressed_msg(stamp, fmt, frame_id=fmt))
            assert {m.header.frame_id for m in outputs.values()} == {fmt}
            assert (outputs["depth/depth"].height, outputs["depth/depth"].width) == (HEIGHT, WIDTH)
            assert (outputs["segmentation/labels"].height, outputs["segmentation/labels"].width) == (HEIGHT, WIDTH)
        assert process.interrupt() == 0
    finally:
        process.close()


def test_lifecycle_without_autostart_and_the_incompatible_qos_warning(probe, tmp_path):
    ns = "/managed"
    process = NodeProcess(tmp_path, ns, {**TINY_NODE, "autostart": False, "heads": ["depth"]})
    try:
        probe.subscribe(Image, f"{ns}/depth/depth")
        depth = probe.received[f"{ns}/depth/depth"]
        camera = probe.publisher(Image, f"{ns}/image")
        assert probe.state(process.name) == UNCONFIGURED
        camera.publish(image_msg(1))
        time.sleep(0.5)
        assert camera.get_subscription_count() == 0 and not depth, "unconfigured: no subscription, no output"

        assert probe.transition(process.name, Transition.TRANSITION_CONFIGURE)
        assert probe.state(process.name) == INACTIVE
        assert probe.transition(process.name, Transition.TRANSITION_ACTIVATE)
        assert probe.state(process.name) == ACTIVE
        wait_until(lambda: camera.get_subscription_count() > 0, 30, "the subscription")
        for stamp in range(2, 100):
            camera.publish(image_msg(stamp))
            if poll(lambda: depth, 0.5):
                break
        assert depth and depth[-1].header.frame_id == "camera_optical"

        assert probe.transition(process.name, Transition.TRANSITION_DEACTIVATE)
        assert probe.state(process.name) == INACTIVE
        count = len(depth)
        camera.publish(image_msg(1000))
        time.sleep(1.0)
        assert not with_stamp(depth, 1000) and len(depth) <= count + 1, "inactive: nothing new is published"
        assert probe.transition(process.name, Transition.TRANSITION_CLEANUP)
        assert probe.state(process.name) == UNCONFIGURED
        # A model parameter may change once cleaned up.
        (ok,) = probe.set_parameters(process.name, image_size=32)
        assert ok.successful

        # The default subscription is reliable: a best-effort camera cannot match it, and the node says so.
        assert probe.transition(process.name, Transition.TRANSITION_CONFIGURE)
        assert probe.transition(process.name, Transition.TRANSITION_ACTIVATE)
        best_effort = probe.publisher(Image, f"{ns}/image", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        process.wait_for_output("offers QoS incompatible with this subscription (RELIABILITY)", 30)
        assert "set image_reliability:=best_effort" in process.output()
        best_effort.publish(image_msg(2000))

        assert probe.transition(process.name, Transition.TRANSITION_DEACTIVATE)
        assert probe.transition(process.name, Transition.TRANSITION_CLEANUP)
        assert probe.transition(process.name, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert probe.state(process.name) == FINALIZED
        assert process.interrupt() == 0
        assert "Traceback" not in process.output()
    finally:
        process.close()


def test_watchdog_names_a_missing_publisher_and_the_camera_topic_that_exists(probe, tmp_path):
    ns = "/lonely"
    probe.publisher(Image, "/lonely_camera/color/image_raw")  # where the camera really publishes
    process = NodeProcess(tmp_path, ns, {**TINY_NODE, "heads": ["depth"], "frame_timeout": 0.5})
    try:
        process.wait_for_output("no frame on /lonely/image for 0.5 s: nothing publishes on it", 60)
        # Logged again when what it can say changes: here, once discovery has found the camera's topic.
        output = process.wait_for_output("/lonely_camera/color/image_raw", 60)
        (line,) = [line for line in output.splitlines() if "/lonely_camera/color/image_raw" in line]
        listed = line.split("Image topics that exist: ")[1].split(". Remap")[0].split(", ")
        assert "/lonely_camera/color/image_raw" in listed and not any(t.startswith("/lonely/") for t in listed)
        assert line.endswith(f"image_topic:={listed[0]} (launch) or -r image:={listed[0]}.")
        assert process.interrupt() == 0
    finally:
        process.close()


def test_a_node_started_by_hand_publishes_under_dinov3(probe, tmp_path):
    """`dinov3_node --ros-args -r image:=...` with no namespace published /overlay and /depth/depth, while the
    docs' tables, `ros2 param set /dinov3/dinov3_node`, config/dinov3.rviz and the demo bag read /dinov3/...
    (every other test here remaps __ns, so a remap still wins over the default)."""
    process = NodeProcess(tmp_path, None, {**TINY_NODE, "heads": ["depth"]}, ros_args=("-r", "image:=/bare/camera"))
    try:
        expected = {"/dinov3/overlay", "/dinov3/depth/depth", "/dinov3/depth/overlay"}
        wait_until(lambda: expected <= {name for name, _ in probe.node.get_topic_names_and_types()}, 60,
                   f"the node to advertise {sorted(expected)}")
        wait_until(lambda: probe.node.count_subscribers("/bare/camera") > 0, 60, "the node to subscribe to /bare/camera")
        assert process.name == "/dinov3/dinov3_node" and probe.state(process.name) == ACTIVE
        assert process.interrupt() == 0
    finally:
        process.close()


def test_heads_given_as_one_string_run_and_a_bad_value_stops_the_node_with_one_line(tmp_path):
    """`-p heads:=segmentation,detection` reaches the node as one string (a traceback once); a value that
    names no heads stops the start with the reason, not a traceback."""
    process = NodeProcess(tmp_path, "/heads_text", {**TINY_NODE, "heads": "segmentation,detection"})
    try:
        process.wait_for_output("configured: vits16.lvd1689m on cpu (fp32), heads segmentation, detection", 60)
        assert process.interrupt() == 0
    finally:
        process.close()
    process = NodeProcess(tmp_path, "/heads_bad", {**TINY_NODE, "heads": "segmentation;detection"})
    try:
        assert process.process.wait(ceiling(60)) == 1
        (line,) = [line for line in process.output().splitlines() if "heads must be head names" in line]
        assert line.startswith("dinov3_node: ") and "e.g. detection,depth or [detection, depth]" in line
        assert "Traceback" not in process.output()
    finally:
        process.close()


@pytest.mark.parametrize("debug", [False, True], ids=["default", "debug"])
def test_a_failed_configure_logs_its_message_and_the_traceback_only_at_debug(probe, tmp_path, debug):
    """Bug 4: the traceback was lost."""
    ns = f"/broken_{int(debug)}"
    ros_args = ("--log-level", f"{ns.strip('/')}.dinov3_node:=debug") if debug else ()
    params = {**TINY_NODE, "random_weights": False, "backbone_weights": str(tmp_path / "missing.pth")}
    process = NodeProcess(tmp_path, ns, params, ros_args=ros_args)
    try:
        output = process.wait_for_output("configure failed", 60)
        assert "[ERROR] " in output and "missing.pth" in output
        process.wait_for_output(f"`ros2 lifecycle set {ns}/dinov3_node configure`", 30)  # the hint, after it
        assert "set backbone_weights to the file (or a folder holding one), or clear it and set " \
               "random_weights:=true" in process.output()
        assert probe.state(process.name) == UNCONFIGURED, "the node stays up, ready for a corrected configure"
        if debug:
            process.wait_for_output("Traceback (most recent call last)", 30)
        else:  # the state answer came after the configure, so a traceback would be printed by now
            assert "Traceback" not in process.output()
        assert process.interrupt() == 0
    finally:
        process.close()



def test_flow_and_a_template_detector_are_published_with_the_input_header(probe, tmp_path):
    """Heads from the templates, named: flow from the second frame on (32FC2), RetinaNet's detections."""
    ns = "/temporal"
    params = {k: v for k, v in TINY_NODE.items() if not k.startswith("detection.")}
    process = NodeProcess(tmp_path, ns, {**params, "heads": ["flow", "retinanet"], "retinanet.score_threshold": 0.0})
    try:
        probe.subscribe(Image, f"{ns}/flow/flow")
        probe.subscribe(Detection2DArray, f"{ns}/retinanet/detections")
        camera = probe.publisher(Image, f"{ns}/image")
        wait_until(lambda: camera.get_subscription_count() > 0, 60, "the node to subscribe")
        camera.publish(image_msg(1, frame_id="cam"))  # the stream's first frame: detections, but no flow
        wait_until(lambda: with_stamp(probe.received[f"{ns}/retinanet/detections"], 1), 60, "detections of frame 1")
        camera.publish(image_msg(2, frame_id="cam"))  # 1 s later: within stream_gap, so paired with frame 1
        (flow,) = wait_until(lambda: with_stamp(probe.received[f"{ns}/flow/flow"], 2), 60, "the flow of frame 2")
        assert (flow.encoding, flow.height, flow.width, flow.header.frame_id) == ("32FC2", HEIGHT, WIDTH, "cam")
        assert not with_stamp(probe.received[f"{ns}/flow/flow"], 1)
    finally:
        process.close()
