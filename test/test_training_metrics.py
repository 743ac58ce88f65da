"""The evaluation meters: metric values against hand-computed ones, merging, plots and the terminal table."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest

from dinov3_toolkit.errors import ConfigError, MissingExtra
from dinov3_toolkit.heads.training import BoxTargets, DepthTargets, FlowTargets, LabelTargets
from dinov3_toolkit.results import DepthMap, Detections, FlowField, SemanticLabels
from dinov3_toolkit.training.evaluate import PRIMARY, format_table, make_meter

needs_coco = pytest.mark.skipif(importlib.util.find_spec("pycocotools") is None, reason="COCOeval scores boxes")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib plots")

NAMES = ("cat", "dog", "bird")
A, B = [0, 0, 10, 10], [20, 20, 40, 30]


def boxes(*pairs, names=NAMES):
    """Detections from (box, label, score) triples, sorted by score like a head's."""
    pairs = sorted(pairs, key=lambda p: -p[2])
    return Detections(np.array([p[0] for p in pairs], np.float32).reshape(-1, 4),
                      np.array([p[2] for p in pairs], np.float32), np.array([p[1] for p in pairs], np.int64), names)


def truth(*pairs):
    """BoxTargets from (box, label) pairs."""
    return BoxTargets(np.array([p[0] for p in pairs], np.float32).reshape(-1, 4),
                      np.array([p[1] for p in pairs], np.int64))


def detection(*images):
    meter = make_meter("detection", NAMES)
    for result, target in images:
        meter.update(result, target)
    return meter.compute()


@needs_coco
def test_perfect_boxes_score_one_and_empty_images_change_nothing():
    m = detection((boxes((A, 0, 0.9), (B, 1, 0.8)), truth((A, 0), (B, 1))),
                  (boxes(), truth()),  # nothing there, nothing found
                  (boxes((B, 0, 0.7)), truth((B, 0))))
    assert (m["map"], m["map50"]) == pytest.approx((1.0, 1.0))  # COCOeval's precision is tp / (n + eps)
    for name in ("cat", "dog"):
        assert m["per_class"][name] == pytest.approx({"ap": 1.0, "ap50": 1.0})
    assert m["per_class"]["bird"] == {"ap": None, "ap50": None}  # no bird anywhere: no AP, not 0
    assert (m["images"], m["objects"], m["detections"], m["primary"]) == (3, 3, 3, "map")


