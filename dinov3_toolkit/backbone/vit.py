"""DINOv3 Vision Transformers (S/16 ... 7B/16), compatible with Meta's weights.

Module names equal the keys of Meta's checkpoints, so an official ``.pth``
loads strictly as it is and ``state_dict()`` is a file Meta's own code loads.
Hugging Face checkpoints are converted by ``checkpoint_filter_fn``.

Layout follows timm's model files: building blocks, the model, checkpoint
conversion, then the registered variants. Sizes and choices: docs/backbones.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .features import FeatureInfo, resolve_layer_indices
from .registry import (
    SAT_MEAN,
    SAT_STD,
    BackboneFamily,
    BackboneSpec,
    WeightsTag,
    register_backbone,
)
from .rope import RopePositionEmbedding, apply_rope, default_periods

NUM_REGISTERS = 4  # "storage tokens" in Meta's code; every released ViT has 4
PATCH_SIZE = 16


# --- building blocks -------------------------------------------------------


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = PATCH_SIZE) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, D, H/16, W/16); pixels past a multiple of 16 are dropped


def k_bias_mask(dim: int) -> torch.Tensor:
    """1 for the q and v thirds of the fused qkv bias, 0 for the k third."""
    mask = torch.ones(3 * dim)
    mask[dim : 2 * dim] = 0
    return mask


class LinearKMaskedBias(nn.Linear):
    """The fused qkv projection whose k-bias third is multiplied by 0.

    RoPE is applied after the bias, so a non-zero k bias would not cancel in the
    softmax: it must really be zeroed, as Meta's ``bias_mask`` buffer does.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim, 3 * dim, bias=True)
        self.register_buffer("bias_mask", k_bias_mask(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias * self.bias_mask)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = LinearKMaskedBias(dim) if qkv_bias else nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], rope).unbind(0)  # q and k rotated together, each (B, heads, N, hd)
        v = qkv[2]
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, hd)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)  # gate
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.w3(F.silu(self.w1(x)) * self.w2(x))
        # Inference: gate in place, which saves two fresh (tokens x hidden) buffers per block
        # (a few percent for ViT-S+ at 640x640 on the CPU, where fresh buffers are paged in anew).
        return self.w3(F.silu(self.w1(x), inplace=True).mul_(self.w2(x)))


def ffn_hidden_size(dim: int, ffn_layer: str, ffn_ratio: float, align: int) -> int:
    """Hidden width as Meta computes it (SwiGLU: 2/3 of dim*ratio, rounded up to ``align``)."""
    hidden = int(dim * ffn_ratio)
    if ffn_layer == "mlp":
        return hidden
    hidden = int(hidden * 2 / 3)
    return (hidden + align - 1) // align * align


class LayerScale(nn.Module):
    """The per-channel branch scale ``gamma``; ``Block`` applies it fused with the residual add."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn: nn.Module, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = SelfAttention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = ffn
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # x + branch * gamma in one op: one buffer less per branch. The residual stream stays fp32
        # under autocast (the class token is fp32), as in Meta's code.
        x = torch.addcmul(x, self.attn(self.norm1(x), rope), self.ls1.gamma)
        return torch.addcmul(x, self.mlp(self.norm2(x)), self.ls2.gamma)


# --- model -----------------------------------------------------------------


class DinoVisionTransformer(nn.Module):
    """DINOv3 ViT in inference form (no masking, no train-time RoPE jitter).

    ``forward_intermediates`` returns patch maps after the final ``norm``, the
    same LayerNorm for every requested block, exactly as Meta's
    ``get_intermediate_layers(norm=True, reshape=True)``.
    """

    size_multiple = PATCH_SIZE

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        ffn_layer: str = "mlp",
        ffn_ratio: float = 4.0,
        swiglu_align: int = 8,
        qkv_bias: bool = True,
        local_cls_norm: bool = False,
    ) -> None:
        super().__init__()
        if ffn_layer not in ("mlp", "swiglu"):
            raise ValueError(f"ffn_layer must be 'mlp' or 'swiglu', got {ffn_layer!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.embed_dim = embed_dim
        self.ffn_layer = ffn_layer
        self.num_layers = depth
        self.feature_info = tuple(FeatureInfo(embed_dim, PATCH_SIZE) for _ in range(depth))

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.storage_tokens = nn.Parameter(torch.zeros(1, NUM_REGISTERS, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # training only; kept for the key layout
        self.patch_embed = PatchEmbed(embed_dim)
        self.rope_embed = RopePositionEmbedding(embed_dim // num_heads)
        hidden = ffn_hidden_size(embed_dim, ffn_layer, ffn_ratio, swiglu_align)
        ffn_cls = Mlp if ffn_layer == "mlp" else SwiGLUFFN
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, ffn_cls(embed_dim, hidden), qkv_bias) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-5)
        if local_cls_norm:
            # Used by Meta only in training, on local crops; present in those checkpoints, unused here.
            self.local_cls_norm = nn.LayerNorm(embed_dim, eps=1e-5)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if name.endswith("gamma") or "norm" in name:
                continue  # LayerScale keeps 1e-5, norms keep ones/zeros
            if param.dim() > 1 and not name.endswith("mask_token"):
                nn.init.trunc_normal_(param, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(param)

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] = (-1,)
    ) -> list[torch.Tensor]:
        """Normed patch maps (B, D, H/16, W/16) of the requested blocks, in the order asked."""
        wanted = resolve_layer_indices(indices, self.num_layers)
        B = x.shape[0]
        x = self.patch_embed(x)  # (B, D, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, hw, D)
        x = torch.cat(
            (self.cls_token.expand(B, -1, -1), self.storage_tokens.expand(B, -1, -1), x), dim=1
        )  # (B, 1 + 4 + hw, D)
        rope = self.rope_embed(h, w, prefix=1 + NUM_REGISTERS)
        kept: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            x = block(x, rope)
            if i in wanted:
                kept[i] = x
        prefix = 1 + NUM_REGISTERS
        return [
            self.norm(kept[i])[:, prefix:].transpose(1, 2).reshape(B, self.embed_dim, h, w)
            for i in wanted
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's normed patch map."""
        return self.forward_intermediates(x)[0]


