"""Messages -> results, for tests only: the inverses of the builders in dinov3_ros.messages.

The node never reads its own outputs back; the tests do, to check that what was published means
what was meant. Images are read back with ``dinov3_ros.messages.raw_array``, the node's own reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dinov3_ros.messages import ConversionError, check_class_id_mode
from dinov3_toolkit.results import Detections


def msg_to_detections(msg: Any, class_names: Sequence[str], *, class_id: str = "name") -> Detections:
    """The Detections a Detection2DArray carries (first hypothesis per box); inverse of ``detections_to_msg``."""
    check_class_id_mode(class_id)
    lookup: dict[str, int] = {}
    for i, name in enumerate(class_names):
        lookup.setdefault(name if class_id == "name" else str(i), i)
    n = len(msg.detections)
    boxes = np.empty((n, 4), np.float32)
    scores = np.empty(n, np.float32)
    labels = np.empty(n, np.int64)
    for i, d in enumerate(msg.detections):
        if not d.results:
            raise ConversionError(f"detection {i} has no hypothesis; expected one with class_id and score")
        if d.bbox.center.theta != 0.0:
            raise ConversionError(f"detection {i} is rotated (theta {d.bbox.center.theta}); expected theta 0")
        hypothesis = d.results[0].hypothesis
        if hypothesis.class_id not in lookup:
            raise ConversionError(
                f"detection {i} has class_id {hypothesis.class_id!r}, which is no class {class_id} of the "
                f"{len(class_names)} classes given"
            )
        labels[i] = lookup[hypothesis.class_id]
        scores[i] = hypothesis.score
        c, half_w, half_h = d.bbox.center.position, d.bbox.size_x / 2, d.bbox.size_y / 2
        boxes[i] = (c.x - half_w, c.y - half_h, c.x + half_w, c.y + half_h)
    return Detections(boxes=boxes, scores=scores, labels=labels, class_names=tuple(class_names))


def msg_to_label_info(msg: Any) -> tuple[tuple[str, ...], float]:
    """(class_names, threshold) of a LabelInfo whose ids are 0..N-1; inverse of ``label_info_to_msg``."""
    by_id = {int(c.class_id): c.class_name for c in msg.class_map}
    if sorted(by_id) != list(range(len(msg.class_map))):
        raise ConversionError(
            f"LabelInfo class ids must be 0..{len(msg.class_map) - 1} once each to give a list of names, "
            f"got {sorted(int(c.class_id) for c in msg.class_map)}"
        )
    return tuple(by_id[i] for i in range(len(by_id))), float(msg.threshold)