@needs_coco
def test_a_box_at_iou_two_thirds_counts_at_half_but_not_at_the_strict_thresholds():
    m = detection((boxes(([2, 0, 12, 10], 0, 0.9)), truth((A, 0))))  # IoU 80 / 120
    assert m["map50"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(0.4)  # a hit at IoU 0.5, 0.55, 0.6, 0.65 of the ten thresholds


@needs_coco
def test_a_wrong_class_scores_zero_for_the_true_class():
    m = detection((boxes((A, 1, 0.9), (B, 2, 0.8)), truth((A, 0), (B, 2))))
    assert m["per_class"]["cat"] == {"ap": 0.0, "ap50": 0.0}
    assert m["per_class"]["dog"] == {"ap": None, "ap50": None}  # only a false positive: no object, no AP
    assert m["per_class"]["bird"] == pytest.approx({"ap": 1.0, "ap50": 1.0})
    assert m["map"] == pytest.approx(0.5)


@needs_coco
def test_no_detections_score_zero_and_no_objects_score_nothing():
    m = detection((boxes(), truth((A, 0))), (boxes(), truth((B, 1))))
    assert (m["map"], m["map50"], m["per_class"]["cat"]["ap"]) == (0.0, 0.0, 0.0)
    m = detection((boxes((A, 0, 0.5)), truth()))
    assert (m["map"], m["map50"]) == (None, None)


@needs_coco
def test_a_false_positive_costs_what_the_101_point_interpolated_precision_says():
    two_objects = truth((A, 0), (B, 0))
    elsewhere = [50, 50, 60, 60]
    # Ranked last, a false positive costs nothing.
    assert detection((boxes((A, 0, 0.9), (B, 0, 0.8), (elsewhere, 0, 0.1)), two_objects))["map"] == pytest.approx(1.0)
    # Ranked between the hits: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. Interpolated, precision is
    # 1 for the recall points 0.00..0.50 (51 of them) and 2/3 for 0.51..1.00 (50).
    m = detection((boxes((A, 0, 0.9), (elsewhere, 0, 0.6), (B, 0, 0.3)), two_objects))
    assert m["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert m["map"] == pytest.approx(m["map50"])  # exact boxes: the same at every IoU threshold


@needs_coco
def test_merged_meters_equal_one_meter_that_saw_everything():
    rng = np.random.default_rng(0)
    images = []
    for _ in range(8):
        corners = rng.uniform(0, 80, (4, 2))
        gt = [(list(c) + list(c + rng.uniform(5, 30, 2)), int(rng.integers(3))) for c in corners]
        found = [(list(np.add(b, rng.normal(0, 2, 4))), label if rng.random() < 0.8 else (label + 1) % 3,
                  float(rng.random())) for b, label in gt[: int(rng.integers(5))]]
        images.append((boxes(*found), truth(*gt)))
    whole, first, second = (make_meter("detection", NAMES) for _ in range(3))
    for i, (result, target) in enumerate(images):
        whole.update(result, target)
        (first if i < 5 else second).update(result, target)
    first.compute()  # a cached evaluation must not survive the merge
    first.merge(pickle.loads(pickle.dumps(second)))  # as all_gather_object sends it
    assert first.compute() == whole.compute()
    assert 0 < whole.compute()["map"] < 1


@needs_coco
def test_detection_inputs_are_checked():
    meter = make_meter("detection", NAMES)
    with pytest.raises(ValueError, match="ground truth has class indices 5..5, expected 0..2"):
        meter.update(boxes(), truth((A, 5)))
    with pytest.raises(TypeError, match="expected a Detections result and BoxTargets"):
        meter.update(boxes(), LabelTargets(np.zeros((2, 2), np.int64)))
    with pytest.raises(ValueError, match="cannot merge a DetectionMeter with {'class_names': \\('cat', 'dog'\\)}"):
        meter.merge(make_meter("detection", NAMES[:2]))
    with pytest.raises(ValueError, match="cannot merge a DepthMeter into a DetectionMeter"):
        meter.merge(make_meter("depth", ()))


def test_missing_pycocotools_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(MissingExtra, match="pycocotools: pip install pycocotools"):
        make_meter("detection", NAMES)  # before any work, not when the first epoch's metric is due


SEG_NAMES = ("road", "car", "sky", "tree")
TRUE = np.array([[0, 0, 1, 1],
                 [0, 0, 1, 1],
                 [2, 2, 2, 2],
                 [2, 2, 2, 2]])
PREDICTED = np.array([[0, 1, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 2, 0],
                      [2, 2, 2, 2]], np.uint8)


def segmentation(*images):
    meter = make_meter("segmentation", SEG_NAMES)
    for predicted, target in images:
        meter.update(SemanticLabels(predicted, SEG_NAMES), target)
    return meter


def test_segmentation_iou_by_hand():
    m = segmentation((PREDICTED, LabelTargets(TRUE))).compute()
    # road: 3 hits, 4 true + 4 predicted -> 3/5; car: 4/(4+5-4); sky: 7/(8+7-7); tree: nowhere, no IoU.
    assert [m["per_class"][n]["iou"] for n in SEG_NAMES] == pytest.approx([3 / 5, 4 / 5, 7 / 8, None])
    assert m["miou"] == pytest.approx((3 / 5 + 4 / 5 + 7 / 8) / 3)  # tree is left out, not counted as 0
    assert m["pixel_accuracy"] == 14 / 16
    assert [m["per_class"][n]["pixels"] for n in SEG_NAMES] == [4, 4, 8, 0]
    assert (m["primary"], m["images"], m["pixels"]) == ("miou", 1, 16)


def test_ignored_pixels_are_not_counted_and_a_class_only_predicted_counts_as_zero():
    true = TRUE.copy()
    true[0, 1] = 255  # the pixel that road lost to car
    m = segmentation((PREDICTED, LabelTargets(true, ignore=255))).compute()
    assert [m["per_class"][n]["iou"] for n in SEG_NAMES] == pytest.approx([3 / 4, 1.0, 7 / 8, None])
    assert m["pixel_accuracy"] == 14 / 15
    predicted = PREDICTED.copy()
    predicted[3, 3] = 3  # a tree where there is only sky
    m = segmentation((predicted, LabelTargets(TRUE))).compute()
    assert m["per_class"]["tree"]["iou"] == 0.0
    assert m["miou"] == pytest.approx((3 / 5 + 4 / 5 + 6 / 8 + 0) / 4)


def test_segmentation_merge_and_checks():
    whole = segmentation((PREDICTED, LabelTargets(TRUE)), (PREDICTED.T.copy(), LabelTargets(TRUE)))
    first = segmentation((PREDICTED, LabelTargets(TRUE)))
    second = segmentation((PREDICTED.T.copy(), LabelTargets(TRUE)))
    first.merge(pickle.loads(pickle.dumps(second)))
    assert first.compute() == whole.compute()
    with pytest.raises(ValueError, match=r"\(4, 4\) but its ground truth is \(4, 5\)"):
        whole.update(SemanticLabels(PREDICTED, SEG_NAMES), LabelTargets(np.zeros((4, 5), np.int64)))
    with pytest.raises(ValueError, match="ground truth has class indices 5..7, expected 0..3"):
        whole.update(SemanticLabels(PREDICTED, SEG_NAMES), LabelTargets(TRUE + 5))


DEPTH = np.array([[1.0, 2.0], [4.0, 8.0]], np.float32)


def depth(*images, relative=False):
    meter = make_meter("depth", (), relative_depth=relative)
    for predicted, true in images:
        meter.update(DepthMap(np.asarray(predicted, np.float32)), DepthTargets(np.asarray(true, np.float32)))
    return meter


def test_depth_perfect_and_doubled():
    m = depth((DEPTH, DEPTH)).compute()
    assert (m["absrel"], m["rmse"], m["delta1"], m["median_scaling"]) == (0.0, 0.0, 1.0, False)
    m = depth((DEPTH * 2, DEPTH)).compute()
    assert (m["absrel"], m["delta1"]) == (1.0, 0.0)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(DEPTH.astype(np.float64) ** 2)))
    m = depth((DEPTH * 2, DEPTH), relative=True).compute()
    assert (m["absrel"], m["rmse"], m["delta1"], m["median_scaling"]) == (0.0, 0.0, 1.0, True)


