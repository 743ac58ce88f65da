"""``dinov3 bag`` and ``dinov3 run --bag`` end to end, in MCAP and sqlite3.

The CLI runs in this process on a tiny model whose weights the test wrote, so
every recorded result can be compared with what the same model returns for the
same decoded frame, bit for bit. Input bags hold raw frames in three encodings,
png CompressedImage frames and a non-image topic; header stamps, frame ids and
log times differ per frame, so a result recorded with the wrong frame's header
or time shows up.
"""

from __future__ import annotations

import io
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from bag_fixtures import (
    COMPRESSED, IMAGE, InputFrame, M, png_frame, random_rgb, raw_frame, read_bag, stamp_ns, write_bag,
)
from conftest import search_weights_only_in
from message_readers import msg_to_detections, msg_to_label_info
from waits import ceiling
from dinov3_ros import messages
from dinov3_ros.cli import main
from dinov3_ros.messages import compressed_to_rgb, image_to_rgb
from dinov3_toolkit.checkpoint import save_state_dict
from dinov3_toolkit.engine import Engine, FrameResult
from dinov3_toolkit.overlays import composite
from dinov3_toolkit.offline.sources import DEFAULT_FRAME_ID, SourceFrame

REPO = Path(__file__).resolve().parents[1]
FORMATS = ["mcap", "sqlite3"]
SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
RAW, PNG, CHATTER = "/camera/image_raw", "/camera/image_raw/compressed", "/chatter"
SIZE = 64
THRESHOLD = 0.01  # random heads score about 0.02 at best: low enough that every frame has boxes
RESULTS = {  # result topic -> head
    "/dinov3/detection/detections": "detection",
    "/dinov3/segmentation/labels": "segmentation",
    "/dinov3/depth/depth": "depth",
    "/dinov3/overlay": None,
}
LABEL_INFO = {"/dinov3/detection/label_info": "detection", "/dinov3/segmentation/label_info": "segmentation"}
ANNOTATIONS = {"/dinov3/detection/annotations": "detection"}  # their content: test_annotations.py
T0 = 1_700_000_000 * 10**9


@dataclass
class Model:
    engine: Engine  # the reference: what the CLI's engine must compute
    backbone: Path  # its weights, for --weights
    weights_dir: Path  # its heads' weights, for $DINOV3_WEIGHTS_DIR


@dataclass
class CliRun:
    code: int
    out: str
    err: str
    logs: str


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Model:
    """A random vits16 engine at size 64, its weights written where the CLI will find them."""
    root = tmp_path_factory.mktemp("model")
    empty = root / "empty"
    empty.mkdir()
    with pytest.MonkeyPatch.context() as mp:  # whatever weights this machine has, start from random ones
        search_weights_only_in(mp, empty)
        torch.manual_seed(0)
        engine = Engine.create(backbone="vits16", device="cpu", size=SIZE, random_weights=True,
                               head_params={"detection": {"score_threshold": THRESHOLD}})
    assert sorted(engine.random_weights) == ["backbone", "depth", "detection", "segmentation"], (
        "a head found weights in its own folder; move them away to run these tests")
    save_state_dict(engine.extractor.backbone.state_dict(), root / "backbone.pth")
    for head in engine.heads.values():
        folder = root / "weights" / head.manifest.folder.name
        folder.mkdir(parents=True)
        save_state_dict(head.model.state_dict(), folder / head.manifest.weights.name)
    return Model(engine, root / "backbone.pth", root / "weights")


def engine_options(model: Model, size: int = SIZE) -> list[str]:
    return ["--backbone", "vits16", "--size", str(size), "--device", "cpu", "--weights", str(model.backbone),
            "--param", f"detection.score_threshold={THRESHOLD}",
            "--allow-backbone-mismatch"]  # the heads' files come from a vits16 engine; their manifests say vits16plus


def run_cli(model: Model, argv: list[str]) -> CliRun:
    """``dinov3 ARGV`` in this process, finding the model's head weights through $DINOV3_WEIGHTS_DIR."""
    out, err, logs = io.StringIO(), io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    loggers = [logging.getLogger("dinov3_toolkit.heads.loader"), logging.getLogger("dinov3_toolkit.backbone")]
    levels = [lg.level for lg in loggers]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DINOV3_WEIGHTS_DIR", str(model.weights_dir))
        for lg in loggers:
            lg.addHandler(handler)
            lg.setLevel(logging.INFO)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main(argv)
        finally:
            for lg, level in zip(loggers, levels):
                lg.removeHandler(handler)
                lg.setLevel(level)
    return CliRun(code, out.getvalue(), err.getvalue(), logs.getvalue())


