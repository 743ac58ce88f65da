"""2-D rotary position embedding of the DINOv3 ViTs, computed in fp32.

DINOv3 has no learned position embedding: every block rotates q and k of the
patch tokens by angles that depend on the token's (row, col). Three details
decide whether our features equal Meta's (docs/backbones.md, "Choices that keep our features equal to Meta's"):

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
recomputes it in every block; the result is identical). Its leading rows are the
identity rotation (cos 1, sin 0) for the class and register tokens, so every
token is rotated by the same two multiply-adds instead of slicing the patches
out and concatenating them back (x * 1 + y * 0 is x exactly).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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

    def forward(self, height: int, width: int, prefix: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(sin, cos), each (prefix + height * width, head_dim): ``prefix`` unrotated tokens, then the patches."""
        # Autocast does not touch these ops, so with fp32 inputs the table is fp32.
        device = self.periods.device
        periods = self.periods.float()
        coords_h = torch.arange(0.5, height, device=device, dtype=torch.float32) / height
        coords_w = torch.arange(0.5, width, device=device, dtype=torch.float32) / width
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1)
        coords = 2.0 * coords.flatten(0, 1) - 1.0  # (HW, 2), row-major like the tokens
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # (HW, 2, hd/4)
        angles = angles.flatten(1, 2).tile(2)  # (HW, hd): y-freqs, x-freqs, repeated
        unrotated = (0, 0, prefix, 0)  # rows for the class and register tokens: angle 0
        return F.pad(torch.sin(angles), unrotated, value=0.0), F.pad(torch.cos(angles), unrotated, value=1.0)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the tokens of ``x`` (..., N, hd) in fp32 by a table of N rows, and cast back."""
    sin, cos = rope
    x32 = x.float()
    # x * cos + rotate_half(x) * sin, accumulated in the one fresh buffer rotate_half makes.
    return _rotate_half(x32).mul_(sin).addcmul_(x32, cos).to(x.dtype)
