"""A labelled data set as the trainer sees it: image files, their ground truth, the class names.

Readers (``coco``, ``voc``, ``folders``) turn each on-disk format into a ``Dataset``
and check what they can without decoding pixels; ``check_samples`` decodes every
image and target once before training starts, so a bad file stops the run at
the start with its name, never half-way through an epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ...bounds import BOUNDS, OutOfBounds
from ...compressed_integrity import CorruptImage, check_compressed
from ...errors import Dinov3Error
from ...heads.training import BoxTargets, Target

BOX_TOLERANCE = 1.0  # pixels a box may reach past its image's edge: annotation tools round outwards


class DataError(Dinov3Error, ValueError):
    """Bad training or evaluation data; names the file and, where there is one, the entry in it."""

    def __init__(self, path: str | Path, message: str, entry: str | None = None) -> None:
        where = f"{path} ({entry})" if entry else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.entry = entry


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``load_target`` must be picklable (a ``functools.partial`` of a module-level
    function, or a ``Target`` held by ``KeptTarget``) so that data-loader workers can call it."""

    image: Path
    name: str  # unique in its data set: the image path relative to the image folder
    load_target: Callable[[], Target]
    target_file: Path | None = None  # the mask, depth map or annotation file the target comes from, for errors
    declared_size: tuple[int, int] | None = None  # (H, W) the annotations give the image, which it must have
    previous: Path | None = None  # the frame before ``image``, for a temporal head (optical flow)


@dataclass(frozen=True)
class KeptTarget:
    """A target already in memory (boxes parsed from an annotation file), as a picklable loader."""

    target: Target

    def __call__(self) -> Target:
        return self.target


@dataclass(frozen=True)
class Dataset:
    task: str  # "detection", "segmentation" or "depth": the head task it trains
    class_names: tuple[str, ...]  # index = label; empty for depth
    samples: tuple[Sample, ...]
    source: str  # what was read (the annotation file or folder), for errors and provenance

    def __len__(self) -> int:
        return len(self.samples)

    def split(self, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """(train, val): a seeded random ``val_fraction`` of the samples (at least one) held out."""
        try:
            BOUNDS["val_fraction"].check("the validation fraction", val_fraction)
        except OutOfBounds as e:
            raise DataError(self.source, str(e)) from None
        if len(self.samples) < 2:
            raise DataError(self.source, f"{len(self.samples)} sample(s) cannot be split into train and val")
        order = list(range(len(self.samples)))
        random.Random(seed).shuffle(order)
        n_val = min(len(order) - 1, max(1, round(val_fraction * len(order))))
        val, train = sorted(order[:n_val]), sorted(order[n_val:])
        return (replace(self, samples=tuple(self.samples[i] for i in train)),
                replace(self, samples=tuple(self.samples[i] for i in val)))


def decode_image(path: Path, flags: int) -> np.ndarray:
    """``path`` decoded by OpenCV with ``flags`` (``cv2.IMREAD_*``); a ``DataError`` if it is missing or no image."""
    if not path.is_file():
        raise DataError(path, "file does not exist")
    data = np.fromfile(path, np.uint8)  # not cv2.imread: it returns None for non-ASCII paths on Windows
    try:
        check_compressed(data)  # OpenCV 4 decodes a cut jpeg into a half-grey picture: no training on that
    except CorruptImage as e:
        raise DataError(path, str(e)) from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DataError(path, "cannot be decoded as an image (truncated, or not a format OpenCV reads)")
    return image


def box_problem(box: Sequence[float], width: float, height: float) -> str | None:
    """Why ``box`` [x1, y1, x2, y2] is no box in a ``width`` x ``height`` image; None when it is fine."""
    x1, y1, x2, y2 = box
    shown = "[" + ", ".join(f"{v:g}" for v in box) + "]"
    if not all(math.isfinite(v) for v in box):
        return f"box {shown} has a coordinate that is not a finite number"
    if not (x1 < x2 and y1 < y2):
        return f"box [x1, y1, x2, y2] = {shown} is empty (needs x1 < x2 and y1 < y2)"
    t = BOX_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        return f"box [x1, y1, x2, y2] = {shown} reaches outside the image (width {width:g}, height {height:g})"
    return None


def box_targets(boxes: list[list[float]], labels: list[int], width: float, height: float) -> BoxTargets:
    """Checked boxes as ``BoxTargets``, clipped to the image (they may reach ``BOX_TOLERANCE`` past it)."""
    array = np.asarray(boxes, np.float32).reshape(-1, 4)
    np.clip(array, 0.0, np.array([width, height, width, height], np.float32), out=array)
    return BoxTargets(array, np.asarray(labels, np.int64).reshape(-1))
