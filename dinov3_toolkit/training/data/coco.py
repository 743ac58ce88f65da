"""COCO annotation files: instances (boxes) for detection, panoptic (segment PNGs) for segmentation.

One JSON file lists the images (``file_name``, ``width``, ``height``), the
categories and the annotations. Labels are contiguous: the categories sorted by
id, or the position of a category's name in the class list the user gave, so a
head trained here keeps the class order of its ``class_names.txt``. Panoptic
labels start at 1; 0 is "background", the void and unknown pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from ...heads.training import LabelTargets
from .dataset import DataError, Dataset, KeptTarget, Sample, box_problem, box_targets, decode_image

BACKGROUND = "background"
_LISTS = ("images", "annotations", "categories")  # the keys every COCO file has
_Label = Callable[[dict, str], int]  # (annotation or segment, where it is for errors) -> class index


def read_coco(task: str, path: Path, *, images: Path | None = None,
              classes: tuple[str, ...] | None = None) -> Dataset:
    """A COCO instances file (task ``detection``) or panoptic file (``segmentation``) as a ``Dataset``.

    Images are in ``images``, else in a folder ``images`` next to the file, else in the file's folder.
    """
    raw = _read_json(path)
    panoptic = any(isinstance(a, dict) and "segments_info" in a for a in raw["annotations"])
    if panoptic and task != "segmentation":
        raise DataError(path, f"is a COCO panoptic file (annotations with segments_info); {task} needs COCO "
                              "instances (annotations with bbox)")
    if not panoptic and task == "segmentation":
        raise DataError(path, "is a COCO instances file (no annotation has segments_info); segmentation needs COCO "
                              "panoptic")
    if images is None:
        images = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    entries = _images(path, raw, images)
    class_names, label = _categories(path, raw, classes, background=panoptic)
    read = _panoptic_samples if panoptic else _instance_samples
    return Dataset(task, class_names, read(path, raw, entries, images, label), str(path))


def _instance_samples(path: Path, raw: dict, entries: dict[int, dict], images: Path,
                      label: _Label) -> tuple[Sample, ...]:
    boxes: dict[int, list[list[float]]] = {image_id: [] for image_id in entries}
    labels: dict[int, list[int]] = {image_id: [] for image_id in entries}
    for annotation in raw["annotations"]:
        image = _image_of(path, annotation, entries)
        where = f"annotation id {annotation.get('id')}, image '{image['file_name']}'"
        if annotation.get("iscrowd"):
            continue  # a crowd region is one box over many objects, no object to learn; COCO's evaluation skips it
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DataError(path, f"needs 'bbox' [x, y, width, height] (4 numbers), got {bbox!r}", where)
        x, y, w, h = (float(v) for v in bbox)
        box = [x, y, x + w, y + h]
        if problem := box_problem(box, image["width"], image["height"]):
            raise DataError(path, f"{problem} (bbox {bbox} as [x, y, width, height])", where)
        boxes[image["id"]].append(box)
        labels[image["id"]].append(label(annotation, where))
    return tuple(
        Sample(images / image["file_name"], image["file_name"],
               KeptTarget(box_targets(boxes[image_id], labels[image_id], image["width"], image["height"])), path,
               (image["height"], image["width"]))
        for image_id, image in entries.items())


def _panoptic_samples(path: Path, raw: dict, entries: dict[int, dict], images: Path,
                      label: _Label) -> tuple[Sample, ...]:
    """One sample per image; its PNG is in the folder named like the JSON (``panoptic_val2017/``) or next to it."""
    pngs = path.parent / path.stem if (path.parent / path.stem).is_dir() else path.parent
    samples: dict[int, Sample] = {}
    for annotation in raw["annotations"]:
        image = _image_of(path, annotation, entries)
        where = f"image '{image['file_name']}'"
        if image["id"] in samples:
            raise DataError(path, "has a second panoptic annotation for the image", where)
        png = annotation.get("file_name")
        if not isinstance(png, str) or not png or not isinstance(annotation.get("segments_info"), list):
            raise DataError(path, "a panoptic annotation needs 'file_name' (its PNG) and a list 'segments_info'",
                            where)
        if not (pngs / png).is_file():
            raise DataError(pngs / png, "panoptic PNG does not exist", where)
        # crowd segments keep their class: a per-pixel label does not tell instances apart anyway
        segments = {0: 0}  # segment id 0 is void: background
        for segment in annotation["segments_info"]:
            segment_id = segment.get("id") if isinstance(segment, dict) else None
            if type(segment_id) is not int or segment_id <= 0:
                raise DataError(path, f"a segment needs a positive integer 'id', got {segment_id!r}", where)
            segments[segment_id] = label(segment, f"{where}, segment id {segment_id}")
        ids = sorted(segments)
        load = partial(_load_panoptic, pngs / png, tuple(ids), tuple(segments[i] for i in ids))
        samples[image["id"]] = Sample(images / image["file_name"], image["file_name"], load, pngs / png)
    for image_id, image in entries.items():
        if image_id not in samples:
            raise DataError(path, "has no panoptic annotation (segments_info) for the image",
                            f"image id {image_id}, '{image['file_name']}'")
    return tuple(samples[image_id] for image_id in entries)


def _load_panoptic(png: Path, segment_ids: tuple[int, ...], labels: tuple[int, ...]) -> LabelTargets:
    """Class labels of a panoptic PNG; ``segment_ids`` sorted, pixels of any other id become 0."""
    bgr = decode_image(png, cv2.IMREAD_COLOR).astype(np.int64)
    pixel_ids = bgr[..., 2] + 256 * bgr[..., 1] + 65536 * bgr[..., 0]  # (H, W): R + 256 G + 65536 B
    ids = np.asarray(segment_ids, np.int64)
    at = np.searchsorted(ids, pixel_ids).clip(max=len(ids) - 1)  # (H, W) index into ids
    return LabelTargets(np.where(ids[at] == pixel_ids, np.asarray(labels, np.int64)[at], 0))


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"is not a readable JSON file: {e}") from None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(key), list) for key in _LISTS):
        raise DataError(path, f"a COCO file is a JSON object with the lists {', '.join(map(repr, _LISTS))}")
    return raw


def _images(path: Path, raw: dict, folder: Path) -> dict[int, dict]:
    """The ``images`` entries by id, in file order; each names an existing file and its positive size."""
    entries: dict[int, dict] = {}
    for image in raw["images"]:
        image_id = image.get("id") if isinstance(image, dict) else None
        where = f"image id {image_id}"
        if type(image_id) is not int or image_id in entries:
            raise DataError(path, f"every image needs a unique integer 'id', got {image_id!r}", where)
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(path, f"needs 'file_name', got {file_name!r}", where)
        where = f"image id {image_id}, '{file_name}'"
        if not all(type(image.get(k)) is int and image[k] > 0 for k in ("width", "height")):
            raise DataError(path, f"needs positive integers 'width' and 'height', got {image.get('width')!r} and "
                                  f"{image.get('height')!r}", where)
        if not (folder / file_name).is_file():
            raise DataError(path, f"image file {folder / file_name} does not exist", where)
        entries[image_id] = image
    if not entries:
        raise DataError(path, "lists no images: the data set is empty")
    return entries


def _categories(path: Path, raw: dict, classes: tuple[str, ...] | None,
                background: bool) -> tuple[tuple[str, ...], _Label]:
    """The class names and the label of an annotation: by category id, or by category name into ``classes``."""
    names: dict[int, str] = {}
    for category in raw["categories"]:
        category_id = category.get("id") if isinstance(category, dict) else None
        name = category.get("name") if isinstance(category, dict) else None
        if type(category_id) is not int or category_id in names or not isinstance(name, str):
            raise DataError(path, f"every category needs a unique integer 'id' and a 'name', got {category!r}")
        if name in names.values():
            raise DataError(path, f"two categories are named {name!r}; class names must be unique",
                            f"category id {category_id}")
        names[category_id] = name
    if not names:
        raise DataError(path, "lists no categories: there is no class to learn")
    if classes is None:
        classes = (BACKGROUND,) * background + tuple(names[i] for i in sorted(names))
    elif background and classes[0] != BACKGROUND:  # void pixels are label 0: it must not be a real class
        raise DataError(path, f"panoptic classes need {BACKGROUND!r} first (void and unlabelled pixels are class "
                              f"0), the classes file starts with {classes[0]!r}")
    return classes, partial(_label, path, names, classes)


def _image_of(path: Path, annotation: object, entries: dict[int, dict]) -> dict:
    image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
    if image_id not in entries:
        entry = annotation.get("id") if isinstance(annotation, dict) else None
        raise DataError(path, f"refers to image id {image_id!r}, which 'images' does not list",
                        f"annotation id {entry}")
    return entries[image_id]


def _label(path: Path, names: dict[int, str], classes: tuple[str, ...], item: dict, where: str) -> int:
    """The class index of an annotation or segment, from its ``category_id``."""
    category_id = item.get("category_id")
    if category_id not in names:
        raise DataError(path, f"unknown class: category id {category_id!r} is not in 'categories' "
                              f"(ids {sorted(names)})", where)
    if names[category_id] not in classes:
        raise DataError(path, f"unknown class: category {names[category_id]!r} (id {category_id}) is not in the "
                              f"class list {list(classes)}", where)
    return classes.index(names[category_id])


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
