"""DinoFCOSHead: a light FPN and an anchor-free FCOS head on one DINOv3 feature map.

The layout (module names, key order, initialisation) is the one of Raessan's
object_detection_dinov3 / dinov3_ros detection head, so its published
``weights/model.pth`` loads strictly. FCOS: Tian et al., "FCOS: Fully
Convolutional One-Stage Object Detection", ICCV 2019.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dinov3_toolkit.heads import CheckpointError, Detections, Head, PreparedImage, batched_nms

NUM_LEVELS = 3  # P3, P4, P5 at strides 16, 32, 64 for a patch-16 backbone


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ConvGNReLU(nn.Module):
    """3x3 conv without bias (the norm has one), GroupNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.gn = _group_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.gn(self.conv(x)))


class LightFPN(nn.Module):
    """One stride-16 map -> [P3, P4, P5] at strides 16/32/64: strided convs down, nearest-upsampled sums up."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False), _group_norm(channels), nn.ReLU(inplace=True)
        )
        self.down1 = ConvGNReLU(channels, channels, stride=2)
        self.down2 = ConvGNReLU(channels, channels, stride=2)
        self.smooth3 = ConvGNReLU(channels, channels)
        self.smooth4 = ConvGNReLU(channels, channels)
        self.smooth5 = ConvGNReLU(channels, channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.proj(x)  # (1, F, h, w)
        p4 = self.down1(p3)  # (1, F, h/2, w/2)
        p5 = self.down2(p4)  # (1, F, h/4, w/4)
        p4 = self.smooth4(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.smooth3(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, self.smooth5(p5)]


class FCOSHead(nn.Module):
    """Class, box and centerness predictions per location, one set of weights shared by every level."""

    def __init__(self, channels: int, num_classes: int, num_convs: int, prior_prob: float) -> None:
        super().__init__()
        self.cls_tower, self.reg_tower = nn.Sequential(), nn.Sequential()
        for _ in range(num_convs):  # interleaved like the reference, so a seeded init draws the same weights
            self.cls_tower.append(ConvGNReLU(channels, channels))
            self.reg_tower.append(ConvGNReLU(channels, channels))
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_reg = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        # Regression ranges differ per level while the weights are shared: one learnt factor per level.
        self.scales = nn.ParameterList(nn.Parameter(torch.tensor(1.0)) for _ in range(NUM_LEVELS))
        # Start every class at probability prior_prob so the focal loss is not swamped by easy negatives.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
        for layer in (self.bbox_reg, self.centerness):
            nn.init.normal_(layer.weight, std=0.001)
            nn.init.zeros_(layer.bias)

    def forward(self, levels: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        out: dict[str, list[torch.Tensor]] = {"cls": [], "reg": [], "ctr": []}
        for p, scale in zip(levels, self.scales):
            cls_feat = self.cls_tower(p)  # (1, F, h_l, w_l)
            reg_feat = self.reg_tower(p)  # (1, F, h_l, w_l)
            out["cls"].append(self.cls_logits(cls_feat))  # (1, K, h_l, w_l)
            out["reg"].append(F.softplus(self.bbox_reg(reg_feat)) * scale)  # (1, 4, h_l, w_l) l,t,r,b input px
            out["ctr"].append(self.centerness(reg_feat))  # (1, 1, h_l, w_l), from the reg tower
        return out


class DinoFCOSHead(Head):
    """COCO detector on the last DINOv3 layer.

    ``forward`` returns ``{"cls": [3 x (1, K, h_l, w_l)], "reg": [3 x (1, 4, h_l, w_l)],
    "ctr": [3 x (1, 1, h_l, w_l)]}`` for P3/P4/P5: class and centerness logits, and
    the l, t, r, b distances from each cell centre to the box sides in input pixels.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        in_channels: int = 384,
        fpn_channels: int = 192,
        num_convs: int = 4,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__(class_names)
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob!r}")
        self.fpn = LightFPN(in_channels, fpn_channels)
        self.head = FCOSHead(fpn_channels, len(self.class_names), num_convs, prior_prob)

    def forward(self, features: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        return self.head(self.fpn(features[0]))  # features[0]: (1, C, h, w), stride 16

    @classmethod
    def checkpoint_filter(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Strip a DataParallel ``module.`` prefix; refuse the pre-4fdc716 layout, which no renaming fixes."""
        if state_dict and all(k.startswith("module.") for k in state_dict):
            state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
        legacy = "fpn.proj.weight" in state_dict and "fpn.proj.bias" in state_dict
        if legacy and not any(k.startswith("head.scales.") for k in state_dict):
            raise CheckpointError(
                "this is the pre-4fdc716 DinoFCOSHead layout (plain-conv FPN without GroupNorm, no per-level "
                "scales); its FPN computes something else, so this head cannot run it. Use the current weights: "
                "weights/model.pth of github.com/Raessan/object_detection_dinov3"
            )
        return state_dict

    @torch.no_grad()
    def postprocess(
        self, outputs: dict[str, list[torch.Tensor]], image: PreparedImage, params: Mapping[str, Any]
    ) -> Detections:
        """Decode every (location, class) scoring above the threshold, NMS, map to the original image.

        As the reference decoder: no pre-NMS top-k, score = sigmoid(cls) * sigmoid(ctr),
        boxes clipped to the input frame before NMS.
        """
        h, w = image.input_size
        p3_h, p3_w = outputs["cls"][0].shape[-2:]
        boxes, scores = [], []
        for level, (cls, reg, ctr) in enumerate(zip(outputs["cls"], outputs["reg"], outputs["ctr"])):
            stride_y, stride_x = h / p3_h * 2**level, w / p3_w * 2**level  # 16, 32, 64 for 640 / 40
            level_h, level_w = cls.shape[-2:]
            ys = (torch.arange(level_h, device=cls.device, dtype=torch.float32) + 0.5) * stride_y  # (h_l,)
            xs = (torch.arange(level_w, device=cls.device, dtype=torch.float32) + 0.5) * stride_x  # (w_l,)
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # (h_l, w_l) each
            l, t, r, b = reg[0].float().clamp(min=0)  # (h_l, w_l) each
            boxes.append(torch.stack([cx - l, cy - t, cx + r, cy + b], dim=-1).reshape(-1, 4))  # (h_l*w_l, 4)
            prob = cls[0].float().sigmoid() * ctr[0].float().sigmoid()  # (K, h_l, w_l)
            scores.append(prob.flatten(1).T)  # (h_l*w_l, K)
        boxes = torch.cat(boxes)  # (L, 4), L locations over all levels
        scores = torch.cat(scores)  # (L, K)

        location, label = torch.nonzero(scores > params["score_threshold"], as_tuple=True)  # (M,) each
        scores = scores[location, label]  # (M,)
        limits = boxes.new_tensor([w, h, w, h])
        boxes = torch.minimum(boxes[location].clamp(min=0), limits)  # (M, 4) inside the input frame
        keep = batched_nms(
            boxes,
            scores,
            label,
            params["nms_iou_threshold"],
            class_agnostic=params["class_agnostic_nms"],
            max_output=params["max_detections"],
        )  # (N,) by descending score
        sy, sx = image.scale
        height, width = image.original_size
        boxes = boxes[keep] * boxes.new_tensor([sx, sy, sx, sy])  # (N, 4) original pixels
        # Clip again: the float32 scaling can land a hair outside the frame.
        boxes = torch.minimum(boxes, boxes.new_tensor([width, height, width, height]))
        return Detections(
            boxes=boxes.cpu().numpy(),
            scores=scores[keep].cpu().numpy(),
            labels=label[keep].cpu().numpy(),
            class_names=self.class_names,
        )
