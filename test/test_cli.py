"""The `dinov3` command line, run in-process: demo, run (images, video), heads, check, backbones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from conftest import search_weights_only_in
from doc_pages import section
from dinov3_ros.cli import build_parser, main, sample_images
from dinov3_toolkit.backbone import save_backbone
from dinov3_toolkit.checkpoint import save_state_dict
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.offline.records import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "vits16", "--device", "cpu", "--size", "32"]
# weights_dir's head files come from a vits16 engine, but the built-in manifests say vits16plus.
WITH_WEIGHTS = [*TINY, "--allow-backbone-mismatch"]
BANNER_RED = (200, 0, 0)  # drawing.add_banner's strip colour (RGB)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """Every weights file present: the backbone and the three heads, saved from a random engine."""
    folder = tmp_path / "weights"
    engine = Engine.create(backbone="vits16", device="cpu", size=32, random_weights=True, warmup=False)
    save_backbone(engine.extractor.backbone, folder / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    for name, head in engine.heads.items():
        save_state_dict(head.model.state_dict(), folder / f"head_{name}" / "model.pth")
    search_weights_only_in(monkeypatch, folder)
    return folder


def records(folder: Path) -> list[dict]:
    """frames.jsonl, each line checked against the published schema."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    lines = (folder / "frames.jsonl").read_text().splitlines()
    for line in lines:
        validator.validate(json.loads(line))
    return [json.loads(line) for line in lines]


def has_banner(image_bgr: np.ndarray) -> bool:
    """The red random-weights strip across the top of an overlay (jpeg-tolerant)."""
    strip = image_bgr[1:4, :, ::-1].reshape(-1, 3).astype(int)
    return bool((np.abs(strip - BANNER_RED).max(axis=1) < 40).mean() > 0.5)


def test_samples_are_bundled():
    names = [p.name for p in sample_images()]
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]


