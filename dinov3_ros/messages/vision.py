"""Detections and class names: vision_msgs/Detection2DArray and LabelInfo.

A detection is one ``Detection2D`` with ``bbox.center.position`` the box centre, ``theta`` 0,
``size_x``/``size_y`` its width and height, and exactly one hypothesis whose ``class_id`` is the
class name (or, with ``class_id="index"``, the class index as a decimal string). Its pose is the
identity with zero covariance (we estimate no pose) and ``Detection2D.id`` is empty: the field is
for track ids that stay the same across frames, and we do not track.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.results import Detections

from .backend import ConversionError, MessageBackend, copy_header

CLASS_ID_MODES = ("name", "index")


def detections_to_msg(M: MessageBackend, det: Detections, header: Any, *, class_id: str = "name") -> Any:
    """vision_msgs/Detection2DArray: one Detection2D per box, in the input image's pixels."""
    check_class_id_mode(class_id)
    check_labels(det)
    boxes = det.boxes.astype(np.float64)  # exact widening, so the centre and size below are exact too
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
    sizes = boxes[:, 2:] - boxes[:, :2]  # (N, 2)
    detections = []
    for (cx, cy), (width, height), score, label in zip(
        centres.tolist(), sizes.tolist(), det.scores.tolist(), det.labels.tolist()
    ):
        hypothesis = M.new(
            "vision_msgs/msg/ObjectHypothesis",
            class_id=det.class_names[label] if class_id == "name" else str(label),
            score=score,
        )
        centre = M.new(
            "vision_msgs/msg/Pose2D", position=M.new("vision_msgs/msg/Point2D", x=cx, y=cy), theta=0.0
        )
        detections.append(
            M.new(
                "vision_msgs/msg/Detection2D",
                header=copy_header(M, header),
                results=[
                    M.new("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=hypothesis, pose=_no_pose(M))
                ],
                bbox=M.new("vision_msgs/msg/BoundingBox2D", center=centre, size_x=width, size_y=height),
                id="",
            )
        )
    return M.new("vision_msgs/msg/Detection2DArray", header=copy_header(M, header), detections=detections)


def check_class_id_mode(class_id: str) -> None:
    """``class_id`` must say how Detection2D names classes: ``name`` or ``index``."""
    if class_id not in CLASS_ID_MODES:
        raise ConfigError(f"class_id mode must be one of {CLASS_ID_MODES}, got {class_id!r}")


def check_labels(det: Detections) -> None:
    """Every label must index ``det.class_names``: a message names the class, so a bad index cannot pass."""
    bad = (det.labels < 0) | (det.labels >= len(det.class_names))
    if bad.any():
        raise ConversionError(
            f"detection labels must index the {len(det.class_names)} class names, got {det.labels[bad].tolist()}"
        )


def _no_pose(M: MessageBackend) -> Any:
    """The identity pose with zero covariance: we detect in 2D and estimate no pose."""
    pose = M.new(
        "geometry_msgs/msg/Pose",
        position=M.new("geometry_msgs/msg/Point", x=0.0, y=0.0, z=0.0),
        orientation=M.new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0),
    )
    return M.new("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36, np.float64))


def label_info_to_msg(M: MessageBackend, class_names: Sequence[str], header: Any, threshold: float = 0.0) -> Any:
    """vision_msgs/LabelInfo: class index -> name, and the score threshold the head applies."""
    if len(class_names) > 65536:
        raise ConversionError(f"LabelInfo class ids are uint16, so at most 65536 classes fit; got {len(class_names)}")
    class_map = [
        M.new("vision_msgs/msg/VisionClass", class_id=i, class_name=str(name)) for i, name in enumerate(class_names)
    ]
    return M.new(
        "vision_msgs/msg/LabelInfo",
        header=copy_header(M, header),
        class_map=class_map,
        threshold=float(np.float32(threshold)),  # the field is float32: store what subscribers will read
    )
