"""RetinaNetLoss: how RetinaNetHead learns, torchvision's RetinaNet recipe (heads.md, section 9.1).

Each anchor is matched to the box it should predict, to background or to
nothing (ignored) once per sample on the CPU (``encode``); the loss of a batch
is then a few dense operations over all its anchors at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinov3_toolkit.heads import (
    MATCH_IGNORE,
    BoxTargets,
    Head,
    HeadLoss,
    anchor_batch,
    boxes_in_input,
    encode_boxes,
    match_anchors,
    sigmoid_focal_loss,
)

from .model import BOX_WEIGHTS


class RetinaNetLoss(HeadLoss):
    """Sigmoid focal loss (alpha 0.25, gamma 2) over every anchor that is not ignored, L1 on the positive
    anchors' (dx, dy, dw, dh); each summed and divided by the batch's number of positive anchors (at least 1,
    so images without objects still train).

    ``fg_iou`` / ``bg_iou``: an anchor overlapping its best box at least ``fg_iou`` predicts it, below
    ``bg_iou`` it is background, in between it is ignored (neither rewarded nor punished); every box also
    gets its best anchor (``match_anchors``).
    """

    def __init__(self, head: Head, fg_iou: float = 0.5, bg_iou: float = 0.4) -> None:
        super().__init__(head)
        if not 0.0 < bg_iou <= fg_iou <= 1.0:
            raise ValueError(f"RetinaNetLoss: need 0 < bg_iou <= fg_iou <= 1, got bg_iou {bg_iou!r}, fg_iou {fg_iou!r}")
        self.fg_iou, self.bg_iou = float(fg_iou), float(bg_iou)
        self.num_classes = len(head.class_names)

    def encode(self, target: BoxTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Per anchor (L in all, in ``per_anchor``'s order): ``labels`` (L,) int64, the class to predict,
        ``MATCH_BACKGROUND`` or ``MATCH_IGNORE``; ``deltas`` (L, 4) float32, the (dx, dy, dw, dh) of its box,
        0 where it has none."""
        boxes, labels = boxes_in_input(target, original_size, input_size, self.num_classes, "RetinaNetLoss")
        anchors = self.head.anchors(input_size, feature_size)  # (L, 4)
        match = match_anchors(anchors, boxes, self.fg_iou, self.bg_iou)  # (L,)
        positive = match >= 0
        classes = match.clone()  # (L,): MATCH_BACKGROUND and MATCH_IGNORE stay
        classes[positive] = labels[match[positive]]
        deltas = torch.zeros(len(anchors), 4)  # (L, 4)
        deltas[positive] = encode_boxes(boxes[match[positive]], anchors[positive], BOX_WEIGHTS)
        return {"labels": classes, "deltas": deltas}

    def __call__(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]
                 ) -> dict[str, torch.Tensor]:
        cls, box, labels, deltas = anchor_batch(outputs, targets, self.num_classes, "RetinaNetLoss")  # (B, L, K)...

        positive = labels >= 0  # (B, L): the match values MATCH_BACKGROUND and MATCH_IGNORE are negative
        counted = labels != MATCH_IGNORE  # (B, L): positives and background
        num_pos = positive.sum().clamp(min=1)
        onehot = F.one_hot(labels.clamp(min=0), self.num_classes).to(cls.dtype) * positive[..., None]  # (B, L, K)
        cls_loss = sigmoid_focal_loss(cls[counted], onehot[counted], alpha=0.25, gamma=2.0).sum() / num_pos
        box_loss = F.l1_loss(box[positive], deltas[positive], reduction="sum") / num_pos
        return {"loss": cls_loss + box_loss, "cls": cls_loss, "box": box_loss}

