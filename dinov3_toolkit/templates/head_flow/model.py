"""LiteFlowHead: optical flow from the DINOv3 features of two consecutive frames.

The layout (module names, key order) is the one of Raessan's optical_flow_dinov3
``LiteFlowHead`` (flow head spec §3-4), so a state dict of that class loads
strictly. Both frames' maps are projected, compared by a local correlation
(RAFT's cost volume, one level, radius ``radius``) and their difference, fused by
depthwise-separable blocks with squeeze-and-excitation into a coarse flow per
feature cell, refined once, and upsampled ``convex_up`` times by RAFT's convex
combination (Teed & Deng, "RAFT", ECCV 2020) with a mask from the trunk.

Direction and units: forward flow from the previous frame to the current one;
channel 0 is u (x, right), channel 1 is v (y, down); ``forward`` gives it in
pixels of its (h * convex_up, w * convex_up) output grid, ``postprocess`` in
pixels of the original image (per axis: the input was stretched).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dinov3_toolkit.heads import FlowField, Head, PreparedImage


class DSConv(nn.Module):
    """Depthwise 3x3, pointwise 1x1 (no biases), BatchNorm, SiLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pw(self.dw(x))))


class SE(nn.Module):
    """Squeeze-and-excitation: channels reweighted by a gate computed from their global means."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True))))  # (B, C, 1, 1)
        return x * gate.sigmoid()


class DSConvBlock(nn.Module):
    """``num_layers`` x [DSConv, SE, DSConv], without a skip connection (as trained)."""

    def __init__(self, channels: int, num_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [DSConv(channels, channels), SE(channels), DSConv(channels, channels)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def local_correlation(f1: torch.Tensor, f2: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, (2r+1)^2, h, w): <f1[:, y, x], f2[:, y+dy, x+dx]> / sqrt(C), channel (dy+r)(2r+1) + (dx+r); 0 outside."""
    b, c, h, w = f1.shape
    size = 2 * radius + 1
    padded = F.pad(f2, (radius, radius, radius, radius))  # (B, C, h+2r, w+2r)
    windows = F.unfold(padded, size).view(b, c, size * size, h, w)  # (B, C, (2r+1)^2, h, w)
    return (f1.unsqueeze(2) * windows).sum(1) / math.sqrt(c)


class ConvexUpsampler(nn.Module):
    """Each output pixel a softmax-weighted mix of the 3x3 coarse flows around its cell, times ``factor``."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.mask_head = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, 9 * factor**2, 1)
        )

    def forward(self, flow: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        b, _, h, w = flow.shape
        u = self.factor
        mask = self.mask_head(features).view(b, 1, 9, u, u, h, w).softmax(2)  # (B, 1, 9, U, U, h, w)
        neighbours = F.unfold(flow, 3, padding=1).view(b, 2, 9, 1, 1, h, w)  # zero flow beyond the border
        up = (mask * neighbours).sum(2)  # (B, 2, U, U, h, w)
        up = up.permute(0, 1, 4, 2, 5, 3).reshape(b, 2, h * u, w * u)  # pixel (h*U+i, w*U+j) = sub-cell (i, j)
        return up * u  # feature-cell units -> output pixels


class LiteFlowHead(Head):
    """Flow between the previous and the current frame of a stream (``temporal``: it needs both).

    ``forward(features, previous)`` returns (B, 2, h * convex_up, w * convex_up).
    """

    temporal = True

    def __init__(
        self,
        in_channels: int = 384,
        proj_channels: int = 256,
        radius: int = 4,
        fusion_channels: int = 320,
        fusion_layers: int = 3,
        convex_up: int = 16,
        refinement_layers: int = 2,
    ) -> None:
        super().__init__()
        self.radius = radius
        self.proj1 = nn.Conv2d(in_channels, proj_channels, 1, bias=False)
        self.proj2 = nn.Conv2d(in_channels, proj_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(proj_channels)
        self.bn2 = nn.BatchNorm2d(proj_channels)
        fused_in = 3 * proj_channels + (2 * radius + 1) ** 2  # [f1, f2, |f1 - f2|, correlation]
        self.fuse_in = nn.Sequential(DSConv(fused_in, fusion_channels), SE(fusion_channels))
        self.fuse_trunk = DSConvBlock(fusion_channels, fusion_layers)
        self.flow_head = nn.Sequential(DSConv(fusion_channels, fusion_channels), nn.Conv2d(fusion_channels, 2, 1))
        self.refine = nn.Sequential(
            DSConv(fusion_channels + 2, fusion_channels),
            DSConvBlock(fusion_channels, refinement_layers),
            nn.Conv2d(fusion_channels, 2, 1),
        ) if refinement_layers > 0 else None
        self.convex_upsampler = ConvexUpsampler(fusion_channels, convex_up)

    def coarse(self, previous: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow per feature cell (B, 2, h, w), refined when the head refines; the trunk's features)."""
        if previous.shape != current.shape:
            raise ValueError(f"LiteFlowHead needs two frames' maps of one shape, got {tuple(previous.shape)} "
                             f"and {tuple(current.shape)}")
        f1 = F.silu(self.bn1(self.proj1(previous)))  # (B, P, h, w)
        f2 = F.silu(self.bn2(self.proj2(current)))  # (B, P, h, w)
        corr = local_correlation(f1, f2, self.radius)  # (B, (2r+1)^2, h, w)
        x = self.fuse_trunk(self.fuse_in(torch.cat([f1, f2, (f1 - f2).abs(), corr], 1)))  # (B, F, h, w)
        flow = self.flow_head(x)  # (B, 2, h, w)
        if self.refine is not None:
            flow = flow + self.refine(torch.cat([x, flow], 1))
        return flow, x

    def forward(self, features: list[torch.Tensor], previous: list[torch.Tensor]) -> torch.Tensor:
        flow, x = self.coarse(previous[0], features[0])
        return self.convex_upsampler(flow, x)  # (B, 2, h*U, w*U), output pixels

    def first_result(self, reason: str) -> FlowField:
        """What a frame without a usable previous one gives: no flow, and why."""
        return FlowField(None, reason)

    @torch.no_grad()
    def postprocess(self, outputs: torch.Tensor, image: PreparedImage, params: Mapping[str, Any]) -> FlowField:
        """Resize to the original frame (bilinear) and scale u and v to its pixels, per axis."""
        return FlowField(to_original_pixels(outputs.float(), image.original_size)[0].permute(1, 2, 0).cpu().numpy())


def to_original_pixels(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 2, h', w') flow in pixels of its grid -> (B, 2, H, W) in pixels of an H x W image."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    scale = flow.new_tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)
    return F.interpolate(flow * scale, size=size, mode="bilinear", align_corners=False)
