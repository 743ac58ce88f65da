"""Frame -> model input: sizes, normalisation, geometry record, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinov3_toolkit.preprocess import Preprocessor

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _pre(**kwargs) -> Preprocessor:
    return Preprocessor(mean=MEAN, std=STD, **kwargs)


@pytest.mark.parametrize(
    "mode, multiple, hw, expected",
    [
        ("stretch", 16, (480, 640), (640, 640)),
        ("stretch", 16, (720, 1280), (640, 640)),
        ("keep_aspect", 16, (480, 640), (480, 640)),
        ("keep_aspect", 16, (720, 1280), (352, 640)),  # 360 -> nearest multiple of 16
        ("keep_aspect", 16, (1280, 720), (640, 352)),  # portrait
        ("keep_aspect", 32, (480, 640), (480, 640)),
        ("keep_aspect", 16, (10, 4000), (16, 640)),  # never below one cell
    ],
)
def test_input_size(mode, multiple, hw, expected):
    pre = _pre(mode=mode, size_multiple=multiple)
    assert pre.input_size(*hw) == expected
    prepared = pre(np.zeros((*hw, 3), np.uint8))
    assert prepared.tensor.shape == (1, 3, *expected)
    assert prepared.original_size == hw and prepared.input_size == expected
    assert prepared.scale == (hw[0] / expected[0], hw[1] / expected[1])


def test_normalisation_per_channel():
    image = np.empty((32, 48, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 0, 128, 255
    out = _pre(mode="keep_aspect", size=48)(image).tensor  # same size: no resize
    for c, value in enumerate((0, 128, 255)):
        expected = (value / 255 - MEAN[c]) / STD[c]
        assert torch.allclose(out[0, c], torch.full((32, 48), expected), atol=1e-5)


def test_channel_order_is_kept_and_input_not_mutated():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    copy = image.copy()
    bgr_view = image[..., ::-1]  # a non-contiguous view, as from a BGR->RGB slice
    a = _pre(mode="keep_aspect", size=64)(bgr_view).tensor
    b = _pre(mode="keep_aspect", size=64)(np.ascontiguousarray(bgr_view)).tensor
    assert torch.equal(a, b)
    assert np.array_equal(image, copy)
    assert not torch.equal(a, _pre(mode="keep_aspect", size=64)(image).tensor)


def test_resize_is_bilinear_antialiased():
    """A 2x downscale of a 1-pixel checkerboard averages to grey instead of aliasing."""
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.repeat(board[..., None], 3, axis=2)
    out = _pre(size=32)(image).tensor
    grey = (127.5 / 255 - MEAN[0]) / STD[0]
    assert torch.allclose(out[0, 0], torch.full((32, 32), grey), atol=0.05)


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((8, 8, 3), np.float32), TypeError, "uint8 RGB, got dtype float32"),
        (np.zeros((8, 8), np.uint8), ValueError, r"H x W x 3 \(RGB\), got shape \(8, 8\)"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, r"got shape \(8, 8, 4\)"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, r"got shape \(0, 8, 3\)"),
        ([[0, 0, 0]], TypeError, "numpy array"),
    ],
)
def test_bad_images_are_named(image, error, message):
    with pytest.raises(error, match=message):
        _pre()(image)


@pytest.mark.parametrize("kwargs", [{"size": 630}, {"size": 0}, {"size": 64.0}, {"mode": "letterbox"}])
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0])):
        _pre(**kwargs)
