"""DepthLoss: how DepthHeadLite learns.

Raessan's depth recipe is not published (heads.md, section 8.3), so this is the
usual loss for metric monocular depth: Eigen et al.'s scale-invariant log loss
("Depth Map Prediction from a Single Image using a Multi-Scale Deep Network", NIPS 2014).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinov3_toolkit.heads import DepthTargets, Head, HeadLoss

OUTPUT_STRIDE = 8  # DepthHeadLite predicts (8h, 8w) for an (h, w) feature map
KINDS = ("silog", "l1")
EPS = 1e-6  # metres: the floor under a depth before its log


class DepthLoss(HeadLoss):
    """Per image over its valid pixels, then averaged over the images that have any.

    ``kind="silog"``: sqrt(mean(d^2) - ``silog_lambda`` * mean(d)^2), d = log(pred) - log(gt).
    With lambda 1 an image's overall scale would cost nothing; 0.85 keeps a little of it, so
    the head still learns metres while errors of scale cost less than errors of shape.
    ``kind="l1"``: mean |pred - gt| in metres, which weighs far pixels the most.
    """

    def __init__(self, head: Head, kind: str = "silog", silog_lambda: float = 0.85) -> None:
        super().__init__(head)
        if kind not in KINDS:
            raise ValueError(f"DepthLoss: kind must be one of {KINDS}, got {kind!r}")
        if not 0.0 <= silog_lambda <= 1.0:
            raise ValueError(f"DepthLoss: silog_lambda must be in [0, 1], got {silog_lambda!r}")
        self.kind = kind
        self.silog_lambda = float(silog_lambda)

    def encode(self, target: DepthTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> torch.Tensor:
        """The depth resized (nearest) to the head's output size: (8h, 8w) float32 metres, 0 where invalid."""
        if target.depth.shape != tuple(original_size):
            raise ValueError(f"DepthLoss: the depth image is {target.depth.shape}, the image {original_size}")
        depth = torch.where(torch.from_numpy(target.valid), torch.from_numpy(target.depth).float(), 0.0)  # (H, W)
        size = (OUTPUT_STRIDE * feature_size[0], OUTPUT_STRIDE * feature_size[1])
        return F.interpolate(depth[None, None], size=size, mode="nearest-exact")[0, 0]  # (8h, 8w)

    def __call__(self, outputs: torch.Tensor, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        depth = torch.stack(targets)  # (B, H, W)
        if not (isinstance(outputs, torch.Tensor) and outputs.dim() == 4 and outputs.shape[1] == 1
                and outputs.shape[2:] == depth.shape[1:] and len(outputs) == len(depth)):
            got = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
            raise ValueError(f"DepthLoss: outputs must be depth maps (B, 1, H, W) as DepthHeadLite.forward returns "
                             f"them, matching the targets {tuple(depth.shape)}, got {got}")
        pred = outputs[:, 0].float()  # (B, H, W)
        valid = depth > 0  # (B, H, W)
        count = valid.sum((1, 2))  # (B,)
        if self.kind == "l1":
            per_image = ((pred - depth).abs() * valid).sum((1, 2)) / count.clamp(min=1)  # (B,)
        else:
            d = (pred.clamp(min=EPS).log() - depth.clamp(min=EPS).log()) * valid  # (B, H, W), 0 where invalid
            mean = d.sum((1, 2)) / count.clamp(min=1)  # (B,)
            mean_sq = (d**2).sum((1, 2)) / count.clamp(min=1)  # (B,)
            # The floor keeps sqrt's gradient finite at a perfect prediction.
            per_image = (mean_sq - self.silog_lambda * mean**2).clamp(min=EPS**2).sqrt()  # (B,)
        counted = count > 0  # (B,): an image without a valid pixel contributes nothing
        return {"loss": (per_image * counted).sum() / counted.sum().clamp(min=1)}
