"""What ``dinov3 run`` writes: frames.jsonl valid against its schema, lossless labels and depth, overlays."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from dinov3_toolkit import result_kinds
from dinov3_toolkit.engine import FrameResult, StageTimings
from dinov3_toolkit.offline.records import OVERLAY_VIDEO, RECORDS_FILE, SCHEMA_PATH, RunOutput, frame_record
from dinov3_toolkit.result_kinds import ResultKind, SavedArray
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels
from dinov3_toolkit.offline.sources import SourceFrame

HEADS = ["detection", "segmentation", "depth"]


@pytest.fixture(scope="module")
def engine(tiny_engine):
    return tiny_engine


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def item(index: int, name: str | None = None, seed: int | None = None, h: int = 48, w: int = 64) -> SourceFrame:
    rgb = np.random.default_rng(index if seed is None else seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return SourceFrame(index, name or f"img{index}", f"/data/img{index}.png", 1_700_000_000_123_456_789 + index, rgb)


@pytest.fixture(scope="module")
def pairs(engine) -> list[tuple[SourceFrame, FrameResult]]:
    """Two small frames through the engine, computed once for the whole file (results are not changed)."""
    pairs = [(it, engine(it.rgb)) for it in (item(i) for i in range(2))]
    for _, frame in pairs:
        assert not frame.errors and sorted(frame.results) == sorted(HEADS)
        assert len(frame.results["detection"]) > 0  # the detection checks below compare real boxes
    return pairs


def read_records(folder: Path) -> list[dict]:
    text = (folder / RECORDS_FILE).read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def solid(rgb: tuple[int, int, int], h: int = 48, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), rgb, dtype=np.uint8)


def fake_frame(results: dict, h: int = 48, w: int = 64) -> FrameResult:
    timings = StageTimings(preprocess=0.001, backbone=0.002, heads={n: 0.0005 for n in results},
                           postprocess={n: 0.0001 for n in results})
    return FrameResult(results=results, errors={}, timings=timings, image_size=(h, w))


def test_the_schema_is_valid_draft_2020_12():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_output_folder_layout_and_lossless_results(pairs, validator, tmp_path):
    out = tmp_path / "run"
    with RunOutput(out, overlays="images") as output:
        assert output.wants_overlay
        for it, frame in pairs:
            output.write(it, frame, solid((255, 0, 0)))
    assert output.frames == 2 and str(out.resolve() / RECORDS_FILE) in output.describe()

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted([
        RECORDS_FILE,
        "overlays/img0.jpg", "overlays/img1.jpg",
        "labels/img0_segmentation.png", "labels/img1_segmentation.png",
        "depth/img0_depth.npy", "depth/img1_depth.npy",
    ])
    records = read_records(out)
    assert len(records) == 2
    for record, (it, frame) in zip(records, pairs):
        validator.validate(record)
        assert (record["frame"], record["name"], record["source"]) == (it.index, it.name, it.origin)
        assert record["stamp"] == {"sec": 1_700_000_000, "nanosec": 123_456_789 + it.index}
        assert (record["width"], record["height"], record["frame_id"]) == (64, 48, "camera")
        assert record["errors"] == {} and sorted(record["heads"]) == sorted(HEADS)
        assert set(record["timings_ms"]["heads"]) == set(HEADS)

        # labels: a lossless PNG holding the exact map, and the pixel counts of the classes present
        seg = frame.results["segmentation"]
        labels_rec = record["heads"]["segmentation"]
        assert labels_rec["type"] == "labels" and labels_rec["file"] == f"labels/{it.name}_segmentation.png"
        png = cv2.imread(str(out / labels_rec["file"]), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and np.array_equal(png, seg.labels)
        counts = {c["label"]: c["pixels"] for c in labels_rec["classes"]}
        values, n = np.unique(seg.labels, return_counts=True)
        assert counts == dict(zip(values.tolist(), n.tolist()))
        assert all(c["class_name"] == seg.class_names[c["label"]] for c in labels_rec["classes"])

        # depth: the float32 array itself
        depth = frame.results["depth"]
        depth_rec = record["heads"]["depth"]
        assert depth_rec["file"] == f"depth/{it.name}_depth.npy"
        saved = np.load(out / depth_rec["file"])
        assert saved.dtype == np.float32 and np.array_equal(saved, depth.depth)
        assert depth_rec["min"] == float(depth.depth.min()) and depth_rec["max"] == float(depth.depth.max())
        assert (depth_rec["unit"], depth_rec["kind"]) == (depth.unit, depth.kind) == ("", "relative")  # its head.yaml

        # detections: every box, score, label and class name, in order
        det = frame.results["detection"]
        dets = record["heads"]["detection"]["detections"]
        assert len(dets) == len(det)
        assert np.array_equal(np.array([d["box"] for d in dets], dtype=np.float32), det.boxes)
        assert np.array_equal(np.array([d["score"] for d in dets], dtype=np.float32), det.scores)
        assert [d["label"] for d in dets] == det.labels.tolist()
        assert [d["class_name"] for d in dets] == det.names()

        # overlay: a jpg of the overlay given, in RGB order (pure red stays red)
        assert record["overlay"] == {"file": f"overlays/{it.name}.jpg", "frame": None}
        jpg = cv2.imread(str(out / record["overlay"]["file"]))
        assert jpg.shape == (48, 64, 3)
        assert np.abs(jpg.reshape(-1, 3).mean(axis=0) - (0, 0, 255)).max() < 8  # BGR on disk


def test_more_than_256_classes_are_saved_as_a_16_bit_png(validator, tmp_path):
    names = tuple(f"class{i}" for i in range(300))
    labels = (np.arange(48 * 64, dtype=np.uint16) % 300).reshape(48, 64)
    labels[0, :5] = 299
    result = SemanticLabels(labels, names)
    with RunOutput(tmp_path, overlays="none") as output:
        output.write(item(0), fake_frame({"seg": result}), None)
    record = read_records(tmp_path)[0]
    validator.validate(record)
    png = cv2.imread(str(tmp_path / record["heads"]["seg"]["file"]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and np.array_equal(png, labels)
    assert len(record["heads"]["seg"]["classes"]) == 300
    assert record["heads"]["seg"]["classes"][299] == {"label": 299, "class_name": "class299",
                                                      "pixels": int(np.sum(labels == 299))}


def test_an_overlay_video_holds_one_frame_per_record(pairs, validator, tmp_path):
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    with RunOutput(tmp_path, overlays="video", fps=5) as output:
        for (it, frame), colour in zip(pairs + [pairs[0]], colours):
            output.write(it, frame, solid(colour, 48, 128))
        # a camera changing resolution mid-run: the frame is scaled to the video's size
        output.write(pairs[1][0], pairs[1][1], solid((255, 255, 255), 96, 256))
    records = read_records(tmp_path)
    assert len(records) == 4
    for i, record in enumerate(records):
        validator.validate(record)
        assert record["overlay"] == {"file": OVERLAY_VIDEO, "frame": i}
    assert not (tmp_path / "overlays").exists()

    capture = cv2.VideoCapture(str(tmp_path / OVERLAY_VIDEO))
    assert capture.isOpened()
    decoded = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        decoded.append(bgr)
    capture.release()
    assert len(decoded) == 4
    for bgr, colour in zip(decoded, colours + [(255, 255, 255)]):
        assert bgr.shape == (48, 128, 3)
        mean_rgb = bgr.reshape(-1, 3).mean(axis=0)[::-1]
        assert np.abs(mean_rgb - colour).max() < 12, (mean_rgb, colour)


def test_no_overlays_writes_none_and_records_null(pairs, validator, tmp_path):
    with RunOutput(tmp_path, overlays="none") as output:
        assert not output.wants_overlay
        output.write(*pairs[0], solid((1, 2, 3)))  # given one anyway: still not written
    record = read_records(tmp_path)[0]
    validator.validate(record)
    assert record["overlay"] is None
    assert not (tmp_path / "overlays").exists() and not (tmp_path / OVERLAY_VIDEO).exists()


def test_unknown_overlay_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="overlays must be"):
        RunOutput(tmp_path, overlays="gif")


def test_a_depth_map_without_finite_values_records_null_min_max(validator, tmp_path):
    nan = DepthMap(np.full((48, 64), np.nan, dtype=np.float32), unit="m", kind="metric")
    partly = np.full((48, 64), np.inf, dtype=np.float32)
    partly[3, 4], partly[5, 6] = -2.5, 7.25
    with RunOutput(tmp_path, overlays="none") as output:
        output.write(item(0), fake_frame({"nan": nan, "partly": DepthMap(partly)}), None)
    record = read_records(tmp_path)[0]
    validator.validate(record)  # also proves the line holds no NaN/Infinity (not JSON)
    assert record["heads"]["nan"] == {"type": "depth", "file": "depth/img0_nan.npy", "unit": "m", "kind": "metric",
                                      "min": None, "max": None}
    assert (record["heads"]["partly"]["unit"], record["heads"]["partly"]["kind"]) == ("", "relative")
    for wrong in ({"kind": "absolute"}, {"kind": None}):  # the schema knows the three kinds only
        assert not validator.is_valid({**record, "heads": {"nan": {**record["heads"]["nan"], **wrong}}}), wrong
    assert (record["heads"]["partly"]["min"], record["heads"]["partly"]["max"]) == (-2.5, 7.25)
    assert np.isnan(np.load(tmp_path / "depth/img0_nan.npy")).all()


def test_empty_detections_and_custom_results_validate(validator):
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), ("a",))
    record = frame_record(item(0), fake_frame({"det": empty, "custom": object()}), {}, None)
    validator.validate(record)
    assert record["heads"]["det"] == {"type": "detections", "detections": []}
    assert record["heads"]["custom"] == {"type": "other", "result_type": "object"}


def test_a_registered_kind_saves_its_array_and_records_the_file(validator, tmp_path, monkeypatch):
    monkeypatch.setattr(result_kinds, "BY_TYPE", dict(result_kinds.BY_TYPE))
    monkeypatch.setattr(result_kinds, "BY_TASK", dict(result_kinds.BY_TASK))

    class Heat:
        values = np.arange(12, dtype=np.float32).reshape(3, 4)

    result_kinds.register(ResultKind(Heat, "heat", saved=SavedArray("heat", ".npy", lambda r: r.values)))
    with RunOutput(tmp_path, overlays="none") as output:
        output.write(item(0), fake_frame({"warm": Heat()}), None)
    record = read_records(tmp_path)[0]
    validator.validate(record)
    assert record["heads"]["warm"] == {"type": "other", "file": "heat/img0_warm.npy", "result_type": "Heat"}
    np.testing.assert_array_equal(np.load(tmp_path / "heat/img0_warm.npy"), Heat.values)
    with RunOutput(tmp_path, overlays="none", overwrite=True):  # overwrite clears the kind's folder too
        assert not (tmp_path / "heat").exists()
    with pytest.raises(ValueError, match="'other' record"):
        result_kinds.register(ResultKind(Heat, "heat", record_type="heat"))


def test_the_schema_rejects_broken_records(validator):
    """The schema is not vacuous: missing keys, wrong types and unknown keys all fail."""
    det = Detections(np.array([[1, 2, 30, 40]], np.float32), np.array([0.5], np.float32), np.array([0]), ("a",))
    good = frame_record(item(0), fake_frame({"det": det}), {}, None)
    validator.validate(good)

    def broken(change) -> dict:
        record = copy.deepcopy(good)
        change(record)
        return record

    bad = {
        "missing stamp": broken(lambda r: r.pop("stamp")),
        "missing timings total": broken(lambda r: r["timings_ms"].pop("total")),
        "frame as text": broken(lambda r: r.update(frame="0")),
        "negative width": broken(lambda r: r.update(width=-1)),
        "nanosec too big": broken(lambda r: r["stamp"].update(nanosec=10**9)),
        "unknown key": broken(lambda r: r.update(extra=1)),
        "box with 3 numbers": broken(lambda r: r["heads"]["det"]["detections"][0].update(box=[1, 2, 3])),
        "score above 1": broken(lambda r: r["heads"]["det"]["detections"][0].update(score=1.5)),
        "unknown result type": broken(lambda r: r["heads"].update(x={"type": "mesh"})),
        "labels file not png": broken(lambda r: r["heads"].update(x={"type": "labels", "file": "a.jpg",
                                                                     "classes": []})),
        "error not text": broken(lambda r: r["errors"].update(det=3)),
        "overlay as text": broken(lambda r: r.update(overlay="a.jpg")),
    }
    for why, record in bad.items():
        assert not validator.is_valid(record), why


def test_a_stopped_run_leaves_only_complete_lines(pairs, validator, tmp_path, monkeypatch):
    """Each record is flushed once its files are written; a frame that fails to write leaves no line."""
    output = RunOutput(tmp_path, overlays="images")
    for k, (it, frame) in enumerate(pairs, start=1):
        output.write(it, frame, solid((0, 0, 0)))
        # already on disk while the file is still open (what a kill -9 would leave)
        assert (tmp_path / RECORDS_FILE).read_text().count("\n") == k

    monkeypatch.setattr(cv2, "imwrite", lambda *a, **k: False)  # e.g. a full disk on the third frame
    with pytest.raises(OSError, match="cannot write"):
        output.write(item(2, seed=0), pairs[0][1], solid((0, 0, 0)))
    output.close()

    text = (tmp_path / RECORDS_FILE).read_text()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3  # exactly two lines, each ended
    for line, (it, _) in zip(lines[:2], pairs):
        record = json.loads(line)
        validator.validate(record)
        assert record["name"] == it.name
    assert output.frames == 2


def test_every_record_names_what_ran_on_random_weights(pairs, validator, tmp_path):
    """A record read far from its run still says whether its results mean anything."""
    with RunOutput(tmp_path / "random", overlays="none", random_weights=["backbone", "depth"]) as output:
        for it, frame in pairs:
            output.write(it, frame, None)
    with RunOutput(tmp_path / "real", overlays="none") as output:
        output.write(*pairs[0], None)
    for record in read_records(tmp_path / "random") + read_records(tmp_path / "real"):
        validator.validate(record)
    assert [r["random_weights"] for r in read_records(tmp_path / "random")] == [["backbone", "depth"]] * 2
    assert read_records(tmp_path / "real")[0]["random_weights"] == []


def test_the_schema_requires_the_random_weights_list(validator):
    good = frame_record(item(0), fake_frame({}), {}, None, random_weights=["backbone"])
    validator.validate(good)
    for why, value in {"missing": None, "text": "backbone", "twice": ["depth", "depth"], "empty name": [""],
                       "not a name": [3]}.items():
        record = copy.deepcopy(good)
        if value is None:
            record.pop("random_weights")
        else:
            record["random_weights"] = value
        assert not validator.is_valid(record), why
