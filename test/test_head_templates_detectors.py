"""The RetinaNet and SSD template heads: anchors, the box coder, matching, losses, decoding, training, export.

Each detector is trained through `dinov3 train` on the synthetic set with a small
random backbone and must overfit it (mAP@0.5 >= 0.9 by `dinov3 eval`), while the
same folder with freshly initialised weights must not.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dinov3_ros.cli import main
from dinov3_toolkit.checkpoint import save_state_dict
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.heads import (MATCH_BACKGROUND, MATCH_IGNORE, BoxTargets, Detections, PreparedImage,
                                  decode_boxes, encode_boxes, load_manifest)
from dinov3_toolkit.heads.loader import TEMPLATES_DIR, discover, import_head_class
from dinov3_toolkit.templates.head_retinanet.loss import RetinaNetLoss
from dinov3_toolkit.templates.head_retinanet.model import RetinaNetHead
from dinov3_toolkit.templates.head_ssd.loss import SSDLoss, hard_negatives
from dinov3_toolkit.templates.head_ssd.model import SSDHead
from dinov3_toolkit.training.data.synthetic import make_synthetic

NAMES = ("a", "b", "c")
PARAMS = {"score_threshold": 0.5, "nms_iou_threshold": 0.45, "max_detections": 100, "class_agnostic_nms": False}
INPUT, FEATURE = (128, 128), (8, 8)  # stride 16
IGNORED_SIZE = math.sqrt(32**2 / 0.45)  # a square anchor of this side around a 32 px box overlaps it by IoU 0.45
BACKBONE = ["--backbone", "vits16", "--random-weights", "--device", "cpu"]
# Small towers and anchors that suit the synthetic shapes (24-64 px at 128 px inputs); a short, fast schedule.
RECIPE = {
    "retinanet": ["--head-arg", "channels=64", "--head-arg", "num_convs=2", "--head-arg", "anchor_sizes=[24,48]",
                  "--epochs", "25", "--lr", "3e-3"],
    "ssd": ["--head-arg", "scales=[0.25,0.4]", "--epochs", "20", "--lr", "3e-3"],
}


@pytest.fixture(autouse=True)
def one_thread():
    """Every model here is small: one thread runs it fastest, and a busy machine cannot slow it down fourfold
    (two threads contending with other processes for two cores spend most of their time waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _retinanet(**args) -> RetinaNetHead:
    return RetinaNetHead(NAMES, **{"in_channels": 8, "channels": 8, "num_convs": 1, **args})


def _prepared(original: tuple[int, int], input_size: tuple[int, int] = INPUT) -> PreparedImage:
    return PreparedImage(tensor=torch.zeros(1, 3, *input_size), original_size=original, input_size=input_size)


def _targets(boxes: list[list[float]], labels: list[int]) -> BoxTargets:
    return BoxTargets(np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64))


def _cell(row: int, col: int, anchors_per_cell: int, anchor: int = 0) -> int:
    """Index of an anchor in ``per_anchor``'s order on a grid 8 cells wide (FEATURE's)."""
    return (row * FEATURE[1] + col) * anchors_per_cell + anchor


# --- the folders ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, model, loss", [("retinanet", "RetinaNetHead", "RetinaNetLoss"),
                                               ("ssd", "SSDHead", "SSDLoss")])
def test_each_template_is_a_voc_detector_found_only_when_named(name, model, loss):
    manifest = load_manifest(TEMPLATES_DIR / f"head_{name}")
    assert (manifest.task, manifest.class_name, manifest.loss) == ("detection", model, ("loss", loss))
    assert manifest.args["in_channels"] == 384 and manifest.layers == (-1,)
    assert manifest.trained_on == {"backbone": "vits16plus", "size": 640, "resize_mode": "stretch"}
    assert set(manifest.resolve_params()) == set(PARAMS) and manifest.threshold_param == "score_threshold"
    names = manifest.read_class_names()
    assert len(names) == 20 and (names[0], names[14], names[19]) == ("aeroplane", "person", "tvmonitor")
    assert "dinov3 train" in (manifest.folder / "weights" / "README.md").read_text()
    assert name not in discover()[0] and name in discover(templates=True)[0]


