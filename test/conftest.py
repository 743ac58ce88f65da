"""Shared test helpers: random weights that exercise every parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter with random values of a realistic scale.

    Unlike the default init (LayerScale 1e-5, zero biases), this makes every block,
    bias and norm matter, so a wrongly mapped tensor shows up in the features.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            scale_like = name.endswith(("gamma", "lambda1")) or ("norm" in name and name.endswith("weight"))
            if scale_like:
                param.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias") or param.dim() == 1:
                param.copy_(0.05 * noise)
            else:
                fan_in = param[0].numel() if param.dim() > 1 else 1
                param.copy_(noise / fan_in**0.5)
    return model


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
