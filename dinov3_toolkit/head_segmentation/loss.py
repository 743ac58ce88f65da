"""FocalDiceLoss: how ASPPDecoder learns, the recipe of Raessan's semantic_segmentation_dinov3 (heads.md, 8.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinov3_toolkit.heads import Head, HeadLoss, LabelTargets, dice_loss, softmax_focal_loss

IGNORE = -1  # what ``encode`` turns the target's ignore index into


class FocalDiceLoss(HeadLoss):
    """Softmax focal loss (gamma 2) plus multiclass soft Dice, weighted 1 : 1, on ``size`` x ``size`` pixels.

    The low-resolution logits are upsampled bilinearly to that fixed size, as the
    published head was trained: a loss at the full input size would cost far more
    memory for 134 classes and see little more. Pixels labelled with the target's
    ``ignore`` index count in neither term.
    """

    def __init__(self, head: Head, size: int = 320) -> None:
        super().__init__(head)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"FocalDiceLoss: size must be a positive int (pixels per side), got {size!r}")
        self.size = (size, size)
        self.num_classes = len(head.class_names)

    def encode(self, target: LabelTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> torch.Tensor:
        """The labels resized (nearest) to ``size`` x ``size``: (size, size) int64, -1 where ignored."""
        labels = torch.from_numpy(target.labels).long()  # (H, W)
        if labels.shape != tuple(original_size):
            raise ValueError(f"FocalDiceLoss: the label image is {tuple(labels.shape)}, the image {original_size}")
        if target.ignore is not None:
            labels = labels.masked_fill(labels == target.ignore, IGNORE)
        known = labels[labels != IGNORE]
        if len(known) and not (known.min() >= 0 and known.max() < self.num_classes):
            raise ValueError(f"FocalDiceLoss: labels must be class indices in [0, {self.num_classes}) or the ignore "
                             f"index {target.ignore}, got {known.min().item()}..{known.max().item()}")
        # float32 holds every class index exactly, and CPU nearest resampling has no int64 kernel.
        resized = F.interpolate(labels[None, None].float(), size=self.size, mode="nearest-exact")  # (1, 1, S, S)
        return resized[0, 0].long()

    def __call__(self, outputs: torch.Tensor, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if not (isinstance(outputs, torch.Tensor) and outputs.dim() == 4 and outputs.shape[1] == self.num_classes):
            got = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
            raise ValueError(f"FocalDiceLoss: outputs must be logits (B, {self.num_classes}, h, w) as "
                             f"ASPPDecoder.forward returns them, got {got}")
        labels = torch.stack(targets)  # (B, S, S)
        if len(labels) != len(outputs):
            raise ValueError(f"FocalDiceLoss: {len(outputs)} images of logits but {len(labels)} targets")
        logits = F.interpolate(outputs.float(), size=self.size, mode="bilinear", align_corners=False)  # (B, K, S, S)
        valid = labels != IGNORE  # (B, S, S)
        focal = softmax_focal_loss(logits, labels, gamma=2.0, valid=valid)
        dice = dice_loss(logits, labels, smooth=1.0, valid=valid)
        return {"loss": focal + dice, "focal": focal, "dice": dice}
