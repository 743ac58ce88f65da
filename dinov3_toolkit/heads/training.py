"""The training half of the head contract: ground truth, its encoding, and the loss.

A trainable head folder names a loss class in its manifest (``loss: loss.FCOSLoss``);
the class lives in the folder next to the model, derives from ``HeadLoss`` and
gets the manifest's ``loss_args``. The trainer calls ``encode`` once per sample
(in data-loader workers, on the CPU) and ``__call__`` once per batch.

Ground truth is always in the ORIGINAL image's pixels, like results: a data
reader never needs to know the input size, and a loss encodes targets for the
input and feature sizes it is given.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .base import Head


@dataclass(frozen=True)
class BoxTargets:
    """Objects in one image: ``boxes`` (N, 4) float32 ``[x1, y1, x2, y2]``, ``labels`` (N,) int64 class indices."""

    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.boxes.shape != (n, 4) or self.labels.shape != (n,):
            raise ValueError(f"BoxTargets need boxes (N, 4) and labels (N,), got {self.boxes.shape} and "
                             f"{self.labels.shape}")


def boxes_in_input(target: BoxTargets, original_size: tuple[int, int], input_size: tuple[int, int],
                   num_classes: int, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A detector loss's first step: (boxes (N, 4) float32 scaled per axis into input pixels, labels (N,)
    int64), the labels checked to be class indices (``loss`` names the loss in the error)."""
    labels = torch.from_numpy(target.labels).long()  # (N,)
    if len(labels) and not (labels.min() >= 0 and labels.max() < num_classes):
        raise ValueError(f"{loss}: box labels must be class indices in [0, {num_classes}), got "
                         f"{labels.min().item()}..{labels.max().item()}")
    (height, width), (h_in, w_in) = original_size, input_size
    scale = torch.tensor([w_in / width, h_in / height] * 2)  # per axis: the image may have been stretched
    return torch.from_numpy(target.boxes).float() * scale, labels


@dataclass(frozen=True)
class LabelTargets:
    """A class index per pixel, (H, W) int64; ``ignore`` (e.g. 255) marks pixels no loss or metric counts."""

    labels: np.ndarray
    ignore: int | None = None


@dataclass(frozen=True)
class DepthTargets:
    """Depth per pixel in metres, (H, W) float32; 0 and non-finite values are "no measurement"."""

    depth: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.depth) & (self.depth > 0)


@dataclass(frozen=True)
class FlowTargets:
    """Flow from the previous image to this one, (H, W, 2) float32 (u, v) in pixels; non-finite = unknown."""

    flow: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.flow).all(-1)


Target = BoxTargets | LabelTargets | DepthTargets | FlowTargets
# The tasks `dinov3 train` and `dinov3 eval` have data readers and metrics for.
TARGET_OF_TASK: dict[str, type] = {"detection": BoxTargets, "segmentation": LabelTargets, "depth": DepthTargets,
                                   "flow": FlowTargets}


class HeadLoss(abc.ABC):
    """How a head learns: target encoding and the loss of a batch.

    ``head`` is the model being trained (read its class count, strides, etc.);
    ``args`` are the manifest's ``loss_args``.
    """

    def __init__(self, head: Head, **args: Any) -> None:
        if args:
            raise TypeError(f"{type(self).__name__} takes no loss_args, got {sorted(args)}")
        self.head = head

    @abc.abstractmethod
    def encode(self, target: Any, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> Any:
        """One sample's ground truth as CPU tensors (a tensor, or a dict / list of them) for ``__call__``.

        ``original_size``: (H, W) of the image the target is in; ``input_size``: (h, w)
        the backbone saw; ``feature_size``: (h, w) of the head's first feature map.
        """

    @abc.abstractmethod
    def __call__(self, outputs: Any, targets: list[Any]) -> dict[str, torch.Tensor]:
        """The loss of a batch: ``outputs`` of ``head.forward`` on B stacked samples and their B encoded
        targets (on the outputs' device). Returns ``{"loss": total, <part>: value, ...}``, scalars."""
