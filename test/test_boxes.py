"""box_iou and batched_nms against brute-force references written independently here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinov3_toolkit.heads.ops.boxes import NMS_CHUNK, batched_nms, box_iou

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _iou_ref(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _nms_ref(boxes, scores, labels, thr, class_agnostic=False, max_output=None) -> list[int]:
    """Textbook greedy NMS, one class at a time, then merged by score."""
    boxes, scores, labels = boxes.tolist(), scores.tolist(), labels.tolist()
    groups = [sorted(range(len(scores)))] if class_agnostic else [
        [i for i in range(len(scores)) if labels[i] == c] for c in sorted(set(labels))
    ]
    kept = []
    for group in groups:
        survivors = []
        for i in sorted(group, key=lambda i: (-scores[i], i)):
            if all(_iou_ref(boxes[i], boxes[j]) <= thr for j in survivors):
                survivors.append(i)
        kept += survivors
    kept.sort(key=lambda i: (-scores[i], i))
    return kept if max_output is None else kept[:max_output]


def _random_boxes(n: int, seed: int, spread: float = 200.0):
    """Boxes crowded into a small area so that most of them overlap several others."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=gen) * spread
    size = 10 + torch.rand(n, 2, generator=gen) * 50
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)  # (n, 4)
    scores = torch.rand(n, generator=gen)  # continuous: no ties
    labels = torch.randint(0, 4, (n,), generator=gen)
    return boxes, scores, labels


def test_box_iou_matches_reference_on_hand_made_cases():
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 40]])
    b = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [2, 2, 4, 4], [-5, -5, 100, 100], [25, 25, 26, 26]])
    iou = box_iou(a, b)
    assert iou.shape == (3, 5)
    expected = [[_iou_ref(x, y) for y in b.tolist()] for x in a.tolist()]
    np.testing.assert_allclose(iou.numpy(), np.array(expected), rtol=1e-6, atol=1e-7)
    assert iou[0, 0] == 1 and iou[0, 1] == 0  # identical; touching edges only


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("class_agnostic", [False, True])
@pytest.mark.parametrize("thr", [0.1, 0.5, 0.7])
def test_nms_matches_brute_force_across_chunks(device, class_agnostic, thr):
    boxes, scores, labels = _random_boxes(NMS_CHUNK + 700, seed=int(thr * 10))  # crosses the default chunk
    expected = _nms_ref(boxes, scores, labels, thr, class_agnostic)
    assert 50 < len(expected) < len(boxes) - 50, len(expected)  # the data really exercises suppression
    for chunk_size in (NMS_CHUNK, 37, 1):
        kept = batched_nms(
            boxes.to(device), scores.to(device), labels.to(device), thr, class_agnostic=class_agnostic,
            chunk_size=chunk_size,
        )
        assert kept.dtype == torch.int64 and kept.device.type == device
        assert kept.tolist() == expected, f"chunk_size={chunk_size}"


@pytest.mark.parametrize("max_output", [0, 1, 5, 60, 10_000])
def test_nms_max_output_keeps_the_best_prefix(max_output):
    boxes, scores, labels = _random_boxes(300, seed=3)
    expected = _nms_ref(boxes, scores, labels, 0.3, max_output=max_output)
    for chunk_size in (NMS_CHUNK, 16):
        kept = batched_nms(boxes, scores, labels, 0.3, max_output=max_output, chunk_size=chunk_size)
        assert kept.tolist() == expected


def test_nms_class_aware_and_agnostic_on_overlapping_boxes_of_two_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 1, 0, 1])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1, 3]
    assert batched_nms(boxes, scores, labels, 0.5, class_agnostic=True).tolist() == [0, 3]
    # Strictly greater: an IoU equal to the threshold does not suppress (IoU([0,0,10,10], [5,0,15,10]) = 1/3).
    pair = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10]])
    assert batched_nms(pair, scores[:2], labels[:2] * 0, 1 / 3 + 1e-6).tolist() == [0, 1]
    assert batched_nms(pair, scores[:2], labels[:2] * 0, 1 / 3 - 1e-6).tolist() == [0]


def test_nms_ties_keep_input_order():
    boxes = torch.tensor([[0.0, 0, 10, 10], [100, 0, 110, 10], [0, 0, 10, 10], [200, 0, 210, 10]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.9])
    assert batched_nms(boxes, scores, torch.zeros(4, dtype=torch.int64), 0.5).tolist() == [3, 0, 1]


def test_nms_empty_and_degenerate_inputs():
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    points = torch.tensor([[5.0, 5, 5, 5], [5, 5, 5, 5]])  # zero area: IoU undefined, nothing suppressed
    assert batched_nms(points, torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.int64), 0.5).tolist() == [0, 1]


def test_nms_rejects_bad_shapes_and_arguments():
    boxes, scores, labels = _random_boxes(5, seed=0)
    with pytest.raises(ValueError, match=r"\(N, 4\), got \(5, 3\)"):
        batched_nms(boxes[:, :3], scores, labels, 0.5)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        batched_nms(boxes, scores[:4], labels, 0.5)
    with pytest.raises(ValueError, match="-1"):
        batched_nms(boxes, scores, labels, 0.5, max_output=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        batched_nms(boxes, scores, labels, 0.5, chunk_size=0)
