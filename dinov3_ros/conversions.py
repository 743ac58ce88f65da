"""Typed head results <-> ROS 2 messages, written once for the node and for offline bag tools.

The same functions build rclpy messages in the node and rosbags dataclasses in
tools and tests; a small backend object (``ros_messages()`` or
``bag_messages(distro)``) supplies the message classes and the two field
representations that differ between them (``uint8[]`` and ``byte``); it is the
``M`` argument of every builder. Builders pass every field, because rosbags
dataclasses have no defaults.

Conventions (what a subscriber can rely on):

- every message gets a copy of the input image's header (stamp and frame_id);
- coordinates are the input image's pixels, x right and y down;
- a detection is one ``Detection2D`` with ``bbox.center.position`` the box centre,
  ``theta`` 0, ``size_x``/``size_y`` its width and height, and exactly one
  hypothesis whose ``class_id`` is the class name (or, with ``class_id="index"``,
  the class index as a decimal string). Its pose is the identity with zero
  covariance (we estimate no pose) and ``Detection2D.id`` is empty: the field is
  for track ids that stay the same across frames, and we do not track;
- image data is written in the array's own byte order and ``is_bigendian`` says
  which, as cv_bridge does; readers honour ``step`` and ``is_bigendian``.
"""

from __future__ import annotations

import array
import importlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, NamedTuple, Protocol

import numpy as np

from dinov3_toolkit.errors import Dinov3Error
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels

from .vision_msgs_defs import VISION_MSGS

CLASS_ID_MODES = ("name", "index")
DISTROS = ("humble", "jazzy")
# encoding -> (dtype, channels): the images this package publishes and can read back.
IMAGE_ENCODINGS: dict[str, tuple[type[np.generic], int]] = {
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "32FC1": (np.float32, 1),
    "rgb8": (np.uint8, 3),
}


class ConversionError(Dinov3Error, ValueError):
    """An input a conversion cannot represent: wrong dtype, shape, encoding or content."""


class MessageBackend(Protocol):
    """Where messages come from: rclpy classes in a ROS process, rosbags dataclasses offline."""

    def new(self, typename: str, **fields: Any) -> Any:
        """A ``typename`` (``"pkg/msg/Name"``) message with the given fields."""
        ...

    def uint8_sequence(self, values: np.ndarray) -> Any:
        """A ``uint8[]`` field holding the bytes of ``values`` in C order."""
        ...

    def byte(self, value: int) -> Any:
        """A ``byte`` field."""
        ...


class RosMessages:
    """rclpy message classes, imported on first use so that this module imports without ROS.

    ``uint8[]`` fields take an ``array.array("B")`` and ``byte`` fields a one-byte
    ``bytes``: the forms rclpy stores without checking element by element.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def new(self, typename: str, **fields: Any) -> Any:
        return self.message_class(typename)(**fields)

    def message_class(self, typename: str) -> type:
        """The rclpy class of ``typename`` (``"pkg/msg/Name"``), e.g. to create a publisher."""
        cls = self._classes.get(typename)
        if cls is None:
            package, _, name = typename.split("/")
            try:
                module = importlib.import_module(f"{package}.msg")
            except ImportError as e:
                raise ImportError(
                    f"building {typename} needs the ROS package {package} "
                    f"(apt install ros-$ROS_DISTRO-{package.replace('_', '-')})"
                ) from e
            cls = self._classes[typename] = getattr(module, name)
        return cls

    def uint8_sequence(self, values: np.ndarray) -> array.array:
        out = array.array("B")
        out.frombytes(_raw_bytes(values))
        return out

    def byte(self, value: int) -> bytes:
        return bytes((value,))


class BagMessages:
    """rosbags dataclasses of one distro's typestore, with vision_msgs registered.

    ``typestore`` serialises them (``typestore.serialize_cdr(msg, msg.__msgtype__)``).
    ``uint8[]`` fields are numpy uint8 arrays and ``byte`` fields ints, as rosbags reads them.
    """

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def new(self, typename: str, **fields: Any) -> Any:
        return self.typestore.types[typename](**fields)

    def uint8_sequence(self, values: np.ndarray) -> np.ndarray:
        return _raw_bytes(values).copy()  # the message owns its data, like a published one

    def byte(self, value: int) -> int:
        return int(value)


def ros_messages() -> RosMessages:
    """The backend for a ROS process: messages to publish with rclpy."""
    return RosMessages()


def bag_messages(distro: str = "humble") -> BagMessages:
    """The backend for offline tools and tests: rosbags messages with ``distro``'s definitions."""
    if distro not in DISTROS:
        raise ValueError(f"no rosbags typestore for distro {distro!r}; expected one of {DISTROS}")
    try:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    except ImportError as e:
        raise ImportError("offline message conversion needs rosbags (pip install 'rosbags>=0.11')") from e
    typestore = get_typestore({"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}[distro])
    types: dict[str, Any] = {}
    for typename, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, typename))
    typestore.register(types)
    return BagMessages(typestore)


