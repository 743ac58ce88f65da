"""Every variant builds by name with the parameter count of the official model."""

from __future__ import annotations

import pytest
import torch

from dinov3_toolkit.backbone import create_backbone, get_backbone_spec, list_backbones

# Official module counts from specs/backbone.md tables 1a and 1b (Meta's code, pretrained=False).
OFFICIAL_PARAMS = {
    "vits16.lvd1689m": 21_601_152,
    "vits16plus.lvd1689m": 28_697_472,
    "vitb16.lvd1689m": 85_669_632,
    "vitl16.lvd1689m": 303_154_176,
    "vitl16.sat493m": 303_156_224,
    "vitl16plus.lvd1689m": 403_915_776,
    "vith16plus.lvd1689m": 840_633_600,
    "vit7b16.lvd1689m": 6_716_043_264,
    "vit7b16.sat493m": 6_716_043_264,
    "convnext_tiny.lvd1689m": 27_820_128,
    "convnext_small.lvd1689m": 49_454_688,
    "convnext_base.lvd1689m": 87_566_464,
    "convnext_large.lvd1689m": 196_230_336,
}


def test_registry_has_exactly_the_spec_variants():
    assert sorted(list_backbones()) == sorted(OFFICIAL_PARAMS)


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMS))
def test_param_count_matches_official(name):
    with torch.device("meta"):
        model = create_backbone(name)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


@pytest.mark.parametrize(
    "name, tag, mean",
    [
        ("vits16plus", "lvd1689m", (0.485, 0.456, 0.406)),
        ("vitl16", "lvd1689m", (0.485, 0.456, 0.406)),
        ("vitl16.sat493m", "sat493m", (0.430, 0.411, 0.296)),
        ("vit7b16.sat493m", "sat493m", (0.430, 0.411, 0.296)),
        ("convnext_tiny", "lvd1689m", (0.485, 0.456, 0.406)),
    ],
)
def test_bare_arch_means_lvd_and_sat_has_its_normalisation(name, tag, mean):
    spec = get_backbone_spec(name)
    assert spec.weights.tag == tag
    assert spec.weights.mean == mean


def test_unknown_name_lists_the_registry():
    with pytest.raises(ValueError, match=r"unknown backbone 'vits14'.*vits16plus"):
        get_backbone_spec("vits14")


def test_bad_override_is_rejected():
    with pytest.raises(TypeError):
        create_backbone("vits16", depht=2)
