"""Folders of image and target files paired by stem: ``images/a.jpg`` with ``masks/a.png`` or ``depth/a.png``.

The plainest formats to export from any tool: a class-index mask per image
for segmentation, a depth map per image for depth.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np

from ...heads.training import DepthTargets, FlowTargets, LabelTargets
from ...offline.sources import IMAGE_SUFFIXES
from .dataset import DataError, Dataset, Sample, decode_image

IGNORE = 255  # "not labelled" in 8-bit masks (the VOC and Cityscapes convention) unless it is a class index
MILLIMETRES = 1000.0  # depth PNG values per metre


def read_masks(folder: Path, *, classes: tuple[str, ...], images: Path | None = None) -> Dataset:
    """Segmentation pairs: ``masks/<stem>.png`` holds the class index of each pixel of ``images/<stem>.*``."""
    samples = tuple(Sample(image, image.name, partial(_load_mask, mask, len(classes)), mask)
                    for image, mask in _pairs(folder, images, "masks", (".png",)))
    return Dataset("segmentation", classes, samples, str(folder))


def read_depth(folder: Path, *, images: Path | None = None) -> Dataset:
    """Depth pairs: ``depth/<stem>.png`` (16-bit millimetres) or ``depth/<stem>.npy`` (metres) per image."""
    samples = tuple(Sample(image, image.name, partial(_load_depth, depth), depth)
                    for image, depth in _pairs(folder, images, "depth", (".png", ".npy")))
    return Dataset("depth", (), samples, str(folder))


def read_flow(folder: Path, *, images: Path | None = None) -> Dataset:
    """Optical-flow pairs: ``previous/<stem>.*`` is the frame before ``images/<stem>.*``, and ``flow/<stem>.npy``
    (float32 (H, W, 2), u then v in pixels, non-finite = unknown) or ``.flo`` (Middlebury) the motion."""
    samples = []
    for image, flow in _pairs(folder, images, "flow", (".npy", ".flo")):
        previous = [p for p in (folder / "previous").glob(f"{image.stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if len(previous) != 1:
            raise DataError(folder / "previous", f"needs exactly one image of stem {image.stem!r} (the frame before "
                            f"it), found {len(previous)}", f"image '{image.name}'")
        samples.append(Sample(image, image.name, partial(_load_flow, flow), flow, previous=previous[0]))
    return Dataset("flow", (), tuple(samples), str(folder))


def _load_flow(path: Path) -> FlowTargets:
    try:
        if path.suffix == ".flo":  # Middlebury: b"PIEH", width, height (int32), then (H, W, 2) float32
            raw = path.read_bytes()
            if raw[:4] != b"PIEH":
                raise ValueError("no PIEH tag")
            width, height = np.frombuffer(raw, np.int32, 2, 4)
            flow = np.frombuffer(raw, np.float32, height * width * 2, 12).reshape(height, width, 2)
        else:
            flow = np.load(path)
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot be read as a flow field: {e}") from None
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise DataError(path, f"must be (height, width, 2) (u, v), got shape {flow.shape}")
    return FlowTargets(np.ascontiguousarray(flow, dtype=np.float32))


def _pairs(folder: Path, images: Path | None, targets: str, suffixes: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(image, target file) for every image in ``images`` (else ``folder/images``), sorted by name."""
    images = images if images is not None else folder / "images"
    if not images.is_dir():
        raise DataError(images, "image folder does not exist")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(images, f"holds no images (looked for {', '.join(IMAGE_SUFFIXES)}): the data set is empty")
    pairs, stems = [], {}
    for image in files:
        if image.stem in stems:
            raise DataError(image, f"has the stem of {stems[image.stem].name}: they would share one target file")
        stems[image.stem] = image
        candidates = [folder / targets / (image.stem + suffix) for suffix in suffixes]
        found = [path for path in candidates if path.is_file()]
        where = f"image '{image.name}'"
        if not found:
            others = "".join(f", nor does {path.name}" for path in candidates[1:])
            raise DataError(candidates[0], f"does not exist{others}: each image needs one of its stem in {targets}/",
                            where)
        if len(found) > 1:
            raise DataError(found[0], f"and {found[1].name} both exist: keep one", where)
        pairs.append((image, found[0]))
    return pairs


def _load_mask(path: Path, num_classes: int) -> LabelTargets:
    mask = decode_image(path, cv2.IMREAD_UNCHANGED)
    if mask.ndim != 2 or mask.dtype not in (np.uint8, np.uint16):
        raise DataError(path, f"a mask must be a single-channel 8- or 16-bit PNG of class indices, got shape "
                              f"{mask.shape} of {mask.dtype}")
    ignore = IGNORE if mask.dtype == np.uint8 and num_classes <= IGNORE else None
    return LabelTargets(mask.astype(np.int64), ignore)


def _load_depth(path: Path) -> DepthTargets:
    if path.suffix == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(path, f"cannot be read as a .npy array: {e}") from None
        if depth.ndim != 2 or depth.dtype.kind != "f":
            raise DataError(path, f"a .npy depth map must be (H, W) floats in metres, got shape {depth.shape} of "
                                  f"{depth.dtype}")
        return DepthTargets(depth.astype(np.float32))
    png = decode_image(path, cv2.IMREAD_UNCHANGED)
    if png.ndim != 2 or png.dtype != np.uint16:
        raise DataError(path, f"a depth PNG must be single-channel 16-bit (millimetres), got shape {png.shape} of "
                              f"{png.dtype}")
    return DepthTargets(png.astype(np.float32) / MILLIMETRES)
