"""The feature-extraction protocol every backbone family follows.

A backbone exposes ``num_layers`` selectable layers (ViT: blocks, ConvNeXt:
stages), a ``feature_info`` entry per layer, ``size_multiple`` (input sides
must be a multiple of it for the maps to cover the whole image) and
``forward_intermediates(x, indices)``, which returns one NCHW map per
requested layer and computes nothing past the deepest one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and stride (input pixels per map cell) of one selectable layer."""

    channels: int
    stride: int


def resolve_layer_indices(indices: Iterable[int], num_layers: int) -> list[int]:
    """Turn user indices (0-based, negatives count from the end) into non-negative ones.

    The order is kept: a backbone returns its maps in the order they were asked for.
    """
    resolved = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"layer indices must be ints, got {index!r}")
        if not -num_layers <= index < num_layers:
            raise ValueError(
                f"layer index {index} is out of range for a backbone with {num_layers} layers "
                f"(valid: {-num_layers}..{num_layers - 1})"
            )
        resolved.append(index % num_layers)
    if not resolved:
        raise ValueError("at least one layer index is needed")
    return resolved
