"""FlowL1: how LiteFlowHead learns (the optical_flow_dinov3 recipe, flow head spec §6).

The mean absolute error of u and v over the known pixels, at the head's output
grid, with the target resized there (bilinear) and scaled per axis into that
grid's pixels; targets beyond ``max_flow`` pixels (original) count as unknown.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinov3_toolkit.heads import FlowTargets, Head, HeadLoss


class FlowL1(HeadLoss):
    def __init__(self, head: Head, max_flow: float = 400.0) -> None:
        super().__init__(head)
        self.max_flow = float(max_flow)

    def encode(self, target: FlowTargets, original_size: tuple[int, int], input_size: tuple[int, int],
               feature_size: tuple[int, int]) -> torch.Tensor:
        """(3, h*U, w*U): u, v in output-grid pixels, and 1 where the flow is known."""
        if target.flow.shape[:2] != tuple(original_size):
            raise ValueError(f"FlowL1: the flow is {target.flow.shape[:2]}, the image {original_size}")
        flow = torch.from_numpy(target.flow).float().permute(2, 0, 1)  # (2, H, W)
        known = torch.isfinite(flow).all(0) & (flow.abs() < self.max_flow).all(0)  # (H, W)
        flow = torch.where(known, flow, 0.0)
        up = self.head.convex_upsampler.factor
        size = (feature_size[0] * up, feature_size[1] * up)
        scale = flow.new_tensor([size[1] / original_size[1], size[0] / original_size[0]]).view(2, 1, 1)
        both = torch.cat([flow * scale, known[None].float()])[None]  # (1, 3, H, W)
        resized = F.interpolate(both, size=size, mode="bilinear", align_corners=False)[0]  # (3, h*U, w*U)
        return torch.cat([resized[:2], (resized[2:] > 0.999).float()])  # known only where wholly known

    def __call__(self, outputs: torch.Tensor, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        target = torch.stack(targets)  # (B, 3, h*U, w*U)
        if outputs.shape[0] != target.shape[0] or outputs.shape[2:] != target.shape[2:] or outputs.shape[1] != 2:
            raise ValueError(f"FlowL1: outputs must be (B, 2, H, W) matching the targets {tuple(target.shape)}, "
                             f"got {tuple(outputs.shape)}")
        known = target[:, 2:]  # (B, 1, H, W)
        error = (outputs.float() - target[:, :2]).abs() * known  # (B, 2, H, W)
        return {"loss": error.sum() / (2 * known.sum()).clamp(min=1)}
