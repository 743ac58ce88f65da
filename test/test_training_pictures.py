"""The report's validation pictures: the ground truth drawn beside the prediction, by the same overlays."""

from __future__ import annotations

import numpy as np
import pytest

from dinov3_toolkit.drawing import caption_box, palette
from dinov3_toolkit.heads.training import BoxTargets, DepthTargets, FlowTargets, LabelTargets
from dinov3_toolkit.results import Detections
from dinov3_toolkit.training.pictures import PREDICTION, TRUTH, truth_as_result, truth_beside_prediction

NAMES = ("background", "square", "disc")
H, W = 96, 128


def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8)


def targets() -> list:
    labels = np.zeros((H, W), np.int64)
    labels[20:60, 30:90], labels[:4] = 2, 255
    depth = np.linspace(1, 5, H * W, dtype=np.float32).reshape(H, W)
    depth[0, 0] = 0  # no measurement
    return [BoxTargets(np.array([[10, 12, 60, 70]], np.float32), np.array([1])), LabelTargets(labels, ignore=255),
            DepthTargets(depth), FlowTargets(np.full((H, W, 2), 1.5, np.float32))]


@pytest.mark.parametrize("target", targets(), ids=lambda t: type(t).__name__)
def test_a_target_drawn_as_its_own_prediction_gives_two_halves_alike_but_for_the_captions(target):
    picture = truth_beside_prediction(image(), target, truth_as_result(target, NAMES), NAMES)
    assert picture.shape == (H, 2 * W, 3)
    left, right = picture[:, :W].copy(), picture[:, W:].copy()
    assert not np.array_equal(left, image())  # something was drawn
    boxes = [caption_box(image().shape, text) for text in (TRUTH, PREDICTION)]  # both at the bottom left
    top, right_edge = min(y for _, y, _, _ in boxes), max(x + w for x, _, w, _ in boxes)
    for half in (left, right):
        half[top:, :right_edge] = 0
    np.testing.assert_array_equal(left, right)


def test_the_ground_truth_half_draws_the_target_s_box_and_the_prediction_half_what_was_predicted():
    box = targets()[0]
    nothing = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), NAMES)
    picture = truth_beside_prediction(image(), box, nothing, NAMES)
    colour = palette(len(NAMES))[1]
    assert (picture[40, 10] == colour).all()  # the left edge of the box, in its class's colour
    np.testing.assert_array_equal(picture[40, W + 10], image()[40, 10])  # no box predicted: the pixel is untouched


def test_ignored_label_pixels_draw_as_background_and_the_labels_keep_their_classes():
    labels = truth_as_result(targets()[1], NAMES)
    assert labels.labels.dtype == np.uint8 and labels.labels[0, 0] == 0 and labels.labels[30, 40] == 2
    with pytest.raises(TypeError, match="no drawing for a str target"):
        truth_as_result("boxes", NAMES)
