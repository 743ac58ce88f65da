"""Backbone + preprocessing on one device at one precision: RGB frame in, feature maps out.

This is the shared first half of every frame; the head engine builds on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backbone import BackboneSpec, get_backbone_spec, load_backbone
from .config import DEFAULTS
from .device import autocast, resolve_device, resolve_precision
from .preprocess import PreparedImage, Preprocessor


@dataclass(frozen=True)
class Features:
    """Feature maps of one frame, in the order the layers were asked for."""

    maps: list[torch.Tensor]  # each (1, C, h/stride, w/stride), on the device
    image: PreparedImage


class FeatureExtractor:
    """Runs a backbone on RGB uint8 frames.

    ``layers`` are the backbone's layer indices to return (ViT blocks, ConvNeXt
    stages; negative counts from the end). Only the layers up to the deepest one
    are computed.
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: BackboneSpec,
        *,
        device: str = DEFAULTS.device,
        precision: str = DEFAULTS.precision,
        size: int = DEFAULTS.size,
        resize_mode: str = DEFAULTS.resize_mode,
        layers: Sequence[int] = (-1,),
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision)
        self.spec = spec
        self.layers = list(layers)
        self.backbone = backbone.eval().to(self.device)
        self.preprocess = Preprocessor(
            mean=spec.weights.mean,
            std=spec.weights.std,
            size=size,
            mode=resize_mode,
            size_multiple=backbone.size_multiple,
            device=self.device,
        )

    @classmethod
    def from_name(cls, name: str, weights: str | Path | None = None, **kwargs) -> FeatureExtractor:
        """Load backbone ``name`` with its weights (see ``backbone.weights``) and wrap it."""
        return cls(load_backbone(name, weights), get_backbone_spec(name), **kwargs)

    @torch.inference_mode()
    def run_backbone(self, prepared: PreparedImage) -> list[torch.Tensor]:
        """The backbone stage alone, on an already prepared image."""
        with autocast(self.device, self.dtype):
            return self.backbone.forward_intermediates(prepared.tensor, self.layers)

    def __call__(self, image: np.ndarray) -> Features:
        prepared = self.preprocess(image)
        return Features(maps=self.run_backbone(prepared), image=prepared)
