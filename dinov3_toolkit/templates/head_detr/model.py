"""DETRHead: learned object queries decoded by a transformer over one DINOv3 feature map, one box per query.

The recipe of mudit1729/dinov2-od (heads.md, section 9.2) with the plain
``nn.TransformerDecoderLayer``: a set predictor needs no anchors and no NMS,
because the Hungarian matching of its loss teaches each object to one query.
DETR: Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020;
the sigmoid focal classification and its initialisation are Deformable DETR's
(Zhu et al., ICLR 2021).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dinov3_toolkit.heads import Detections, Head, PreparedImage


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) ``[cx, cy, w, h]`` -> (..., 4) ``[x1, y1, x2, y2]``, in the same units."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def sine_position_embedding(height: int, width: int, dim: int, device: torch.device) -> torch.Tensor:
    """DETR's 2-D sine embedding of an (height, width) grid -> (height * width, dim), row-major.

    Coordinates are normalised to (0, 2*pi] before the sines, so a head trained at one
    input size sees the same codes for the same image regions at another: the engine may
    run it at a size other than the one it was trained at. Half the channels encode y, half x.
    """
    if dim % 4:
        raise ValueError(f"the sine position embedding needs a width divisible by 4, got {dim}")
    ys = torch.arange(1, height + 1, dtype=torch.float32, device=device) / height * 2 * math.pi  # (h,)
    xs = torch.arange(1, width + 1, dtype=torch.float32, device=device) / width * 2 * math.pi  # (w,)
    # Frequencies from 1 down to 1/10000 over the channel pairs, as in DETR.
    freqs = 10000 ** (torch.arange(dim // 4, dtype=torch.float32, device=device) * 4 / dim)  # (dim/4,)
    y = ys[:, None] / freqs  # (h, dim/4)
    x = xs[:, None] / freqs  # (w, dim/4)
    y = torch.cat([y.sin(), y.cos()], dim=1)[:, None].expand(height, width, dim // 2)  # (h, w, dim/2)
    x = torch.cat([x.sin(), x.cos()], dim=1)[None].expand(height, width, dim // 2)  # (h, w, dim/2)
    return torch.cat([y, x], dim=-1).reshape(height * width, dim)


class DETRHead(Head):
    """Set-prediction detector on the last DINOv3 layer.

    ``forward`` returns ``{"logits": (B, Q, K), "boxes": (B, Q, 4)}``: per query, class logits
    (independent sigmoids, no "no object" class) and a box as normalised ``[cx, cy, w, h]`` of
    the input image. In training mode it adds ``"aux_logits"`` (B, L-1, Q, K) and ``"aux_boxes"``
    (B, L-1, Q, 4), the same predictions after each earlier decoder layer, for the auxiliary
    losses; inference and export carry the last layer's alone.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        in_channels: int = 384,
        hidden_dim: int = 256,
        num_queries: int = 50,
        num_layers: int = 3,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        norm_first: bool = True,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__(class_names)
        if hidden_dim % 4 or hidden_dim % num_heads:
            raise ValueError(f"hidden_dim must be divisible by 4 (the sine embedding) and by num_heads "
                             f"({num_heads}), got {hidden_dim}")
        if num_queries < 1 or num_layers < 1:
            raise ValueError(f"num_queries and num_layers must be >= 1, got {num_queries} and {num_layers}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob!r}")
        self.input_proj = nn.Linear(in_channels, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        # The layers run one by one (not through nn.TransformerDecoder): the auxiliary losses need
        # every layer's output. A pre-norm layer (norm_first) leaves its output unnormalised: the
        # shared final norm brings every layer's to the one scale the shared prediction heads expect.
        self.decoder = nn.ModuleList(
            nn.TransformerDecoderLayer(hidden_dim, num_heads, ffn_dim, dropout, batch_first=True,
                                       norm_first=norm_first)
            for _ in range(num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, len(self.class_names))
        half = hidden_dim // 2
        self.bbox_embed = nn.Sequential(nn.Linear(hidden_dim, half), nn.ReLU(), nn.Linear(half, 4))
        # Every class starts at probability prior_prob, so the focal loss of the many unmatched
        # queries does not swamp the few matched ones; boxes start as the centred half-size box.
        nn.init.constant_(self.class_embed.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.zeros_(self.bbox_embed[-1].weight)
        nn.init.zeros_(self.bbox_embed[-1].bias)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = features[0]  # (B, C, h, w)
        batch, _, height, width = x.shape
        memory = self.input_proj(x.flatten(2).transpose(1, 2))  # (B, h*w, D)
        # The positions are added to the memory itself (keys and values), as in DETR's minimal model:
        # nn.TransformerDecoderLayer has no separate positional input.
        memory = memory + sine_position_embedding(height, width, memory.shape[-1], x.device).to(memory.dtype)
        queries = self.query_embed.weight.expand(batch, -1, -1)  # (B, Q, D)
        states = []
        for layer in self.decoder:
            queries = layer(queries, memory)  # (B, Q, D)
            states.append(queries)
        if not self.training:
            states = states[-1:]
        hidden = self.decoder_norm(torch.stack(states, dim=1))  # (B, L, Q, D): every layer in training, else the last
        logits = self.class_embed(hidden)  # (B, L, Q, K)
        boxes = self.bbox_embed(hidden).sigmoid()  # (B, L, Q, 4) normalised cx, cy, w, h
        outputs = {"logits": logits[:, -1], "boxes": boxes[:, -1]}
        if self.training:
            outputs.update(aux_logits=logits[:, :-1], aux_boxes=boxes[:, :-1])
        return outputs

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, torch.Tensor], image: PreparedImage, params: Mapping[str, Any]
                    ) -> Detections:
        """The ``max_detections`` best (query, class) pairs scoring above the threshold, in original pixels.

        Score = sigmoid(class logit), ranked over all (query, class) pairs as in Deformable DETR: with
        independent sigmoids a query may hold two likely classes, and mAP counts both. No NMS: the
        matching taught each object to one query.
        """
        logits = outputs["logits"][0].float()  # (Q, K)
        boxes = outputs["boxes"][0].float()  # (Q, 4) normalised cx, cy, w, h
        num_classes = logits.shape[1]
        scores, pair = logits.sigmoid().flatten().topk(min(params["max_detections"], logits.numel()))  # (M,) each
        keep = scores > params["score_threshold"]
        scores, pair = scores[keep], pair[keep]  # (N,) each, by descending score
        query, label = pair // num_classes, pair % num_classes  # (N,) each
        h, w = image.input_size
        sy, sx = image.scale
        height, width = image.original_size
        boxes = box_cxcywh_to_xyxy(boxes[query]) * boxes.new_tensor([w, h, w, h])  # (N, 4) input pixels
        boxes = boxes * boxes.new_tensor([sx, sy, sx, sy])  # (N, 4) original pixels
        boxes = torch.minimum(boxes.clamp(min=0), boxes.new_tensor([width, height, width, height]))
        return Detections(
            boxes=boxes.cpu().numpy(),
            scores=scores.cpu().numpy(),
            labels=label.cpu().numpy(),
            class_names=self.class_names,
        )
