"""Anchor boxes of one-stage detectors (RetinaNet, SSD): placed on a feature grid, matched to ground truth,
and the (dx, dy, dw, dh) coder between boxes and the regression outputs.

Our own because torchvision is not a dependency (see ``boxes``). Everything is
in input pixels; boxes are ``[x1, y1, x2, y2]``. The layout of anchors is the
one of torchvision's detection models: locations row-major, then the A anchors
of each location, so a head's (B, A * C, h, w) output reads per anchor with
``per_anchor``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .boxes import box_iou

MATCH_BACKGROUND = -1  # ``match_anchors``: the anchor should predict no object
MATCH_IGNORE = -2  # ``match_anchors``: overlaps an object too much to be background, too little to predict it
#: Largest log-scale a decoded box may grow by (torchvision's): exp() of a wild early output stays finite.
MAX_LOG_SCALE = math.log(1000.0 / 16)


def anchor_grid(shapes: torch.Tensor, input_size: tuple[int, int], feature_size: tuple[int, int]) -> torch.Tensor:
    """The anchors of every cell of a feature map: ``shapes`` (A, 2) (width, height) in input pixels -> (h*w*A, 4).

    Cell (i, j) is centred at ((j + 0.5) * stride_x, (i + 0.5) * stride_y), the stride per axis being input /
    feature size (16 for a patch-16 backbone), on ``shapes``' device.
    """
    (h_in, w_in), (h, w) = input_size, feature_size
    ys = (torch.arange(h, device=shapes.device, dtype=torch.float32) + 0.5) * (h_in / h)  # (h,)
    xs = (torch.arange(w, device=shapes.device, dtype=torch.float32) + 0.5) * (w_in / w)  # (w,)
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (h*w, 1, 2)
    half = shapes.float()[None] / 2  # (1, A, 2)
    return torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 4)  # (h*w*A, 4)


def per_anchor(x: torch.Tensor, channels: int) -> torch.Tensor:
    """A head's map (B, A * channels, h, w) -> (B, h*w*A, channels), in ``anchor_grid``'s order."""
    b, _, h, w = x.shape
    return x.reshape(b, -1, channels, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, channels)


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Regression targets (N, 4) of ``boxes`` (N, 4) on their ``anchors`` (N, 4).

    dx = wx * (x - x_a) / w_a, dy likewise, dw = ww * log(w / w_a), dh likewise (centres x, y; sizes w, h):
    shifts relative to the anchor's size and log-scales, so every anchor size learns targets of one range.
    ``weights`` (wx, wy, ww, wh) scale them to the loss (SSD: 10, 10, 5, 5; RetinaNet: 1, 1, 1, 1).
    """
    wx, wy, ww, wh = weights
    centre, size = _centre_size(boxes)
    anchor_centre, anchor_size = _centre_size(anchors)
    shift = (centre - anchor_centre) / anchor_size * centre.new_tensor([wx, wy])  # (N, 2)
    scale = torch.log(size / anchor_size) * size.new_tensor([ww, wh])  # (N, 2)
    return torch.cat([shift, scale], dim=1)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """The boxes (N, 4) that ``deltas`` (N, 4) encode on ``anchors`` (N, 4): the inverse of ``encode_boxes``."""
    wx, wy, ww, wh = weights
    anchor_centre, anchor_size = _centre_size(anchors)
    centre = anchor_centre + deltas[:, :2] / deltas.new_tensor([wx, wy]) * anchor_size  # (N, 2)
    log_scale = (deltas[:, 2:] / deltas.new_tensor([ww, wh])).clamp(max=MAX_LOG_SCALE)  # (N, 2)
    half = anchor_size * log_scale.exp() / 2  # (N, 2)
    return torch.cat([centre - half, centre + half], dim=1)


def match_anchors(anchors: torch.Tensor, boxes: torch.Tensor, fg_iou: float, bg_iou: float) -> torch.Tensor:
    """Which box each anchor (L, 4) should predict, out of ``boxes`` (N, 4): (L,) int64 box indices,
    ``MATCH_BACKGROUND`` or ``MATCH_IGNORE``.

    An anchor takes the box it overlaps most when that IoU is >= ``fg_iou``; below ``bg_iou`` it is
    background, in between ignored (SSD: both 0.5, nothing ignored). Then every box also claims the
    anchor(s) it overlaps most (torchvision's "low-quality matches"), so a small or oddly shaped box that
    reaches ``fg_iou`` with no anchor still has one to train; an anchor so claimed by several boxes takes
    the one it overlaps most.
    """
    if not bg_iou <= fg_iou:
        raise ValueError(f"match_anchors: bg_iou ({bg_iou}) must not exceed fg_iou ({fg_iou})")
    if not len(boxes):
        return torch.full((len(anchors),), MATCH_BACKGROUND, dtype=torch.int64, device=anchors.device)
    iou = box_iou(boxes, anchors).nan_to_num(0.0)  # (N, L)
    best, match = iou.max(dim=0)  # (L,) each
    match = torch.where(best >= fg_iou, match, torch.where(best < bg_iou, MATCH_BACKGROUND, MATCH_IGNORE))
    claimed = (iou == iou.amax(dim=1, keepdim=True)) & (iou > 0)  # (N, L): each box's best anchor(s)
    by_claimant = (iou * claimed).argmax(dim=0)  # (L,): of the boxes claiming an anchor, its best overlap
    return torch.where(claimed.any(dim=0), by_claimant, match)


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[x1, y1, x2, y2]`` (N, 4) -> centres (N, 2) and sizes (N, 2), (x, y) and (w, h)."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]


def anchor_batch(outputs: Any, targets: list[dict[str, torch.Tensor]], channels: int,
                 loss: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An anchor head's loss, first step: its ``{"cls", "box"}`` outputs per anchor, (B, L, ``channels``) and
    (B, L, 4) float32, and the batch's encoded ``labels`` (B, L) and ``deltas`` (B, L, 4), checked to match
    (``loss`` names the loss in the errors)."""
    if not (isinstance(outputs, dict) and all(isinstance(outputs.get(k), torch.Tensor) for k in ("cls", "box"))):
        raise TypeError(f"{loss}: outputs must be the head's dict of 'cls' and 'box' tensors, got "
                        f"{type(outputs).__name__}")
    cls = per_anchor(outputs["cls"].float(), channels)  # (B, L, C)
    box = per_anchor(outputs["box"].float(), 4)  # (B, L, 4)
    labels = torch.stack([t["labels"] for t in targets])  # (B, L)
    deltas = torch.stack([t["deltas"] for t in targets])  # (B, L, 4)
    if labels.shape != cls.shape[:2]:
        raise ValueError(f"{loss}: the outputs hold {cls.shape[0]} images x {cls.shape[1]} anchors but the targets "
                         f"{tuple(labels.shape)}; were they encoded for another input or feature size, or another "
                         f"number of anchors?")
    return cls, box, labels, deltas
