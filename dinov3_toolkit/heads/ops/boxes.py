"""Box geometry shared by detection heads: pairwise IoU and exact, memory-bounded batched NMS.

Our own NMS because torchvision is not a dependency (its wheels are tied to one
torch build, which breaks CPU-only and Jetson installs). Boxes are ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...preprocess import PreparedImage
from ...results import Detections

NMS_CHUNK = 1024  # candidates per greedy block: bounds the IoU matrices at chunk x chunk and chunk x kept


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4) -> (N, M).

    Two empty boxes give 0/0 = NaN, which compares False with any threshold, so
    degenerate boxes never suppress anything (as in torchvision).
    """
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)  # (N,)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # (M,)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    iou_threshold: float,
    *,
    class_agnostic: bool = False,
    max_output: int | None = None,
    chunk_size: int = NMS_CHUNK,
) -> torch.Tensor:
    """Greedy NMS; returns the kept indices (int64, on ``boxes.device``) by descending score.

    Same result as ``torchvision.ops.batched_nms``: a box is dropped when its IoU
    with a higher-scored kept box of the same label (any label if
    ``class_agnostic``) is above ``iou_threshold``. Labels are compared directly
    instead of offsetting boxes per class, so IoUs are not rounded by large offsets.

    Exact, with no pre-NMS top-k, yet bounded in memory: the score-sorted
    candidates are taken ``chunk_size`` at a time; a chunk first loses the members
    that overlap boxes already kept, then runs the greedy pass among itself (the
    IoU matrix is computed on the device, the inherently sequential pass runs on a
    small boolean matrix on the host). It stops once ``max_output`` boxes are kept,
    so a low score threshold costs little more than a high one.

    The sort is stable: equal scores keep their input order on every device and
    run, so results are reproducible (an unstable sort may order ties differently
    on CPU and CUDA, and then keep a different one of two equal boxes).
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1] or labels.shape != boxes.shape[:1]:
        raise ValueError(
            f"scores and labels must be (N,) for {len(boxes)} boxes, "
            f"got {tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    if max_output is not None and max_output < 0:
        raise ValueError(f"max_output must be None or >= 0, got {max_output!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    limit = len(boxes) if max_output is None else min(max_output, len(boxes))
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    kept: list[torch.Tensor] = []
    kept_boxes = boxes.new_zeros((0, 4))  # (K, 4)
    kept_labels = labels.new_zeros((0,))  # (K,)
    n_kept = 0
    for start in range(0, len(order), chunk_size):
        if n_kept >= limit:
            break
        idx = order[start : start + chunk_size]  # (C,)
        if n_kept:
            overlap = _suppresses(boxes[idx], labels[idx], kept_boxes, kept_labels, iou_threshold, class_agnostic)
            idx = idx[~overlap.any(dim=1)]  # (C',)
        if not len(idx):
            continue
        chunk_boxes, chunk_labels = boxes[idx], labels[idx]
        overlap = _suppresses(chunk_boxes, chunk_labels, chunk_boxes, chunk_labels, iou_threshold, class_agnostic)
        keep = _greedy(overlap.cpu().numpy())[: limit - n_kept]
        keep = torch.from_numpy(keep).to(idx.device)  # positions within the chunk
        kept.append(idx[keep])
        kept_boxes = torch.cat([kept_boxes, chunk_boxes[keep]])
        kept_labels = torch.cat([kept_labels, chunk_labels[keep]])
        n_kept += len(keep)
    if not kept:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    return torch.cat(kept)


def _suppresses(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    by_boxes: torch.Tensor,
    by_labels: torch.Tensor,
    iou_threshold: float,
    class_agnostic: bool,
) -> torch.Tensor:
    """(N, M) bool: box m of ``by_boxes`` would suppress box n of ``boxes``."""
    overlap = box_iou(boxes, by_boxes) > iou_threshold  # (N, M)
    if not class_agnostic:
        overlap &= labels[:, None] == by_labels[None, :]
    return overlap


def _greedy(overlap: np.ndarray) -> np.ndarray:
    """Greedy pass over a score-sorted (C, C) suppression matrix -> kept positions, ascending."""
    alive = np.ones(len(overlap), dtype=bool)
    for i in range(len(overlap)):
        if alive[i]:
            alive[i + 1 :] &= ~overlap[i, i + 1 :]
    return np.flatnonzero(alive)


def nms_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, image: PreparedImage,
                params: Mapping[str, Any], class_names: tuple[str, ...]) -> Detections:
    """A detector's last step: candidate boxes in input pixels -> clipped to the input frame, NMS with the head's
    ``nms_iou_threshold``, ``class_agnostic_nms`` and ``max_detections``, the original image's pixels, on the host."""
    h, w = image.input_size
    boxes = torch.minimum(boxes.clamp(min=0), boxes.new_tensor([w, h, w, h]))  # (M, 4)
    keep = batched_nms(boxes, scores, labels, params["nms_iou_threshold"],
                       class_agnostic=params["class_agnostic_nms"], max_output=params["max_detections"])  # (N,)
    sy, sx = image.scale
    height, width = image.original_size
    boxes = boxes[keep] * boxes.new_tensor([sx, sy, sx, sy])  # (N, 4) original pixels
    # Clip again: the float32 scaling can land a hair outside the frame.
    boxes = torch.minimum(boxes, boxes.new_tensor([width, height, width, height]))
    return Detections(boxes=boxes.cpu().numpy(), scores=scores[keep].cpu().numpy(),
                      labels=labels[keep].cpu().numpy(), class_names=class_names)