# --- anchors and the box coder ----------------------------------------------------------------------------------


def test_retinanet_places_15_anchors_per_location_at_the_cell_centres():
    anchors = _retinanet().anchors((640, 640), (40, 40)).view(40, 40, 15, 4)  # recipe defaults
    centres = (anchors[..., :2] + anchors[..., 2:]) / 2  # (40, 40, 15, 2)
    cells = (torch.arange(40.0) + 0.5) * 16
    torch.testing.assert_close(centres[..., 0], cells.view(1, 40, 1).expand(40, 40, 15))
    torch.testing.assert_close(centres[..., 1], cells.view(40, 1, 1).expand(40, 40, 15))
    wh = anchors[0, 0, :, 2:] - anchors[0, 0, :, :2]  # (15, 2)
    torch.testing.assert_close(wh.prod(1).sqrt(), torch.tensor([32.0, 64, 128, 256, 512] * 3))  # size = sqrt(area)
    torch.testing.assert_close(wh[:, 1] / wh[:, 0], torch.tensor([0.5] * 5 + [1.0] * 5 + [2.0] * 5))  # h / w
    # A non-square grid: each axis its own stride (input / feature size).
    small = _retinanet(anchor_sizes=[10], aspect_ratios=[1.0]).anchors((100, 128), (5, 8))
    assert small.shape == (40, 4)
    torch.testing.assert_close(small[_cell(4, 7, 1)], torch.tensor([120.0 - 5, 90 - 5, 120 + 5, 90 + 5]))


def test_ssd_places_4_default_boxes_per_location_sized_by_the_longer_input_side():
    boxes = SSDHead(NAMES, in_channels=8).anchors((480, 640), (30, 40))  # recipe defaults
    assert boxes.shape == (30 * 40 * 4, 4)
    first = boxes.view(30, 40, 4, 4)[2, 5]  # (4, 4) at row 2, col 5: centre (88, 40)
    torch.testing.assert_close((first[:, :2] + first[:, 2:]) / 2, torch.tensor([[88.0, 40]] * 4))
    s, s_prime = 0.15 * 640, math.sqrt(0.15 * 0.30) * 640  # 96 and 135.8 px
    wh = torch.tensor([[s, s], [s_prime, s_prime], [s * math.sqrt(2), s / math.sqrt(2)],
                       [s / math.sqrt(2), s * math.sqrt(2)]])
    torch.testing.assert_close(first[:, 2:] - first[:, :2], wh)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_the_box_coder_round_trips_and_matches_hand_values(weights):
    gen = torch.Generator().manual_seed(0)

    def boxes() -> torch.Tensor:  # (50, 4), 1 to 81 px wide and high
        corner = torch.rand(50, 2, generator=gen) * 100
        return torch.cat([corner, corner + 1 + torch.rand(50, 2, generator=gen) * 80], dim=1)

    anchors, targets = boxes(), boxes()
    deltas = encode_boxes(targets, anchors, weights)
    torch.testing.assert_close(decode_boxes(deltas, anchors, weights), targets, rtol=0, atol=1e-4)
    # Anchor centre (5, 10), size 10 x 20; box centre (15, 10), size 20 x 20: one anchor width right, twice as wide.
    hand = encode_boxes(torch.tensor([[5.0, 0, 25, 20]]), torch.tensor([[0.0, 0, 10, 20]]), weights)
    wx, _, ww, _ = weights
    torch.testing.assert_close(hand, torch.tensor([[wx, 0, ww * math.log(2), 0]]))
    huge = decode_boxes(torch.tensor([[0.0, 0, 100 * ww, 0]]), torch.tensor([[0.0, 0, 16, 16]]), weights)
    torch.testing.assert_close(huge, torch.tensor([[-492.0, 0, 508, 16]]))  # the log-scale is capped at 1000 / 16


# --- matching ---------------------------------------------------------------------------------------------------