def assert_ran_on(model: Model, run: CliRun) -> None:
    """The CLI's engine loaded the test's weights files, and nothing random."""
    assert "RANDOM WEIGHTS" not in run.out + run.err + run.logs
    for name in ("depth", "detection", "segmentation"):
        assert f"head {name}: weights from {model.weights_dir / f'head_{name}' / 'model.pth'}" in run.logs
    assert f"weights from {model.backbone}" in run.logs


def camera_frames(count: int, *, shape=(48, 64), encodings=("rgb8",), seed=0, offset_ns=0) -> list[InputFrame]:
    """Raw frames 100 ms apart (header), each logged 30 ms + a few ns later than stamped, with its own frame id."""
    frames = []
    for i in range(count):
        stamp = T0 + offset_ns + i * 100_000_000 + 1_234 + i
        frames.append(raw_frame(RAW, random_rgb(*shape, seed=seed + i), encodings[i % len(encodings)],
                                stamp, stamp + 30_000_000 + 7 * i, f"cam_{i}"))
    return frames


def png_frames(count: int) -> list[InputFrame]:
    """CompressedImage frames stamped between the raw ones, in both format spellings image_transport uses."""
    frames = []
    for i in range(count):
        stamp = T0 + i * 100_000_000 + 50_000_000 + 99 * i
        fmt = "png" if i % 2 else "rgb8; png compressed bgr8"
        frames.append(png_frame(PNG, random_rgb(48, 64, seed=100 + i), fmt, stamp, stamp + 20_000_000 + i,
                                f"png_{i}"))
    return frames


# ---- one input bag, processed once per image topic, per storage ----------------------------------


@pytest.fixture(scope="module", params=FORMATS)
def processed(request, model, tmp_path_factory):
    """A bag with two image topics and a string topic, and `dinov3 bag` run on each image topic."""
    storage = request.param
    root = tmp_path_factory.mktemp(f"bag_{storage}")
    frames = {RAW: camera_frames(3, encodings=("rgb8", "bgr8", "mono8")), PNG: png_frames(3)}
    chatter = M.new("std_msgs/msg/String", data="not an image")
    source = write_bag(root / "input", storage, frames[RAW] + frames[PNG],
                       extra=[(CHATTER, "std_msgs/msg/String", T0 + 10, chatter)])
    outputs, runs = {}, {}
    for topic in (RAW, PNG):
        outputs[topic] = root / f"out_{topic.rsplit('/', 1)[-1]}"
        runs[topic] = run_cli(model, ["bag", str(source), "--out", str(outputs[topic]), "--topic", topic,
                                      "--storage", storage, "--quiet", *engine_options(model)])
    return dict(storage=storage, source=source, frames=frames, outputs=outputs, runs=runs)


def reference(model: Model, frame: InputFrame, msg) -> tuple[np.ndarray, FrameResult]:
    """The decoded frame (checked against the picture it was made from) and the model's results on it."""
    rgb = compressed_to_rgb(msg) if frame.msgtype == COMPRESSED else image_to_rgb(msg)
    np.testing.assert_array_equal(rgb, frame.rgb)
    return rgb, model.engine(rgb)


def check_result_messages(model: Model, frames: list[InputFrame], bag: dict, *, input_topic: str) -> None:
    """Per input frame, each result topic holds the model's results for it, with its header and log time."""
    for topic, records in bag.items():
        if topic in RESULTS or topic == input_topic:
            assert len(records) == len(frames), topic
    for i, frame in enumerate(frames):
        copied = bag[input_topic][i]
        assert copied.log_time_ns == frame.log_time_ns, f"input {i} is not recorded at its log time"
        assert copied.rawdata == frame.rawdata, f"input {i} is not copied byte for byte"
        rgb, expected = reference(model, frame, copied.msg)
        for topic in RESULTS:
            rec = bag[topic][i]
            assert rec.log_time_ns == frame.log_time_ns, topic
            assert stamp_ns(rec.msg) == frame.stamp_ns and rec.msg.header.frame_id == frame.frame_id, topic
        detections = msg_to_detections(bag["/dinov3/detection/detections"][i].msg,
                                       model.engine.heads["detection"].class_names)
        want = expected.results["detection"]
        assert len(want) > 0, "no boxes: lower THRESHOLD so the comparison means something"
        np.testing.assert_array_equal(detections.boxes, want.boxes)
        np.testing.assert_array_equal(detections.scores, want.scores)
        np.testing.assert_array_equal(detections.labels, want.labels)
        for d in bag["/dinov3/detection/detections"][i].msg.detections:
            assert stamp_ns(d) == frame.stamp_ns and d.header.frame_id == frame.frame_id
        labels = messages.raw_array(bag["/dinov3/segmentation/labels"][i].msg)
        np.testing.assert_array_equal(labels, expected.results["segmentation"].labels)
        assert labels.dtype == np.uint8 and labels.shape == rgb.shape[:2]
        depth = messages.raw_array(bag["/dinov3/depth/depth"][i].msg)
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, expected.results["depth"].depth)
        overlay = messages.raw_array(bag["/dinov3/overlay"][i].msg)
        np.testing.assert_array_equal(overlay, composite(rgb, expected.results))  # and no random-weights banner


