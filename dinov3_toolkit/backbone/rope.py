"""2-D rotary position embedding of the DINOv3 ViTs, computed in fp32.

DINOv3 has no learned position embedding: every block rotates q and k of the
patch tokens by angles that depend on the token's (row, col). Three details
decide whether our features equal Meta's (``specs/backbone.md`` §2 and §7):

* ``periods`` is a persistent buffer so the values stored in the checkpoint
  are used. The released weights were trained with bf16-rounded periods
  (1.3359375 rather than 1.3335215); freshly built models start from the same
  rounded values, and a Hugging Face checkpoint (which drops them) gets them
  regenerated that way.
* Coordinates are normalised per axis ("separate"), so an H x W grid spans
  [-1, 1] on both axes whatever its aspect ratio.
* The sin/cos table and the rotation run in fp32 even under fp16/bf16
  autocast; q and k are cast back afterwards.

The table is computed once per forward and shared by all blocks (Meta's code
recomputes it in every block; the result is identical).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def default_periods(head_dim: int, base: float = 100.0) -> torch.Tensor:
    """Periods as the released checkpoints store them: fp32 values rounded to bf16."""
    if head_dim % 4:
        raise ValueError(f"RoPE needs a head dim divisible by 4, got {head_dim}")
    exponents = 2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)
    return (base**exponents).to(torch.bfloat16).to(torch.float32)  # (head_dim/4,)


class RopePositionEmbedding(nn.Module):
    """Produces the (sin, cos) table for an H x W patch grid."""

    def __init__(self, head_dim: int, base: float = 100.0) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.register_buffer("periods", default_periods(head_dim, base), persistent=True)

    def forward(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Autocast does not touch these ops, so with fp32 inputs the table is fp32.
        device = self.periods.device
        periods = self.periods.float()
        coords_h = torch.arange(0.5, height, device=device, dtype=torch.float32) / height
        coords_w = torch.arange(0.5, width, device=device, dtype=torch.float32) / width
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1)
        coords = 2.0 * coords.flatten(0, 1) - 1.0  # (HW, 2), row-major like the tokens
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # (HW, 2, hd/4)
        angles = angles.flatten(1, 2).tile(2)  # (HW, hd): y-freqs, x-freqs, repeated
        return torch.sin(angles), torch.cos(angles)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the trailing patch tokens of ``x`` (B, heads, N, hd) in fp32.

    The leading ``N - HW`` tokens (class and register tokens) are left as they are.
    """
    sin, cos = rope
    prefix = x.shape[-2] - sin.shape[-2]
    head, patches = x[..., :prefix, :], x[..., prefix:, :].float()
    patches = patches * cos + _rotate_half(patches) * sin
    return torch.cat((head, patches.to(x.dtype)), dim=-2)
