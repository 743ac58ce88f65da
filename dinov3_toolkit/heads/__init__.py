"""Everything a head author imports: the Head class, its inputs and results, and the shared operations.

A head folder's code imports from here alone (plus torch and numpy), so the toolkit's inner
layout can change without breaking anyone's head. See docs/write_a_head.md.
"""

from ..checkpoint import CheckpointError
from ..preprocess import PreparedImage
from ..results import DepthMap, DepthMeaning, Detections, FlowField, SemanticLabels
from .base import Head, HeadError
from .manifest import HeadManifest, ParamSpec, load_manifest
from .ops.anchors import (
    MATCH_BACKGROUND,
    MATCH_IGNORE,
    anchor_batch,
    anchor_grid,
    decode_boxes,
    encode_boxes,
    match_anchors,
    per_anchor,
)
from .ops.boxes import batched_nms, box_iou, nms_detections
from .ops.dense import labels_at, labels_to_host, resize_map, upsample_bilinear
from .ops.losses import dice_loss, giou_loss, sigmoid_focal_loss, softmax_focal_loss
from .training import BoxTargets, DepthTargets, FlowTargets, HeadLoss, LabelTargets, boxes_in_input

__all__ = [
    "MATCH_BACKGROUND", "MATCH_IGNORE", "anchor_batch", "anchor_grid", "batched_nms", "box_iou", "boxes_in_input",
    "BoxTargets", "CheckpointError", "decode_boxes", "DepthMap", "DepthMeaning", "DepthTargets", "Detections",
    "dice_loss", "encode_boxes", "FlowField", "FlowTargets", "giou_loss", "Head", "HeadError", "HeadLoss",
    "HeadManifest", "labels_at", "labels_to_host", "LabelTargets", "load_manifest", "match_anchors", "nms_detections",
    "ParamSpec", "per_anchor", "PreparedImage", "resize_map", "SemanticLabels", "sigmoid_focal_loss",
    "softmax_focal_loss", "upsample_bilinear",
]