# --- checkpoint conversion -------------------------------------------------

# Keys that map one to one: (ours = Meta's, Hugging Face hub); "{i}" is a block index.
# Both directions use this table. The FFN and qkv keys need more than a rename.
_HF_KEYS = [
    ("cls_token", "embeddings.cls_token"),
    ("storage_tokens", "embeddings.register_tokens"),
    ("patch_embed.proj.", "embeddings.patch_embeddings."),
    ("blocks.{i}.attn.proj.", "layer.{i}.attention.o_proj."),
    ("blocks.{i}.ls1.gamma", "layer.{i}.layer_scale1.lambda1"),
    ("blocks.{i}.ls2.gamma", "layer.{i}.layer_scale2.lambda1"),
    ("blocks.{i}.norm1.", "layer.{i}.norm1."),
    ("blocks.{i}.norm2.", "layer.{i}.norm2."),
    ("blocks.{i}.mlp.", "layer.{i}.mlp."),
]


def _rename(key: str, to_hf: bool) -> str:
    """Rename ``key`` by the first matching prefix in ``_HF_KEYS``; unknown keys stay as they are."""
    for ours, hf in _HF_KEYS:
        src, dst = (ours, hf) if to_hf else (hf, ours)
        m = re.match(re.escape(src).replace(r"\{i\}", r"(\d+)"), key)
        if m:
            return dst.replace("{i}", m.group(1) if m.groups() else "") + key[m.end() :]
    return key


_HF_FFN = {
    "swiglu": {"gate_proj": "w1", "up_proj": "w2", "down_proj": "w3"},
    "mlp": {"up_proj": "fc1", "down_proj": "fc2"},
}


def _is_hf_layout(state_dict: dict) -> bool:
    return any(k.endswith("embeddings.patch_embeddings.weight") for k in state_dict)


def _ffn_layer(state_dict: dict) -> str:
    return "swiglu" if any(".mlp.w1." in k for k in state_dict) else "mlp"


def checkpoint_filter_fn(state_dict: dict, model: DinoVisionTransformer) -> dict:
    """Convert a Meta or Hugging Face ViT state dict into our (= Meta's) layout.

    Pure ``state_dict -> state_dict``: keys it does not know are passed through
    unchanged, so the strict load that follows names them.
    """
    if not _is_hf_layout(state_dict):
        return dict(state_dict)
    ffn_names = _HF_FFN[model.ffn_layer]
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("model.")
        if m := re.match(r"^layer\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$", key):
            qkv.setdefault(int(m[1]), {})[f"{m[2]}.{m[3]}"] = value
            continue
        if key == "embeddings.mask_token":
            out["mask_token"] = value.reshape(1, -1)
            continue
        key = _rename(key, to_hf=False)
        if m := re.match(r"^(blocks\.\d+\.mlp\.)(\w+)(\..*)$", key):
            key = m[1] + ffn_names.get(m[2], m[2]) + m[3]
        out[key] = value
    for i, parts in qkv.items():
        prefix = f"blocks.{i}.attn.qkv."
        if all(f"{n}.weight" in parts for n in "qkv"):
            out[prefix + "weight"] = torch.cat([parts.pop(f"{n}.weight") for n in "qkv"])
        if "q.bias" in parts and "v.bias" in parts:
            q_bias, v_bias = parts.pop("q.bias"), parts.pop("v.bias")
            k_bias = parts.pop("k.bias", torch.zeros_like(q_bias))
            out[prefix + "bias"] = torch.cat([q_bias, k_bias, v_bias])
            out[prefix + "bias_mask"] = k_bias_mask(q_bias.shape[0])
        for name, value in parts.items():  # an incomplete q/k/v set: the strict load names it
            out[f"layer.{i}.attention.{name[0]}_proj.{name[2:]}"] = value
    # Keys Hugging Face drops: the RoPE periods, regenerated as the bf16-rounded values the
    # released weights carry, and the training-only local_cls_norm, set to identity.
    out.setdefault("rope_embed.periods", default_periods(model.rope_embed.head_dim))
    if hasattr(model, "local_cls_norm"):
        out.setdefault("local_cls_norm.weight", torch.ones(model.embed_dim))
        out.setdefault("local_cls_norm.bias", torch.zeros(model.embed_dim))
    return out


