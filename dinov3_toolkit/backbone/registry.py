"""Backbone registry: every variant by name, with its weights and normalisation.

A name is ``arch.tag`` (``vitl16.sat493m``), as in timm: one architecture can
carry several weight sets, and the tag decides the file names to look for, the
image normalisation and any architecture detail that differs between weight
sets (the SAT-493M ViT-L has an extra, training-only ``local_cls_norm``). A bare
``arch`` means its first registered tag (LVD-1689M for every DINOv3 model).

The variants themselves are registered at the bottom of ``vit.py`` and
``convnext.py``; this module holds no model code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAT_MEAN = (0.430, 0.411, 0.296)
SAT_STD = (0.213, 0.156, 0.143)


@dataclass(frozen=True)
class WeightsTag:
    """One released weight set of an architecture."""

    tag: str
    meta_filename: str  # Meta's official .pth file name (its suffix is a SHA-256 prefix)
    hf_repo: str | None  # Hugging Face repo id, None where Meta published none
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    model_overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class BackboneFamily:
    """What the loader needs to know about a model family."""

    name: str
    model_cls: Callable[..., nn.Module]
    # Converts any supported checkpoint layout (Meta, Hugging Face) into ours.
    checkpoint_filter_fn: Callable[[dict, nn.Module], dict]
    # Converts our (= Meta's) layout into the Hugging Face hub layout.
    to_hf_state_dict: Callable[[dict], dict]


@dataclass(frozen=True)
class BackboneSpec:
    arch: str
    family: BackboneFamily
    config: Mapping[str, Any]
    weights: WeightsTag

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.weights.tag}"

    def build(self, **overrides: Any) -> nn.Module:
        """Build the model with random weights in eval mode (overrides: e.g. ``depth=2`` in tests)."""
        model = self.family.model_cls(**{**self.config, **self.weights.model_overrides, **overrides})
        return model.eval()


_SPECS: dict[str, BackboneSpec] = {}
_DEFAULT_TAG: dict[str, str] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _SPECS:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    _DEFAULT_TAG.setdefault(spec.arch, spec.weights.tag)
    return spec


def list_backbones() -> list[str]:
    """Every registered ``arch.tag`` name."""
    return list(_SPECS)


def get_backbone_spec(name: str) -> BackboneSpec:
    """Look up ``arch`` or ``arch.tag``; unknown names list what exists."""
    full = f"{name}.{_DEFAULT_TAG[name]}" if name in _DEFAULT_TAG else name
    try:
        return _SPECS[full]
    except KeyError:
        known = ", ".join(sorted(set(_DEFAULT_TAG) | set(_SPECS)))
        raise ConfigError(f"unknown backbone {name!r}; the backbone registry has: {known}") from None


def create_backbone(name: str, **overrides: Any) -> nn.Module:
    """Build a registered backbone with random weights, in eval mode."""
    return get_backbone_spec(name).build(**overrides)