def test_retinanet_matching_positive_ignored_background_and_low_quality():
    head = _retinanet(anchor_sizes=[32, IGNORED_SIZE], aspect_ratios=[1.0])  # 2 anchors per location
    loss = RetinaNetLoss(head)
    # A 32 px box exactly on the anchor of cell (2, 3), whose larger anchor overlaps it by IoU 0.45.
    encoded = loss.encode(_targets([[40, 24, 72, 56]], [1]), INPUT, INPUT, FEATURE)
    labels, deltas = encoded["labels"], encoded["deltas"]
    exact, wider = _cell(2, 3, 2, 0), _cell(2, 3, 2, 1)
    assert labels.shape == (8 * 8 * 2,) and labels[exact] == 1 and labels[wider] == MATCH_IGNORE
    assert (labels == MATCH_BACKGROUND).sum() == len(labels) - 2  # neighbours overlap it by 1/3 or less
    torch.testing.assert_close(deltas[exact], torch.zeros(4))
    assert not deltas[labels < 0].any()

    # An 8 px box reaches IoU 1/16 with its best anchor at most: that anchor is still its positive.
    small = loss.encode(_targets([[52, 36, 60, 44]], [2]), INPUT, INPUT, FEATURE)
    assert (small["labels"] >= 0).sum() == 1 and small["labels"][exact] == 2
    anchor = head.anchors(INPUT, FEATURE)[exact:exact + 1]  # (1, 4)
    decoded = decode_boxes(small["deltas"][exact:exact + 1], anchor, (1.0, 1.0, 1.0, 1.0))
    torch.testing.assert_close(decoded, torch.tensor([[52.0, 36, 60, 44]]))

    # Boxes in the original image's pixels: a 64 x 48 image stretched to the input is scaled per axis.
    scaled = loss.encode(_targets([[20, 9, 36, 21]], [0]), (48, 64), INPUT, FEATURE)
    assert scaled["labels"][exact] == 0
    empty = loss.encode(_targets([], []), INPUT, INPUT, FEATURE)
    assert (empty["labels"] == MATCH_BACKGROUND).all() and not empty["deltas"].any()


def test_ssd_matching_has_no_ignored_boxes():
    head = SSDHead(NAMES, in_channels=8, scales=[32 / 128, IGNORED_SIZE / 128], aspect_ratios=[])
    encoded = SSDLoss(head).encode(_targets([[40, 24, 72, 56]], [1]), INPUT, INPUT, FEATURE)
    labels = encoded["labels"]
    assert labels[_cell(2, 3, 2, 0)] == 2 and labels[_cell(2, 3, 2, 1)] == 0  # class 1 is label 2; IoU 0.45: background
    assert (labels > 0).sum() == 1 and labels.min() == 0


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    loss = torch.rand(3, 30, generator=torch.Generator().manual_seed(0))
    positive = torch.zeros(3, 30, dtype=torch.bool)
    positive[0, [3, 17]] = True  # 2 positives: the 6 hardest of the 28 negatives
    positive[2, :25] = True  # 25 positives: all 5 negatives (fewer than 75)
    mined = hard_negatives(loss, positive, 3.0)
    assert mined.sum(1).tolist() == [6, 0, 5] and not (mined & positive).any()
    hardest = loss[0].masked_fill(positive[0], -1).topk(6).indices
    assert sorted(torch.nonzero(mined[0]).squeeze(1).tolist()) == sorted(hardest.tolist())


# --- loss values ------------------------------------------------------------------------------------------------


def test_retinanet_loss_hand_values():
    loss = RetinaNetLoss(_retinanet(anchor_sizes=[32], aspect_ratios=[1.0]))
    outputs = {"cls": torch.zeros(1, 3, 2, 2), "box": torch.zeros(1, 4, 2, 2)}  # 4 anchors, p = 0.5 everywhere
    deltas = torch.zeros(4, 4)
    deltas[0] = torch.tensor([0.5, -2.0, 0.25, 0.0])
    labels = torch.tensor([1, MATCH_IGNORE, MATCH_BACKGROUND, MATCH_BACKGROUND])
    parts = loss(outputs, [{"labels": labels, "deltas": deltas}])
    # Focal at p = 0.5: 0.25 * 0.5^2 * ln 2 for the one positive pair, 0.75 * 0.5^2 * ln 2 for each of the 2 + 6
    # negative pairs; the ignored anchor's 3 pairs do not count. One positive: nothing to divide.
    cls = 0.25 * math.log(2) * (0.25 + 0.75 * 8)
    torch.testing.assert_close(parts["cls"], torch.tensor(cls))
    torch.testing.assert_close(parts["box"], torch.tensor(2.75))  # L1: 0.5 + 2 + 0.25
    torch.testing.assert_close(parts["loss"], torch.tensor(cls + 2.75))