def test_depth_skips_invalid_pixels_and_images_and_averages_per_image():
    true = np.array([[1.0, 0.0], [np.nan, np.inf]], np.float32)  # one measured pixel
    m = depth(([[1.0, 99.0], [-5.0, 0.0]], true), (DEPTH, np.zeros((2, 2))),
              (np.ones((3, 3)) * 2, np.ones((3, 3)))).compute()
    assert (m["images"], m["images_without_depth"]) == (2, 1)
    assert (m["absrel"], m["delta1"], m["rmse"]) == (0.5, 0.5, 0.5)  # (0 + 1) / 2 per image, not per pixel
    assert depth((np.zeros((2, 2)), DEPTH)).compute()["delta1"] == 0.0  # zero depth is never within x1.25
    empty = depth((DEPTH, np.zeros((2, 2)))).compute()
    assert (empty["absrel"], empty["images_without_depth"]) == (None, 1)


def test_depth_merge_and_checks():
    pairs = [(DEPTH * 1.1, DEPTH), (DEPTH, DEPTH * 3), (DEPTH.T.copy(), DEPTH)]
    first, second = depth(*pairs[:2]), depth(*pairs[2:])
    first.merge(pickle.loads(pickle.dumps(second)))
    whole = depth(*pairs)
    assert first.compute() == pytest.approx(whole.compute())
    assert (first.histogram == whole.histogram).all()
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(depth(relative=True))
    with pytest.raises(ValueError, match="1 non-finite"):
        depth(([[1, 2], [3, np.nan]], DEPTH))
    with pytest.raises(ValueError, match=r"\(2, 2\) but its ground truth is \(2, 3\)"):
        depth((DEPTH, np.ones((2, 3))))


