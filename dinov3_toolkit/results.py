"""What heads return: one typed result per head per frame, in the original image's pixels.

These are the only shapes the ROS layer knows how to publish (``Detections`` ->
``vision_msgs/Detection2DArray``, ``SemanticLabels`` -> a mono8/mono16 label
image, ``DepthMap`` -> a 32FC1 image, ``FlowField`` -> a 32FC2 image). A head may return any other object; it
then still gets an overlay if it registers a kind for it (see ``result_kinds``).

All arrays live on the host (numpy): post-processing runs on the device and
only these small results are copied back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Boxes in the original image's pixels.

    ``boxes`` is (N, 4) float32 ``[x1, y1, x2, y2]`` with x to the right and y down,
    0 <= x <= width, 0 <= y <= height; ``scores`` (N,) float32 in [0, 1], sorted
    descending; ``labels`` (N,) int64 indices into ``class_names``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_arrays(self, "boxes", "scores", "labels")
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.labels.shape != (n,):
            raise ValueError(
                f"Detections need boxes (N, 4), scores (N,) and labels (N,) with one N, got "
                f"{self.boxes.shape}, {self.scores.shape} and {self.labels.shape}"
            )
        if self.boxes.dtype.kind != "f" or self.scores.dtype.kind != "f" or self.labels.dtype.kind not in "iu":
            raise ValueError(f"Detections need floating-point boxes and scores and integer labels, got "
                             f"{self.boxes.dtype}, {self.scores.dtype} and {self.labels.dtype}")
        _check_names(self.class_names)

    def __len__(self) -> int:
        return len(self.scores)

    def names(self) -> list[str]:
        """The class name of each detection."""
        return [self.class_names[i] for i in self.labels]


@dataclass(frozen=True)
class SemanticLabels:
    """A class index per pixel of the original image.

    ``labels`` is (H, W) uint8 when there are at most 256 classes, else uint16
    (the dtypes of ROS ``mono8`` / ``mono16`` images); values index ``class_names``.
    """

    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_arrays(self, "labels")
        _check_names(self.class_names)
        if self.labels.ndim != 2 or self.labels.dtype != label_dtype(len(self.class_names)):
            raise ValueError(
                f"SemanticLabels need an (H, W) {np.dtype(label_dtype(len(self.class_names)))} map for "
                f"{len(self.class_names)} classes, got {self.labels.dtype} {self.labels.shape}"
            )


DEPTH_KINDS = ("metric", "relative", "inverse")  # what a depth value means; see DepthMap


@dataclass(frozen=True)
class DepthMeaning:
    """What a depth head's numbers mean, as its manifest's ``depth`` key states it.

    ``kind`` is ``metric`` (distance in ``unit``; larger = farther), ``relative``
    (larger = farther, but the scale, and maybe an offset, are unknown) or
    ``inverse`` (like disparity: larger = NEARER; ``unit`` such as ``1/m`` when
    known). ``unit`` is empty when there is none; metric depth needs one.
    """

    unit: str = ""
    kind: str = "relative"

    def __post_init__(self) -> None:
        if not isinstance(self.unit, str):
            raise TypeError(f"depth unit must be a string, got {self.unit!r}")
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"depth kind must be one of {', '.join(DEPTH_KINDS)}, got {self.kind!r}")
        if self.kind == "metric" and not self.unit:
            raise ValueError("metric depth needs its unit (e.g. m); without one it is relative")

    def describe(self) -> str:
        """A few words for logs and overlays: "metric depth (m)", "relative depth (no unit)"."""
        return f"{self.kind} depth ({self.unit or 'no unit'})"


@dataclass(frozen=True)
class DepthMap:
    """A float32 (H, W) depth value per pixel of the original image, and what the values mean.

    ``unit`` and ``kind`` are a ``DepthMeaning``'s (checked the same way): the
    head's manifest states them. The published depth head's units are
    undocumented, so it says ``relative`` with no unit.
    """

    depth: np.ndarray
    unit: str = ""
    kind: str = "relative"

    def __post_init__(self) -> None:
        _check_arrays(self, "depth")
        DepthMeaning(self.unit, self.kind)  # the same checks and errors as a manifest's
        if self.depth.ndim != 2 or self.depth.dtype != np.float32:
            raise ValueError(f"DepthMap needs an (H, W) float32 map, got {self.depth.dtype} {self.depth.shape}")

    @property
    def meaning(self) -> DepthMeaning:
        return DepthMeaning(self.unit, self.kind)


@dataclass(frozen=True)
class FlowField:
    """Optical flow from the previous frame of the same stream to this one, in this (original) frame's pixels.

    ``flow`` is (H, W, 2) float32: u (x, right) then v (y, down); the pixel at
    (x, y) in the previous frame is near (x + u, y + v) in this one. Displacement
    per frame pair, not per second. None when the frame has no usable previous
    one (the stream's first frame, a gap, time going back): ``reason`` says why.
    """

    flow: np.ndarray | None
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str):
            raise TypeError(f"FlowField's reason must be a string, got {self.reason!r}")
        if self.flow is None:
            if not self.reason:
                raise ValueError("a FlowField without flow needs the reason")
            return
        _check_arrays(self, "flow")
        if self.flow.ndim != 3 or self.flow.shape[2] != 2 or self.flow.dtype != np.float32:
            raise ValueError(f"FlowField needs an (H, W, 2) float32 flow, got {self.flow.dtype} {self.flow.shape}")


def _check_arrays(result: object, *fields: str) -> None:
    """A TypeError naming the first of ``fields`` that is not a numpy array (a torch tensor left on the device)."""
    for name in fields:
        value = getattr(result, name)
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{type(result).__name__}.{name} must be a numpy array on the host, got "
                            f"{type(value).__module__}.{type(value).__qualname__}")


def _check_names(class_names: object) -> None:
    if not isinstance(class_names, tuple) or not all(isinstance(name, str) for name in class_names):
        raise TypeError(f"class_names must be a tuple of strings, got {class_names!r:.200}")


def label_dtype(num_classes: int) -> type[np.unsignedinteger]:
    """The smallest ROS image dtype that holds ``num_classes`` labels: uint8 up to 256, else uint16."""
    if num_classes > 65536:
        raise ValueError(f"at most 65536 classes fit a mono16 label image, got {num_classes}")
    return np.uint8 if num_classes <= 256 else np.uint16
