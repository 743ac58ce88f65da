"""A linear probe head: a 1x1 convolution from backbone features to class logits."""

from __future__ import annotations

import torch
from torch import nn

from dinov3_toolkit.dense import labels_at, resize_map
from dinov3_toolkit.heads import Head
from dinov3_toolkit.results import SemanticLabels, label_dtype


class LinearProbe(Head):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(features[0])  # (1, K, h, w) logits at feature resolution

    def postprocess(self, logits, image, params) -> SemanticLabels:
        logits = logits.float()
        labels = labels_at(logits, image.original_size)  # (H, W) in the camera image's pixels
        if params["min_confidence"] > 0:
            confidence = resize_map(logits.softmax(1).amax(1, keepdim=True), image.original_size)  # (H, W)
            labels[confidence < params["min_confidence"]] = 0
        dtype = label_dtype(len(self.class_names))
        return SemanticLabels(labels.cpu().numpy().astype(dtype), self.class_names)
