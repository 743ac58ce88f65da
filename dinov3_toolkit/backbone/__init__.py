"""DINOv3 backbones: every ViT and ConvNeXt variant, built by name, loading Meta or Hugging Face weights.

>>> model = create_backbone("vits16plus")            # random weights
>>> model = load_backbone("vits16plus")              # weights found on disk (see weights.py)
>>> maps = model.forward_intermediates(x, [-1])      # [(B, 384, H/16, W/16)]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import CheckpointError, check_state_dict, load_into, read_state_dict, save_state_dict
from . import convnext, vit  # noqa: F401  (registers the variants)
from .features import FeatureInfo
from .registry import BackboneSpec, create_backbone, get_backbone_spec, list_backbones
from .weights import WeightsNotFoundError, resolve_weights, search_dirs

__all__ = [
    "BackboneSpec",
    "CheckpointError",
    "FeatureInfo",
    "WeightsNotFoundError",
    "create_backbone",
    "get_backbone_spec",
    "list_backbones",
    "load_backbone",
    "load_backbone_weights",
    "resolve_weights",
    "save_backbone",
    "search_dirs",
]

log = logging.getLogger(__name__)


def _as_float32(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Weights may be stored in bf16 (e.g. RoPE periods); the model computes in fp32
    # and casts under autocast, as Meta's hub model does.
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def _matching_variants(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Registered variants that this state dict would load into exactly."""
    names = []
    for name in list_backbones():
        spec = get_backbone_spec(name)
        with torch.device("meta"):
            model = spec.build()
        if not check_state_dict(spec.family.checkpoint_filter_fn(state_dict, model), model):
            names.append(name)
    return names


def load_backbone_weights(model: nn.Module, spec: BackboneSpec, path: str | Path) -> None:
    """Load a Meta ``.pth`` or Hugging Face safetensors file strictly into ``model``.

    Works on a model built on the ``meta`` device too (its tensors are replaced).
    """
    raw = read_state_dict(path)
    state_dict = _as_float32(spec.family.checkpoint_filter_fn(raw, model))
    is_meta = next(model.parameters()).is_meta
    try:  # checked once, in load_into; the other variants are tried only when it does not fit
        load_into(model, state_dict, source=f"weights file {path} (for backbone {spec.name})", assign=is_meta)
    except CheckpointError as e:
        matches = [n for n in _matching_variants(raw) if n != spec.name]
        if not matches:
            raise
        raise CheckpointError(f"{e}\nThis file fits backbone {' / '.join(matches)} instead.") from None


def load_backbone(name: str, weights: str | Path | None = None, **overrides: Any) -> nn.Module:
    """Build backbone ``name`` and load its weights (found as ``weights.py`` describes).

    The model comes back on the CPU in fp32 and eval mode. ``overrides`` change the
    architecture (tests cut ``depth``); the checkpoint must then match that shape.
    """
    spec = get_backbone_spec(name)
    path = resolve_weights(spec, weights)
    with torch.device("meta"):  # no time spent on a random init that is overwritten
        model = spec.build(**overrides)
    load_backbone_weights(model, spec, path)
    log.info("backbone %s: weights from %s", spec.name, path)
    return model.eval()


def save_backbone(model: nn.Module, path: str | Path) -> None:
    """Save in Meta's layout (``.pth``, loadable by Meta's ``torch.hub`` code) or as safetensors."""
    save_state_dict(model.state_dict(), path)