def test_demo_writes_overlays_json_and_an_mcap_bag_and_says_the_weights_are_random(tmp_path, capsys, no_weights):
    out = tmp_path / "demo"
    assert main(["demo", *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "RANDOM WEIGHTS (backbone, depth, detection, segmentation)" in text
    # chelsea.jpg is 451x300 -> stretched to 32x32
    assert re.search(r"chelsea\s+451x300\s+32x32\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+depth: depth .*; detection: \d+ boxes"
                     r".*; segmentation: \d+ class(es)?", text)
    assert "ros2 bag play" in text and "rviz2 -d" in text and "Foxglove" in text

    stems = ["astronaut", "chelsea", "coffee", "rocket"]
    assert sorted(p.stem for p in (out / "overlays").iterdir()) == stems
    overlay = cv2.imread(str(out / "overlays" / "chelsea.jpg"))
    # the photo with labels and boxes, and the depth panel; the banner adds rows above
    assert overlay.shape[1:] == (451 * 2, 3) and overlay.shape[0] > 300
    assert has_banner(overlay)
    assert [r["name"] for r in records(out)] == stems
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"{s}_segmentation.png" for s in stems]

    (mcap,) = (out / "bag").glob("*.mcap")
    with AnyReader([out / "bag"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/camera/image_raw"] == 4 and counts["/dinov3/overlay"] == 4
    assert counts["/dinov3/detection/detections"] == counts["/dinov3/segmentation/labels"] == 4
    assert counts["/dinov3/detection/label_info"] == 1

    # A second demo replaces the first one's outputs instead of failing on the existing bag.
    assert main(["demo", *TINY, "--heads", "depth", "--out", str(out), str(sample_images()[1])]) == 0
    assert [r["name"] for r in records(out)] == ["chelsea"]
    assert [p.name for p in (out / "overlays").iterdir()] == ["chelsea.jpg"]
    assert not (out / "labels").exists()


def test_demo_uses_weights_when_present_and_then_says_nothing_about_random_ones(tmp_path, capsys, weights_dir):
    out = tmp_path / "demo"
    assert main(["demo", *WITH_WEIGHTS, "--out", str(out), str(sample_images()[1])]) == 0
    text = capsys.readouterr().out
    assert "RANDOM" not in text
    assert not has_banner(cv2.imread(str(out / "overlays" / "chelsea.jpg")))


def test_run_on_a_folder_writes_records_labels_depth_and_overlays(tmp_path, capsys, weights_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"a": (40, 56), "b": (24, 24), "c": (33, 70)}
    for stem, (h, w) in sizes.items():
        cv2.imwrite(str(folder / f"{stem}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image, not even tried")
    out = tmp_path / "out"

    code = main(["run", str(folder), *WITH_WEIGHTS, "--out", str(out), "--param", "detection.score_threshold=0.01"])
    captured = capsys.readouterr()
    assert code == 1  # one unreadable image: partial success
    assert "1 unreadable frame(s) skipped" in captured.out and "broken.jpg" in captured.out
    assert "3 frame(s)" in captured.out and "RANDOM" not in captured.out

    found = records(out)
    assert [r["name"] for r in found] == ["a", "b", "c"]
    assert [r["frame"] for r in found] == [0, 1, 3]  # source indices: broken.jpg (sorted after b) was frame 2
    for record in found:
        h, w = sizes[record["name"]]
        assert (record["height"], record["width"]) == (h, w)
        assert cv2.imread(str(out / record["overlay"]["file"])).shape == (h, 2 * w, 3)
        labels = cv2.imread(str(out / record["heads"]["segmentation"]["file"]), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (h, w) and labels.dtype == np.uint8
        counts = np.bincount(labels.ravel(), minlength=134)
        assert {c["label"]: c["pixels"] for c in record["heads"]["segmentation"]["classes"]} == {
            i: int(n) for i, n in enumerate(counts) if n
        }
        depth = np.load(out / record["heads"]["depth"]["file"])
        assert depth.shape == (h, w) and depth.dtype == np.float32
        assert record["heads"]["depth"]["min"] == pytest.approx(float(depth.min()))
        for det in record["heads"]["detection"]["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and det["score"] >= 0.01
    assert any(r["heads"]["detection"]["detections"] for r in found)
    assert not (out / "bag").exists()  # only with --bag


def test_run_on_a_video_writes_an_overlay_video_and_a_record_per_frame(tmp_path, capsys, weights_dir):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    out = tmp_path / "out"

    assert main(["run", str(video), *WITH_WEIGHTS, "--out", str(out), "--heads", "segmentation", "detection"]) == 0
    found = records(out)
    assert [r["name"] for r in found] == [f"clip_{i:06d}" for i in range(5)]
    assert [r["overlay"] for r in found] == [{"file": "overlay.mp4", "frame": i} for i in range(5)]
    stamps = [r["stamp"]["sec"] * 10**9 + r["stamp"]["nanosec"] for r in found]
    assert np.allclose(np.diff(stamps), 0.2e9, atol=1e6)  # the video's own 5 frames/s
    assert sorted(found[0]["heads"]) == ["detection", "segmentation"]
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    ok, first = capture.read()
    assert ok and first.shape == (48, 64, 3)  # no panel without depth
    capture.release()


def test_run_refuses_to_use_random_weights_unless_asked(tmp_path, capsys, no_weights):
    image = sample_images()[1]
    assert main(["run", str(image), *TINY, "--out", str(tmp_path / "a")]) == 2
    assert "no weights for backbone vits16" in capsys.readouterr().err
    assert main(["run", str(image), *TINY, "--out", str(tmp_path / "b"), "--random-weights", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in text
    assert has_banner(cv2.imread(str(tmp_path / "b" / "overlays" / "chelsea.jpg")))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no/such/file.png"], "no/such/file.png is no file, folder, glob or camera index"),
        (["run", "nothing_*.png"], "no files match nothing_*.png"),
        (["run", "SAMPLE", "--random-weights", "--heads", "nope"], "unknown head(s) ['nope']"),
        (["run", "SAMPLE", "--random-weights", "--device", "gpu"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        (["bag", "no_bag_here", "--out", "x"], "bag no_bag_here does not exist"),
        (["run", "SAMPLE", "--random-weights", "--out", "a_file"], "cannot write the run's outputs into a_file"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, tmp_path, capsys, monkeypatch, no_weights):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").touch()
    argv = [str(sample_images()[0]) if a == "SAMPLE" else a for a in argv]
    device = [] if "--device" in argv else ["--device", "cpu"]
    assert main([*argv, "--backbone", "vits16", "--size", "32", *device]) == 2
    assert message in capsys.readouterr().err


def test_a_head_that_cannot_load_is_reported_and_the_others_still_run(tmp_path, capsys, no_weights):
    image = str(sample_images()[1])
    code = main(["run", image, *TINY, "--random-weights", "--out", str(tmp_path), "--param",
                 "detection.score_threshold=2"])
    text = capsys.readouterr().out
    assert code == 1  # partial: not every head ran
    assert "head detection is skipped" in text and "score_threshold must be in [0.0, 1.0], got 2.0" in text
    assert sorted(records(tmp_path)[0]["heads"]) == ["depth", "segmentation"]


def test_a_taken_output_bag_is_reported_before_any_model_loads(tmp_path, capsys, no_weights):
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "notes.txt").write_text("mine")
    # No weights and no --random-weights: the engine would fail, so the path check came first.
    assert main(["run", str(sample_images()[0]), "--bag", "--out", str(tmp_path), "--overwrite", *TINY]) == 2
    assert "bag exists; it is not a bag, so choose another path" in capsys.readouterr().err
    assert (tmp_path / "bag" / "notes.txt").read_text() == "mine"


def test_an_earlier_run_is_replaced_only_with_overwrite(tmp_path, capsys, no_weights):
    images = [str(p) for p in sample_images()[:2]]
    out = tmp_path / "out"
    assert main(["run", images[0], *TINY, "--random-weights", "--quiet", "--out", str(out)]) == 0
    (out / "mine.txt").write_text("kept")
    # Refused before any model loads, whatever else is wrong (here: no weights, no --random-weights).
    assert main(["run", images[1], *TINY, "--out", str(out)]) == 2
    assert "holds an earlier run (frames.jsonl); pass --overwrite" in capsys.readouterr().err
    assert main(["run", images[1], *TINY, "--random-weights", "--quiet", "--out", str(out), "--overwrite"]) == 0
    assert [r["name"] for r in records(out)] == ["chelsea"]
    assert [p.name for p in (out / "overlays").iterdir()] == ["chelsea.jpg"]  # astronaut's files are gone
    assert (out / "mine.txt").read_text() == "kept"  # only what a run writes is removed


def test_no_head_that_can_run_is_an_error(tmp_path, capsys, no_weights):
    code = main(["run", str(sample_images()[0]), *TINY, "--random-weights", "--heads", "detection",
                 "--param", "detection.max_detections=0", "--out", str(tmp_path)])
    assert code == 2
    assert "no head can run:\n  head 'detection'" in capsys.readouterr().err
    assert not (tmp_path / "frames.jsonl").exists()


@pytest.mark.parametrize("heads", [["detection", "depth"], ["detection,depth"], ["detection,", "depth"],
                                   ["detection", ",depth"]])
def test_heads_are_taken_with_spaces_commas_or_both(heads):
    """--heads a b, --heads a,b and --heads a, b (the node's heads:=a,b and [a,b] are read alike)."""
    for command in (["run", "x.png"], ["soak"]):
        assert build_parser().parse_args([*command, "--heads", *heads]).heads == ["detection", "depth"]


def test_heads_that_are_no_head_names_are_refused_with_the_right_form(capsys):
    with pytest.raises(SystemExit):
        main(["run", "x.png", "--heads", "detection;depth"])
    assert "--heads: heads must be head names separated by commas or spaces, e.g. detection,depth" in \
        capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU fallback's warning")
def test_the_default_device_says_nothing_and_an_explicit_cuda_warns_once(tmp_path, caplog, no_weights):
    """auto (the default) is the CPU here without a word; --device cuda was asked for, so its fallback is said."""
    run = ["run", str(sample_images()[0]), "--backbone", "vits16", "--size", "32", "--heads", "depth",
           "--random-weights", "--quiet"]
    assert main([*run, "--out", str(tmp_path / "a")]) == 0
    assert "CUDA is not available" not in caplog.text
    assert main([*run, "--out", str(tmp_path / "b"), "--device", "cuda"]) == 0
    assert caplog.text.count("device 'cuda' requested but CUDA is not available: running on the CPU") == 1


def test_help_lists_each_subcommand_once():
    text = build_parser().format_help()
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    for command in sub.choices:
        assert len(re.findall(rf"^\s+{command}\b", text, re.M)) == 1, text
    assert "{run," not in text  # nor all of them in the usage line


def test_head_parameters_must_name_a_head_and_a_parameter(capsys):
    with pytest.raises(SystemExit):
        main(["run", "x.png", "--param", "score_threshold=0.4"])
    assert "HEAD.NAME=VALUE" in capsys.readouterr().err


def test_heads_lists_tasks_classes_and_where_the_weights_are(tmp_path, capsys, no_weights):
    assert main(["heads"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^detection\s+detection\s+80\s+\[-1\]\s+MISSING \(looked for .*head_detection/weights/model.pth",
                     text, re.M)
    assert re.search(r"^segmentation\s+segmentation\s+134\s", text, re.M)
    assert re.search(r"^depth\s+depth\s+0\s", text, re.M)
    # The templates too (naming one runs it), marked: they run only when named and have no published weights.
    for template in ("retinanet", "ssd", "detr", "flow"):
        assert re.search(rf"^{template}\s+.*template: runs only when named, no published weights \(train it: "
                         rf"dinov3 train {template}", text, re.M), template

    extra = tmp_path / "extra"
    probe = extra / "head_linear_probe"
    probe.mkdir(parents=True)
    for file in (ROOT / "examples" / "head_linear_probe").iterdir():
        if file.is_file():
            (probe / file.name).write_bytes(file.read_bytes())
    (probe / "weights").mkdir(exist_ok=True)
    (probe / "weights" / "model.safetensors").write_bytes(b"")  # present is all `heads` checks
    assert main(["heads", "--head-dir", str(extra), "-v"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^linear_probe\s+segmentation\s+3\s+\[-1\]\s+found: .*model.safetensors", text, re.M)
    assert "classes: background, floor, obstacle" in text


def test_check_reports_versions_devices_precisions_and_weights(capsys, no_weights):
    assert main(["check"]) == 0
    text = capsys.readouterr().out
    import torch

    assert f"torch {torch.__version__}" in text
    assert re.search(r"cpu\s+.*: fp32 ok, fp16 \S+, bf16 ok", text)
    assert re.search(rf"^  {re.escape(str(no_weights))}$", text, re.M) and "backbone weights found: none" in text
    assert re.search(r"^detection\s+detection\s+80", text, re.M)


def test_backbones_lists_every_variant(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"vits16plus\.lvd1689m\s+28\.7M", out)
    assert re.search(r"vit7b16\.sat493m\s+6716\.0M", out)
    assert len(re.findall(r"^\w+\.\w+\s+[\d.]+M", out, re.M)) == 13


def test_the_docs_show_every_subcommand_with_an_example():
    commands = section("Every command")  # docs/offline.md
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    for command in sub.choices:
        assert re.search(rf"^dinov3 {command}\b", commands, re.M), f'"Every command" shows no `dinov3 {command}`'


def test_only_our_own_errors_are_usage_errors_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """A Dinov3Error is the user's to fix (exit 2, the message alone); anything else is ours and must show where."""
    from dinov3_toolkit.errors import ConfigError

    def explained(args):
        raise ConfigError("backbone 'vitx' is unknown; the backbone registry has: ...")

    def bug(args):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr("dinov3_ros.cli.command.cmd_backbones", explained)
    assert main(["backbones"]) == 2
    assert capsys.readouterr().err == "error: backbone 'vitx' is unknown; the backbone registry has: ...\n"
    monkeypatch.setattr("dinov3_ros.cli.command.cmd_backbones", bug)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["backbones"])


def test_missing_weights_name_random_weights_and_keep_where_they_were_looked_for(tmp_path, capsys, no_weights):
    image = str(sample_images()[1])
    assert main(["run", image, *TINY, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no weights for backbone vits16" in err and f"Looked in:\n  {no_weights}\n" in err
    assert "pass --random-weights" in err
    # A weights file named on the command line is what is missing: what was expected, where weights are
    # searched without it, and that random weights need it gone (they never stand in for a named file).
    assert main(["run", image, *TINY, "--weights", str(tmp_path / "mine.pth"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "mine.pth for backbone vits16.lvd1689m does not exist (a weights file, or a folder holding one" in err
    assert f"Without a path, these folders are searched:\n  {no_weights}\nfor a file named:\n" in err
    assert "Get them from the Hugging Face repo facebook/dinov3-vits16-pretrain-lvd1689m" in err
    assert "drop --weights and pass --random-weights" in err
    # The backbone's weights found, no head's: every head is skipped, and the error says how to run anyway.
    from dinov3_toolkit.backbone import create_backbone

    save_backbone(create_backbone("vits16"), no_weights / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    assert main(["run", image, *TINY, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no head can run:" in err and "weights file not found" in err and "pass --random-weights" in err


def test_backbones_explains_full_and_short_names(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^vits16plus\.lvd1689m\s+28\.7M\s+vits16plus\s+", out, re.M)
    assert re.search(r"^vitl16\.sat493m\s+303\.2M\s+not found", out, re.M)  # not what the short name picks
    assert "A name is variant.weights" in out and "lvd1689m: LVD-1689M" in out and "sat493m: SAT-493M" in out
    assert "vits16plus is vits16plus.lvd1689m" in out
