"""Reduced precision end to end: bf16 (what CPUs run) against fp32, with the RoPE in fp32 throughout.

fp16 matmuls are checked at the feature level in test_features.py; the CPU
runs them too, but slowly, and CUDA is the place for fp16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinov3_toolkit.backbone import rope as rope_module
from dinov3_toolkit.backbone import vit as vit_module
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels


def _engine(precision: str, no_weights) -> Engine:
    torch.manual_seed(0)  # the same random weights for every precision
    return Engine.create(backbone="vits16", device="cpu", size=64, precision=precision, random_weights=True,
                         backbone_overrides={"depth": 4}, warmup=False)


@pytest.fixture
def engines(no_weights):
    return _engine("fp32", no_weights), _engine("bf16", no_weights)


@pytest.fixture
def frame():
    return np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)


def test_rope_runs_in_fp32_inside_a_bf16_forward(engines, frame, monkeypatch):
    seen = []
    original = rope_module.apply_rope

    def spy(x, rope):
        out = original(x, rope)
        seen.append((x.dtype, rope[0].dtype, rope[1].dtype, out.dtype))
        return out

    monkeypatch.setattr(vit_module, "apply_rope", spy)
    engines[1].extractor(frame)
    assert len(seen) == 4  # once per block, q and k together
    # q/k arrive in bf16 (the qkv matmul ran in bf16), the sin/cos table is fp32, the result goes back to bf16.
    assert set(seen) == {(torch.bfloat16, torch.float32, torch.float32, torch.bfloat16)}


def test_bf16_head_outputs_are_close_to_fp32(engines, frame):
    full, half = engines
    maps32 = full.extractor(frame).maps
    maps16 = half.extractor(frame).maps
    for name in full.heads:
        out32 = torch.utils._pytree.tree_leaves(full.head_forward(name, maps32))
        out16 = torch.utils._pytree.tree_leaves(half.head_forward(name, maps16))
        for a, b in zip(out32, out16):
            assert b.dtype == torch.bfloat16 or not torch.equal(a, b)  # reduced precision really ran
            scale = a.abs().max().item()
            diff = (a - b.float()).abs().max().item()
            print(f"{name}: max abs diff {diff:.3g} on outputs up to {scale:.3g}")
            assert diff <= 0.05 * scale + 1e-3


def test_bf16_results_are_fp32_and_close(engines, frame):
    full, half = engines
    a, b = full(frame), half(frame)
    assert not a.errors and not b.errors
    for name, result in a.results.items():
        other = b.results[name]
        assert type(other) is type(result)
        if isinstance(result, DepthMap):
            assert other.depth.dtype == np.float32 and other.depth.shape == (72, 96)
            np.testing.assert_allclose(other.depth, result.depth, rtol=0.05, atol=1e-3)
        elif isinstance(result, SemanticLabels):
            agree = (other.labels == result.labels).mean()
            print(f"{name}: {agree:.1%} of pixels get the fp32 label")
            assert other.labels.shape == (72, 96) and agree >= 0.9
        elif isinstance(result, Detections):
            assert other.boxes.dtype == np.float32 and other.scores.dtype == np.float32