def test_ssd_loss_hand_values():
    loss = SSDLoss(SSDHead(NAMES, in_channels=8, scales=[0.25], aspect_ratios=[]))
    outputs = {"cls": torch.zeros(2, 4, 2, 3), "box": torch.zeros(2, 4, 2, 3)}  # 6 boxes, 4 logits of 0: CE ln 4
    targets = []
    for positives in ([1], [2, 5]):
        labels, deltas = torch.zeros(6, dtype=torch.int64), torch.zeros(6, 4)
        labels[positives] = 1
        targets.append({"labels": labels, "deltas": deltas})
    targets[0]["deltas"][1] = torch.tensor([0.5, -2.0, 0.0, 0.0])
    parts = loss(outputs, targets)
    # Image 0: 1 positive + 3 of its 5 negatives; image 1: 2 positives + all 4 negatives (6 wanted); 3 positives.
    torch.testing.assert_close(parts["cls"], torch.tensor(10 * math.log(4) / 3))
    torch.testing.assert_close(parts["box"], torch.tensor((0.5 * 0.5**2 + 1.5) / 3))  # smooth L1, beta 1


# --- decoding ---------------------------------------------------------------------------------------------------


def test_retinanet_postprocess_maps_boxes_to_the_original_image_and_respects_the_thresholds():
    cls = torch.full((1, 3, 8, 8), -10.0)  # 1 anchor of 32 px per cell, 3 classes
    box = torch.zeros(1, 4, 8, 8)
    cls[0, 2, 1, 3] = 3.0  # class 2 at the anchor centred (56, 24): [40, 8, 72, 40]
    box[0, 2, 1, 3] = math.log(2)  # twice as wide: [24, 8, 88, 40]
    cls[0, 0, 7, 0] = 2.0  # class 0 at the anchor centred (8, 120): [-8, 104, 24, 136], clipped to the input
    outputs = {"cls": cls, "box": box}
    head = _retinanet(anchor_sizes=[32], aspect_ratios=[1.0])
    image = _prepared((96, 128))  # stretched to 128 x 128: y * 0.75 back
    det = head.postprocess(outputs, image, PARAMS)
    assert isinstance(det, Detections) and det.labels.tolist() == [2, 0]
    np.testing.assert_allclose(det.boxes, [[24, 6, 88, 30], [0, 78, 24, 96]], atol=1e-4)
    np.testing.assert_allclose(det.scores, torch.sigmoid(torch.tensor([3.0, 2.0])).numpy(), rtol=1e-6)
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.labels.dtype == np.int64
    assert len(head.postprocess(outputs, image, {**PARAMS, "score_threshold": 0.9})) == 1  # sigmoid(2) = 0.88
    assert len(head.postprocess(outputs, image, {**PARAMS, "score_threshold": 0.96})) == 0  # sigmoid(3) = 0.95
    assert len(head.postprocess(outputs, image, {**PARAMS, "max_detections": 1})) == 1
    assert _retinanet(anchor_sizes=[32], aspect_ratios=[1.0], top_k=1).postprocess(outputs, image,
                                                                                   PARAMS).labels.tolist() == [2]


