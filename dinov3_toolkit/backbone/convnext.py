"""DINOv3 ConvNeXt (tiny ... large), compatible with Meta's weights.

Module names equal the keys of Meta's checkpoints, including ``norms.3``, which
is the final ``norm`` registered a second time (Meta applies ``norms[i]`` to
stage ``i``: only the last stage is normed). Hugging Face checkpoints are
converted by ``checkpoint_filter_fn``. Sizes and choices: docs/backbones.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .features import FeatureInfo, resolve_layer_indices
from .registry import BackboneFamily, BackboneSpec, WeightsTag, register_backbone

STAGE_STRIDES = (4, 8, 16, 32)


# --- building blocks -------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))  # layer scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


# --- model -----------------------------------------------------------------


class ConvNeXt(nn.Module):
    """DINOv3 ConvNeXt; its four stages (strides 4, 8, 16, 32) are the selectable layers.

    ``forward_intermediates`` returns stage maps as Meta's
    ``get_intermediate_layers(norm=True, reshape=True)`` does: stages 0-2 raw,
    stage 3 through the final LayerNorm.
    """

    size_multiple = 32
    num_layers = 4

    def __init__(self, *, depths: Sequence[int], dims: Sequence[int]) -> None:
        super().__init__()
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"ConvNeXt needs 4 depths and 4 dims, got {list(depths)} and {list(dims)}")
        self.feature_info = tuple(FeatureInfo(c, s) for c, s in zip(dims, STAGE_STRIDES))
        stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        self.downsample_layers = nn.ModuleList([stem])
        for c_in, c_out in zip(dims[:-1], dims[1:]):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(c_in, eps=1e-6), nn.Conv2d(c_in, c_out, kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth))) for depth, dim in zip(depths, dims)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.norms = nn.ModuleList([nn.Identity(), nn.Identity(), nn.Identity(), self.norm])
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] = (-1,)
    ) -> list[torch.Tensor]:
        """Stage maps (B, C_i, H/s_i, W/s_i) of the requested stages, in the order asked."""
        wanted = resolve_layer_indices(indices, self.num_layers)
        kept: dict[int, torch.Tensor] = {}
        for i in range(max(wanted) + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in wanted:
                kept[i] = self.norms[i](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        return [kept[i] for i in wanted]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The normed stride-32 map."""
        return self.forward_intermediates(x)[0]


# --- checkpoint conversion -------------------------------------------------

# Hugging Face hub names -> ours (after "model." is stripped), applied in order.
_HF_RENAMES = [
    (r"^stages\.(\d+)\.downsample_layers\.(\d+)\.", r"downsample_layers.\1.\2."),
    (r"^stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.\2."),
    (r"depthwise_conv", "dwconv"),
    (r"pointwise_conv", "pwconv"),
    (r"layer_norm", "norm"),
]


def _is_hf_layout(state_dict: dict) -> bool:
    return any(re.search(r"(^|\.)stages\.0\.downsample_layers\.0\.weight$", k) for k in state_dict)


def checkpoint_filter_fn(state_dict: dict, model: ConvNeXt) -> dict:
    """Convert a Meta or Hugging Face ConvNeXt state dict into our (= Meta's) layout."""
    out: dict[str, torch.Tensor] = {}
    if not _is_hf_layout(state_dict):
        out.update(state_dict)
    else:
        for key, value in state_dict.items():
            key = key.removeprefix("model.")
            for pattern, repl in _HF_RENAMES:
                key = re.sub(pattern, repl, key)
            out[key] = value
    # ``norms.3`` is ``norm`` registered twice; fill whichever of the two is absent.
    for name in ("weight", "bias"):
        if f"norm.{name}" in out:
            out.setdefault(f"norms.3.{name}", out[f"norm.{name}"])
    return out


def to_hf_state_dict(state_dict: dict) -> dict:
    """Our (= Meta's) ConvNeXt layout -> the Hugging Face hub layout (no ``model.`` prefix)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("norms."):
            continue
        key = key.replace("dwconv", "depthwise_conv").replace("pwconv", "pointwise_conv")
        key = re.sub(r"(^|\.)norm\.", r"\1layer_norm.", key)
        key = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.layers.\2.", key)
        key = re.sub(r"^downsample_layers\.(\d+)\.(\d+)\.", r"stages.\1.downsample_layers.\2.", key)
        out[key] = value
    return out


# --- variants --------------------------------------------------------------

CONVNEXT = BackboneFamily(
    name="convnext",
    model_cls=ConvNeXt,
    checkpoint_filter_fn=checkpoint_filter_fn,
    to_hf_state_dict=to_hf_state_dict,
)


def _register(arch: str, sha: str, depths: tuple[int, ...], dims: tuple[int, ...]) -> None:
    tag = WeightsTag(
        tag="lvd1689m",
        meta_filename=f"dinov3_{arch}_pretrain_lvd1689m-{sha}.pth",
        hf_repo=f"facebook/dinov3-{arch.replace('_', '-')}-pretrain-lvd1689m",
    )
    register_backbone(BackboneSpec(arch=arch, family=CONVNEXT, config={"depths": depths, "dims": dims}, weights=tag))


_register("convnext_tiny", "21b726bb", (3, 3, 9, 3), (96, 192, 384, 768))
_register("convnext_small", "296db49d", (3, 3, 27, 3), (96, 192, 384, 768))
_register("convnext_base", "801f2ba9", (3, 3, 27, 3), (128, 256, 512, 1024))
_register("convnext_large", "61fa432d", (3, 3, 27, 3), (192, 384, 768, 1536))
