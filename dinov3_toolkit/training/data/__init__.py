"""Training data: ``load_dataset`` picks the reader from what is on disk; ``check_samples`` decodes it all once.

Readers check what they can without decoding pixels (files exist, boxes fit the
declared image size, classes are known), so ``load_dataset`` is quick even on
COCO; ``check_samples`` then finds what only the pixels show, before training.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ...heads.training import BoxTargets, DepthTargets, LabelTargets, Target
from .coco import read_coco
from .dataset import DataError, Dataset, KeptTarget, Sample, box_problem, decode_image
from .folders import read_depth, read_flow, read_masks
from .voc import read_voc

__all__ = ["DataError", "Dataset", "KeptTarget", "Sample", "check_samples", "load_dataset", "read_image"]

FORMATS = {  # what ``load_dataset`` reads for each task, for the error when it finds none of it
    "detection": "a COCO instances .json file, or a Pascal VOC folder with Annotations/ and JPEGImages/",
    "segmentation": "a COCO panoptic .json file, or a folder with images/, masks/ (class-index PNGs) and "
                    "classes.txt",
    "depth": "a folder with images/ and depth/ (16-bit PNGs in millimetres, or .npy files in metres)",
    "flow": "a folder with images/, previous/ (the frame before each) and flow/ (.npy (H, W, 2) or .flo)",
}
CLASSES_FILE = "classes.txt"  # a mask folder's class names
_SHOWN = 10  # problems ``check_samples`` lists; it counts them all


def load_dataset(task: str, data: str | Path, *, images: str | Path | None = None,
                 classes: str | Path | None = None) -> Dataset:
    """The data set at ``data`` for ``task``, its format told by what is there:

    - a ``.json`` file: COCO instances (detection) or COCO panoptic (segmentation, its
      annotations have ``segments_info``); images in ``images``, else ``images/`` next to it,
      else the file's folder;
    - a folder with ``Annotations/``: Pascal VOC (detection), images in ``JPEGImages/``;
    - a folder with ``masks/``: class-index PNGs for ``images/`` (segmentation), classes in ``classes.txt``;
    - a folder with ``depth/``: depth maps for ``images/`` (depth).

    ``images`` replaces the format's image folder. ``classes`` is a file of class names, one per
    line (line 1 is class 0); annotations are mapped onto it by name and any other class is an error.
    """
    data = Path(data)
    if task not in FORMATS:
        raise DataError(data, f"unknown task {task!r}; expected one of {sorted(FORMATS)}")
    if task in ("depth", "flow") and classes is not None:
        raise DataError(classes, f"{task} data has no classes; drop the class list")
    image_dir = Path(images) if images is not None else None
    class_names = _read_class_names(Path(classes)) if classes is not None else None
    if data.is_file() and data.suffix.lower() == ".json" and task in ("detection", "segmentation"):
        return read_coco(task, data, images=image_dir, classes=class_names)
    if task == "detection" and (data / "Annotations").is_dir():
        return read_voc(data, images=image_dir, classes=class_names)
    if task == "segmentation" and (data / "masks").is_dir():
        if class_names is None:
            class_names = _read_class_names(data / CLASSES_FILE)
        return read_masks(data, images=image_dir, classes=class_names)
    if task == "depth" and (data / "depth").is_dir():
        return read_depth(data, images=image_dir)
    if task == "flow" and (data / "flow").is_dir():
        return read_flow(data, images=image_dir)
    found = "does not exist" if not data.exists() else f"is no {task} data set"
    raise DataError(data, f"{found}; expected {FORMATS[task]}")


def check_samples(dataset: Dataset) -> list[tuple[int, int]]:
    """The (H, W) of every sample's image, after decoding every image and target once.

    Checks what only the pixels show: images decode, masks and depth maps have their
    image's size, labels are class indices, boxes lie in their image. All problems are
    collected and raised as one ``DataError`` listing the first ten and counting all.
    """
    sizes: list[tuple[int, int]] = []
    problems: list[DataError] = []
    for sample in dataset.samples:
        size = None
        try:
            size = read_image(sample.image).shape[:2]
            sizes.append(size)
        except DataError as e:
            problems.append(e)
        if sample.previous is not None:  # a flow pair: the frame before must decode, at the same size
            try:
                if size is not None and (previous := read_image(sample.previous).shape[:2]) != size:
                    problems.append(DataError(sample.previous, f"is {_shape(previous)} but the frame after it is "
                                              f"{_shape(size)} (height x width)", f"image '{sample.name}'"))
            except DataError as e:
                problems.append(e)
        if size is not None and sample.declared_size not in (None, size):
            problems.append(DataError(sample.target_file or dataset.source, f"says the image is "
                                      f"{sample.declared_size[0]}x{sample.declared_size[1]} but it is "
                                      f"{size[0]}x{size[1]} (height x width): its boxes would be misplaced",
                                      f"image '{sample.name}'"))
        try:
            target = sample.load_target()
        except DataError as e:
            problems.append(e)
            continue
        problems += _target_problems(sample, target, size, dataset)
    if problems:
        listed = "".join(f"\n  {problem}" for problem in problems[:_SHOWN])
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise DataError(dataset.source, f"{len(problems)} problem(s) in {len(dataset)} samples:{listed}{more}")
    return sizes


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, whatever its channels and bit depth."""
    return cv2.cvtColor(decode_image(Path(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _target_problems(sample: Sample, target: Target, size: tuple[int, int] | None,
                     dataset: Dataset) -> list[DataError]:
    """What is wrong with one decoded target; ``size`` is its image's (H, W), None if that failed to decode."""
    path = sample.target_file or Path(dataset.source)
    where = f"image '{sample.name}'"
    num_classes = len(dataset.class_names)
    if isinstance(target, BoxTargets):
        height, width = size or (math.inf, math.inf)
        problems = []
        for number, (box, label) in enumerate(zip(target.boxes.tolist(), target.labels.tolist()), 1):
            if not 0 <= label < num_classes:
                problems.append(DataError(path, f"label {label} is no class index (0..{num_classes - 1})",
                                          f"{where}, object {number}"))
            if problem := box_problem(box, width, height):
                problems.append(DataError(path, problem, f"{where}, object {number}"))
        return problems
    values = target.labels if isinstance(target, LabelTargets) else target.depth if isinstance(
        target, DepthTargets) else target.flow  # (H, W), or (H, W, 2) for flow
    if size is not None and values.shape[:2] != size:
        return [DataError(path, f"is {_shape(values.shape)} but its image is {_shape(size)} (height x width)", where)]
    if isinstance(target, LabelTargets):
        bad = np.unique(values[(values < 0) | (values >= num_classes)])
        if target.ignore is not None:
            bad = bad[bad != target.ignore]
        if bad.size:
            ignore = "" if target.ignore is None else f", or {target.ignore} to ignore"
            return [DataError(path, f"has label(s) {bad[:5].tolist()} that are no class index "
                                    f"(0..{num_classes - 1}{ignore})", where)]
    return []


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _read_class_names(path: Path) -> tuple[str, ...]:
    """One class name per line, line 1 being class 0; trailing blank lines are dropped, others are errors."""
    if not path.is_file():
        raise DataError(path, "class list does not exist; expected a text file with one class name per line")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"class list cannot be read as UTF-8 text (one class name per line): {e}") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DataError(path, "class list is empty; expected one class name per line")
    for number, name in enumerate(lines, 1):
        if not name or name in lines[:number - 1]:
            problem = "is blank" if not name else f"repeats {name!r}"
            raise DataError(path, f"{problem}; each line names one class, line 1 being class 0", f"line {number}")
    return tuple(lines)