@pytest.mark.parametrize("topic", [RAW, PNG])
def test_bag_records_the_models_results_per_frame(processed, model, topic):
    run = processed["runs"][topic]
    assert run.code == 0, run.err
    assert_ran_on(model, run)
    bag, connections = read_bag(processed["outputs"][topic])
    assert set(bag) == {topic, *RESULTS, *LABEL_INFO, *ANNOTATIONS}  # not the other image topic or /chatter
    assert connections[topic].msgtype == (IMAGE if topic == RAW else COMPRESSED)
    check_result_messages(model, processed["frames"][topic], bag, input_topic=topic)


@pytest.mark.parametrize("topic", [RAW, PNG])
def test_label_info_is_recorded_once_and_latched(processed, model, topic):
    bag, connections = read_bag(processed["outputs"][topic])
    from rosbags.interfaces import QosDurability

    first = processed["frames"][topic][0]
    for info_topic, head in LABEL_INFO.items():
        (rec,) = bag[info_topic]
        assert rec.log_time_ns == first.log_time_ns  # with the first frame, where a player starts
        assert stamp_ns(rec.msg) == first.stamp_ns and rec.msg.header.frame_id == first.frame_id
        names, threshold = msg_to_label_info(rec.msg)
        assert names == model.engine.heads[head].class_names
        assert threshold == pytest.approx(THRESHOLD if head == "detection" else 0.0, abs=1e-7)
        (qos,) = connections[info_topic].ext.offered_qos_profiles
        assert qos.durability == QosDurability.TRANSIENT_LOCAL
    for result_topic in [*RESULTS, topic]:
        (qos,) = connections[result_topic].ext.offered_qos_profiles
        assert qos.durability == QosDurability.VOLATILE, result_topic


