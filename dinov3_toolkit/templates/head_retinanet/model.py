"""RetinaNetHead: anchors, class and box towers and focal-loss training on one DINOv3 feature map.

The recipe of sovit-123/dinov3_stack (heads.md, section 9.1): torchvision's
RetinaNet on the single stride-16 map of the backbone's last layer, 15 anchors
per location, written in plain torch (torchvision is not a dependency).
RetinaNet: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dinov3_toolkit.heads import Detections, Head, PreparedImage, anchor_grid, decode_boxes, nms_detections, per_anchor

BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # (dx, dy, dw, dh) coder weights: torchvision's RetinaNet


def _tower(in_channels: int, channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` 3x3 conv + ReLU, no norm (torchvision's default RetinaNetHead)."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class RetinaNetHead(Head):
    """A detector with A = len(anchor_sizes) * len(aspect_ratios) anchors per location.

    ``forward`` returns ``{"cls": (B, A*K, h, w), "box": (B, A*4, h, w)}``: each anchor's class logits
    (independent sigmoids) and its (dx, dy, dw, dh) offsets, read per anchor with ``per_anchor``.

    ``anchor_sizes``: anchor sides in input pixels (the square root of the area), the recipe's for 640 px
    inputs; smaller inputs want smaller ones. ``aspect_ratios``: height / width of each size's anchors.
    ``top_k``: candidates decoded per image, the highest scored (torchvision's ``topk_candidates``).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        in_channels: int = 384,
        channels: int = 256,
        num_convs: int = 4,
        anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        top_k: int = 1000,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__(class_names)
        if not self.class_names:
            raise ValueError("RetinaNetHead needs class names (the manifest's classes file), got none")
        if num_convs < 1 or channels < 1:
            raise ValueError(f"RetinaNetHead: num_convs and channels must be >= 1, got {num_convs} and {channels}")
        if not (anchor_sizes and aspect_ratios and all(v > 0 for v in (*anchor_sizes, *aspect_ratios))):
            raise ValueError(f"RetinaNetHead: anchor_sizes and aspect_ratios must be non-empty lists of positive "
                             f"numbers, got {list(anchor_sizes)} and {list(aspect_ratios)}")
        if top_k < 1:
            raise ValueError(f"RetinaNetHead: top_k must be >= 1, got {top_k}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"RetinaNetHead: prior_prob must be in (0, 1), got {prior_prob!r}")
        # (width, height) per anchor, ratio-major like torchvision's AnchorGenerator; each keeps its size's area.
        self.anchor_shapes = tuple((s / math.sqrt(r), s * math.sqrt(r)) for r in aspect_ratios for s in anchor_sizes)
        self.top_k = top_k
        num_anchors, num_classes = len(self.anchor_shapes), len(self.class_names)
        self.cls_tower = _tower(in_channels, channels, num_convs)
        self.box_tower = _tower(in_channels, channels, num_convs)
        self.cls_logits = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.bbox_reg = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        # Start every class at probability prior_prob so the focal loss is not swamped by easy negatives.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = features[0]  # (B, C, h, w), stride 16
        return {"cls": self.cls_logits(self.cls_tower(x)), "box": self.bbox_reg(self.box_tower(x))}

    def anchors(self, input_size: tuple[int, int], feature_size: tuple[int, int],
                device: torch.device | str = "cpu") -> torch.Tensor:
        """(h*w*A, 4) anchors in input pixels, in the order of ``per_anchor``; built from plain numbers, so the
        loss's encoding in CPU data-loader workers never touches the model's device."""
        return anchor_grid(torch.tensor(self.anchor_shapes, device=device), input_size, feature_size)

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, torch.Tensor], image: PreparedImage,
                    params: Mapping[str, Any]) -> Detections:
        """The ``top_k`` best (anchor, class) pairs scoring above the threshold, decoded, NMS, to the original image.

        As torchvision's RetinaNet: top-k over every pair before the threshold, boxes clipped to the input
        frame before NMS; all on the outputs' device.
        """
        num_classes = len(self.class_names)
        cls, box = outputs["cls"], outputs["box"]
        probs = per_anchor(cls.float(), num_classes)[0].sigmoid()  # (L, K)
        deltas = per_anchor(box.float(), 4)[0]  # (L, 4)
        anchors = self.anchors(image.input_size, tuple(cls.shape[-2:]), cls.device)  # (L, 4)
        scores, pair = probs.flatten().topk(min(self.top_k, probs.numel()))  # (T,) each, descending
        above = scores > params["score_threshold"]
        scores, pair = scores[above], pair[above]  # (M,)
        anchor, label = pair // num_classes, pair % num_classes  # (M,) each
        boxes = decode_boxes(deltas[anchor], anchors[anchor], BOX_WEIGHTS)  # (M, 4) input pixels
        return nms_detections(boxes, scores, label, image, params, self.class_names)