def test_make_meter_rejects_what_it_cannot_measure():
    assert set(PRIMARY) == {"detection", "segmentation", "depth", "flow"}
    with pytest.raises(ConfigError, match="no metrics for task 'pose'"):
        make_meter("pose", NAMES)
    with pytest.raises(ConfigError, match="depth task only"):
        make_meter("segmentation", NAMES, relative_depth=True)


@needs_matplotlib
@pytest.mark.parametrize("task", ["detection", "segmentation", "depth", "flow"])
def test_plots_are_png_files_and_empty_meters_draw_nothing(task, tmp_path):
    if task == "detection" and importlib.util.find_spec("pycocotools") is None:
        pytest.skip("COCOeval scores boxes")
    meter = make_meter(task, NAMES if task == "detection" else SEG_NAMES)
    assert meter.plot(tmp_path / "empty") == []
    if task == "detection":
        meter.update(boxes((A, 0, 0.9), (B, 1, 0.4), ([1, 1, 9, 9], 1, 0.6)), truth((A, 0), (B, 1)))
    elif task == "segmentation":
        meter.update(SemanticLabels(PREDICTED, SEG_NAMES), LabelTargets(TRUE))
    elif task == "flow":
        meter.update(FlowField(np.ones((4, 4, 2), np.float32)), FlowTargets(np.zeros((4, 4, 2), np.float32)))
    else:
        meter.update(DepthMap(DEPTH * 1.1), DepthTargets(DEPTH))
    paths = meter.plot(tmp_path / "plots")
    assert len(paths) == 1
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 1000


@needs_coco
def test_format_table_shows_headline_metrics_and_classes():
    table = format_table(detection((boxes((A, 0, 0.9)), truth((A, 0), (B, 1)))))
    for word in ("map", "map50", "images", "cat", "dog", "bird", "ap50", "1.0000", "0.0000"):
        assert word in table
    table = format_table(segmentation((PREDICTED, LabelTargets(TRUE))).compute())
    for word in ("miou", "pixel_accuracy", "road", "tree", "0.7583", "iou", "pixels"):
        assert word in table
    assert "absrel" in format_table(depth((DEPTH, DEPTH)).compute())


def test_flow_end_point_error_over_known_pixels_per_image_then_averaged():
    truth_flow = np.zeros((2, 2, 2), np.float32)
    truth_flow[0, 0] = np.nan  # unknown: not counted
    predicted = np.zeros((2, 2, 2), np.float32)
    predicted[1, 1] = (3.0, 4.0)  # 5 px off; the other two known pixels are exact
    meter = make_meter("flow", ())
    meter.update(FlowField(predicted), FlowTargets(truth_flow))
    meter.update(FlowField(np.full((2, 2, 2), 0.5, np.float32)), FlowTargets(np.zeros((2, 2, 2), np.float32)))
    meter.update(FlowField(None, "first frame"), FlowTargets(truth_flow))  # no prediction: counted apart
    metrics = meter.compute()
    assert metrics["epe"] == pytest.approx((5 / 3 + 0.5**0.5) / 2)
    assert metrics["px1"] == pytest.approx((2 / 3 + 1) / 2) and metrics["px5"] == pytest.approx((2 / 3 + 1) / 2)
    assert (metrics["images"], metrics["images_without_flow"], metrics["primary"]) == (2, 1, "epe")
    other = make_meter("flow", ())
    other.merge(meter)
    assert other.compute() == metrics
    with pytest.raises(ValueError, match=r"predicted flow is \(2, 2, 2\) but its ground truth is \(3, 3, 2\)"):
        meter.update(FlowField(predicted), FlowTargets(np.zeros((3, 3, 2), np.float32)))
