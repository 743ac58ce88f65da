"""What a training or validation batch is made of, and how a batch of head outputs splits into samples.

An item is one sample's features (read from the cache) or its image (when the
augmentation changed its pixels, or the cache lacks it: the trainer runs the
backbone on those), the same for the frame before it in a flow pair
(``previous_maps``, ``previous_image``), with its target: encoded by the
head's loss for training, as read for validation. Items are built in data-loader workers, so everything
here pickles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..heads import HeadLoss
from .augment import augment_photometric
from .cache import FeatureCache
from .data import Dataset, read_image


class Items(torch.utils.data.Dataset):
    """The samples of ``data`` as items; ``epoch`` and ``augment`` are set by the trainer before each epoch."""

    def __init__(self, data: Dataset, sizes: list[tuple[int, int]], cache: FeatureCache, loss: HeadLoss | None,
                 geometry: tuple[tuple[int, int], tuple[int, int]], seed: int) -> None:
        self.data, self.sizes, self.cache, self.loss = data, sizes, cache, loss
        self.input_size, self.feature_size = geometry
        self.seed = seed
        self.epoch = 0
        self.augment = 0.0  # probability that a sample's pixels are changed this epoch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.data.samples[i]
        target = sample.load_target()
        rng = np.random.default_rng([self.seed, self.epoch, i])  # this sample's augmentation in this epoch
        augmented = self.augment > 0 and rng.random() < self.augment
        state = rng.bit_generator.state
        item: dict[str, Any] = {"index": i, **self._frame(sample.image, augmented, rng)}
        if sample.previous is not None:  # a flow pair: the frame before, changed exactly as this one
            rng.bit_generator.state = state
            item.update({f"previous_{k}": v for k, v in self._frame(sample.previous, augmented, rng).items()})
        if self.loss is None:  # validation: the target as read, for the metric
            item["target"] = target
        else:
            item["target"] = self.loss.encode(target, self.sizes[i], self.input_size, self.feature_size)
        return item


    def _frame(self, path: Path, augmented: bool, rng: np.random.Generator) -> dict[str, Any]:
        """``maps`` from the cache, or ``image`` for the backbone: augmented, or missing from the cache
        (changed since it was filled, or another machine's cache)."""
        if augmented:
            return {"maps": None, "image": augment_photometric(read_image(path), rng)}
        if (maps := self.cache.load(path)) is not None:
            return {"maps": maps, "image": None}
        return {"maps": None, "image": read_image(path)}


def as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data loader's collate function: items differ in kind (maps or image, any target), the trainer stacks."""
    return batch


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors moved to ``device`` inside nested dicts, lists and tuples (encoded targets)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def take(outputs: Any, i: int) -> Any:
    """Sample ``i`` of batched head outputs, batch dimension kept (what ``postprocess`` expects)."""
    if isinstance(outputs, torch.Tensor):
        return outputs[i: i + 1]
    if isinstance(outputs, dict):
        return {k: take(v, i) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(take(v, i) for v in outputs)
    raise TypeError(f"cannot split head outputs of type {type(outputs).__name__} into samples")
