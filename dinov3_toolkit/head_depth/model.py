"""DepthHeadLite: a small DPT-style depth decoder on one DINOv3 feature map.

Like DPT (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021)
it reassembles the map at four scales (x4, x2, x1, x1/2 of the feature grid)
and fuses them from coarse to fine, but from a single layer and with cheap
depthwise-separable convolutions. The layout (module names, key order) is the
one of Raessan's depth_dinov3 / dinov3_ros ``DepthHeadLite``, so its published
``weights/model.pth`` loads strictly. Its norms are GroupNorms although the keys
say ``bn``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dinov3_toolkit.heads import DepthMap, DepthMeaning, Head, PreparedImage, resize_map, upsample_bilinear


class DSConv(nn.Module):
    """Depthwise 3x3 (optionally strided), GroupNorm, GELU, then pointwise 1x1, GroupNorm, GELU; no biases."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False)
        self.bn1 = nn.GroupNorm(min(groups, in_channels), in_channels)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.GroupNorm(min(groups, out_channels), out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(self.dw(x)))
        return F.gelu(self.bn2(self.pw(x)))


class FusionBlock(nn.Module):
    """1x1 projection, GroupNorm, GELU, plus the finer branch when given, refined by one DSConv."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.GroupNorm(min(groups, channels), channels)
        self.res = nn.Sequential(DSConv(channels, channels, groups))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.gelu(self.bn(self.proj(x)))
        if skip is not None:
            x = x + skip
        return self.res(x)


class DepthHeadLite(Head):
    """Positive per-pixel depth from the last DINOv3 layer.

    ``forward`` returns (1, 1, 8h, 8w) for an (h, w) feature map, i.e. half the
    input resolution, already softplus'ed plus ``min_depth``. The published model
    then resized to a fixed ``out_size`` inside ``forward``; here ``postprocess``
    resizes once, straight to the camera frame. ``depth`` is what the values mean
    (the manifest's ``depth`` key, which the loader passes); every result carries it.
    """

    def __init__(
        self,
        in_channels: int = 384,
        proj_channels: Sequence[int] = (32, 64, 96, 128),
        common_channels: int = 160,
        dropout: float = 0.2,
        groups: int = 8,
        min_depth: float = 1e-3,
        depth: DepthMeaning = DepthMeaning(),
    ) -> None:
        super().__init__()
        if len(proj_channels) != 4:
            raise ValueError(f"proj_channels must give 4 widths (for x4, x2, x1, x1/2), got {proj_channels!r}")
        if min_depth < 0:
            raise ValueError(f"min_depth must be >= 0, got {min_depth!r}")
        c0, c1, c2, c3 = proj_channels
        # Registration order = state-dict key order of the published file (head norms last).
        self.drop = nn.Dropout2d(dropout)
        self.proj0 = nn.Conv2d(in_channels, c0, 1, bias=False)
        self.proj1 = nn.Conv2d(in_channels, c1, 1, bias=False)
        self.proj2 = nn.Conv2d(in_channels, c2, 1, bias=False)
        self.proj3 = nn.Conv2d(in_channels, c3, 1, bias=False)
        self.down3 = DSConv(c3, c3, groups, stride=2)
        self.to_c0 = DSConv(c0, common_channels, groups)
        self.to_c1 = DSConv(c1, common_channels, groups)
        self.to_c2 = DSConv(c2, common_channels, groups)
        self.to_c3 = DSConv(c3, common_channels, groups)
        self.fuse3 = FusionBlock(common_channels, groups)
        self.fuse2 = FusionBlock(common_channels, groups)
        self.fuse1 = FusionBlock(common_channels, groups)
        self.fuse0 = FusionBlock(common_channels, groups)
        self.h1 = nn.Conv2d(common_channels, common_channels // 2, 3, padding=1)
        self.h2 = nn.Conv2d(common_channels // 2, common_channels // 4, 3, padding=1)
        self.out = nn.Conv2d(common_channels // 4, 1, 1)
        self.h1_bn = nn.GroupNorm(min(groups, common_channels // 2), common_channels // 2)
        self.h2_bn = nn.GroupNorm(min(groups, common_channels // 4), common_channels // 4)
        self.min_depth = float(min_depth)
        if not isinstance(depth, DepthMeaning):
            raise TypeError(f"depth must be a DepthMeaning (the manifest's depth key), got {depth!r}")
        self.meaning = depth

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[0]  # (1, C, h, w), stride 16
        h, w = x.shape[-2:]
        f0 = self.to_c0(upsample_bilinear(self.proj0(x), (4 * h, 4 * w)))  # (1, D, 4h, 4w)
        f1 = self.to_c1(upsample_bilinear(self.proj1(x), (2 * h, 2 * w)))  # (1, D, 2h, 2w)
        f2 = self.to_c2(self.proj2(x))  # (1, D, h, w)
        f3 = self.to_c3(self.down3(self.proj3(x)))  # (1, D, ceil(h/2), ceil(w/2))

        y = self.fuse3(f3)  # coarse to fine
        y = self.fuse2(upsample_bilinear(y, f2.shape[-2:]), f2)  # (1, D, h, w)
        y = self.drop(self.fuse1(upsample_bilinear(y, f1.shape[-2:]), f1))  # (1, D, 2h, 2w)
        y = self.fuse0(upsample_bilinear(y, f0.shape[-2:]), f0)  # (1, D, 4h, 4w)

        y = self.drop(F.relu(self.h1_bn(self.h1(y))))  # (1, D/2, 4h, 4w)
        y = upsample_bilinear(y, (8 * h, 8 * w))  # (1, D/2, 8h, 8w)
        y = F.relu(self.h2_bn(self.h2(y)))  # (1, D/4, 8h, 8w)
        return F.softplus(self.out(y)) + self.min_depth  # (1, 1, 8h, 8w), > 0

    @torch.no_grad()
    def postprocess(self, outputs: torch.Tensor, image: PreparedImage, params: Mapping[str, Any]) -> DepthMap:
        """Resize the depth bilinearly to the original frame (the input was stretched, so per axis)."""
        return DepthMap(resize_map(outputs, image.original_size).cpu().numpy(), self.meaning.unit, self.meaning.kind)
