"""A head that returns an invalid result on every frame, next to good heads, in `dinov3 run` and `dinov3 bag`.

The invalid result is that head's error on each frame: named, counted in the summary, logged
once, and never written; the other heads' records, files and bag messages are there for every
frame. The node's side is in ``test_invalid_head_node.py``.
"""

from __future__ import annotations

import json
import logging

import cv2
import jsonschema
import pytest
from bag_fixtures import random_rgb, raw_frame, read_bag, stamp_ns, write_bag
from invalid_heads import BAD, BAD_MESSAGE, write_bad_head

from dinov3_ros.cli import main
from dinov3_toolkit.offline.records import SCHEMA_PATH

# vits16 at 32x32 on random weights; frames are 48x64, so the bad head's 32x32 label maps never fit them
ENGINE = ["--backbone", "vits16", "--device", "cpu", "--size", "32", "--random-weights", "--heads", "detection",
          "depth", BAD, "--quiet"]
SHAPE = (48, 64)
GOOD_TOPICS = ["/dinov3/detection/detections", "/dinov3/depth/depth", "/dinov3/overlay"]
T0 = 1_700_000_000 * 10**9


@pytest.fixture
def heads_dir(tmp_path, no_weights):
    """The bad head's folder sits here; no weights file is found anywhere (every head is random)."""
    write_bad_head(tmp_path / "heads")
    return tmp_path / "heads"


def logged_once(caplog) -> logging.LogRecord:
    """The one log record of the bad head's invalid results, however many frames it failed on."""
    (record,) = [r for r in caplog.records if BAD_MESSAGE in r.getMessage()]
    assert record.levelno == logging.ERROR and f"head '{BAD}'" in record.getMessage()
    return record


def bad_head_messages(bag: dict) -> dict[str, int]:
    """How many messages each of the bad head's topics holds, where it holds any."""
    return {topic: len(recs) for topic, recs in bag.items() if topic.startswith(f"/dinov3/{BAD}/") and recs}


def test_run_writes_every_other_heads_records_files_and_messages_for_every_frame(tmp_path, heads_dir, capsys,
                                                                                  caplog):
    images = tmp_path / "images"
    images.mkdir()
    stems = ["a", "b", "c"]
    for i, stem in enumerate(stems):
        cv2.imwrite(str(images / f"{stem}.png"), random_rgb(*SHAPE, seed=i))
    out = tmp_path / "out"
    code = main(["run", str(images), *ENGINE, "--head-dir", str(heads_dir), "--out", str(out), "--bag"])
    text = capsys.readouterr().out
    assert code == 1, "a head failed on frames: partial success"
    assert f"head {BAD} failed on 3 frame(s)" in text and "3 frame(s) in" in text
    assert f"head {BAD} is skipped" not in text, "it passed the warm-up and ran on every frame"
    logged_once(caplog)

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == stems
    for r in records:
        validator.validate(r)
        assert sorted(r["heads"]) == ["depth", "detection"], r["name"]
        assert list(r["errors"]) == [BAD] and BAD_MESSAGE in r["errors"][BAD], r["name"]
        assert r["heads"]["depth"]["file"] == f"depth/{r['name']}_depth.npy"
    assert sorted(p.name for p in (out / "depth").iterdir()) == [f"{s}_depth.npy" for s in stems]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"{s}.jpg" for s in stems]
    assert not (out / "labels").exists(), "the bad head's label maps are never written"

    bag, _ = read_bag(out / "bag")
    stamps = [stamp_ns(rec.msg) for rec in bag["/camera/image_raw"]]
    assert len(stamps) == 3
    for topic in GOOD_TOPICS:
        assert [stamp_ns(rec.msg) for rec in bag[topic]] == stamps, topic
    # Its LabelInfo describes its classes, recorded once before any frame (as the node publishes it at configure).
    assert bad_head_messages(bag) == {f"/dinov3/{BAD}/label_info": 1}


def test_bag_records_every_other_heads_topics_for_every_input_frame(tmp_path, heads_dir, capsys, caplog):
    frames = [raw_frame("/camera/image_raw", random_rgb(*SHAPE, seed=i), "rgb8", T0 + i * 10**8,
                        T0 + i * 10**8 + 30_000_000, f"cam_{i}") for i in range(3)]
    source = write_bag(tmp_path / "input", "mcap", frames)
    out = tmp_path / "out"
    code = main(["bag", str(source), "--out", str(out), *ENGINE, "--head-dir", str(heads_dir)])
    assert code == 1 and f"head {BAD} failed on 3 frame(s)" in capsys.readouterr().out
    logged_once(caplog)

    bag, _ = read_bag(out)
    expected = [(f.log_time_ns, f.stamp_ns, f.frame_id) for f in frames]
    for topic in GOOD_TOPICS:
        assert [(rec.log_time_ns, stamp_ns(rec.msg), rec.msg.header.frame_id) for rec in bag[topic]] == expected, topic
    assert bad_head_messages(bag) == {f"/dinov3/{BAD}/label_info": 1}
