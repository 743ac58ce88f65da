"""SSDHead: SSD's default boxes and 3x3 class and box predictors on one DINOv3 feature map.

The recipe of sovit-123/dinov3_stack (heads.md, section 9.1): torchvision's SSD
on the single stride-16 map of the backbone's last layer, where only its first
level's 4 default boxes per location are ever used, written in plain torch
(torchvision is not a dependency). SSD: Liu et al., "SSD: Single Shot MultiBox
Detector", ECCV 2016.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dinov3_toolkit.heads import Detections, Head, PreparedImage, anchor_grid, decode_boxes, nms_detections, per_anchor

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # (dx, dy, dw, dh) coder weights: torchvision's SSD


class SSDHead(Head):
    """A detector with A = len(scales) + 2 * len(aspect_ratios) default boxes per location.

    ``forward`` returns ``{"cls": (B, A*(K+1), h, w), "box": (B, A*4, h, w)}``: each default box's logits
    over background (index 0) and the K classes (one softmax), and its (dx, dy, dw, dh) offsets, read per
    box with ``per_anchor``.

    ``scales``: a square default box per scale, its side that fraction of the input's longer side (so the
    boxes keep their pixel size on an input resized keeping its aspect). ``aspect_ratios``: each ratio r adds
    two boxes of the first scale's area, width / height r and 1 / r. The defaults are torchvision's first
    level: scales 0.15 and sqrt(0.15 * 0.30), ratio 2. ``top_k``: candidates per class decoded per image.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        in_channels: int = 384,
        scales: Sequence[float] = (0.15, math.sqrt(0.15 * 0.30)),
        aspect_ratios: Sequence[float] = (2.0,),
        top_k: int = 400,
    ) -> None:
        super().__init__(class_names)
        if not self.class_names:
            raise ValueError("SSDHead needs class names (the manifest's classes file), got none")
        if not (scales and all(v > 0 for v in (*scales, *aspect_ratios))):
            raise ValueError(f"SSDHead: scales must be a non-empty list of positive numbers and aspect_ratios a "
                             f"list of positive numbers, got {list(scales)} and {list(aspect_ratios)}")
        if top_k < 1:
            raise ValueError(f"SSDHead: top_k must be >= 1, got {top_k}")
        # (width, height) per default box as a fraction of the input side, in torchvision's order.
        shapes = [(s, s) for s in scales]
        for r in aspect_ratios:
            w, h = scales[0] * math.sqrt(r), scales[0] / math.sqrt(r)
            shapes += [(w, h), (h, w)]
        self.box_shapes = tuple(shapes)
        self.top_k = top_k
        num_boxes = len(self.box_shapes)
        self.cls_logits = nn.Conv2d(in_channels, num_boxes * (len(self.class_names) + 1), 3, padding=1)
        self.bbox_reg = nn.Conv2d(in_channels, num_boxes * 4, 3, padding=1)
        for layer in (self.cls_logits, self.bbox_reg):  # torchvision's SSDHead initialisation
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = features[0]  # (B, C, h, w), stride 16
        return {"cls": self.cls_logits(x), "box": self.bbox_reg(x)}

    def anchors(self, input_size: tuple[int, int], feature_size: tuple[int, int],
                device: torch.device | str = "cpu") -> torch.Tensor:
        """(h*w*A, 4) default boxes in input pixels, in the order of ``per_anchor``; built from plain numbers, so
        the loss's encoding in CPU data-loader workers never touches the model's device."""
        shapes = torch.tensor(self.box_shapes, device=device) * max(input_size)  # (A, 2) input pixels
        return anchor_grid(shapes, input_size, feature_size)

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, torch.Tensor], image: PreparedImage,
                    params: Mapping[str, Any]) -> Detections:
        """Per class, the ``top_k`` boxes of highest softmax score above the threshold, decoded, NMS, to the
        original image; as torchvision's SSD, all on the outputs' device."""
        num_classes = len(self.class_names)
        cls, box = outputs["cls"], outputs["box"]
        probs = per_anchor(cls.float(), num_classes + 1)[0].softmax(dim=1)[:, 1:]  # (L, K), background dropped
        deltas = per_anchor(box.float(), 4)[0]  # (L, 4)
        anchors = self.anchors(image.input_size, tuple(cls.shape[-2:]), cls.device)  # (L, 4)
        scores, anchor = probs.topk(min(self.top_k, len(probs)), dim=0)  # (T, K) each: per class, descending
        label = torch.arange(num_classes, device=cls.device).expand_as(anchor)  # (T, K)
        above = scores > params["score_threshold"]
        scores, anchor, label = scores[above], anchor[above], label[above]  # (M,) each
        boxes = decode_boxes(deltas[anchor], anchors[anchor], BOX_WEIGHTS)  # (M, 4) input pixels
        return nms_detections(boxes, scores, label, image, params, self.class_names)
