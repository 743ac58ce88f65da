"""A linear probe head: a 1x1 convolution from backbone features to class logits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dinov3_toolkit.heads import Head, PreparedImage, SemanticLabels, labels_at, labels_to_host, resize_map


class LinearProbe(Head):
    def __init__(self, class_names: Sequence[str], in_channels: int) -> None:
        super().__init__(class_names)  # from class_names.txt; there are len(self.class_names) classes
        self.classifier = nn.Conv2d(in_channels, len(self.class_names), kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(features[0])  # (1, K, h, w) logits at feature resolution

    def postprocess(self, logits: torch.Tensor, image: PreparedImage, params: Mapping[str, Any]) -> SemanticLabels:
        logits = logits.float()
        labels = labels_at(logits, image.original_size)  # (H, W) in the camera image's pixels
        if params["min_confidence"] > 0:
            confidence = resize_map(logits.softmax(1).amax(1, keepdim=True), image.original_size)  # (H, W)
            labels[confidence < params["min_confidence"]] = 0
        return SemanticLabels(labels_to_host(labels, len(self.class_names)), self.class_names)
