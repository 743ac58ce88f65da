"""`dinov3 demo` shows every output: the bag holds every topic the node publishes, the docs list them, and
every output says the weights were random."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout

import pytest
import yaml

from bag_fixtures import read_bag
from conftest import search_weights_only_in
from doc_pages import section
from dinov3_ros.cli import main, sample_images
from dinov3_ros.names import join_topic
from dinov3_ros.topics import output_topics
from dinov3_toolkit.engine import Engine

TINY = ["--backbone", "vits16", "--device", "cpu", "--size", "32"]
PHOTOS = 4
RANDOM = ["backbone", "depth", "detection", "segmentation"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """The demo once, on the bundled photos, with no weights anywhere; and its bag read back."""
    root = tmp_path_factory.mktemp("demo")
    out = root / "demo"
    text = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        search_weights_only_in(mp, root / "no_weights")
        with redirect_stdout(text):
            code = main(["demo", *TINY, "--out", str(out), "--param", "detection.score_threshold=0",
                         "--param", "detection.max_detections=5"])  # random weights: boxes, for the annotations
        heads = Engine.create(backbone="vits16", device="cpu", size=32, random_weights=True, warmup=False,
                              backbone_overrides={"depth": 1}).heads  # the heads the demo found
    bag, connections = read_bag(out / "bag")
    return dict(code=code, out=out, text=text.getvalue(), bag=bag, connections=connections, heads=heads)


def node_topics(heads) -> set[str]:
    """What the node publishes for these heads, by full name, and the camera topic the photos are recorded on."""
    return {"/camera/image_raw", "/diagnostics", *(join_topic("/dinov3", t.name) for t in output_topics(heads))}


def documented_demo_topics() -> set[str]:
    """The topics the docs' "The demo" section (docs/offline.md) says the demo bag holds."""
    return set(re.findall(r"`(/[\w/]+)`", section("The demo")))


def test_the_demo_bag_holds_every_topic_the_node_publishes(demo):
    assert demo["code"] == 0, demo["text"]
    assert set(demo["bag"]) == node_topics(demo["heads"])
    for topic, records in demo["bag"].items():
        assert len(records) == (1 if topic.endswith("/label_info") else PHOTOS), topic


def test_the_docs_list_exactly_the_demo_bags_topics(demo):
    listed = documented_demo_topics()
    assert listed == set(demo["bag"]), (
        f"the docs' demo section lacks {sorted(set(demo['bag']) - listed)} and lists "
        f"{sorted(listed - set(demo['bag']))} in vain")


def test_the_demo_bag_has_foxglove_annotations_for_every_photo_at_its_stamp(demo):
    photos = [r.msg.header.stamp for r in demo["bag"]["/camera/image_raw"]]
    annotations = [r.msg for r in demo["bag"]["/dinov3/detection/annotations"]]
    detections = [r.msg for r in demo["bag"]["/dinov3/detection/detections"]]
    assert len(annotations) == len(photos) == PHOTOS
    for stamp, ann, det in zip(photos, annotations, detections):
        assert len(ann.points) == len(ann.texts) == len(det.detections) == 5
        assert {(a.timestamp.sec, a.timestamp.nanosec) for a in [*ann.points, *ann.texts]} <= {
            (stamp.sec, stamp.nanosec)}


def test_diagnostics_are_the_nodes_statuses_counted_over_the_photos(demo):
    arrays = [r.msg for r in demo["bag"]["/diagnostics"]]
    photos = [r.msg for r in demo["bag"]["/camera/image_raw"]]
    assert [a.header.stamp for a in arrays] == [p.header.stamp for p in photos]
    last = {s.name: s for s in arrays[-1].status}
    pipeline = last["/dinov3/dinov3_node: pipeline"]
    assert (pipeline.level, pipeline.message) == (1, "random weights: outputs are meaningless")  # WARN
    values = {kv.key: kv.value for kv in pipeline.values}
    assert (values["frames received"], values["frames processed"], values["frames undecodable"]) == ("4", "4", "0")
    assert sorted(last) == sorted([f"/dinov3/dinov3_node: head {h}" for h in demo["heads"]]
                                  + ["/dinov3/dinov3_node: pipeline"])


def test_records_and_bag_metadata_say_what_ran_on_random_weights(demo):
    lines = (demo["out"] / "frames.jsonl").read_text().splitlines()
    assert len(lines) == PHOTOS and all(json.loads(line)["random_weights"] == RANDOM for line in lines)
    info = yaml.safe_load((demo["out"] / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["custom_data"] == {"dinov3.random_weights": ",".join(RANDOM)}


def test_the_demo_ends_saying_what_each_output_is_and_where(demo):
    text = demo["text"]
    table = text[text.index("What the demo wrote, and where"):text.index("View the bag")]
    for output, count in [("overlays/", "4 picture(s)"), ("frames.jsonl", "4 record(s)"), ("labels/", "4 file(s)"),
                          ("depth/", "4 file(s)"), ("bag/", "4 frame(s)")]:
        assert re.search(rf"^  {re.escape(output)}\s+{re.escape(count)}\s+\S", table, re.M), output
    for topic, records in demo["bag"].items():
        row = re.search(rf"^    {re.escape(topic)}\s+(\d+)\s+(\S+)\s+(\S.*)$", table, re.M)
        assert row, f"the table has no row for {topic}"
        msgtype = demo["connections"][topic].msgtype.replace("/msg/", "/")
        assert (int(row[1]), row[2]) == (len(records), msgtype), topic
    assert "Reminder: RANDOM WEIGHTS" in text


def test_dinov3_bag_takes_the_demo_bag_without_topic(demo, tmp_path, capsys, no_weights):
    code = main(["bag", str(demo["out"] / "bag"), "--out", str(tmp_path / "again"), "--quiet", "--random-weights",
                 *TINY])
    assert code == 0, capsys.readouterr().err
    assert f"reading {PHOTOS} frame(s) of /camera/image_raw (sensor_msgs/msg/Image)" in capsys.readouterr().out
    again, _ = read_bag(tmp_path / "again")
    assert len(again["/dinov3/overlay"]) == PHOTOS



def test_a_demo_without_boxes_says_why_and_its_advice_draws_them(tmp_path, monkeypatch):
    """On random weights no score passes the default threshold: the demo said nothing of the README's boxes."""
    search_weights_only_in(monkeypatch, tmp_path / "no_weights")
    one_photo = [str(sample_images()[0]), *TINY]

    def demo_says(*extra: str) -> str:
        text = io.StringIO()
        with redirect_stdout(text):
            assert main(["demo", *one_photo, "--out", str(tmp_path / "demo"), *extra]) == 0
        return text.getvalue()

    text = demo_says()
    assert ("No boxes in the overlays: detection found nothing scoring above its score_threshold (0.2): on "
            "random weights every score stays far below it (a new classifier starts at its prior, 0.01).") in text
    (advice,) = [line.strip() for line in text.splitlines() if line.startswith("  dinov3 demo")]
    extra = advice.split()[2:]
    assert extra == ["--param", "detection.score_threshold=0"]
    text = demo_says(*extra)
    assert "No boxes" not in text
    records = [json.loads(line) for line in (tmp_path / "demo" / "frames.jsonl").read_text().splitlines()]
    assert len(records[0]["heads"]["detection"]["detections"]) > 0  # drawn on the overlay
