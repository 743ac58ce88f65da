"""FCOSLoss: how DinoFCOSHead learns, the recipe of Raessan's object_detection_dinov3 (heads.md, section 8.1).

Each location of P3-P5 is assigned the box it should predict, or background,
once per sample on the CPU (``encode``); the loss of a batch is then a few
dense operations over all its locations at once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from dinov3_toolkit.heads import BoxTargets, Head, HeadLoss, boxes_in_input, giou_loss, sigmoid_focal_loss

from .model import NUM_LEVELS

BACKGROUND = -1  # the label of a location that predicts no box


class FCOSLoss(HeadLoss):
    """Sigmoid focal loss on the classes, GIoU on the boxes and BCE on the centerness, each summed and
    divided by the number of positive locations (at least 1, so images without objects still train).

    ``center_radius``: a location is positive only within this many strides of its box's centre (FCOS
    centre sampling): locations near a box's border see little of the object and predict poor boxes.
    """

    def __init__(self, head: Head, center_radius: float = 1.5) -> None:
        super().__init__(head)
        if not center_radius > 0:
            raise ValueError(f"FCOSLoss: center_radius must be > 0 (strides), got {center_radius!r}")
        self.center_radius = float(center_radius)
        self.num_classes = len(head.class_names)

    def encode(self, target: BoxTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Per location of P3, P4 and P5 (each row-major, then concatenated: L in all):

        ``labels`` (L,) int64, the class to predict or -1 for background; ``ltrb`` (L, 4) float32, the
        distances from the location to the sides of its box in input pixels; ``centerness`` (L,) float32.
        ``ltrb`` and ``centerness`` are 0 at background locations.
        """
        boxes, labels = boxes_in_input(target, original_size, input_size, self.num_classes, "FCOSLoss")
        points, strides, counts = _locations(input_size, feature_size)  # (L, 2), (L, 2), cells per level
        n = len(points)
        if not len(boxes):
            return {"labels": torch.full((n,), BACKGROUND), "ltrb": torch.zeros(n, 4), "centerness": torch.zeros(n)}

        ltrb = torch.cat([points[:, None] - boxes[:, :2], boxes[:, 2:] - points[:, None]], dim=-1)  # (L, N, 4)
        inside = ltrb.amin(-1) > 0  # (L, N)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
        near = ((points[:, None] - centres).abs() < self.center_radius * strides[:, None]).all(-1)  # (L, N)
        sampled = inside & near
        # A level where centre sampling leaves this image no positive falls back to every inside-box location.
        candidate = torch.cat([s if s.any() else i for s, i in zip(sampled.split(counts), inside.split(counts))])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
        area, match = torch.where(candidate, area, math.inf).min(1)  # (L,) each: the smallest candidate box wins
        positive = area < math.inf  # (L,)

        ltrb = ltrb[torch.arange(n), match] * positive[:, None]  # (L, 4)
        lr, tb = ltrb[positive, 0::2], ltrb[positive, 1::2]  # (P, 2) each
        centerness = torch.zeros(n)  # (L,)
        centerness[positive] = (lr.amin(1) / lr.amax(1) * tb.amin(1) / tb.amax(1)).sqrt()
        return {"labels": torch.where(positive, labels[match], BACKGROUND), "ltrb": ltrb, "centerness": centerness}

    def __call__(
        self, outputs: dict[str, list[torch.Tensor]], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        if not isinstance(outputs, dict):
            raise TypeError(f"FCOSLoss: outputs must be the dict of DinoFCOSHead.forward ('cls', 'reg', 'ctr'), "
                            f"got {type(outputs).__name__}")
        cls = _flatten(outputs, "cls", self.num_classes)  # (B, L, K)
        reg = _flatten(outputs, "reg", 4)  # (B, L, 4) l, t, r, b in input pixels
        ctr = _flatten(outputs, "ctr", 1)[..., 0]  # (B, L)
        labels = torch.stack([t["labels"] for t in targets])  # (B, L)
        ltrb = torch.stack([t["ltrb"] for t in targets])  # (B, L, 4)
        centerness = torch.stack([t["centerness"] for t in targets])  # (B, L)
        if labels.shape != cls.shape[:2]:
            raise ValueError(f"FCOSLoss: the outputs hold {cls.shape[0]} images x {cls.shape[1]} locations but the "
                             f"targets {tuple(labels.shape)}; were they encoded for another input or feature size?")

        positive = labels != BACKGROUND  # (B, L)
        num_pos = positive.sum().clamp(min=1)
        onehot = F.one_hot(labels.clamp(min=0), self.num_classes).to(cls.dtype) * positive[..., None]  # (B, L, K)
        cls_loss = sigmoid_focal_loss(cls, onehot, alpha=0.25, gamma=2.0).sum() / num_pos
        # Both boxes are placed around their location, whose position cancels out of the GIoU.
        box_loss = giou_loss(_box(reg[positive]), _box(ltrb[positive])).sum() / num_pos
        ctr_loss = F.binary_cross_entropy_with_logits(ctr[positive], centerness[positive], reduction="sum") / num_pos
        return {"loss": cls_loss + box_loss + ctr_loss, "cls": cls_loss, "box": box_loss, "centerness": ctr_loss}


def _locations(
    input_size: tuple[int, int], feature_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The cell centres of P3-P5 as (x, y) input pixels (L, 2), each cell's (x, y) stride (L, 2), cells per level.

    The strides are computed as ``DinoFCOSHead.postprocess`` decodes them: input / P3 size, doubled per level.
    """
    (h_in, w_in), (h, w) = input_size, feature_size
    points, strides, counts = [], [], []
    for level in range(NUM_LEVELS):
        stride_y, stride_x = h_in / feature_size[0] * 2**level, w_in / feature_size[1] * 2**level
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride_y  # (h_l,)
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride_x  # (w_l,)
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # (h_l, w_l) each
        points.append(torch.stack([cx, cy], dim=-1).reshape(-1, 2))  # (h_l*w_l, 2)
        strides.append(torch.tensor([stride_x, stride_y]).expand(h * w, 2))  # (h_l*w_l, 2)
        counts.append(h * w)
        h, w = -(-h // 2), -(-w // 2)  # the next level comes from a 3x3 stride-2 conv with padding 1
    return torch.cat(points), torch.cat(strides), counts


def _flatten(outputs: dict[str, Any], key: str, channels: int) -> torch.Tensor:
    """``outputs[key]``, NUM_LEVELS maps (B, channels, h_l, w_l), as one float32 (B, L, channels) tensor."""
    maps = outputs.get(key)
    if not (isinstance(maps, (list, tuple)) and len(maps) == NUM_LEVELS
            and all(isinstance(m, torch.Tensor) and m.dim() == 4 and m.shape[1] == channels for m in maps)):
        got = [tuple(getattr(m, "shape", ())) for m in maps] if isinstance(maps, (list, tuple)) else type(maps).__name__
        raise ValueError(f"FCOSLoss: outputs[{key!r}] must be {NUM_LEVELS} maps (B, {channels}, h, w), one per level "
                         f"as DinoFCOSHead.forward returns them, got {got}")
    return torch.cat([m.float().flatten(2) for m in maps], dim=2).transpose(1, 2)


def _box(ltrb: torch.Tensor) -> torch.Tensor:
    """Distances (P, 4) to the sides -> the box ``[x1, y1, x2, y2]`` (P, 4) around a location at (0, 0)."""
    return torch.cat([-ltrb[:, :2], ltrb[:, 2:]], dim=1)
