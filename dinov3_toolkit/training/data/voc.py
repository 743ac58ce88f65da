"""Pascal VOC detection folders: one XML file per image in ``Annotations/``, the images in ``JPEGImages/``.

Every XML file is read (sorted by name); ``ImageSets/`` split lists are not
needed: ``Dataset.split`` makes the validation set. VOC boxes are 1-based and
inclusive, so ``xmin = 1, xmax = W`` covers the whole row; they become
[x1, y1, x2, y2] = [xmin - 1, ymin - 1, xmax, ymax], the convention of COCO
and of detectron2's VOC reader. Objects marked ``difficult`` are kept, as
detectron2 does: they are real objects, only the VOC benchmark skips them.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .dataset import DataError, Dataset, KeptTarget, Sample, box_problem, box_targets

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class _Annotation:
    """One XML file: its image, the declared size (inf where ``<size>`` is absent) and (name, box) per object."""

    file: Path
    image: str
    width: float
    height: float
    objects: tuple[tuple[str, list[float]], ...]


def read_voc(folder: Path, *, images: Path | None = None, classes: tuple[str, ...] | None = None) -> Dataset:
    """``folder/Annotations/*.xml`` as a detection ``Dataset``; images in ``images``, else ``folder/JPEGImages``.

    Class names are ``classes`` if given (another name is an error), else the sorted names found.
    """
    images = images if images is not None else folder / "JPEGImages"
    files = sorted((folder / "Annotations").glob("*.xml"))
    if not files:
        raise DataError(folder / "Annotations", "holds no .xml annotation files: the data set is empty")
    annotations = [_read_xml(file, images) for file in files]
    if classes is None:
        classes = tuple(sorted({name for a in annotations for name, _ in a.objects}))
        if not classes:
            raise DataError(folder / "Annotations", "holds no <object>, so no class names; give a class list")
    samples = []
    for a in annotations:
        labels = []
        for number, (name, _) in enumerate(a.objects, 1):
            if name not in classes:
                raise DataError(a.file, f"unknown class {name!r}: not in the class list {list(classes)}",
                                f"object {number}")
            labels.append(classes.index(name))
        boxes = [box for _, box in a.objects]
        declared = (int(a.height), int(a.width)) if math.isfinite(a.width) else None  # <size> is optional
        samples.append(Sample(images / a.image, a.image, KeptTarget(box_targets(boxes, labels, a.width, a.height)),
                              a.file, declared))
    return Dataset("detection", classes, tuple(samples), str(folder))


def _read_xml(file: Path, images: Path) -> _Annotation:
    try:
        root = ET.parse(file).getroot()
    except (OSError, ET.ParseError) as e:
        raise DataError(file, f"is not a readable XML file: {e}") from None
    image = (root.findtext("filename") or "").strip()
    if not image:
        raise DataError(file, "has no <filename>: the image it annotates")
    if not (images / image).is_file():
        raise DataError(file, f"image file {images / image} does not exist", f"filename '{image}'")
    width = height = math.inf
    if (size := root.find("size")) is not None:
        width, height = (_number(file, size, key, "size") for key in ("width", "height"))
        if width <= 0 or height <= 0:
            raise DataError(file, f"<size> must be positive, got width {width:g} and height {height:g}")
    objects = []
    for number, element in enumerate(root.iter("object"), 1):
        where = f"object {number}"
        name = (element.findtext("name") or "").strip()
        box_element = element.find("bndbox")
        if not name or box_element is None:
            raise DataError(file, "an object needs <name> and <bndbox>", where)
        xmin, ymin, xmax, ymax = (_number(file, box_element, key, where) for key in _CORNERS)
        box = [xmin - 1, ymin - 1, xmax, ymax]
        if problem := box_problem(box, width, height):
            raise DataError(file, f"{problem} (VOC <bndbox> {xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}, 1-based)",
                            where)
        objects.append((name, box))
    return _Annotation(file, image, width, height, tuple(objects))


def _number(file: Path, element: ET.Element, key: str, where: str) -> float:
    text = element.findtext(key)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(file, f"<{key}> must be a number, got {text!r}", where) from None
