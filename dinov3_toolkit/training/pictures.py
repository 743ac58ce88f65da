"""The report's validation pictures: the ground truth beside what the head predicted, drawn alike.

A prediction drawn alone cannot show what the head missed or invented; beside the
labels it was trained to match, a reader sees both at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import result_kinds
from ..drawing import caption, caption_box
from ..heads.training import BoxTargets, DepthTargets, FlowTargets, LabelTargets, Target
from ..results import Detections, DepthMap, FlowField, SemanticLabels, label_dtype

TRUTH, PREDICTION = "ground truth", "prediction"


def truth_as_result(target: Target, class_names: Sequence[str]) -> object:
    """A target as the result its head returns, so that the overlays draw both the same way.

    Boxes score 1; ignored label pixels (``ignore``) draw as class 0, the background; depth
    and flow keep their no-measurement values, which the drawings leave out.
    """
    names = tuple(class_names)
    if isinstance(target, BoxTargets):
        return Detections(target.boxes.astype(np.float32), np.ones(len(target.labels), np.float32),
                          target.labels.astype(np.int64), names)
    if isinstance(target, LabelTargets):
        labels = target.labels if target.ignore is None else np.where(target.labels == target.ignore, 0, target.labels)
        return SemanticLabels(labels.astype(label_dtype(len(names))), names)
    if isinstance(target, DepthTargets):
        return DepthMap(target.depth.astype(np.float32), unit="m", kind="metric")  # the readers' depth is metres
    if isinstance(target, FlowTargets):
        return FlowField(target.flow.astype(np.float32))
    raise TypeError(f"no drawing for a {type(target).__name__} target")


def truth_beside_prediction(image: np.ndarray, target: Target, prediction: object,
                            class_names: Sequence[str]) -> np.ndarray:
    """One RGB picture: the ground truth on the left, the prediction on the right, each captioned."""
    panels = []
    for text, result in ((TRUTH, truth_as_result(target, class_names)), (PREDICTION, prediction)):
        drawn = result_kinds.draw(image, result, taken=[caption_box(image.shape, text)])
        panels.append(caption(drawn, text))
    height = max(panel.shape[0] for panel in panels)  # a drawing may add a strip (a depth scale)
    return np.hstack([np.pad(panel, ((0, height - panel.shape[0]), (0, 0), (0, 0))) for panel in panels])
