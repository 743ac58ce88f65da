"""Loading is strict, safe and says what is wrong."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from conftest import randomize_
from dinov3_toolkit.backbone import (
    CheckpointError,
    get_backbone_spec,
    load_backbone,
    save_backbone,
)
from dinov3_toolkit.checkpoint import read_state_dict, save_state_dict
from dinov3_toolkit.engine import Engine

SMALL = {"depth": 2}


@pytest.fixture
def saved(tmp_path):
    """A random 2-block vits16plus saved in Meta's layout; returns (model, path)."""
    model = randomize_(get_backbone_spec("vits16plus").build(**SMALL))
    path = tmp_path / "dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth"
    save_backbone(model, path)
    return model, path


def _edit(path, tmp_path, edit) -> str:
    state = read_state_dict(path)
    edit(state)
    out = tmp_path / "edited.pth"
    save_state_dict(state, out)
    return out


def test_missing_key_is_named(saved, tmp_path):
    _, path = saved
    bad = _edit(path, tmp_path, lambda sd: sd.pop("blocks.1.attn.proj.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): blocks\.1\.attn\.proj\.weight"):
        load_backbone("vits16plus", bad, **SMALL)


def test_extra_key_is_named(saved, tmp_path):
    _, path = saved
    bad = _edit(path, tmp_path, lambda sd: sd.__setitem__("head.weight", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): head\.weight"):
        load_backbone("vits16plus", bad, **SMALL)


def test_wrong_shape_is_named(saved, tmp_path):
    _, path = saved
    bad = _edit(path, tmp_path, lambda sd: sd.__setitem__("norm.weight", torch.ones(5)))
    with pytest.raises(CheckpointError, match=r"norm\.weight is \(5,\), expected \(384,\)"):
        load_backbone("vits16plus", bad, **SMALL)


def test_wrong_variant_suggests_the_right_one(tmp_path):
    """A full vits16 file given for vits16plus: the error names the variant it fits."""
    with torch.device("meta"):
        model = get_backbone_spec("vits16").build()
    state = {k: torch.zeros(v.shape) for k, v in model.state_dict().items()}
    path = tmp_path / "w.pth"
    save_state_dict(state, path)
    with pytest.raises(CheckpointError, match=r"fits backbone vits16\.lvd1689m instead"):
        load_backbone("vits16plus", path)


class _Exploit:
    """A pickle payload that creates a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_pickle_with_code_is_refused_and_never_runs(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "payload_ran"
    state = read_state_dict(path)
    state["blocks.0.norm1.weight"] = _Exploit(marker)
    evil = tmp_path / "evil.pth"
    torch.save(state, evil)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pth"):
        load_backbone("vits16plus", evil, **SMALL)
    assert not marker.exists(), "the pickled code ran"


def test_payload_is_live(tmp_path):
    """Guard for the test above: the payload does run under an unrestricted unpickler."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.exists()


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth is not a readable PyTorch checkpoint"):
        load_backbone("vits16plus", junk, **SMALL)


def test_bf16_periods_from_the_checkpoint_are_used(saved, tmp_path):
    """Released files store RoPE periods in bf16; they load into the fp32 buffer unchanged."""
    _, path = saved
    periods = torch.linspace(1.0, 80.0, 16).to(torch.bfloat16)
    bad = _edit(path, tmp_path, lambda sd: sd.__setitem__("rope_embed.periods", periods))
    model = load_backbone("vits16plus", bad, **SMALL)
    assert model.rope_embed.periods.dtype == torch.float32
    assert torch.equal(model.rope_embed.periods, periods.float())


def test_hf_checkpoint_gets_bf16_rounded_periods(tmp_path):
    """HF files drop the periods; we restore the bf16-rounded values Meta's weights carry."""
    model = get_backbone_spec("vits16plus").build(**SMALL)
    hf = get_backbone_spec("vits16plus").family.to_hf_state_dict(model.state_dict())
    assert not any("periods" in k for k in hf)
    path = tmp_path / "model.safetensors"
    save_state_dict(hf, path)
    loaded = load_backbone("vits16plus", path, **SMALL)
    assert loaded.rope_embed.periods[1].item() == 1.3359375  # fp32 would be 1.3335214
    assert loaded.rope_embed.periods[-1].item() == 75.0


def test_k_bias_is_masked(saved):
    """A non-zero k bias in the checkpoint must not change the output (Meta masks it)."""
    model, _ = saved
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        qkv = model.blocks[0].attn.qkv
        qkv.bias[384:768] += 5.0
        assert torch.equal(model(x), before)
        qkv.bias[:384] += 0.5  # the q bias does matter
        assert not torch.allclose(model(x), before)


@torch.inference_mode()
@pytest.mark.parametrize("name", ["vits16plus", "convnext_tiny"])
def test_meta_layout_round_trip(name, tmp_path):
    """Save in Meta's layout, reload strictly: the same tensors and the same features."""
    depth = {"depth": 2} if name.startswith("vit") else {}
    ours = randomize_(get_backbone_spec(name).build(**depth))
    path = tmp_path / get_backbone_spec(name).weights.meta_filename
    save_backbone(ours, path)
    again = load_backbone(name, path, **depth)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    x = torch.randn(1, 3, 96, 128)
    assert torch.equal(ours(x), again(x))


def test_incomplete_hf_qkv_is_named(tmp_path):
    """A Hugging Face file without a k projection: a clear error, not a KeyError."""
    spec = get_backbone_spec("vits16plus")
    hf = spec.family.to_hf_state_dict(spec.build(**SMALL).state_dict())
    del hf["layer.1.attention.k_proj.weight"]
    path = tmp_path / "model.safetensors"
    save_state_dict(hf, path)
    with pytest.raises(CheckpointError) as info:
        load_backbone("vits16plus", path, **SMALL)
    text = str(info.value)
    assert "missing key(s): blocks.1.attn.qkv.weight" in text
    assert "unexpected key(s): layer.1.attention.q_proj.weight, layer.1.attention.v_proj.weight" in text


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_values_are_checked_not_only_keys_and_shapes(saved, tmp_path, suffix):
    """An integer tensor for a float parameter, or NaN in a weight, is refused naming the file and the key."""
    _, path = saved
    state = read_state_dict(path)
    state["norm.weight"] = torch.ones(384, dtype=torch.int32)
    state["blocks.0.attn.proj.weight"][3, 4] = float("nan")
    bad = tmp_path / f"edited{suffix}"
    save_state_dict(state, bad)
    with pytest.raises(CheckpointError) as e:
        load_backbone("vits16plus", bad, **SMALL)
    message = str(e.value)
    assert str(bad) in message
    assert "norm.weight is torch.int32, expected a floating-point tensor" in message
    assert "NaN or infinite values: blocks.0.attn.proj.weight (1 of 147456)" in message


def test_a_head_file_with_nan_is_that_heads_error(tmp_path, no_weights):
    folder = tmp_path / "head_probe"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "head_linear_probe", folder)
    (folder / "weights").mkdir(exist_ok=True)
    save_state_dict({"classifier.weight": torch.full((3, 384, 1, 1), float("inf")), "classifier.bias": torch.zeros(3)},
                    folder / "weights" / "model.safetensors")
    engine = Engine.create(backbone="vits16plus", backbone_overrides=SMALL, device="cpu", size=32, heads=["probe"],
                           head_dirs=[tmp_path], random_weights=True)
    assert "NaN or infinite values: classifier.weight (1152 of 1152)" in str(engine.failed["probe"])