def test_ssd_postprocess_keeps_top_k_per_class_and_maps_boxes_to_the_original_image():
    cls = torch.zeros(1, 4, 8, 8)  # 1 default box of 32 px per cell; logits: background, then 3 classes
    cls[:, 0] = 10.0  # background everywhere but at the hits
    box = torch.zeros(1, 4, 8, 8)
    for (row, col), label, logit in (((1, 3), 2, 5.0), ((5, 5), 2, 4.0), ((5, 1), 0, 3.0)):
        cls[0, 0, row, col], cls[0, label + 1, row, col] = 0.0, logit
    box[0, 2, 1, 3] = 5 * math.log(2)  # dw, coder weight 5: twice as wide
    outputs = {"cls": cls, "box": box}
    image = _prepared((96, 128))
    head = SSDHead(NAMES, in_channels=8, scales=[0.25], aspect_ratios=[])
    det = head.postprocess(outputs, image, PARAMS)
    assert det.labels.tolist() == [2, 2, 0]
    np.testing.assert_allclose(det.boxes[0], [24, 6, 88, 30], atol=1e-4)
    np.testing.assert_allclose(det.scores, [math.exp(x) / (math.exp(x) + 3) for x in (5.0, 4.0, 3.0)], rtol=1e-5)
    strict = head.postprocess(outputs, image, {**PARAMS, "score_threshold": 0.9})
    assert strict.labels.tolist() == [2, 2]  # scores 0.98, 0.95 and 0.87
    top1 = SSDHead(NAMES, in_channels=8, scales=[0.25], aspect_ratios=[], top_k=1).postprocess(outputs, image, PARAMS)
    assert top1.labels.tolist() == [2, 0]  # the best box of each class


# --- training ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth"), images=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")  # both trainings read the same backbone features


def _map50(folder: Path, synth: Path, out: Path) -> float:
    assert main(["eval", str(folder), "--data", str(synth / "instances.json"), *BACKBONE, "--out", str(out),
                 "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())["map50"]


@pytest.mark.parametrize("name", list(RECIPE))
def test_each_detector_overfits_the_synthetic_set_and_an_untrained_one_does_not(name, synth, cache, tmp_path):
    data = str(synth / "instances.json")
    folder = tmp_path / f"head_shapes_{name}"
    start = time.perf_counter()
    assert main(["train", name, "--data", data, "--val-data", data, "--out", str(folder), *BACKBONE, "--size", "128",
                 "--batch", "4", "--schedule", "cosine", "--augment", "0", "--workers", "0", "--cache-dir",
                 str(cache), "--quiet", *RECIPE[name]]) == 0
    seconds = time.perf_counter() - start
    trained = _map50(folder, synth, tmp_path / "trained")

    # Control: the same folder with freshly initialised weights.
    manifest = load_manifest(folder)
    torch.manual_seed(1)
    fresh = import_head_class(manifest)(**manifest.args, class_names=manifest.read_class_names())
    untrained = tmp_path / f"head_untrained_{name}"
    shutil.copytree(folder, untrained)
    save_state_dict(fresh.state_dict(), untrained / "weights" / "model.pth")
    control = _map50(untrained, synth, tmp_path / "untrained")
    print(f"{name}: mAP@0.5 {trained:.3f} trained ({seconds:.1f} s to train), {control:.3f} untrained")
    assert trained >= 0.9 and control < 0.9


# --- the engine and export --------------------------------------------------------------------------------------


def test_both_run_in_the_engine_and_export_to_onnx(tmp_path, no_weights):
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (pip install '.[export]')")
    pytest.importorskip("onnxruntime", reason="the export check needs onnxruntime (pip install '.[export]')")
    from dinov3_toolkit.tools.export import compare_with_onnxruntime, export_onnx

    engine = Engine.create(backbone="vits16", device="cpu", size=64, heads=["retinanet", "ssd"], random_weights=True,
                           head_params={name: {"score_threshold": 0.0, "max_detections": 5}
                                        for name in ("retinanet", "ssd")})
    assert not engine.failed and engine.random_weights == ["backbone", "retinanet", "ssd"]
    frame = engine(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    for name in ("retinanet", "ssd"):
        det = frame.results[name]
        assert isinstance(det, Detections) and len(det) == 5 and len(det.class_names) == 20
        assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= 80).all() and (det.boxes[:, [1, 3]] <= 48).all()

    path = tmp_path / "detectors.onnx"
    assert export_onnx(engine, path) == ["retinanet.0", "retinanet.1", "ssd.0", "ssd.1"]  # cls, box of each
    assert compare_with_onnxruntime(engine, path) < 1e-4
