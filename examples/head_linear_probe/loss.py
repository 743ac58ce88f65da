"""How the linear probe learns: cross-entropy per pixel of the input image.

`dinov3 train` calls ``encode`` once per image (on the CPU, in its data loaders)
and the loss object once per batch of ``forward`` outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinov3_toolkit.heads import HeadLoss, LabelTargets

IGNORE = -1  # pixels that no loss counts


class PixelCrossEntropy(HeadLoss):
    def encode(self, target: LabelTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> torch.Tensor:
        # (H, W) in the camera image's pixels; as floats, since nearest resizing has no int64 CPU kernel.
        labels = torch.from_numpy(target.labels).float()
        if target.ignore is not None:
            labels = labels.masked_fill(labels == target.ignore, IGNORE)
        resized = F.interpolate(labels[None, None], size=input_size, mode="nearest-exact")  # (1, 1, h_in, w_in)
        return resized[0, 0].long()  # the labels of the pixels the backbone saw

    def __call__(self, logits: torch.Tensor, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = torch.stack(targets)  # (B, h_in, w_in)
        size = labels.shape[-2:]
        logits = F.interpolate(logits.float(), size, mode="bilinear", align_corners=False)  # (B, K, h_in, w_in)
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
        return {"loss": loss / (labels != IGNORE).sum().clamp(min=1)}  # the mean over counted pixels, 0 if none
