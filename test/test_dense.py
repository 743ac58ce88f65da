"""dense.py: the chunked label upsampling equals the plain one, the map resize is bilinear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dinov3_toolkit.heads.ops.dense import labels_at, possible_winners, resize_map


def _plain_labels(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """All classes upsampled at once, then argmax: what labels_at must reproduce."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)[0]


@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 20, 64])
@pytest.mark.parametrize(("grid", "size"), [((7, 9), (37, 53)), ((16, 24), (90, 160)), ((12, 10), (5, 4))])
def test_labels_at_equals_plain_argmax(chunk, grid, size):
    logits = torch.randn(1, 20, *grid)
    labels = labels_at(logits, size, chunk=chunk)
    assert labels.shape == size and labels.dtype == torch.int64
    assert torch.equal(labels, _plain_labels(logits, size))


@pytest.mark.parametrize("chunk", [1, 2, 3, 16])
@pytest.mark.parametrize("factor", [1, 2, 4])
def test_labels_at_breaks_ties_like_argmax(chunk, factor):
    # Small integers upsampled by 1, 2 or 4 interpolate exactly (weights k/8), so the ties
    # are exact in every evaluation order and only the tie-breaking rule decides.
    logits = torch.randint(0, 3, (1, 11, 6, 5)).float()
    size = (6 * factor, 5 * factor)
    labels = labels_at(logits, size, chunk=chunk)
    assert torch.equal(labels, _plain_labels(logits, size))
    assert torch.equal(labels_at(torch.zeros(1, 9, 4, 4), size, chunk=chunk), torch.zeros(size, dtype=torch.int64))


@pytest.mark.parametrize(("grid", "size"), [((8, 8), (29, 31)), ((40, 40), (480, 640))])
def test_identical_classes_in_different_chunks_go_to_the_lowest(grid, size):
    # Any ties, not only exactly representable ones: with the default chunk each class is
    # upsampled in the same SIMD lane as in one call over all classes, so values match to the bit.
    logits = torch.randn(1, 40, *grid)
    for twin in (4, 20, 35):  # same chunk as class 3, the next chunk, the last (partial) chunk
        logits[0, twin] = logits[0, 3]
    logits[0, [3, 4, 20, 35]] += 10.0  # the four tied classes are the maximum everywhere
    labels = labels_at(logits, size)
    assert torch.equal(labels, _plain_labels(logits, size))
    assert (labels == 3).all()


def _smooth_logits(num_classes: int, grid: tuple[int, int], seed: int) -> torch.Tensor:
    """Logits like a trained head's: a few classes dominate regions, the rest are far below."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, num_classes, *grid, generator=g) - 20.0
    regions = F.interpolate(torch.randn(1, 4, 3, 3, generator=g) * 4, size=grid, mode="bilinear")
    logits[0, [2, 17, 40, 99]] = regions[0]  # four region classes, smoothly varying
    return logits


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("grid", "size"), [((40, 40), (640, 640)), ((40, 40), (720, 1280)), ((9, 7), (5, 4))])
def test_pruned_labels_equal_plain_argmax(seed, grid, size):
    logits = _smooth_logits(134, grid, seed)
    winners = possible_winners(logits)
    assert set(winners.tolist()) <= {2, 17, 40, 99}  # the pruning really prunes
    labels = labels_at(logits, size)
    assert torch.equal(labels, _plain_labels(logits, size))


def test_a_class_that_wins_only_between_cells_is_kept():
    # Class 2 is never the best at a cell, but near the middle between the two it is: 0.7 > 0.625.
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]).view(1, 3, 1, 2)
    assert possible_winners(logits).tolist() == [0, 1, 2]
    labels = labels_at(logits, (1, 8))
    assert 2 in labels[0].tolist() and torch.equal(labels, _plain_labels(logits, (1, 8)))


def test_a_class_below_all_others_everywhere_is_pruned():
    logits = torch.randn(1, 5, 6, 6)
    logits[0, 3] = logits.amin() - 1.0
    assert 3 not in possible_winners(logits).tolist()


def test_one_possible_winner_fills_the_frame_without_upsampling():
    logits = torch.zeros(1, 6, 4, 4)
    logits[0, 4] = 1.0
    assert possible_winners(logits).tolist() == [4]
    assert torch.equal(labels_at(logits, (30, 20)), torch.full((30, 20), 4))


def test_non_finite_logits_keep_every_class():
    logits = torch.randn(1, 4, 3, 3)
    logits[0, 1, 0, 0] = float("inf")
    assert possible_winners(logits).tolist() == [0, 1, 2, 3]
    assert torch.equal(labels_at(logits, (9, 9)), _plain_labels(logits, (9, 9)))


def _bilinear_reference(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """align_corners=False bilinear by its definition: sample at (i + 0.5) * in / out - 0.5, edges clamped."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    y0, y1, ty = axis(x.shape[0], size[0])
    x0, x1, tx = axis(x.shape[1], size[1])
    top = x[y0][:, x0] * (1 - tx) + x[y0][:, x1] * tx
    bottom = x[y1][:, x0] * (1 - tx) + x[y1][:, x1] * tx
    return top * (1 - ty)[:, None] + bottom * ty[:, None]


@pytest.mark.parametrize("size", [(30, 40), (7, 5), (12, 10)])
def test_resize_map_is_bilinear(size):
    x = torch.rand(1, 1, 12, 10) * 5
    out = resize_map(x, size)
    assert out.shape == size and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), _bilinear_reference(x[0, 0].double().numpy(), size), atol=1e-5)


def test_resize_map_returns_float32_for_half_input():
    x = torch.rand(1, 1, 4, 6).to(torch.bfloat16)
    out = resize_map(x, (8, 12))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, resize_map(x.float(), (8, 12)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: labels_at(torch.zeros(2, 3, 4, 4), (8, 8)), r"\(1, C, h, w\)"),
        (lambda: labels_at(torch.zeros(3, 4, 4), (8, 8)), r"\(1, C, h, w\)"),
        (lambda: labels_at(torch.zeros(1, 3, 4, 4), (8,)), "size"),
        (lambda: labels_at(torch.zeros(1, 3, 4, 4), (8, 0)), "size"),
        (lambda: labels_at(torch.zeros(1, 3, 4, 4), (8, 8), chunk=0), "chunk"),
        (lambda: resize_map(torch.zeros(1, 2, 4, 4), (8, 8)), "one channel"),
    ],
)
def test_bad_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_non_tensor_is_rejected():
    with pytest.raises(TypeError, match="ndarray"):
        labels_at(np.zeros((1, 3, 4, 4)), (8, 8))
