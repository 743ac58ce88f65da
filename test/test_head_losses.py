"""Head losses: the shared terms against hand-computed values, FCOS target assignment, and that each head learns."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dinov3_toolkit.heads import (BoxTargets, DepthTargets, Head, HeadLoss, LabelTargets, dice_loss, giou_loss,
                                  load_manifest, sigmoid_focal_loss, softmax_focal_loss)
from dinov3_toolkit.head_depth.loss import DepthLoss
from dinov3_toolkit.head_depth.model import DepthHeadLite
from dinov3_toolkit.head_detection.loss import FCOSLoss
from dinov3_toolkit.head_detection.model import DinoFCOSHead
from dinov3_toolkit.head_segmentation.loss import FocalDiceLoss
from dinov3_toolkit.head_segmentation.model import ASPPDecoder
from dinov3_toolkit.heads.loader import BUILTIN_DIR, import_head_class, import_head_loss

PROBE = Path(__file__).resolve().parents[1] / "examples" / "head_linear_probe"
NAMES = ("a", "b", "c")
CHANNELS = 32
INPUT, FEATURE = (96, 128), (6, 8)  # stride 16: P3 6x8, P4 3x4, P5 2x2 at strides 16, 32, 64
LEVELS = [(6, 8), (3, 4), (2, 2)]  # P4 = ceil(P3 / 2), P5 = ceil(P4 / 2) per axis


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: one thread runs them fastest, and a busy machine cannot slow it down tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _detector() -> DinoFCOSHead:
    return DinoFCOSHead(NAMES, in_channels=CHANNELS, fpn_channels=32, num_convs=1)


def _boxes(boxes: list[list[float]], labels: list[int]) -> BoxTargets:
    return BoxTargets(np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64))


def _encode(boxes: list[list[float]], labels: list[int], radius: float = 1.5,
            original: tuple[int, int] = INPUT) -> dict[str, torch.Tensor]:
    return FCOSLoss(_detector(), center_radius=radius).encode(_boxes(boxes, labels), original, INPUT, FEATURE)


def _per_level(x: torch.Tensor) -> list[torch.Tensor]:
    """(L, ...) per location -> one (h_l, w_l, ...) tensor per level."""
    parts = x.split([h * w for h, w in LEVELS])
    return [part.reshape(h, w, *x.shape[1:]) for part, (h, w) in zip(parts, LEVELS)]


def _mask(shape: tuple[int, int], rows: slice, cols: slice) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[rows, cols] = True
    return mask


# --- shared loss terms ---------------------------------------------------------------------------------------


def test_sigmoid_focal_loss_matches_hand_values():
    loss = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    # p = 0.5: cross-entropy ln 2, modulating factor 0.5^2, alpha 0.25 for the positive and 0.75 for the negative.
    torch.testing.assert_close(loss, torch.tensor([0.25, 0.75]) * 0.25 * math.log(2))
    unweighted = sigmoid_focal_loss(torch.tensor([2.0]), torch.tensor([1.0]), alpha=None, gamma=0.0)
    torch.testing.assert_close(unweighted, torch.tensor([math.log(1 + math.exp(-2))]))


def test_softmax_focal_loss_matches_hand_values_and_skips_invalid_pixels():
    logits = torch.tensor([0.0, math.log(3)]).reshape(1, 2, 1, 1).expand(1, 2, 1, 2)  # p = (0.25, 0.75)
    labels = torch.tensor([[[1, 0]]])
    expected = (-(0.25**2) * math.log(0.75) - 0.75**2 * math.log(0.25)) / 2
    torch.testing.assert_close(softmax_focal_loss(logits, labels), torch.tensor(expected))
    only_first = torch.tensor([[[True, False]]])
    torch.testing.assert_close(softmax_focal_loss(logits, torch.tensor([[[1, 99]]]), valid=only_first),
                               torch.tensor(-(0.25**2) * math.log(0.75)))
    assert softmax_focal_loss(logits, labels, valid=torch.zeros_like(only_first)) == 0


def test_dice_loss_matches_hand_values():
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    labels = torch.tensor([[[0, 1]]])
    # Each class: overlap 0.5, sums 1 + 1: Dice (2 * 0.5 + 1) / (2 + 1) = 2/3.
    torch.testing.assert_close(dice_loss(logits, labels), torch.tensor(1 / 3))
    torch.testing.assert_close(dice_loss(logits, labels, smooth=0.0), torch.tensor(0.5))
    # Only the first pixel counts: class 0 has overlap 0.5, sums 0.5 + 1; class 1 overlap 0, sums 0.5 + 0.
    valid = torch.tensor([[[True, False]]])
    expected = 1 - ((2 * 0.5 + 1) / (1.5 + 1) + 1 / (0.5 + 1)) / 2
    torch.testing.assert_close(dice_loss(logits, labels, valid=valid), torch.tensor(expected))


def test_giou_loss_matches_hand_values():
    boxes = torch.tensor([[0.0, 0, 2, 2], [0, 0, 1, 1], [1, 2, 5, 4]])
    targets = torch.tensor([[1.0, 1, 3, 3], [2, 0, 3, 1], [1, 2, 5, 4]])
    # Overlapping: IoU 1/7, enclosing 9, union 7. Disjoint: IoU 0, enclosing 3, union 2. Equal: GIoU 1.
    expected = torch.tensor([1 - (1 / 7 - 2 / 9), 1 + 1 / 3, 0.0])
    torch.testing.assert_close(giou_loss(boxes, targets), expected)


# --- FCOS assignment --------------------------------------------------------------------------------------------


def test_fcos_positives_are_inside_the_box_and_within_1_5_strides_of_its_centre():
    enc = _encode([[0, 0, 128, 96]], [2])  # centre (64, 48)
    p3, p4, p5 = (level >= 0 for level in _per_level(enc["labels"]))
    # P3 (stride 16, radius 24): x in {56, 72}, y in {40, 56}; x = 40 and y = 24 are exactly 24 away: out.
    assert torch.equal(p3, _mask((6, 8), slice(2, 4), slice(3, 5)))
    # P4 (stride 32, radius 48): every row (y 16, 48, 80), x in {48, 80}.
    assert torch.equal(p4, _mask((3, 4), slice(0, 3), slice(1, 3)))
    # P5 (stride 64): the centres at y = 96 lie on the box's border, not inside it.
    assert torch.equal(p5, _mask((2, 2), slice(0, 1), slice(0, 2)))
    assert set(enc["labels"].tolist()) == {-1, 2}


@pytest.mark.parametrize("order", [1, -1])
def test_fcos_smallest_box_wins_where_several_match(order):
    big, small = [0, 0, 64, 64], [16, 16, 48, 48]  # both centred at (32, 32)
    enc = _encode([big, small][::order], [0, 1][::order])
    p3_labels, p4_labels, _ = _per_level(enc["labels"])
    p3_ltrb, _, _ = _per_level(enc["ltrb"])
    assert torch.equal(p3_labels[1:3, 1:3], torch.ones(2, 2, dtype=torch.int64))  # x, y in {24, 40}: both match
    torch.testing.assert_close(p3_ltrb[1, 1], torch.tensor([8.0, 8, 24, 24]))  # to the small box's sides
    assert p4_labels[0, 0] == 0  # (16, 16) lies on the small box's border: only the big box matches


def test_fcos_level_without_centre_positives_falls_back_to_inside_box_locations():
    enc = _encode([[0, 0, 96, 96]], [0], radius=0.25)  # centre (48, 48)
    p3, p4, p5 = (level >= 0 for level in _per_level(enc["labels"]))
    # P3 (radius 4): no centre within 4 px of (48, 48), so all 36 inside-box locations are positive.
    assert torch.equal(p3, _mask((6, 8), slice(0, 6), slice(0, 6)))
    # P4 (radius 8): the centre (48, 48) is sampled, so the other 8 inside-box locations stay negative.
    assert torch.equal(p4, _mask((3, 4), slice(1, 2), slice(1, 2)))
    assert torch.equal(p5, _mask((2, 2), slice(0, 1), slice(0, 1)))


@pytest.mark.parametrize("original, scale", [(INPUT, (1, 1)), ((192, 256), (2, 2)), ((96, 256), (2, 1))])
def test_fcos_regression_and_centerness_targets_at_a_known_location(original, scale):
    sx, sy = scale
    enc = _encode([[10 * sx, 20 * sy, 70 * sx, 60 * sy]], [1], original=original)  # (10, 20, 70, 60) in the input
    n = sum(h * w for h, w in LEVELS)
    assert (enc["labels"].shape, enc["ltrb"].shape, enc["centerness"].shape) == ((n,), (n, 4), (n,))
    assert (enc["labels"].dtype, enc["ltrb"].dtype, enc["centerness"].dtype) == (torch.int64, torch.float32,
                                                                                 torch.float32)
    labels, ltrb, centerness = (_per_level(enc[k])[0][2, 1] for k in ("labels", "ltrb", "centerness"))
    assert labels == 1  # P3 row 2, column 1: the location (24, 40)
    torch.testing.assert_close(ltrb, torch.tensor([14.0, 20, 46, 20]))
    torch.testing.assert_close(centerness, torch.tensor(math.sqrt(14 / 46 * 20 / 20)))
    background = enc["labels"] < 0
    assert not enc["ltrb"][background].any() and not enc["centerness"][background].any()


def test_fcos_image_without_objects_is_all_background_and_has_a_finite_loss():
    loss = FCOSLoss(_detector())
    enc = loss.encode(_boxes([], []), INPUT, INPUT, FEATURE)
    assert (enc["labels"] == -1).all() and not enc["ltrb"].any() and not enc["centerness"].any()
    head = _detector()
    parts = loss(head([torch.randn(1, CHANNELS, *FEATURE)]), [enc])
    assert torch.isfinite(parts["loss"]) and parts["loss"] > 0
    assert parts["box"] == 0 and parts["centerness"] == 0 and parts["loss"] == parts["cls"]
    parts["loss"].backward()


def test_fcos_loss_parts_match_hand_values():
    enc = _encode([[10, 20, 70, 60]], [1])
    positive = enc["labels"] >= 0
    num_pos, num_locations = int(positive.sum()), len(positive)

    def maps(values: torch.Tensor) -> list[torch.Tensor]:  # (L, C) -> per level (1, C, h_l, w_l)
        return [level.permute(2, 0, 1)[None] for level in _per_level(values)]

    outputs = {"cls": maps(torch.zeros(num_locations, 3)), "reg": maps(enc["ltrb"] + ~positive[:, None]),
               "ctr": maps(torch.zeros(num_locations, 1))}
    parts = FCOSLoss(_detector())(outputs, [enc])
    # Logit 0: focal 0.25 * ln 2 * alpha, alpha 0.25 for the positive (location, class) pairs and 0.75 for the rest.
    cls = (0.25 * num_pos + 0.75 * (3 * num_locations - num_pos)) * 0.25 * math.log(2) / num_pos
    torch.testing.assert_close(parts["cls"], torch.tensor(cls))
    torch.testing.assert_close(parts["box"], torch.tensor(0.0))  # the regression hits every box exactly
    torch.testing.assert_close(parts["centerness"], torch.tensor(math.log(2)))  # BCE at logit 0, any target
    torch.testing.assert_close(parts["loss"], parts["cls"] + parts["box"] + parts["centerness"])


def test_fcos_rejects_bad_labels_outputs_and_targets():
    loss = FCOSLoss(_detector())
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\), got 0..3"):
        loss.encode(_boxes([[0, 0, 10, 10], [0, 0, 5, 5]], [0, 3]), INPUT, INPUT, FEATURE)
    enc = loss.encode(_boxes([[0, 0, 10, 10]], [0]), INPUT, INPUT, FEATURE)
    outputs = _detector()([torch.randn(1, CHANNELS, *FEATURE)])
    with pytest.raises(TypeError, match="outputs must be the dict of DinoFCOSHead.forward"):
        loss(outputs["cls"][0], [enc])
    with pytest.raises(ValueError, match=r"outputs\['cls'\] must be 3 maps \(B, 3, h, w\)"):
        loss({**outputs, "cls": outputs["cls"][:2]}, [enc])
    other = loss.encode(_boxes([[0, 0, 10, 10]], [0]), INPUT, (192, 256), (12, 16))
    with pytest.raises(ValueError, match="encoded for another input or feature size"):
        loss(outputs, [other])
    with pytest.raises(ValueError, match="center_radius must be > 0"):
        FCOSLoss(_detector(), center_radius=0)


# --- segmentation and depth -------------------------------------------------------------------------------------


def test_segmentation_ignored_pixels_change_nothing():
    loss = FocalDiceLoss(ASPPDecoder(NAMES, in_channels=CHANNELS, proj_channels=16, branch_channels=8), size=16)
    labels = np.random.default_rng(0).integers(0, 3, (32, 32))
    labels[:16, :8] = 255
    enc = loss.encode(LabelTargets(labels, ignore=255), (32, 32), (32, 32), (2, 2))
    assert enc.shape == (16, 16) and enc.dtype == torch.int64 and (enc[:8, :4] == -1).all()
    logits = torch.randn(1, 3, 16, 16, requires_grad=True)  # at the loss size: the upsampling is the identity
    parts = loss(logits, [enc])
    parts["loss"].backward()
    assert not logits.grad[..., :8, :4].any() and logits.grad[..., 8:, :].abs().sum() > 0
    changed = logits.detach().clone()
    changed[..., :8, :4] = 100 * torch.randn(3, 8, 4)
    torch.testing.assert_close(loss(changed, [enc])["loss"], parts["loss"].detach())
    everything = loss.encode(LabelTargets(np.full((32, 32), 255), ignore=255), (32, 32), (32, 32), (2, 2))
    assert loss(logits, [everything])["loss"] == 0


def test_segmentation_rejects_bad_labels_and_outputs():
    loss = FocalDiceLoss(ASPPDecoder(NAMES, in_channels=CHANNELS, proj_channels=16, branch_channels=8), size=16)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\) or the ignore index 255, got 0..7"):
        loss.encode(LabelTargets(np.array([[0, 7], [255, 1]]), ignore=255), (2, 2), (32, 32), (2, 2))
    enc = loss.encode(LabelTargets(np.zeros((2, 2), np.int64)), (2, 2), (32, 32), (2, 2))
    with pytest.raises(ValueError, match=r"logits \(B, 3, h, w\) as ASPPDecoder.forward returns them, got \(1, 4"):
        loss(torch.zeros(1, 4, 2, 2), [enc])
    with pytest.raises(ValueError, match="size must be a positive int"):
        FocalDiceLoss(ASPPDecoder(NAMES, in_channels=CHANNELS), size=0)


def test_depth_silog_and_l1_options():
    depth = np.full((16, 16), 3.0, np.float32)
    depth[:4] = 0.0  # no measurement
    depth[4:6] = np.nan
    head = DepthHeadLite(in_channels=CHANNELS)
    enc = DepthLoss(head).encode(DepthTargets(depth), (16, 16), (32, 32), (2, 2))
    assert enc.shape == (16, 16) and not enc[:6].any() and (enc[6:] == 3).all()
    pred = torch.where(enc > 0, 2 * enc, 1000.0)[None, None]  # twice the depth; absurd where nothing is known
    silog = DepthLoss(head)(pred, [enc])["loss"]
    torch.testing.assert_close(silog, torch.tensor(math.log(2) * math.sqrt(1 - 0.85)))  # d = ln 2 everywhere
    assert DepthLoss(head, silog_lambda=1.0)(pred, [enc])["loss"] < 1e-5  # only the scale is wrong
    torch.testing.assert_close(DepthLoss(head, kind="l1")(pred, [enc])["loss"], torch.tensor(3.0))
    unknown = torch.zeros(16, 16)  # an image without a valid pixel contributes nothing
    torch.testing.assert_close(DepthLoss(head)(pred.expand(2, 1, 16, 16), [enc, unknown])["loss"], silog)
    assert DepthLoss(head)(pred, [unknown])["loss"] == 0


def test_depth_rejects_bad_outputs_and_args():
    head = DepthHeadLite(in_channels=CHANNELS)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\) .* matching the targets \(1, 16, 16\), got \(1, 1, 8, 8\)"):
        DepthLoss(head)(torch.ones(1, 1, 8, 8), [torch.ones(16, 16)])
    with pytest.raises(ValueError, match="kind must be one of"):
        DepthLoss(head, kind="l2")
    with pytest.raises(TypeError, match="unexpected keyword argument 'lam'"):
        DepthLoss(head, lam=0.5)


# --- every head learns ----------------------------------------------------------------------------------------


ORIGINAL = (2 * INPUT[0], 2 * INPUT[1])  # the training images: their targets are in these pixels


def _probe() -> tuple[Head, HeadLoss]:
    manifest = load_manifest(PROBE)
    head = import_head_class(manifest)(NAMES, in_channels=CHANNELS)
    return head, import_head_loss(manifest)(head)


def _small(task: str) -> tuple[Head, HeadLoss]:
    """A small head of each kind with its loss."""
    if task == "linear_probe":
        return _probe()
    if task == "detection":
        head = _detector()
        return head, FCOSLoss(head)
    if task == "segmentation":
        head = ASPPDecoder(NAMES, in_channels=CHANNELS, proj_channels=32, branch_channels=16)
        return head, FocalDiceLoss(head, size=32)
    head = DepthHeadLite(in_channels=CHANNELS, proj_channels=(8, 8, 8, 8), common_channels=16, groups=4, dropout=0.0)
    return head, DepthLoss(head)


def _labels(seed: int) -> LabelTargets:
    labels = np.zeros(ORIGINAL, np.int64)
    labels[:, 128 + 32 * seed:] = 1
    labels[96 - 32 * seed:, :80] = 2
    labels[:16] = 255
    return LabelTargets(labels, ignore=255)


def _depth(seed: int) -> DepthTargets:
    depth = np.repeat(np.linspace(1.0, 4.0 + seed, ORIGINAL[0], dtype=np.float32)[:, None], ORIGINAL[1], 1)
    depth[:, :20] = 0.0
    return DepthTargets(depth)


TARGETS = {  # one per image of a batch of two
    "detection": [_boxes([[16, 16, 120, 100], [140, 60, 240, 180]], [0, 2]), _boxes([[40, 20, 200, 160]], [1])],
    "segmentation": [_labels(0), _labels(1)],
    "depth": [_depth(0), _depth(1)],
    "linear_probe": [_labels(1), _labels(0)],
}


@pytest.mark.parametrize("task", TARGETS)
def test_every_head_learns_from_its_loss(task):
    torch.manual_seed(0)
    head, loss = _small(task)
    targets = [loss.encode(target, ORIGINAL, INPUT, FEATURE) for target in TARGETS[task]]
    features = [torch.randn(2, CHANNELS, *FEATURE)]
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    history = []
    for step in range(40):
        parts = loss(head(features), targets)
        assert all(torch.isfinite(v) and v.dim() == 0 for v in parts.values()), parts
        optimiser.zero_grad()
        parts["loss"].backward()
        if step == 0:
            silent = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not silent, f"no gradient reaches {silent}"
        optimiser.step()
        history.append(parts["loss"].item())
    assert history[-1] < 0.7 * history[0], history


def test_every_manifest_names_a_loss_that_builds_with_its_loss_args():
    manifests = {m.name: m for m in map(load_manifest, [*BUILTIN_DIR.glob("head_*"), PROBE])}
    assert set(manifests) == set(TARGETS)
    for name, manifest in manifests.items():
        loss = import_head_loss(manifest)(_small(name)[0], **manifest.loss_args)
        assert isinstance(loss, HeadLoss), name