def test_bag_metadata_is_version_8_in_the_storage_asked(processed):
    for output in processed["outputs"].values():
        info = yaml.safe_load((output / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert info["version"] == 8
        assert info["storage_identifier"] == processed["storage"]
        files = info["relative_file_paths"]
        assert files and all(f.endswith(SUFFIX[processed["storage"]]) for f in files)
        assert all((output / f).is_file() for f in files)
        assert {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}[
            "/dinov3/overlay"] == 3


# ---- choosing the topic and the output path -------------------------------------------------------


def test_several_image_topics_need_topic(processed, model, tmp_path):
    run = run_cli(model, ["bag", str(processed["source"]), "--out", str(tmp_path / "out"), *engine_options(model)])
    assert run.code == 2
    assert "--topic" in run.err and f"{RAW} (Image)" in run.err and f"{PNG} (CompressedImage)" in run.err
    assert CHATTER not in run.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("topic", [CHATTER, "/camera/missing"])
def test_topic_must_be_an_image_topic_of_the_bag(processed, model, tmp_path, topic):
    run = run_cli(model, ["bag", str(processed["source"]), "--out", str(tmp_path / "out"), "--topic", topic,
                          *engine_options(model)])
    assert run.code == 2
    assert topic in run.err and RAW in run.err and PNG in run.err
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_that_is_no_bag_is_never_replaced(processed, model, tmp_path):
    taken = tmp_path / "results"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    run = run_cli(model, ["bag", str(processed["source"]), "--out", str(taken), "--topic", RAW, "--quiet",
                          "--storage", processed["storage"], "--overwrite", *engine_options(model)])
    assert run.code == 2 and "not a bag" in run.err  # even with --overwrite
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]


# ---- interrupted runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("storage", FORMATS)
def test_interrupted_run_keeps_whole_frames_and_overwrite_redoes_it(model, tmp_path, monkeypatch, storage):
    """Ctrl-C (a KeyboardInterrupt in the model) on frame 3 of 6: a valid bag of frames 1 and 2; then a full rerun."""
    frames = camera_frames(6)
    source = write_bag(tmp_path / "input", storage, frames)  # one image topic: no --topic needed
    out = tmp_path / "out"
    argv = ["bag", str(source), "--out", str(out), "--storage", storage, "--quiet", *engine_options(model)]
    calls = []
    original = Engine.__call__

    def interrupted_on_third_frame(engine, image, **stream):
        if image.shape[:2] == frames[0].rgb.shape[:2]:  # not the warm-up frame
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
        return original(engine, image, **stream)

    with monkeypatch.context() as mp:
        mp.setattr(Engine, "__call__", interrupted_on_third_frame)
        run = run_cli(model, argv)
    assert run.code == 130, run.err
    assert len(calls) == 3
    bag, _ = read_bag(out)
    assert set(bag) == {RAW, *RESULTS, *LABEL_INFO, *ANNOTATIONS}
    for topic in [RAW, *RESULTS]:
        assert [stamp_ns(r.msg) for r in bag[topic]] == [f.stamp_ns for f in frames[:2]], topic
    assert all(len(bag[topic]) == 1 for topic in LABEL_INFO)
    check_result_messages(model, frames[:2], bag, input_topic=RAW)

    again = run_cli(model, argv)
    assert again.code == 2 and "--overwrite" in again.err
    assert len(read_bag(out)[0]["/dinov3/overlay"]) == 2  # untouched

    redone = run_cli(model, [*argv, "--overwrite"])
    assert redone.code == 0, redone.err
    bag, _ = read_bag(out)
    check_result_messages(model, frames, bag, input_topic=RAW)


def test_sigint_stops_a_bag_run_after_a_whole_frame(model, tmp_path):
    """A real Ctrl-C to a `dinov3 bag` process: exit 130 and a bag of the first n frames, each complete."""
    total = 60
    frames = camera_frames(total, shape=(24, 32))
    source = write_bag(tmp_path / "input", "mcap", frames)
    out = tmp_path / "out"
    env = {**os.environ, "DINOV3_WEIGHTS_DIR": str(model.weights_dir), "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "stdout.txt", "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dinov3_ros.cli", "bag", str(source), "--out", str(out),
             *engine_options(model, size=32)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
        )
        try:
            progress = _wait_for_progress(proc, total, done=2, seconds=120)
            proc.send_signal(signal.SIGINT)
            _, rest = proc.communicate(timeout=ceiling(120))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = (progress + rest).decode(errors="replace")
    assert proc.returncode == 130, stderr[-2000:]
    assert "SIGINT: stopping after this frame" in stderr
    assert "RANDOM WEIGHTS" not in stderr + (tmp_path / "stdout.txt").read_text()
    bag, _ = read_bag(out)
    n = len(bag[RAW])
    assert 2 <= n < total, f"{n} frames recorded"
    for topic in [RAW, *RESULTS]:
        assert [stamp_ns(r.msg) for r in bag[topic]] == [f.stamp_ns for f in frames[:n]], topic
        assert [r.log_time_ns for r in bag[topic]] == [f.log_time_ns for f in frames[:n]], topic
    assert [r.rawdata for r in bag[RAW]] == [f.rawdata for f in frames[:n]]


def _wait_for_progress(proc: subprocess.Popen, total: int, *, done: int, seconds: float) -> bytes:
    """stderr read so far, once the progress bar shows ``done`` of ``total`` frames; fails after ``seconds``."""
    seconds = ceiling(seconds)
    deadline = time.monotonic() + seconds
    fd = proc.stderr.fileno()
    seen = b""
    while True:
        counts = [int(n) for n in re.findall(rb"\|\s*(\d+)/%d \[" % total, seen)]  # tqdm's "| 2/60 [00:01<..."
        if counts and max(counts) >= done:
            return seen
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no progress to {done}/{total} within {seconds} s; stderr so far:\n{seen.decode()[-2000:]}")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.wait()
                pytest.fail(f"dinov3 bag exited ({proc.returncode}) before {done} frames:\n{seen.decode()[-2000:]}")
            seen += chunk


# ---- dinov3 run --bag -----------------------------------------------------------------------------


@pytest.mark.parametrize("storage", FORMATS)
def test_run_records_image_files_into_a_bag(model, tmp_path, storage):
    folder = tmp_path / "images"
    folder.mkdir()
    pictures = [random_rgb(48, 64, seed=200 + i) for i in range(2)]
    for i, rgb in enumerate(pictures):
        cv2.imwrite(str(folder / f"shot_{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    run = run_cli(model, ["run", str(folder), "--out", str(out), "--bag", "--rate", "4", "--storage", storage,
                          "--quiet", *engine_options(model)])
    assert run.code == 0, run.err
    assert_ran_on(model, run)
    bag, connections = read_bag(out / "bag")
    assert set(bag) == {RAW, *RESULTS, *LABEL_INFO, *ANNOTATIONS}
    assert connections[RAW].msgtype == IMAGE
    images = bag[RAW]
    assert len(images) == 2
    for rec, rgb in zip(images, pictures):
        assert rec.msg.encoding == "rgb8" and rec.msg.header.frame_id == DEFAULT_FRAME_ID
        np.testing.assert_array_equal(messages.raw_array(rec.msg), rgb)
        assert rec.log_time_ns == stamp_ns(rec.msg)
    assert stamp_ns(images[1].msg) - stamp_ns(images[0].msg) == 250_000_000
    frames = [InputFrame(RAW, IMAGE, r.log_time_ns, stamp_ns(r.msg), DEFAULT_FRAME_ID, rgb, r.rawdata)
              for r, rgb in zip(images, pictures)]
    check_result_messages(model, frames, bag, input_topic=RAW)
    info = yaml.safe_load((out / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8 and info["storage_identifier"] == storage


def test_a_frame_that_cannot_be_decoded_is_skipped_and_counted(model, tmp_path):
    frames = camera_frames(3)
    broken = M.new("sensor_msgs/msg/CompressedImage", header=messages.make_header(M, 1, 2, "cam"),
                   format="jpeg", data=np.frombuffer(b"not a jpeg", np.uint8))
    frames[1] = InputFrame(RAW, COMPRESSED, frames[1].log_time_ns, 0, "cam", frames[1].rgb,
                           bytes(M.typestore.serialize_cdr(broken, COMPRESSED)))
    source = write_bag(tmp_path / "in ä b", "mcap", [frames[0], frames[2]])  # a path with a space and non-ASCII
    other = write_bag(tmp_path / "compressed", "mcap", [frames[1]])
    run = run_cli(model, ["bag", str(source), "--out", str(tmp_path / "out ä b"), "--quiet", *engine_options(model)])
    assert run.code == 0, run.err
    bag, _ = read_bag(tmp_path / "out ä b")
    assert len(bag["/dinov3/detection/detections"]) == 2

    run = run_cli(model, ["bag", str(other), "--out", str(tmp_path / "out2"), "--quiet", *engine_options(model)])
    assert run.code == 1  # nothing could be processed
    assert "1 unreadable frame(s) skipped" in run.out and "jpeg" in run.out
    bag, _ = read_bag(tmp_path / "out2")
    assert not bag.get("/dinov3/detection/detections")  # the bag is valid, and empty of results


def test_an_image_topic_without_messages_gives_an_empty_valid_bag(model, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(tmp_path / "in", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection(RAW, IMAGE, typestore=M.typestore)
    run = run_cli(model, ["bag", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet",
                          *engine_options(model)])
    assert run.code == 1 and "0 frame(s)" in run.out
    bag, _ = read_bag(tmp_path / "out")
    assert not any(bag.get(t) for t in ("/dinov3/overlay", "/dinov3/detection/detections"))


def test_the_output_may_not_be_the_input_bag_or_inside_it(processed, model, tmp_path):
    source = processed["source"]
    before = sorted(p.name for p in source.iterdir())
    for out in (source, source / "nested", source.parent):
        run = run_cli(model, ["bag", str(source), "--out", str(out), "--topic", RAW, "--overwrite",
                              *engine_options(model)])
        assert run.code == 2 and "would overwrite or nest with the input bag" in run.err
    assert sorted(p.name for p in source.iterdir()) == before


def test_a_file_that_is_no_bag_is_a_clear_error(model, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    run = run_cli(model, ["bag", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o"), *engine_options(model)])
    assert run.code == 2 and "is not a rosbag2 folder or .mcap/.db3 file" in run.err


def test_a_bag_left_without_metadata_by_a_hard_kill_can_be_overwritten(model, tmp_path):
    source = write_bag(tmp_path / "in", "mcap", camera_frames(1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "out_0.mcap").write_bytes(b"\x89MCAP0\r\n")  # a writer killed before it wrote metadata.yaml
    run = run_cli(model, ["bag", str(source), "--out", str(out), "--quiet", *engine_options(model)])
    assert run.code == 2 and "pass --overwrite" in run.err
    run = run_cli(model, ["bag", str(source), "--out", str(out), "--quiet", "--overwrite", *engine_options(model)])
    assert run.code == 0
    assert len(read_bag(out)[0]["/dinov3/overlay"]) == 1


# ---- bags dinov3 wrote: picking the camera topic, the random-weights flag ---------------------------


def test_the_camera_topic_is_picked_beside_the_image_topics_dinov3_writes():
    from dinov3_ros.bag import BagError, pick_image_topic

    ours = {"/dinov3/overlay": IMAGE, "/dinov3/detection/overlay": IMAGE, "/dinov3/depth/depth": IMAGE,
            "/dinov3/segmentation/labels": IMAGE}
    where = Path("x")
    assert pick_image_topic({RAW: IMAGE, **ours}, None, where) == RAW
    moved = {"/robot/overlay": IMAGE, "/robot/seg/labels": IMAGE, "/robot/flow/flow": IMAGE, "/robot/raw": IMAGE}
    assert pick_image_topic({PNG: COMPRESSED, **moved}, None, where, namespaces=["/dinov3", "/robot"]) == PNG
    # Another namespace, not named: topics named like result images are still skipped, and so the camera is ambiguous
    with pytest.raises(BagError, match=r"several camera image topics; choose one with --topic \(camera topics: "
                       r"/camera/image_raw/compressed \(CompressedImage\), /robot/raw \(Image\); skipped as "
                       r"dinov3 outputs: /robot/flow/flow \(Image\), /robot/overlay \(Image\), "
                       r"/robot/seg/labels \(Image\)\)"):
        pick_image_topic({PNG: COMPRESSED, **moved}, None, where)
    with pytest.raises(BagError, match=r"has no camera image topic; .*camera topics: none; skipped as dinov3 outputs"):
        pick_image_topic(ours, None, where)
    with pytest.raises(BagError, match="has no Image or CompressedImage topic; a camera topic is needed"):
        pick_image_topic({}, None, where)
    assert pick_image_topic(ours, "/dinov3/overlay", where) == "/dinov3/overlay"  # asked for by name: taken
    assert pick_image_topic({RAW: IMAGE, **ours}, None, where, namespaces=["/dinov3", "/"]) == RAW  # / holds all
    # A lone camera named like a result image is still the camera; beside another camera, it is skipped.
    assert pick_image_topic({"/camera/depth": IMAGE, **ours}, None, where) == "/camera/depth"
    assert pick_image_topic({"/camera/depth": IMAGE, RAW: IMAGE}, None, where) == RAW


def test_a_bag_dinov3_wrote_goes_through_again_without_topic(processed, model, tmp_path):
    written = processed["outputs"][RAW]  # the camera topic beside every /dinov3 image topic
    run = run_cli(model, ["bag", str(written), "--out", str(tmp_path / "again"), "--quiet",
                          "--storage", processed["storage"], *engine_options(model)])
    assert run.code == 0, run.err
    assert f"3 frame(s) of {RAW} (sensor_msgs/msg/Image)" in run.out
    bag, _ = read_bag(tmp_path / "again")
    check_result_messages(model, processed["frames"][RAW], bag, input_topic=RAW)


def custom_data(bag: Path) -> dict:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]


def test_the_metadata_says_what_ran_on_random_weights(processed, model, tmp_path):
    for output in processed["outputs"].values():  # the test's weights files: nothing random
        assert custom_data(output) == {"dinov3.random_weights": ""}
    from dinov3_ros.bag import BagOutput

    frame = camera_frames(1)[0]
    item = SourceFrame(0, "f", "x", frame.stamp_ns, frame.rgb)
    with BagOutput(tmp_path / "random", model.engine.heads, storage=processed["storage"],
                   random_weights=model.engine.random_weights) as output:
        output.write(item, model.engine(frame.rgb), None)
    assert custom_data(tmp_path / "random") == {"dinov3.random_weights": "backbone,depth,detection,segmentation"}
    bag, _ = read_bag(tmp_path / "random")
    assert len(bag[RAW]) == 1  # and the bag holds the frame
