"""dinov3_node with a head that returns an invalid result on every frame, next to good heads, over DDS.

The good heads publish every frame; the bad head publishes no result and no overlay, its problem
is logged once, and /diagnostics shows it at WARN with its count (its own status and the
pipeline's message). The node runs as users start it (``ros_helpers.NodeProcess``), skipped
where rclpy or vision_msgs is missing.
"""

from __future__ import annotations

from ros_helpers import (  # noqa: I001  (imports rclpy, or skips the module)
    TINY_NODE, NodeProcess, Probe, image_msg, poll, wait_until, with_stamp,
)
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from invalid_heads import BAD, BAD_MESSAGE, write_bad_head  # noqa: E402

NS = "/isolation"
GOOD = {"detection/detections": Detection2DArray, "depth/depth": Image, "overlay": Image}
BAD_TOPICS = {f"{BAD}/labels": Image, f"{BAD}/overlay": Image}
WARN = 1


def statuses(diagnostics: list, node_name: str) -> dict[str, tuple[int, str, dict[str, str]]]:
    """(level, message, values) by status name in the newest DiagnosticArray that has the node's statuses."""
    for array in reversed(diagnostics):
        found = {s.name.removeprefix(f"{node_name}: "): (s.level if isinstance(s.level, int) else s.level[0],
                                                         s.message, {kv.key: kv.value for kv in s.values})
                 for s in array.status if s.name.startswith(f"{node_name}: ")}
        if found:
            return found
    return {}


def test_the_good_heads_publish_every_frame_and_diagnostics_show_the_bad_head_failing(tmp_path):
    heads = tmp_path / "heads"
    write_bad_head(heads)
    probe = Probe()
    params = {**TINY_NODE, "heads": ["detection", "depth", BAD], "head_dirs": [str(heads)], "frame_timeout": 0.0}
    node = NodeProcess(tmp_path, NS, params)  # frames are 48x80, its label maps 64x64 (image_size)
    try:
        for topic, msg_type in {**GOOD, **BAD_TOPICS}.items():
            probe.subscribe(msg_type, f"{NS}/{topic}")
        probe.subscribe(DiagnosticArray, "/diagnostics")
        camera = probe.publisher(Image, f"{NS}/image")
        wait_until(lambda: camera.get_subscription_count() > 0, 60, "the node to subscribe to its image topic")
        for stamp in (1, 2, 3):
            msg = image_msg(stamp)
            while not all(with_stamp(probe.received[f"{NS}/{topic}"], stamp) for topic in GOOD):
                camera.publish(msg)  # one frame at a time (again if DDS lost it), so none replaces another
                poll(lambda: all(with_stamp(probe.received[f"{NS}/{topic}"], stamp) for topic in GOOD), 2.0)
        assert not any(probe.received[f"{NS}/{topic}"] for topic in BAD_TOPICS), "a result of the bad head got out"

        def bad_head_counted() -> dict:
            found = statuses(probe.received["/diagnostics"], node.name)
            return found if int(found.get(f"head {BAD}", (0, "", {}))[2].get("frames failed", 0)) >= 3 else {}

        found = wait_until(bad_head_counted, 30, "/diagnostics to count the bad head's failures")
        level, message, values = found[f"head {BAD}"]
        assert level == WARN and values["frames failed"] == values["frames run"], (message, values)
        assert message.startswith(f"failed on {values['frames failed']} of {values['frames run']} frames: ")
        assert BAD_MESSAGE in message and BAD_MESSAGE in values["last error"]
        level, message, values = found["pipeline"]
        assert level == WARN and message.startswith(f"head {BAD} failed on "), "it outranks random weights"
        assert values[f"{BAD} failed frames"] == found[f"head {BAD}"][2]["frames failed"]
        assert values["detection failed frames"] == values["depth failed frames"] == "0"
        assert found["head detection"][:2] == found["head depth"][:2] == (0, "running")
        assert node.output().count(BAD_MESSAGE) == 1, "logged once, not once per frame"
        assert node.interrupt() == 0 and "Traceback" not in node.output()
    finally:
        node.close()
        probe.close()