def make_header(M: MessageBackend, sec: int, nanosec: int, frame_id: str = "") -> Any:
    """A std_msgs/Header; results get a copy of their input image's header through this."""
    stamp = M.new("builtin_interfaces/msg/Time", sec=int(sec), nanosec=int(nanosec))
    return M.new("std_msgs/msg/Header", stamp=stamp, frame_id=str(frame_id))


def _copy_header(M: MessageBackend, header: Any) -> Any:
    return make_header(M, header.stamp.sec, header.stamp.nanosec, header.frame_id)


# ---- detections ---------------------------------------------------------------------------------


def detections_to_msg(M: MessageBackend, det: Detections, header: Any, *, class_id: str = "name") -> Any:
    """vision_msgs/Detection2DArray: one Detection2D per box, in the input image's pixels."""
    check_class_id_mode(class_id)
    _check_labels(det)
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
                header=_copy_header(M, header),
                results=[
                    M.new("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=hypothesis, pose=_no_pose(M))
                ],
                bbox=M.new("vision_msgs/msg/BoundingBox2D", center=centre, size_x=width, size_y=height),
                id="",
            )
        )
    return M.new("vision_msgs/msg/Detection2DArray", header=_copy_header(M, header), detections=detections)


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


def check_class_id_mode(class_id: str) -> None:
    """``class_id`` must say how Detection2D names classes: ``name`` or ``index``."""
    if class_id not in CLASS_ID_MODES:
        raise ValueError(f"class_id mode must be one of {CLASS_ID_MODES}, got {class_id!r}")


def _check_labels(det: Detections) -> None:
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


# ---- images -------------------------------------------------------------------------------------


def labels_to_msg(M: MessageBackend, labels: SemanticLabels, header: Any) -> Any:
    """sensor_msgs/Image of class indices: mono8 up to 256 classes, mono16 above."""
    encoding = "mono8" if labels.labels.dtype == np.uint8 else "mono16"  # SemanticLabels allows only these two
    return _image_msg(M, labels.labels, encoding, header)


def depth_to_msg(M: MessageBackend, depth: DepthMap, header: Any) -> Any:
    """sensor_msgs/Image 32FC1; the message has no unit field, so ``depth.unit`` travels elsewhere."""
    return _image_msg(M, depth.depth, "32FC1", header)


