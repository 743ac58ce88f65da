"""SSDLoss: how SSDHead learns, torchvision's SSD recipe (heads.md, section 9.1).

Each default box is matched to the box it should predict or to background once
per sample on the CPU (``encode``); the loss of a batch then picks the hard
negatives and sums over all its default boxes at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinov3_toolkit.heads import (
    BoxTargets,
    Head,
    HeadLoss,
    anchor_batch,
    boxes_in_input,
    encode_boxes,
    match_anchors,
)

from .model import BOX_WEIGHTS


class SSDLoss(HeadLoss):
    """Softmax cross-entropy over the positive default boxes and the hardest negatives, smooth L1 (beta 1) on the
    positives' (dx, dy, dw, dh); each summed and divided by the batch's number of positives (at least 1).

    ``iou_threshold``: a default box overlapping its best box at least this much predicts it, else it is
    background (every box also gets its best default box, ``match_anchors``). ``neg_pos_ratio``: per image,
    only this many negatives per positive count, those the head gets most wrong: the other thousands are
    easy and would swamp the loss (hard-negative mining).
    """

    def __init__(self, head: Head, iou_threshold: float = 0.5, neg_pos_ratio: float = 3.0) -> None:
        super().__init__(head)
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"SSDLoss: iou_threshold must be in (0, 1], got {iou_threshold!r}")
        if not neg_pos_ratio > 0:
            raise ValueError(f"SSDLoss: neg_pos_ratio must be > 0, got {neg_pos_ratio!r}")
        self.iou_threshold, self.neg_pos_ratio = float(iou_threshold), float(neg_pos_ratio)
        self.num_classes = len(head.class_names)

    def encode(self, target: BoxTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Per default box (L in all, in ``per_anchor``'s order): ``labels`` (L,) int64, 0 for background and
        k + 1 for class k; ``deltas`` (L, 4) float32, the (dx, dy, dw, dh) of its box, 0 for background."""
        boxes, labels = boxes_in_input(target, original_size, input_size, self.num_classes, "SSDLoss")
        anchors = self.head.anchors(input_size, feature_size)  # (L, 4)
        match = match_anchors(anchors, boxes, self.iou_threshold, self.iou_threshold)  # (L,): no box is ignored
        positive = match >= 0
        classes = torch.zeros(len(anchors), dtype=torch.int64)  # (L,)
        classes[positive] = labels[match[positive]] + 1
        deltas = torch.zeros(len(anchors), 4)  # (L, 4)
        deltas[positive] = encode_boxes(boxes[match[positive]], anchors[positive], BOX_WEIGHTS)
        return {"labels": classes, "deltas": deltas}

    def __call__(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]
                 ) -> dict[str, torch.Tensor]:
        cls, box, labels, deltas = anchor_batch(outputs, targets, self.num_classes + 1, "SSDLoss")  # (B, L, K+1)...

        positive = labels > 0  # (B, L)
        num_pos = positive.sum().clamp(min=1)
        ce = F.cross_entropy(cls.flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape)  # (B, L)
        negative = hard_negatives(ce.detach(), positive, self.neg_pos_ratio)  # (B, L)
        cls_loss = (ce[positive].sum() + ce[negative].sum()) / num_pos
        box_loss = F.smooth_l1_loss(box[positive], deltas[positive], reduction="sum", beta=1.0) / num_pos
        return {"loss": cls_loss + box_loss, "cls": cls_loss, "box": box_loss}


def hard_negatives(loss: torch.Tensor, positive: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, L) bool: per image, the ``ratio`` x its positives negatives of highest ``loss`` (B, L) (all of them
    if it has fewer); none in an image without positives, as in torchvision."""
    ranked = loss.masked_fill(positive, -torch.inf)  # (B, L): positives rank last
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices  # (B, L)
    rank = order.argsort(dim=1)  # (B, L): each box's place by loss, ties by position
    return (rank < ratio * positive.sum(dim=1, keepdim=True)) & ~positive
