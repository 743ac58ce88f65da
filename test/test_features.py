"""The feature protocol: which layers, in what order, computed how far, at what precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import randomize_
from dinov3_toolkit.backbone import get_backbone_spec
from dinov3_toolkit.backbone.rope import RopePositionEmbedding, apply_rope
from dinov3_toolkit.extractor import FeatureExtractor


@pytest.fixture(scope="module")
def vit():
    return randomize_(get_backbone_spec("vits16plus").build(depth=6))


@pytest.fixture(scope="module")
def convnext():
    return randomize_(get_backbone_spec("convnext_tiny").build(depths=(1, 1, 2, 1)))


def _count_calls(modules) -> list[int]:
    counts = [0] * len(modules)
    for i, module in enumerate(modules):
        module.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@torch.no_grad()
def test_vit_computes_only_up_to_the_deepest_layer():
    model = get_backbone_spec("vits16").build(depth=6)
    counts = _count_calls(model.blocks)
    model.forward_intermediates(torch.randn(1, 3, 64, 64), [2, 0])
    assert counts == [1, 1, 1, 0, 0, 0]


@torch.no_grad()
def test_convnext_computes_only_up_to_the_deepest_stage(convnext):
    counts = _count_calls(convnext.stages)
    convnext.forward_intermediates(torch.randn(1, 3, 64, 64), [1])
    assert counts == [1, 1, 0, 0]


@torch.no_grad()
def test_order_negative_indices_and_forward(vit):
    x = torch.randn(1, 3, 96, 128)
    a, b = vit.forward_intermediates(x, [4, 1])
    b2, a2 = vit.forward_intermediates(x, [1, -2])
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert not torch.allclose(a, b)
    assert torch.equal(vit(x), vit.forward_intermediates(x, [-1])[0])


@torch.no_grad()
def test_vit_maps_are_normed_and_drop_the_remainder(vit):
    """232x250 gives a 14x15 grid (pixels past a multiple of 16 are cropped, as Meta's conv does)."""
    (out,) = vit.forward_intermediates(torch.randn(2, 3, 232, 250), [0])
    assert out.shape == (2, 384, 14, 15)
    assert vit.feature_info[0].channels == 384 and vit.feature_info[0].stride == 16


@torch.no_grad()
def test_convnext_strides_and_last_stage_norm(convnext):
    x = torch.randn(1, 3, 96, 128)
    maps = convnext.forward_intermediates(x, [0, 1, 2, 3])
    for info, m in zip(convnext.feature_info, maps):
        assert m.shape == (1, info.channels, 96 // info.stride, 128 // info.stride)
    assert [i.stride for i in convnext.feature_info] == [4, 8, 16, 32]
    last = maps[3].permute(0, 2, 3, 1)  # normed over channels: per-cell mean ~ bias mean
    raw = convnext.forward_intermediates(x, [3])[0]
    assert torch.equal(raw, maps[3])
    assert torch.allclose(
        (last - convnext.norm.bias).div(convnext.norm.weight).mean(-1), torch.zeros(last.shape[:-1]), atol=1e-4
    )


@pytest.mark.parametrize("indices, error", [([6], ValueError), ([-7], ValueError), ([1.0], TypeError), ([], ValueError)])
def test_bad_layer_indices(vit, indices, error):
    with pytest.raises(error):
        vit.forward_intermediates(torch.randn(1, 3, 32, 32), indices)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rope_stays_fp32_under_autocast(dtype):
    rope = RopePositionEmbedding(64)
    with torch.autocast("cpu", dtype=dtype):
        sin, cos = rope(4, 6, prefix=5)
    assert sin.dtype == cos.dtype == torch.float32
    q = torch.randn(1, 2, 5 + 24, 64).to(dtype)
    rotated = apply_rope(q, (sin, cos))
    assert rotated.dtype == dtype
    assert torch.equal(rotated, apply_rope(q.float(), (sin, cos)).to(dtype))
    assert torch.equal(rotated[:, :, :5], q[:, :, :5])  # class and register tokens untouched


@pytest.mark.parametrize("precision, tol", [("fp32", 0.0), ("bf16", 0.02), ("fp16", 0.003)])
def test_extractor_precisions_agree(vit, precision, tol):
    spec = get_backbone_spec("vits16plus")
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    ref = FeatureExtractor(vit, spec, device="cpu", size=64).__call__(image).maps[0]
    out = FeatureExtractor(vit, spec, device="cpu", size=64, precision=precision)(image).maps[0]
    assert out.dtype == torch.float32  # the final LayerNorm runs in fp32 under autocast
    assert (out - ref).abs().mean() <= tol  # mean |feature| is ~0.8
    assert precision == "fp32" or not torch.equal(out, ref)  # reduced precision really ran


def test_extractor_returns_the_geometry(vit):
    spec = get_backbone_spec("vits16plus")
    extractor = FeatureExtractor(vit, spec, device="cpu", size=128, resize_mode="keep_aspect", layers=[0, -1])
    features = extractor(np.zeros((480, 640, 3), np.uint8))
    assert [m.shape for m in features.maps] == [(1, 384, 6, 8)] * 2
    assert features.image.original_size == (480, 640) and features.image.input_size == (96, 128)