def rgb_to_msg(M: MessageBackend, rgb: np.ndarray, header: Any) -> Any:
    """sensor_msgs/Image rgb8, for overlays."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f"rgb8 images must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    return _image_msg(M, rgb, "rgb8", header)


def image_msg_to_array(msg: Any) -> np.ndarray:
    """The pixels of an image this package publishes: (H, W) or (H, W, 3), native byte order, a copy.

    Honours ``step`` (rows may be padded) and ``is_bigendian``, so it also reads
    images written by other machines; inverse of the ``*_to_msg`` image builders.
    """
    if msg.encoding not in IMAGE_ENCODINGS:
        raise ConversionError(
            f"image encoding {msg.encoding!r} is not supported; expected one of {list(IMAGE_ENCODINGS)}"
        )
    scalar, channels = IMAGE_ENCODINGS[msg.encoding]
    dtype = np.dtype(scalar).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(
            f"{msg.encoding} image step {step} is shorter than one row of {width} pixels ({row_bytes} bytes)"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != height * step:
        raise ConversionError(
            f"{msg.encoding} image data has {data.size} bytes; expected height * step = {height} * {step}"
        )
    rows = np.ascontiguousarray(data.reshape(height, step)[:, :row_bytes])  # (H, row_bytes), padding dropped
    pixels = rows.view(dtype).astype(dtype.newbyteorder("="))  # (H, W * C)
    return pixels.reshape((height, width, channels) if channels > 1 else (height, width))


def _image_msg(M: MessageBackend, pixels: np.ndarray, encoding: str, header: Any) -> Any:
    height, width = pixels.shape[:2]
    _, channels = IMAGE_ENCODINGS[encoding]
    return M.new(
        "sensor_msgs/msg/Image",
        header=_copy_header(M, header),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(_is_bigendian(pixels.dtype)),
        step=width * channels * pixels.dtype.itemsize,
        data=M.uint8_sequence(pixels),
    )


def _is_bigendian(dtype: np.dtype) -> bool:
    return dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")


def _raw_bytes(values: np.ndarray) -> np.ndarray:
    """The bytes of ``values`` in C order, as a flat uint8 view (a copy only if not contiguous)."""
    return np.ascontiguousarray(values).reshape(-1).view(np.uint8)


# ---- class names --------------------------------------------------------------------------------


def label_info_to_msg(M: MessageBackend, class_names: Sequence[str], header: Any, threshold: float = 0.0) -> Any:
    """vision_msgs/LabelInfo: class index -> name, and the score threshold the head applies."""
    if len(class_names) > 65536:
        raise ConversionError(f"LabelInfo class ids are uint16, so at most 65536 classes fit; got {len(class_names)}")
    class_map = [
        M.new("vision_msgs/msg/VisionClass", class_id=i, class_name=str(name)) for i, name in enumerate(class_names)
    ]
    return M.new(
        "vision_msgs/msg/LabelInfo",
        header=_copy_header(M, header),
        class_map=class_map,
        threshold=float(np.float32(threshold)),  # the field is float32: store what subscribers will read
    )


def msg_to_label_info(msg: Any) -> tuple[tuple[str, ...], float]:
    """(class_names, threshold) of a LabelInfo whose ids are 0..N-1; inverse of ``label_info_to_msg``."""
    by_id = {int(c.class_id): c.class_name for c in msg.class_map}
    if sorted(by_id) != list(range(len(msg.class_map))):
        raise ConversionError(
            f"LabelInfo class ids must be 0..{len(msg.class_map) - 1} once each to give a list of names, "
            f"got {sorted(int(c.class_id) for c in msg.class_map)}"
        )
    return tuple(by_id[i] for i in range(len(by_id))), float(msg.threshold)


# ---- diagnostics --------------------------------------------------------------------------------


class Level(IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


class Status(NamedTuple):
    """One DiagnosticStatus; a plain 5-tuple in this order works too."""

    name: str
    hardware_id: str
    level: int
    message: str
    values: Mapping[str, str]


def diagnostics_to_msg(M: MessageBackend, header: Any, statuses: Iterable[Status | tuple]) -> Any:
    """diagnostic_msgs/DiagnosticArray; values are strings, formatted by the caller (it knows the precision)."""
    out = []
    for status in statuses:
        name, hardware_id, level, message, values = status
        if level not in set(Level):
            raise ConversionError(f"diagnostic {name!r} has level {level!r}; expected one of {[int(x) for x in Level]}")
        not_str = {k: type(v).__name__ for k, v in values.items() if not isinstance(k, str) or not isinstance(v, str)}
        if not_str:
            raise ConversionError(f"diagnostic {name!r} values must be str -> str; not so for {not_str}")
        out.append(
            M.new(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=M.byte(int(level)),
                name=str(name),
                message=str(message),
                hardware_id=str(hardware_id),
                values=[M.new("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in values.items()],
            )
        )
    return M.new("diagnostic_msgs/msg/DiagnosticArray", header=_copy_header(M, header), status=out)
