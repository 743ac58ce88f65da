"""head_detr (template): Hungarian matching and the set loss against hand-computed values, decoding, training
through `dinov3 train` / `dinov3 eval`, and ONNX export."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dinov3_ros.cli import main
from dinov3_toolkit.checkpoint import save_state_dict
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.heads import BoxTargets, PreparedImage, load_manifest
from dinov3_toolkit.heads.loader import TEMPLATES_DIR, import_head_class, import_head_loss
from dinov3_toolkit.templates.head_detr.loss import DETRLoss
from dinov3_toolkit.templates.head_detr.matcher import HungarianMatcher
from dinov3_toolkit.templates.head_detr.model import DETRHead
from dinov3_toolkit.training.data.synthetic import make_synthetic

FOLDER = TEMPLATES_DIR / "head_detr"
BACKBONE = ["--backbone", "vits16", "--random-weights", "--device", "cpu"]
# Small and without dropout, so 8 images are learnt by heart in 600 steps (about 25 s on one core).
RECIPE = ["--head-arg", "hidden_dim=64", "--head-arg", "num_queries=10", "--head-arg", "num_layers=2",
          "--head-arg", "ffn_dim=128", "--head-arg", "dropout=0.0", "--epochs", "300", "--batch", "4", "--lr", "2e-3"]

LN3 = math.log(3)  # the logit of probability 0.75; -LN3 that of 0.25
# Three queries of two classes, in normalised [cx, cy, w, h]. Targets: t0 = box A of class 0, t1 = box B of
# class 1, A and B side by side. q0 and q1 both sit on A, q0 saying class 1, q1 class 0; q2 sits half-way
# between A and B, undecided.
A, B, MIDDLE = [0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [0.5, 0.25, 0.5, 0.5]
LOGITS = torch.tensor([[[-LN3, LN3], [LN3, -LN3], [0.0, 0.0]]])  # (1, 3, 2): p = (.25, .75), (.75, .25), (.5, .5)
BOXES = torch.tensor([[A, A, MIDDLE]])  # (1, 3, 4)
TARGET = {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([A, B])}
# Focal terms at alpha .25, gamma 2, per probability p of the class (-log p for a positive, -log(1-p) else):
#   pos(p) = .25 (1-p)^2 (-ln p):  pos(.25) = .25 * .5625 * ln 4 = 0.1949476, pos(.5) = .25 * .25 * ln 2 = 0.0433217,
#                                  pos(.75) = .25 * .0625 * ln(4/3) = 0.0044950
#   neg(p) = .75 p^2 (-ln(1-p)):   neg(.25) = .75 * .0625 * ln(4/3) = 0.0134851, neg(.5) = .75 * .25 * ln 2 = 0.1299651,
#                                  neg(.75) = .75 * .5625 * ln 4 = 0.5848429
# Class cost = pos - neg:  c(.25) = 0.1814625, c(.5) = -0.0866434, c(.75) = -0.5803479.
# L1 (sum over cx, cy, w, h): same box 0, A-B 0.5, MIDDLE-A = MIDDLE-B 0.25.
# GIoU: same box 1; A, B touch: IoU 0, union .5 = enclosing .5, so 0; MIDDLE vs A (or B): intersection .125,
#   union .375, enclosing .375, so 1/3.
# Cost = 1 * class + 5 * L1 - 2 * GIoU:
#   q0-t0:  0.1814625 + 0    - 2   = -1.8185375     q0-t1: -0.5803479 + 2.5  - 0   =  1.9196521
#   q1-t0: -0.5803479 + 0    - 2   = -2.5803479     q1-t1:  0.1814625 + 2.5  - 0   =  2.6814625
#   q2-t0: -0.0866434 + 1.25 - 2/3 =  0.4966899     q2-t1: -0.0866434 + 1.25 - 2/3 =  0.4966899
COST = [[-1.8185375, 1.9196521], [-2.5803479, 2.6814625], [0.4966899, 0.4966899]]
# The six assignments (query of t0, query of t1): (q0, q1) 0.8629251, (q0, q2) -1.3218475, (q1, q0) -0.6606958,
# (q1, q2) -2.0836580, (q2, q0) 2.4163420, (q2, q1) 3.1781525. Best: q1 -> t0, q2 -> t1. The boxes alone
# cannot tell q0 from q1; the class cost picks q1, the query saying t0's class.
# Loss over 2 targets: focal over all six (query, class), the matched ones positive:
#   q0 (neg, neg) neg(.25) + neg(.75) = 0.5983280, q1 (pos, neg) pos(.75) + neg(.25) = 0.0179801,
#   q2 (neg, pos) neg(.5) + pos(.5) = 0.1732868; sum 0.7895949, / 2 = 0.3947975
#   L1: only q2-t1 is off, by .25 in cx: .25 / 2 = 0.125.  GIoU loss: (1 - 1/3) / 2 = 1/3 (q1-t0 is exact).
#   Total 1 * 0.3947975 + 5 * 0.125 + 2 * 1/3 = 1.6864642.
LOSS = {"cls": 0.3947975, "l1": 0.125, "giou": 1 / 3, "loss": 1.6864642}
# No targets: every (query, class) negative, divided by 1: neg(.25) + neg(.75) + neg(.75) + neg(.25) + 2 neg(.5)
#   = 2 * 0.0134851 + 2 * 0.5848429 + 2 * 0.1299651 = 1.4565862.
EMPTY_LOSS = 1.4565862


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: one thread runs them fastest, and a busy machine cannot slow it down tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _head(**args) -> DETRHead:
    return DETRHead(("a", "b"), in_channels=16, hidden_dim=16, num_queries=3, num_heads=2, ffn_dim=32, **args)


def _loss(**args) -> DETRLoss:
    return DETRLoss(_head(), **{"aux_loss": False, **args})


def test_the_manifest_is_a_trainable_template_of_the_recipe():
    manifest = load_manifest(FOLDER)
    assert (manifest.name, manifest.task, manifest.class_name, manifest.loss) == (
        "detr", "detection", "DETRHead", ("loss", "DETRLoss"))
    assert manifest.args["in_channels"] == 384 and manifest.args["num_queries"] == 50
    assert manifest.resolve_params() == {"score_threshold": 0.3, "max_detections": 100}
    assert len(manifest.read_class_names()) == 80 and (FOLDER / "weights" / "README.md").is_file()
    model = import_head_class(manifest)(manifest.read_class_names(), **manifest.args)
    loss = import_head_loss(manifest)(model, **manifest.loss_args)
    assert loss.aux_loss and (loss.class_weight, loss.l1_weight, loss.giou_weight) == (1.0, 5.0, 2.0)
    assert (loss.matcher.class_cost, loss.matcher.l1_cost, loss.matcher.giou_cost) == (1.0, 5.0, 2.0)


def test_the_matching_is_the_hand_computed_optimum():
    matcher = HungarianMatcher()
    cost = matcher.cost(LOGITS[0], BOXES[0], TARGET["labels"], TARGET["boxes"])
    torch.testing.assert_close(cost, torch.tensor(COST), rtol=0, atol=1e-6)
    queries, targets = matcher(LOGITS[0], BOXES[0], TARGET["labels"], TARGET["boxes"])
    assert list(zip(queries.tolist(), targets.tolist())) == [(1, 0), (2, 1)]


def test_the_loss_is_the_hand_computed_value_and_each_decoder_layer_adds_its_own():
    losses = _loss()({"logits": LOGITS, "boxes": BOXES}, [TARGET])
    assert {k: float(v) for k, v in losses.items()} == pytest.approx(LOSS, abs=1e-5)
    # One earlier layer predicting the same: its loss (matched on its own) is added once more.
    outputs = {"logits": LOGITS, "boxes": BOXES, "aux_logits": LOGITS[:, None], "aux_boxes": BOXES[:, None]}
    losses = _loss(aux_loss=True)(outputs, [TARGET])
    assert float(losses["aux"]) == pytest.approx(LOSS["loss"], abs=1e-5)
    assert float(losses["loss"]) == pytest.approx(2 * LOSS["loss"], abs=1e-5)


def test_an_image_without_objects_gives_the_focal_term_alone():
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    losses = _loss()({"logits": LOGITS, "boxes": BOXES}, [empty])
    assert float(losses["loss"]) == pytest.approx(EMPTY_LOSS, abs=1e-5)
    assert float(losses["cls"]) == pytest.approx(EMPTY_LOSS, abs=1e-5)
    assert float(losses["l1"]) == float(losses["giou"]) == 0.0


def test_more_objects_than_queries_match_every_query_and_leave_the_rest_unmatched():
    # Two queries on A and B; a third target at C, far from both, is the one left over.
    c = [0.25, 0.75, 0.5, 0.5]
    target = {"labels": torch.tensor([0, 1, 0]), "boxes": torch.tensor([c, A, B])}
    logits, boxes = torch.zeros(1, 2, 2), torch.tensor([[A, B]])
    queries, targets = HungarianMatcher()(logits[0], boxes[0], target["labels"], target["boxes"])
    assert list(zip(queries.tolist(), targets.tolist())) == [(0, 1), (1, 2)]
    losses = _loss()({"logits": logits, "boxes": boxes}, [target])
    assert float(losses["l1"]) == pytest.approx(0.0, abs=1e-6) and float(losses["giou"]) == pytest.approx(0.0, abs=1e-6)
    # All four (query, class) at p = .5, two positive and two negative: 2 pos(.5) + 2 neg(.5) = .5 ln 2, divided by
    # the 3 targets (the unmatched one counts).
    assert float(losses["cls"]) == pytest.approx(0.5 * math.log(2) / 3, abs=1e-6)


def test_encode_normalises_boxes_to_the_frame_and_checks_labels():
    target = BoxTargets(np.array([[16, 24, 48, 72]], np.float32), np.array([1]))
    encoded = _loss().encode(target, (96, 128), (64, 64), (4, 4))  # the stretch to 64 x 64 cancels out
    torch.testing.assert_close(encoded["boxes"], torch.tensor([[0.25, 0.5, 0.25, 0.5]]))
    assert encoded["labels"].tolist() == [1]
    with pytest.raises(ValueError, match=r"DETRLoss: box labels must be class indices in \[0, 2\), got 2..2"):
        _loss().encode(BoxTargets(target.boxes, np.array([2])), (96, 128), (64, 64), (4, 4))


def test_negative_weights_and_outputs_without_the_auxiliary_predictions_are_refused_by_name():
    with pytest.raises(ValueError, match=r"must be >= 0 and alpha in \[0, 1\], got \{'l1_weight': -1.0\}"):
        _loss(l1_weight=-1.0)
    with pytest.raises(ValueError, match=r"outputs must hold 'aux_logits' \(B, \.\.\., Q, 2\)"):
        _loss(aux_loss=True)({"logits": LOGITS, "boxes": BOXES}, [TARGET])


def test_forward_gives_every_layer_in_training_and_the_last_alone_otherwise():
    head = _head(num_layers=3)
    features = [torch.randn(2, 16, 4, 5)]
    shapes = {k: tuple(v.shape) for k, v in head.train()(features).items()}
    assert shapes == {"logits": (2, 3, 2), "boxes": (2, 3, 4), "aux_logits": (2, 2, 3, 2), "aux_boxes": (2, 2, 3, 4)}
    shapes = {k: tuple(v.shape) for k, v in head.eval()(features).items()}
    assert shapes == {"logits": (2, 3, 2), "boxes": (2, 3, 4)}


def test_postprocess_ranks_query_class_pairs_and_maps_boxes_to_the_original_frame():
    logits = torch.tensor([[[2.0, 1.0], [-3.0, 0.5]]])  # sigmoid: (.881, .731), (.047, .622)
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.4, 0.4]]])  # q1 reaches past the top-right corner
    image = PreparedImage(torch.empty(0), original_size=(96, 128), input_size=(64, 64))
    result = _head().postprocess({"logits": logits, "boxes": boxes}, image,
                                 {"score_threshold": 0.5, "max_detections": 10})
    # q0 holds two likely classes: both are kept, no NMS. Boxes: normalised x 64 input px x (2, 1.5) scale.
    assert result.labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(result.scores, [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1)),
                                               1 / (1 + math.exp(-0.5))], rtol=1e-6)
    np.testing.assert_allclose(result.boxes, [[32, 24, 96, 72], [32, 24, 96, 72], [89.6, 0, 128, 28.8]], atol=1e-4)
    capped = _head().postprocess({"logits": logits, "boxes": boxes}, image,
                                 {"score_threshold": 0.5, "max_detections": 2})
    assert capped.labels.tolist() == [0, 1]


# --- dinov3 train / eval --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth"), images=8)


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detr") / "head_shapes_detr"
    data = str(synth / "instances.json")
    assert main(["train", "detr", "--data", data, "--val-data", data, "--out", str(out), *RECIPE, *BACKBONE,
                 "--size", "128", "--schedule", "cosine", "--augment", "0", "--workers", "0", "--cache-dir",
                 str(tmp_path_factory.mktemp("features")), "--quiet"]) == 0
    return out


def _map50(folder: Path, synth: Path, out: Path) -> float:
    assert main(["eval", str(folder), "--data", str(synth / "instances.json"), *BACKBONE, "--out", str(out),
                 "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())["map50"]


def test_the_head_overfits_the_images_it_trained_on_and_an_untrained_one_does_not(trained, synth, tmp_path):
    assert _map50(trained, synth, tmp_path / "trained") >= 0.9
    log = [json.loads(line) for line in (trained / "report" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["train"]["loss"] < log[0]["train"]["loss"] / 2

    # Control: the same folder with freshly initialised weights fails the same check.
    manifest = load_manifest(trained)
    torch.manual_seed(1)
    fresh = import_head_class(manifest)(manifest.read_class_names(), **manifest.args)
    untrained = trained.parent / "head_untrained_detr"
    shutil.copytree(trained, untrained)
    save_state_dict(fresh.state_dict(), untrained / "weights" / "model.pth")
    assert _map50(untrained, synth, tmp_path / "untrained") < 0.9


# --- export -----------------------------------------------------------------------------------------------------


def test_the_head_exports_to_onnx_and_onnxruntime_reproduces_it(tmp_path, no_weights):
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (pip install '.[export]')")
    pytest.importorskip("onnxruntime", reason="the export check needs onnxruntime (pip install '.[export]')")
    from dinov3_toolkit.tools.export import compare_with_onnxruntime, export_onnx

    engine = Engine.create(backbone="vits16", device="cpu", size=64, heads=["detr"], random_weights=True,
                           warmup=False)
    path = tmp_path / "detr.onnx"
    assert export_onnx(engine, path) == ["detr.0", "detr.1"]  # class logits and boxes: the raw tensors alone
    assert compare_with_onnxruntime(engine, path) < 1e-4
