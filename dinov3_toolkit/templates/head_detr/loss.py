"""DETRLoss: how DETRHead learns, the set criterion of mudit1729/dinov2-od (heads.md, section 9.2).

Each image's boxes are matched one-to-one to queries (``matcher``); the matched
queries learn their target's class and box, every other query learns "no object"
through the focal loss's negatives. ``encode`` only normalises the boxes: the
matching depends on the predictions, so it runs in the loss, on every step.
"""

from __future__ import annotations

from typing import Any

import torch

from dinov3_toolkit.heads import BoxTargets, Head, HeadLoss, giou_loss, sigmoid_focal_loss

from .matcher import HungarianMatcher
from .model import box_cxcywh_to_xyxy


class DETRLoss(HeadLoss):
    """``class_weight`` * sigmoid focal loss over every (query, class) + ``l1_weight`` * L1 + ``giou_weight`` *
    GIoU loss over the matched pairs, each summed and divided by the batch's number of target boxes (at least
    1, so images without objects still train: they give the focal term alone).

    ``*_cost``: the matching costs (see ``HungarianMatcher``); ``alpha``, ``gamma``: the focal loss's, in the
    class cost too. ``aux_loss``: add the same loss, with its own matching, for every earlier decoder layer
    (cheap: Q predictions a layer); DETR found this direct signal to the lower layers helps them train.
    """

    def __init__(self, head: Head, class_cost: float = 1.0, l1_cost: float = 5.0, giou_cost: float = 2.0,
                 class_weight: float = 1.0, l1_weight: float = 5.0, giou_weight: float = 2.0, alpha: float = 0.25,
                 gamma: float = 2.0, aux_loss: bool = True) -> None:
        super().__init__(head)
        factors = {"class_cost": class_cost, "l1_cost": l1_cost, "giou_cost": giou_cost, "class_weight": class_weight,
                   "l1_weight": l1_weight, "giou_weight": giou_weight, "gamma": gamma}
        negative = {k: v for k, v in factors.items() if not v >= 0}
        if negative or not 0 <= alpha <= 1:
            raise ValueError(f"DETRLoss: the costs, weights and gamma must be >= 0 and alpha in [0, 1], got "
                             f"{negative or {'alpha': alpha}}")
        self.matcher = HungarianMatcher(class_cost, l1_cost, giou_cost, alpha, gamma)
        self.class_weight, self.l1_weight, self.giou_weight = class_weight, l1_weight, giou_weight
        self.alpha, self.gamma = alpha, gamma
        self.aux_loss = aux_loss
        self.num_classes = len(head.class_names)

    def encode(self, target: BoxTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``labels`` (N,) int64 and ``boxes`` (N, 4) float32 normalised ``[cx, cy, w, h]`` of the input image."""
        labels = torch.from_numpy(target.labels).long()  # (N,)
        if len(labels) and not (labels.min() >= 0 and labels.max() < self.num_classes):
            raise ValueError(f"DETRLoss: box labels must be class indices in [0, {self.num_classes}), got "
                             f"{labels.min().item()}..{labels.max().item()}")
        # The input is the whole frame resized (stretched or not): normalised by the original size,
        # coordinates are those of the input.
        height, width = original_size
        boxes = torch.from_numpy(target.boxes).float() / torch.tensor([width, height] * 2)  # (N, 4) xyxy in 0..1
        centre, size = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]  # (N, 2) each
        return {"labels": labels, "boxes": torch.cat([centre, size], dim=1)}

    def __call__(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]
                 ) -> dict[str, torch.Tensor]:
        logits, boxes = self._outputs(outputs, "logits", "boxes", len(targets))  # (B, Q, K), (B, Q, 4)
        num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
        parts = self._layer(logits, boxes, targets, num_boxes)
        losses = {"loss": self._weighted(parts), **parts}
        if self.aux_loss:
            aux_logits, aux_boxes = self._outputs(outputs, "aux_logits", "aux_boxes", len(targets))  # (B, L-1, Q, .)
            aux = sum((self._weighted(self._layer(aux_logits[:, i], aux_boxes[:, i], targets, num_boxes))
                       for i in range(aux_logits.shape[1])), torch.zeros((), device=logits.device))
            losses["loss"] = losses["loss"] + aux
            losses["aux"] = aux
        return losses

    def _layer(self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]],
               num_boxes: int) -> dict[str, torch.Tensor]:
        """The unweighted ``cls``, ``l1`` and ``giou`` losses of one decoder layer's (B, Q, K) and (B, Q, 4)."""
        onehot = torch.zeros_like(logits)  # (B, Q, K): 1 where a matched query should say its target's class
        matched, wanted = [], []
        for b, target in enumerate(targets):
            query, index = self.matcher(logits[b], boxes[b], target["labels"], target["boxes"])  # (M,) each
            onehot[b, query, target["labels"][index]] = 1
            matched.append(boxes[b, query])
            wanted.append(target["boxes"][index])
        matched, wanted = torch.cat(matched), torch.cat(wanted).float()  # (P, 4) each, P matched pairs
        return {
            "cls": sigmoid_focal_loss(logits, onehot, self.alpha, self.gamma).sum() / num_boxes,
            "l1": (matched - wanted).abs().sum() / num_boxes,
            "giou": giou_loss(box_cxcywh_to_xyxy(matched), box_cxcywh_to_xyxy(wanted)).sum() / num_boxes,
        }

    def _weighted(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.class_weight * parts["cls"] + self.l1_weight * parts["l1"] + self.giou_weight * parts["giou"]

    def _outputs(self, outputs: Any, logits_key: str, boxes_key: str, batch: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``outputs[logits_key]`` and ``outputs[boxes_key]`` as float32, checked against what DETRHead returns."""
        logits = outputs.get(logits_key) if isinstance(outputs, dict) else None
        boxes = outputs.get(boxes_key) if isinstance(outputs, dict) else None
        if not (isinstance(logits, torch.Tensor) and isinstance(boxes, torch.Tensor) and len(logits) == len(boxes)
                == batch and logits.shape[-1] == self.num_classes and boxes.shape[-1] == 4
                and logits.shape[:-1] == boxes.shape[:-1]):
            got = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                   for k, v in (outputs.items() if isinstance(outputs, dict) else {})}
            raise ValueError(f"DETRLoss: outputs must hold {logits_key!r} (B, ..., Q, {self.num_classes}) and "
                             f"{boxes_key!r} (B, ..., Q, 4) for B = {batch} targets, as DETRHead.forward returns "
                             f"them (the aux_* ones in training mode only), got {got or type(outputs).__name__}")
        return logits.float(), boxes.float()
