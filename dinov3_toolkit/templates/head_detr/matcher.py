"""HungarianMatcher: which query answers for which object, the one-to-one assignment of least total cost.

DETR predicts a set, so its loss first decides which prediction each ground-truth
box is compared with; the optimal assignment (``scipy.optimize.linear_sum_assignment``)
is what teaches each object to one query and lets inference skip NMS. The costs are
Deformable DETR's: a focal-style class cost, L1 and -GIoU on the boxes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from dinov3_toolkit.heads import giou_loss

from .model import box_cxcywh_to_xyxy


class HungarianMatcher:
    """Cost of giving target n to query q = ``class_cost`` * focal class cost + ``l1_cost`` * L1 of the
    normalised ``[cx, cy, w, h]`` + ``giou_cost`` * (-GIoU).

    The class cost is the focal loss of calling the query positive for the target's class minus that
    of calling it negative (``alpha``, ``gamma`` as the loss's), so it is on the scale of what matching
    changes in the loss. With fewer queries than targets, the assignment pairs every query and the
    targets left over go unmatched (crowded images exist: an error would stop a run mid-epoch).
    """

    def __init__(self, class_cost: float = 1.0, l1_cost: float = 5.0, giou_cost: float = 2.0, alpha: float = 0.25,
                 gamma: float = 2.0) -> None:
        self.class_cost, self.l1_cost, self.giou_cost = class_cost, l1_cost, giou_cost
        self.alpha, self.gamma = alpha, gamma

    def cost(self, logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
             target_boxes: torch.Tensor) -> torch.Tensor:
        """One image's (Q, N) cost matrix: ``logits`` (Q, K), ``boxes`` (Q, 4) and ``target_boxes`` (N, 4)
        normalised ``[cx, cy, w, h]``, ``labels`` (N,) class indices."""
        logits, boxes, target_boxes = logits.float(), boxes.float(), target_boxes.float()
        prob = logits.sigmoid()  # (Q, K)
        # -log(p) = softplus(-x) and -log(1 - p) = softplus(x): exact where p rounds to 0 or 1.
        positive = self.alpha * (1 - prob) ** self.gamma * F.softplus(-logits)  # (Q, K)
        negative = (1 - self.alpha) * prob**self.gamma * F.softplus(logits)  # (Q, K)
        class_cost = (positive - negative)[:, labels]  # (Q, N)
        l1_cost = torch.cdist(boxes, target_boxes, p=1)  # (Q, N)
        q, n = len(boxes), len(target_boxes)
        pairs = giou_loss(box_cxcywh_to_xyxy(boxes).repeat_interleave(n, 0),
                          box_cxcywh_to_xyxy(target_boxes).repeat(q, 1))  # (Q*N,) 1 - GIoU, query-major
        giou_cost = pairs.view(q, n) - 1  # (Q, N) -GIoU
        return self.class_cost * class_cost + self.l1_cost * l1_cost + self.giou_cost * giou_cost

    @torch.no_grad()
    def __call__(self, logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                 target_boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The matched (query indices, target indices), (M,) int64 each on ``logits``' device, M = min(Q, N);
        ordered by query."""
        if not len(labels):
            empty = torch.zeros(0, dtype=torch.int64, device=logits.device)
            return empty, empty
        cost = self.cost(logits, boxes, labels, target_boxes).cpu()
        if not torch.isfinite(cost).all():
            raise ValueError("HungarianMatcher: the cost matrix is not finite (the head's outputs hold NaN or "
                             "inf); lower --lr or keep --clip on")
        queries, targets = linear_sum_assignment(cost.numpy())
        return (torch.from_numpy(queries.astype(np.int64)).to(logits.device),
                torch.from_numpy(targets.astype(np.int64)).to(logits.device))
