"""Loss terms heads share: focal losses, soft Dice and GIoU, in plain torch.

Each computes in the dtype it is given; losses cast outputs to float32 first,
since these terms (powers of probabilities, logs) lose too much in float16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float | None = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) of independent sigmoid
    classes, per element: ``targets`` holds 0/1 like ``logits``; ``alpha`` weighs the positives (None: 1).

    Unreduced, because detectors divide the sum by their number of positives, not of elements.
    """
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)  # the probability given to the right answer
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def softmax_focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of -(1 - p_t)^gamma * log(p_t) over the pixels, p_t the softmax probability of the right class.

    ``logits`` (B, K, ...), ``labels`` (B, ...) class indices; ``valid`` (B, ...) bool marks the pixels that
    count (the labels elsewhere are not read). 0 when no pixel counts.
    """
    safe = _safe_labels(labels, valid)  # (B, ...)
    log_p = logits.log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)  # (B, ...)
    loss = -((1 - log_p.exp()) ** gamma) * log_p  # (B, ...)
    if valid is None:
        return loss.mean()
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def dice_loss(
    logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - the multiclass soft Dice of softmax(``logits``) and one-hot ``labels``, averaged over images and classes.

    Dice weighs every class equally whatever its pixel count, which the per-pixel focal term does not;
    ``smooth`` keeps a class absent from both the image and the prediction at a Dice of 1. Shapes and
    ``valid`` as in ``softmax_focal_loss``; pixels that do not count are left out of every sum.
    """
    probs = logits.softmax(1)  # (B, K, ...)
    onehot = F.one_hot(_safe_labels(labels, valid), probs.shape[1]).movedim(-1, 1).to(probs.dtype)  # (B, K, ...)
    if valid is not None:
        weight = valid.unsqueeze(1).to(probs.dtype)  # (B, 1, ...)
        probs, onehot = probs * weight, onehot * weight
    pixels = tuple(range(2, probs.dim()))
    overlap = (probs * onehot).sum(pixels)  # (B, K)
    total = probs.sum(pixels) + onehot.sum(pixels)  # (B, K)
    return 1 - ((2 * overlap + smooth) / (total + smooth)).mean()


def giou_loss(boxes: torch.Tensor, targets: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - generalized IoU (Rezatofighi et al., CVPR 2019) of matched boxes (N, 4) ``[x1, y1, x2, y2]`` -> (N,).

    Unlike 1 - IoU it still has a gradient when the boxes do not overlap: the
    enclosing box pulls them together. Ranges over [0, 2); 0 for equal boxes.
    """
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
    target_area = (targets[:, 2] - targets[:, 0]) * (targets[:, 3] - targets[:, 1])  # (N,)
    inner = (torch.minimum(boxes[:, 2:], targets[:, 2:]) - torch.maximum(boxes[:, :2], targets[:, :2])).clamp(min=0)
    intersection = inner[:, 0] * inner[:, 1]  # (N,)
    union = area + target_area - intersection  # (N,)
    outer = torch.maximum(boxes[:, 2:], targets[:, 2:]) - torch.minimum(boxes[:, :2], targets[:, :2])  # (N, 2)
    enclosing = outer[:, 0] * outer[:, 1]  # (N,)
    giou = intersection / (union + eps) - (enclosing - union) / (enclosing + eps)
    return 1 - giou


def _safe_labels(labels: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``labels`` with class 0 where they do not count, so an ignore value never indexes a class."""
    return labels if valid is None else labels.masked_fill(~valid, 0)
