"""ASPPDecoder: a convolutional semantic-segmentation decoder on one DINOv3 feature map.

The layout (module names, key order) is the one of Raessan's
semantic_segmentation_dinov3 / dinov3_ros ``ASPPDecoder``, so its published
``weights/model.pth`` loads strictly. Despite the name, the four "ASPP"
branches are identical undilated 3x3 convolutions, as in that model.

Classes are ``background`` plus the 133 COCO-panoptic categories. Class 0 was
trained as a real class covering every unlabelled pixel (there was no ignore
index), so it is predicted like any other class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dinov3_toolkit.heads import CheckpointError, Head, PreparedImage, SemanticLabels, labels_at, labels_to_host

NUM_BRANCHES = 4


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (with bias, as trained), BatchNorm, ReLU; keys ``0.*`` and ``1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 (no bias), pointwise 1x1, BatchNorm, ReLU: no activation between the two convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pw = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.pw(self.dw(x))))


class ASPPDecoder(Head):
    """Per-pixel class logits from the last DINOv3 layer.

    ``forward`` returns the LOW-RESOLUTION logits (1, K, h, w), one per feature
    cell: the classifier output. The published model upsampled them to a fixed
    320x320 inside ``forward``; here ``postprocess`` resamples once, straight to
    the camera frame, which avoids a second interpolation and a 134 x 320 x 320
    tensor per frame.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        in_channels: int = 384,
        proj_channels: int = 576,
        branch_channels: int = 288,
    ) -> None:
        super().__init__(class_names)
        self.initial = _conv_bn_relu(in_channels, proj_channels)
        self.project = _conv_bn_relu(proj_channels, branch_channels)
        self.branches = nn.ModuleList(
            nn.Conv2d(branch_channels, branch_channels, 3, padding=1) for _ in range(NUM_BRANCHES)
        )
        self.branches_bn = nn.ModuleList(nn.BatchNorm2d(branch_channels) for _ in range(NUM_BRANCHES))
        self.fuse = _conv_bn_relu(branch_channels * NUM_BRANCHES, proj_channels)
        self.ds = DepthwiseSeparable(proj_channels)
        self.classifier = nn.Conv2d(proj_channels, len(self.class_names), 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.project(self.initial(features[0]))  # (1, B, h, w) from (1, C, h, w), stride 16
        branches = [F.relu(bn(conv(x))) for conv, bn in zip(self.branches, self.branches_bn)]  # 4 x (1, B, h, w)
        x = torch.cat(branches, dim=1)  # (1, 4B, h, w)
        x = self.ds(self.fuse(x))  # (1, P, h, w)
        return self.classifier(x)  # (1, K, h, w)

    @classmethod
    def checkpoint_filter(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Refuse the "light" Mask2FormerLiteHead file (``model_light.pth``), a different network."""
        if "pixel_embed.0.weight" in state_dict:
            raise CheckpointError(
                "this is the 'light' Mask2FormerLiteHead segmentation layout (model_light.pth), a different network "
                "from ASPPDecoder; use weights/model.pth of github.com/Raessan/semantic_segmentation_dinov3"
            )
        return state_dict

    @torch.no_grad()
    def postprocess(self, outputs: torch.Tensor, image: PreparedImage, params: Mapping[str, Any]) -> SemanticLabels:
        """Upsample the logits bilinearly to the original frame and take the best class per pixel."""
        names = self.class_names
        if len(names) != outputs.shape[1]:
            raise ValueError(
                f"{type(self).__name__} predicts {outputs.shape[1]} classes but has {len(names)} class names"
            )
        labels = labels_at(outputs.float(), image.original_size)  # (H, W) int64
        return SemanticLabels(labels_to_host(labels, len(names)), names)