def to_hf_state_dict(state_dict: dict) -> dict:
    """Our (= Meta's) ViT layout -> the Hugging Face hub layout (no ``model.`` prefix)."""
    ffn_names = {v: k for k, v in _HF_FFN[_ffn_layer(state_dict)].items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key in ("rope_embed.periods",) or key.startswith("local_cls_norm.") or key.endswith("bias_mask"):
            continue
        if key == "mask_token":
            out["embeddings.mask_token"] = value.reshape(1, 1, -1)
            continue
        if m := re.match(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", key):
            q, k, v = value.chunk(3)
            prefix = f"layer.{m[1]}.attention."
            out[prefix + f"q_proj.{m[2]}"] = q
            out[prefix + f"v_proj.{m[2]}"] = v
            if m[2] == "weight":
                out[prefix + "k_proj.weight"] = k  # the k bias is masked to zero: HF has none
            continue
        key = _rename(key, to_hf=True)
        if m := re.match(r"^(layer\.\d+\.mlp\.)(\w+)(\..*)$", key):
            key = m[1] + ffn_names.get(m[2], m[2]) + m[3]
        out[key] = value
    return out


# --- variants --------------------------------------------------------------

VIT = BackboneFamily(
    name="vit",
    model_cls=DinoVisionTransformer,
    checkpoint_filter_fn=checkpoint_filter_fn,
    to_hf_state_dict=to_hf_state_dict,
)


def _lvd(arch: str, sha: str, hf: bool = True) -> WeightsTag:
    return WeightsTag(
        tag="lvd1689m",
        meta_filename=f"dinov3_{arch}_pretrain_lvd1689m-{sha}.pth",
        hf_repo=f"facebook/dinov3-{arch}-pretrain-lvd1689m" if hf else None,
    )


def _sat(arch: str, sha: str) -> WeightsTag:
    return WeightsTag(
        tag="sat493m",
        meta_filename=f"dinov3_{arch}_pretrain_sat493m-{sha}.pth",
        hf_repo=f"facebook/dinov3-{arch}-pretrain-sat493m",
        mean=SAT_MEAN,
        std=SAT_STD,
        model_overrides={"local_cls_norm": True},
    )


def _register(arch: str, tags: list[WeightsTag], **config) -> None:
    for tag in tags:
        register_backbone(BackboneSpec(arch=arch, family=VIT, config=config, weights=tag))


_SWIGLU6 = dict(ffn_layer="swiglu", ffn_ratio=6.0, swiglu_align=8)

_register("vits16", [_lvd("vits16", "08c60483")], embed_dim=384, depth=12, num_heads=6)
_register("vits16plus", [_lvd("vits16plus", "4057cbaa")], embed_dim=384, depth=12, num_heads=6, **_SWIGLU6)
_register("vitb16", [_lvd("vitb16", "73cec8be")], embed_dim=768, depth=12, num_heads=12)
_register(
    "vitl16", [_lvd("vitl16", "8aa4cbdd"), _sat("vitl16", "eadcf0ff")], embed_dim=1024, depth=24, num_heads=16
)
_register(
    "vitl16plus", [_lvd("vitl16plus", "46503df0", hf=False)], embed_dim=1024, depth=24, num_heads=16, **_SWIGLU6
)
_register("vith16plus", [_lvd("vith16plus", "7c1da9a5")], embed_dim=1280, depth=32, num_heads=20, **_SWIGLU6)
_register(
    "vit7b16",
    [_lvd("vit7b16", "a955f4ea"), _sat("vit7b16", "a6675841")],
    embed_dim=4096,
    depth=40,
    num_heads=32,
    ffn_layer="swiglu",
    ffn_ratio=3.0,
    swiglu_align=64,
    qkv_bias=False,
    local_cls_norm=True,  # both 7B checkpoints carry it
)
