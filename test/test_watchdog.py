"""The frame watchdog without ROS: when it speaks, and that each cause of silence gets its own advice."""

from __future__ import annotations

import pytest

from dinov3_ros.watchdog import FrameWatchdog, Publisher

IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"


def camera(reliability: str = "reliable", msgtype: str = IMAGE, node: str = "/cam/driver") -> Publisher:
    return Publisher(node=node, msgtype=msgtype, reliability=reliability, durability="volatile")


def watchdog(timeout_s: float = 5.0, *, msgtype: str = IMAGE, reliability: str = "reliable") -> FrameWatchdog:
    dog = FrameWatchdog(timeout_s, topic="/camera/image_raw", msgtype=msgtype, reliability=reliability)
    dog.start(100.0)
    return dog


def test_silence_counts_from_activation_then_from_the_last_frame():
    dog = watchdog(5.0)
    assert dog.silent_for(104.9, None) is None, "a node just activated gets timeout_s before it complains"
    assert dog.silent_for(105.0, None) == pytest.approx(5.0)
    assert dog.silent_for(106.0, 103.0) is None
    assert dog.silent_for(108.5, 103.0) == pytest.approx(5.5)
    assert dog.silent_for(200.0, 50.0) == pytest.approx(100.0), "a frame from before activation does not count"


def test_zero_disables_and_nothing_is_said_before_start():
    assert watchdog(0.0).silent_for(1e9, None) is None
    unstarted = FrameWatchdog(1.0, topic="/t", msgtype=IMAGE, reliability="reliable")
    assert unstarted.silent_for(1e9, None) is None


def test_a_negative_timeout_is_refused_by_name():
    with pytest.raises(ValueError, match="timeout_s: expected seconds >= 0"):
        FrameWatchdog(-1.0, topic="/t", msgtype=IMAGE, reliability="reliable")


def test_no_publisher():
    text = watchdog().explain([])
    assert text.startswith("no frame on /camera/image_raw for 5 s: nothing publishes on it")
    assert "no other image topic exists" in text and "camera driver" in text


def test_no_publisher_names_the_image_topics_that_exist_and_the_remap():
    text = watchdog().explain([], ["/cam/color/image_raw/compressed", "/a/overlay", "/cam/color/image_raw"])
    assert text.startswith("no frame on /camera/image_raw for 5 s: nothing publishes on it")
    assert "Image topics that exist: /cam/color/image_raw, /cam/color/image_raw/compressed, /a/overlay." in text
    assert "image_topic:=/cam/color/image_raw (launch) or -r image:=/cam/color/image_raw" in text


@pytest.mark.parametrize(("ours", "theirs", "switch"), [(IMAGE, COMPRESSED, "compressed:=true"),
                                                         (COMPRESSED, IMAGE, "compressed:=false")])
def test_another_message_type(ours, theirs, switch):
    text = watchdog(msgtype=ours).explain([camera(msgtype=theirs)])
    assert f"published as {theirs}" in text and switch in text and "/cam/driver" in text


def test_best_effort_publishers_cannot_match_a_reliable_subscription():
    text = watchdog(reliability="reliable").explain([camera("best_effort"), camera("best_effort", node="/b")])
    assert "cannot match; set image_reliability:=best_effort" in text and "/b (" in text


def test_matching_publishers_that_send_nothing_get_the_large_message_advice():
    text = watchdog(reliability="best_effort").explain([camera("reliable")])
    assert "although 1 of 1 publisher(s) match. Publishers: /cam/driver (sensor_msgs/msg/Image, reliable, volatile)" \
        in text
    assert "image_reliability:=reliable" in text and "compressed:=true" in text and "docs/ros.md, QoS" in text
    reliable = watchdog(reliability="reliable").explain([camera("reliable")])
    assert "image_reliability:=reliable" not in reliable, "no advice to set what is already set"
    assert "compressed:=true" in reliable


def test_mixed_publishers_count_only_those_that_can_match():
    dog = watchdog(reliability="reliable")
    text = dog.explain([camera("best_effort", node="/a"), camera("reliable", node="/b"),
                        camera(msgtype=COMPRESSED, node="/c")])
    assert "although 1 of 3 publisher(s) match" in text
    assert "published as" not in text, "a publisher of our type exists: no type advice"
    assert "/a (" in text and "/c (" in text, "every publisher is listed"


def test_the_text_depends_only_on_the_publishers_so_it_is_logged_once_per_change():
    dog = watchdog()
    assert dog.explain([camera()]) == dog.explain([camera()])
    assert dog.explain([camera()]) != dog.explain([])


def test_a_big_graph_names_the_camera_topics_and_counts_the_rest():
    others = [f"/robot/node{i}/overlay" for i in range(20)]
    text = watchdog().explain([], [*others, "/front/image_rect"])
    assert "Image topics that exist: /front/image_rect, /robot/node0/overlay," in text and " and 13 more." in text
    assert "-r image:=/front/image_rect." in text
