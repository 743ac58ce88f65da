"""Our backbones against an implementation we did not write: Hugging Face transformers.

Both checkpoint formats and both converter directions: our random weights saved
as Meta's .pth -> our loader -> HF layout -> HF model; and HF random weights saved
as safetensors (hub layout and ``model.``-prefixed) -> our loader. Input 480x640
(non-square). Dims are the real ones; ViT-B depth is cut to keep the suite fast.
"""

from __future__ import annotations

import pytest
import torch

from conftest import randomize_
from tolerances import perturb_one_element_, rounding_atol, vit_rounding
from dinov3_toolkit.backbone import get_backbone_spec, load_backbone, save_backbone
from dinov3_toolkit.checkpoint import save_state_dict

transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference")

H, W = 480, 640
TOKENS = (H // 16) * (W // 16) + 5  # patches, the class token and 4 registers: attention sums over them

VIT_CASES = {  # name -> depth used in the test
    "vits16": 12,
    "vits16plus": 12,
    "vitb16": 4,
}


def _hf_vit(name: str, depth: int):
    spec = get_backbone_spec(name)
    cfg = spec.config
    model = spec.build(depth=depth)
    gated = cfg.get("ffn_layer") == "swiglu"
    hidden = model.blocks[0].mlp.w1.out_features if gated else model.blocks[0].mlp.fc1.out_features
    config = transformers.DINOv3ViTConfig(
        hidden_size=cfg["embed_dim"],
        intermediate_size=hidden,
        num_hidden_layers=depth,
        num_attention_heads=cfg["num_heads"],
        use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu",
        num_register_tokens=4,
        patch_size=16,
    )
    return model, transformers.DINOv3ViTModel(config).eval()


def _hf_convnext():
    spec = get_backbone_spec("convnext_tiny")
    config = transformers.DINOv3ConvNextConfig(
        depths=list(spec.config["depths"]), hidden_sizes=list(spec.config["dims"])
    )
    return spec.build(), transformers.DINOv3ConvNextModel(config).eval()


def _share_periods(ours, hf) -> None:
    """Give HF the RoPE periods our model holds.

    The released weights carry bf16-rounded periods, which we keep (and regenerate
    for HF files); HF recomputes fp32 ones. That changes features (by ~2e-3 with
    these random weights), so the comparison runs both models on the same periods.
    """
    hf.rope_embeddings.inv_freq = 1.0 / ours.rope_embed.periods.clone()


def _hf_vit_maps(hf, x, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HF's normed patch maps of the last block and of ``block`` (0-based), NCHW."""
    out = hf(pixel_values=x, output_hidden_states=True)
    h, w = x.shape[-2] // 16, x.shape[-1] // 16

    def to_map(tokens):
        return tokens[:, 5:].reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)

    # hidden_states[0] is the embedding output, [k] the output of block k-1 (pre-norm).
    return to_map(out.last_hidden_state), to_map(hf.norm(out.hidden_states[block + 1]))


def _hf_convnext_maps(hf, x) -> list[torch.Tensor]:
    """HF stage maps 0-2 (raw) and the normed stride-32 map, like ours."""
    out = hf(pixel_values=x, output_hidden_states=True)
    b, c, h, w = out.hidden_states[-1].shape
    last = out.last_hidden_state[:, 1:].transpose(1, 2).reshape(b, c, h, w)  # [:, 0] is the pooled token
    return [*out.hidden_states[-4:-1], last]


def _convnext_rounding(model, stage: int) -> tuple[int, int]:
    """(reduction, depth) of stage ``stage``'s output: a downsampling conv per stage, then per block the 7x7
    depthwise conv and the two pointwise matmuls, the second over 4x the stage width."""
    blocks = sum(len(s) for s in model.stages[: stage + 1])
    return 4 * model.feature_info[stage].channels, stage + 1 + 3 * blocks


def _assert_maps_match(request, direction: str, ours: list[torch.Tensor], theirs: list[torch.Tensor],
                       rounding: list[tuple[int, int]]) -> None:
    assert [t.shape for t in ours] == [t.shape for t in theirs]
    for got, want, (reduction, depth) in zip(ours, theirs, rounding):
        atol = rounding_atol(want, reduction=reduction, depth=depth)
        print(f"\n{request.node.name} {direction}: max abs diff {(got - want).abs().max().item():.2e} "
              f"(tolerance {atol:.2e})")
        torch.testing.assert_close(got, want, rtol=0, atol=atol)


def _assert_vit_matches_hf(request, direction: str, ours, hf) -> None:
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    last, mid = len(ours.blocks) - 1, 1
    _assert_maps_match(request, direction, ours.forward_intermediates(x, [-1, mid]), list(_hf_vit_maps(hf, x, mid)),
                       [vit_rounding(ours, last, TOKENS), vit_rounding(ours, mid, TOKENS)])


def _assert_convnext_matches_hf(request, direction: str, ours, hf) -> None:
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    _assert_maps_match(request, direction, ours.forward_intermediates(x, [0, 1, 2, 3]), _hf_convnext_maps(hf, x),
                       [_convnext_rounding(ours, stage) for stage in range(4)])


def _via_meta_file(name: str, model, tmp_path, **overrides):
    """Save ``model`` as Meta's ``.pth`` and load it back through our loader."""
    path = tmp_path / get_backbone_spec(name).weights.meta_filename
    save_backbone(model, path)
    return load_backbone(name, path, **overrides)


def _hf_in_memory(state: dict) -> dict:
    """Hub layout -> the ``model.``-prefixed names transformers 5.x modules use."""
    return {("model." + k if k.startswith(("layer.", "stages.")) else k): v for k, v in state.items()}


@pytest.mark.reference
@torch.inference_mode()
@pytest.mark.parametrize("name", list(VIT_CASES))
def test_vit_meta_file_to_hf(name, tmp_path, request):
    src, hf = _hf_vit(name, VIT_CASES[name])
    ours = _via_meta_file(name, randomize_(src), tmp_path, depth=VIT_CASES[name])
    hf.load_state_dict(_hf_in_memory(get_backbone_spec(name).family.to_hf_state_dict(ours.state_dict())), strict=True)
    _share_periods(ours, hf)
    _assert_vit_matches_hf(request, "Meta .pth -> ours vs HF", ours, hf)


@pytest.mark.reference
@torch.inference_mode()
@pytest.mark.parametrize("prefixed", [False, True], ids=["hub-layout", "model-prefix"])
@pytest.mark.parametrize("name", list(VIT_CASES))
def test_vit_hf_to_ours(name, prefixed, tmp_path, request):
    _, hf = _hf_vit(name, VIT_CASES[name])
    randomize_(hf, seed=1)
    state = hf.state_dict() if prefixed else {k.removeprefix("model."): v for k, v in hf.state_dict().items()}
    path = tmp_path / "model.safetensors"
    save_state_dict(state, path)
    ours = load_backbone(name, path, depth=VIT_CASES[name])
    _share_periods(ours, hf)
    _assert_vit_matches_hf(request, "HF safetensors -> ours vs HF", ours, hf)


@pytest.mark.reference
@torch.inference_mode()
def test_convnext_meta_file_to_hf(tmp_path, request):
    src, hf = _hf_convnext()
    ours = _via_meta_file("convnext_tiny", randomize_(src), tmp_path)
    hf.load_state_dict(_hf_in_memory(get_backbone_spec("convnext_tiny").family.to_hf_state_dict(ours.state_dict())))
    _assert_convnext_matches_hf(request, "Meta .pth -> ours vs HF", ours, hf)


@pytest.mark.reference
@torch.inference_mode()
@pytest.mark.parametrize("prefixed", [False, True], ids=["hub-layout", "model-prefix"])
def test_convnext_hf_to_ours(prefixed, tmp_path, request):
    _, hf = _hf_convnext()
    randomize_(hf, seed=1)
    state = hf.state_dict() if prefixed else {k.removeprefix("model."): v for k, v in hf.state_dict().items()}
    path = tmp_path / "model.safetensors"
    save_state_dict(state, path)
    ours = load_backbone("convnext_tiny", path)
    _assert_convnext_matches_hf(request, "HF safetensors -> ours vs HF", ours, hf)


def _transpose_(weight: torch.Tensor) -> None:
    weight.copy_(weight.T.clone())  # a square matrix loaded as (in, out)


@pytest.mark.reference
@torch.inference_mode()
@pytest.mark.parametrize(("name", "bug"), [
    ("patch_embed.proj.weight", perturb_one_element_),
    ("blocks.0.attn.qkv.weight", perturb_one_element_),
    ("blocks.1.mlp.fc2.weight", perturb_one_element_),
    ("blocks.1.ls2.gamma", perturb_one_element_),
    ("blocks.0.attn.proj.weight", _transpose_),
    ("blocks.1.mlp.fc2.bias", torch.Tensor.zero_),  # a missing bias
])
def test_vit_comparison_catches_a_one_weight_bug(name, bug, tmp_path, request):
    src, hf = _hf_vit("vits16", 2)  # two blocks: the mid map is the last, and every kind of layer runs
    ours = _via_meta_file("vits16", randomize_(src), tmp_path, depth=2)
    hf.load_state_dict(_hf_in_memory(get_backbone_spec("vits16").family.to_hf_state_dict(ours.state_dict())))
    _share_periods(ours, hf)
    bug(ours.get_parameter(name))
    with pytest.raises(AssertionError):
        _assert_vit_matches_hf(request, "a changed weight", ours, hf)


@pytest.mark.reference
@torch.inference_mode()
@pytest.mark.parametrize(("name", "bug"), [
    ("downsample_layers.0.0.weight", perturb_one_element_),  # the stem
    ("stages.3.2.pwconv2.weight", perturb_one_element_),  # the last block's last matmul
    ("stages.1.0.dwconv.bias", torch.Tensor.zero_),  # a missing bias
])
def test_convnext_comparison_catches_a_one_weight_bug(name, bug, tmp_path, request):
    src, hf = _hf_convnext()
    ours = _via_meta_file("convnext_tiny", randomize_(src), tmp_path)
    hf.load_state_dict(_hf_in_memory(get_backbone_spec("convnext_tiny").family.to_hf_state_dict(ours.state_dict())))
    bug(ours.get_parameter(name))
    with pytest.raises(AssertionError):
        _assert_convnext_matches_hf(request, "a changed weight", ours, hf)
