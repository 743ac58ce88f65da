"""Everything a head author imports: the Head class, its inputs and results, and the shared operations.

A head folder's code imports from here alone (plus torch and numpy), so the toolkit's inner
layout can change without breaking anyone's head. See the README, "Write your own head".
"""

from ..checkpoint import CheckpointError
from ..preprocess import PreparedImage
from ..results import DepthMap, Detections, FlowField, SemanticLabels
from .base import Head, HeadError
from .manifest import HeadManifest, ParamSpec, load_manifest
from .ops.anchors import (
    MATCH_BACKGROUND,
    MATCH_IGNORE,
    anchor_grid,
    decode_boxes,
    encode_boxes,
    match_anchors,
    per_anchor,
)
from .ops.boxes import batched_nms, box_iou
from .ops.dense import labels_at, labels_to_host, resize_map, upsample_bilinear
from .ops.losses import dice_loss, giou_loss, sigmoid_focal_loss, softmax_focal_loss
from .training import BoxTargets, DepthTargets, FlowTargets, HeadLoss, LabelTargets

__all__ = [
    "MATCH_BACKGROUND", "MATCH_IGNORE", "BoxTargets", "CheckpointError", "DepthMap", "DepthTargets", "Detections",
    "FlowField", "FlowTargets", "Head", "HeadError", "HeadLoss", "HeadManifest", "LabelTargets", "ParamSpec",
    "PreparedImage", "SemanticLabels", "anchor_grid", "batched_nms", "box_iou", "decode_boxes", "dice_loss",
    "encode_boxes", "giou_loss", "labels_at", "labels_to_host", "load_manifest", "match_anchors", "per_anchor",
    "resize_map", "sigmoid_focal_loss", "softmax_focal_loss", "upsample_bilinear",
]
