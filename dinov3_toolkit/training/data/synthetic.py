"""A small labelled data set in every format ``load_dataset`` reads, all drawn from one set of scenes.

The readers are tested by reading it in each format and comparing, and training
can be tried on it without downloading anything. Each scene has a textured
background (smooth noise and stripes, never flat) and one to three shapes of
three classes, each class in its own colour family. One instance map per scene
is the source of every label, so a shape's mask, its panoptic segment and its
box agree exactly.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("square", "disc", "triangle")
_COLOURS = np.array([(205, 55, 50), (55, 185, 70), (60, 85, 215)])  # RGB centre of each class's colour family
_SIZES = (0.25, 0.5)  # shape size range, as a fraction of the image's short side
_MAX_OVERLAP = 0.1  # of the smaller shape's box area that two shapes' boxes may share
_TRIES = 50  # placements tried per shape before it is left out
_GROUND = (10.0, 2.0)  # metres from the camera at the top and at the bottom row


@dataclass(frozen=True)
class _Scene:
    rgb: np.ndarray  # (H, W, 3) uint8
    instances: np.ndarray  # (H, W) uint8: 0 background, k + 1 the k-th shape (where visible)
    classes: tuple[int, ...]  # index into CLASSES of the k-th shape
    depth: np.ndarray  # (H, W) float metres, all valid

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """[x1, y1, x2, y2] of each shape: the tight bounds of its visible pixels, x2 and y2 one past the last."""
        boxes = []
        for k in range(len(self.classes)):
            ys, xs = np.nonzero(self.instances == k + 1)
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        return boxes


def make_synthetic(folder: str | Path, *, images: int = 8, height: int = 96, width: int = 128,
                   seed: int = 0) -> Path:
    """Write ``images`` scenes under ``folder`` in every format; the same ``seed`` writes the same files.

    Layout: ``images/img_000.png``...; ``instances.json`` (COCO instances); ``voc/Annotations/*.xml``
    with ``voc/JPEGImages/``; ``panoptic.json`` with ``panoptic/*.png``; ``masks/*.png`` with
    ``classes.txt`` (0 = background); ``depth/*.png`` (16-bit millimetres); and optical-flow pairs in
    ``flow_pairs/`` (``images/``, ``previous/``, ``flow/*.npy``): a texture moved by a whole number of
    pixels (-4..4 on each axis, one motion per pair), so the flow is exact everywhere.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    scenes = [_scene(rng, height, width) for _ in range(images)]
    names = [f"img_{i:03d}.png" for i in range(images)]
    for sub in ("images", "voc/Annotations", "voc/JPEGImages", "panoptic", "masks", "depth"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name, scene in zip(names, scenes):
        image = _png(cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR))
        (folder / "images" / name).write_bytes(image)
        (folder / "voc" / "JPEGImages" / name).write_bytes(image)
        (folder / "voc" / "Annotations" / name).with_suffix(".xml").write_text(_voc_xml(name, scene))
        class_of = np.array([0, *(c + 1 for c in scene.classes)], np.uint8)
        (folder / "masks" / name).write_bytes(_png(class_of[scene.instances]))
        segment_of = np.array([0, *_segment_ids(scene)], np.int64)
        ids = segment_of[scene.instances]  # (H, W) panoptic segment id = R + 256 G + 65536 B
        bgr = np.stack([ids >> 16, (ids >> 8) & 255, ids & 255], -1).astype(np.uint8)
        (folder / "panoptic" / name).write_bytes(_png(bgr))
        (folder / "depth" / name).write_bytes(_png(np.round(scene.depth * 1000).astype(np.uint16)))
    (folder / "instances.json").write_text(json.dumps(_coco(names, scenes, panoptic=False)))
    (folder / "panoptic.json").write_text(json.dumps(_coco(names, scenes, panoptic=True)))
    (folder / "classes.txt").write_text("\n".join(("background", *CLASSES)) + "\n")
    _flow_pairs(folder / "flow_pairs", names, np.random.default_rng([seed, 1]), height, width)
    return folder


def _flow_pairs(folder: Path, names: list[str], rng: np.random.Generator, height: int, width: int) -> None:
    margin = 8
    for sub in ("images", "previous", "flow"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        texture = cv2.cvtColor(_background(rng, height + 2 * margin, width + 2 * margin), cv2.COLOR_RGB2BGR)
        dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
        previous = texture[margin: margin + height, margin: margin + width]
        current = texture[margin - dy: margin - dy + height, margin - dx: margin - dx + width]  # moved by (dx, dy)
        (folder / "previous" / name).write_bytes(_png(previous))
        (folder / "images" / name).write_bytes(_png(current))
        flow = np.broadcast_to(np.array([dx, dy], np.float32), (height, width, 2))
        np.save(folder / "flow" / name.replace(".png", ".npy"), np.ascontiguousarray(flow))


def _scene(rng: np.random.Generator, height: int, width: int) -> _Scene:
    rgb = _background(rng, height, width)
    depth = np.repeat(np.linspace(*_GROUND, height)[:, None], width, 1)  # a floor, nearer towards the bottom
    instances = np.zeros((height, width), np.uint8)
    short = min(height, width)
    placed: list[tuple[int, int, int]] = []  # (x, y, size) of each shape's square
    classes: list[int] = []
    for _ in range(rng.integers(1, 4)):
        for _ in range(_TRIES):
            size = int(rng.integers(round(_SIZES[0] * short), round(_SIZES[1] * short) + 1))
            x, y = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
            if all(_overlap((x, y, size), other) <= _MAX_OVERLAP * min(size, other[2]) ** 2 for other in placed):
                break
        else:
            continue  # no room left: fewer shapes
        kind = int(rng.integers(len(CLASSES)))
        mask = _draw(CLASSES[kind], x, y, size, (height, width))
        instances[mask] = len(classes) + 1
        depth[mask] = 0.8 * depth[mask].min()  # a flat plane nearer than everything behind it
        rgb[mask] = np.clip(_COLOURS[kind] + rng.integers(-25, 26, 3), 0, 255)
        placed.append((x, y, size))
        classes.append(kind)
    return _Scene(rgb, instances, tuple(classes), depth)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Muted, nearly grey texture: smooth colour noise plus stripes, unlike any shape's saturated colour."""
    coarse = rng.uniform(-1.0, 1.0, (4, 5, 3)).astype(np.float32)
    noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)  # (H, W, 3)
    angle, period = rng.uniform(0.0, math.pi), rng.uniform(8.0, 24.0)
    ys, xs = np.mgrid[0:height, 0:width]
    stripes = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)  # (H, W)
    rgb = rng.uniform(90.0, 160.0) + 25.0 * stripes[..., None] + 20.0 * noise
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _draw(kind: str, x: int, y: int, size: int, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: a ``kind`` shape filling the ``size`` square at (x, y), drawn without anti-aliasing."""
    canvas = np.zeros(shape, np.uint8)
    last = size - 1
    if kind == "square":
        cv2.rectangle(canvas, (x, y), (x + last, y + last), 1, thickness=-1)
    elif kind == "disc":
        cv2.circle(canvas, (x + last // 2, y + last // 2), last // 2, 1, thickness=-1)
    else:
        corners = np.array([(x + last // 2, y), (x, y + last), (x + last, y + last)], np.int32)
        cv2.fillPoly(canvas, [corners], 1)
    return canvas.astype(bool)


def _overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    """Area shared by the squares (x, y, size) ``a`` and ``b``."""
    side = [min(a[i] + a[2], b[i] + b[2]) - max(a[i], b[i]) for i in (0, 1)]
    return max(side[0], 0) * max(side[1], 0)


def _segment_ids(scene: _Scene) -> list[int]:
    """Panoptic ids spanning R, G and B (as COCO's do), so a reader that decodes only one channel fails."""
    return [70_000 * (c + 1) + k + 1 for k, c in enumerate(scene.classes)]


def _coco(names: list[str], scenes: list[_Scene], panoptic: bool) -> dict:
    images = [{"id": i + 1, "file_name": name, "width": scene.rgb.shape[1], "height": scene.rgb.shape[0]}
              for i, (name, scene) in enumerate(zip(names, scenes))]
    categories = [{"id": c + 1, "name": name, "supercategory": "shape", "isthing": 1} for c, name in
                  enumerate(CLASSES)]
    annotations = []
    for i, (name, scene) in enumerate(zip(names, scenes)):
        objects = [{"category_id": c + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int((scene.instances == k + 1).sum()), "iscrowd": 0}
                   for k, (c, (x1, y1, x2, y2)) in enumerate(zip(scene.classes, scene.boxes()))]
        if panoptic:
            segments = [{"id": segment_id, **o} for segment_id, o in zip(_segment_ids(scene), objects)]
            annotations.append({"image_id": i + 1, "file_name": name, "segments_info": segments})
        else:
            annotations += [{"id": len(annotations) + 1, "image_id": i + 1, **o} for o in objects]
    return {"images": images, "annotations": annotations, "categories": categories}


def _voc_xml(name: str, scene: _Scene) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = name
    height, width = scene.rgb.shape[:2]
    size = ET.SubElement(root, "size")
    for key, value in zip(("width", "height", "depth"), (width, height, 3)):
        ET.SubElement(size, key).text = str(value)
    for kind, (x1, y1, x2, y2) in zip(scene.classes, scene.boxes()):
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = CLASSES[kind]
        ET.SubElement(element, "difficult").text = "0"
        box = ET.SubElement(element, "bndbox")
        # VOC corners are 1-based pixel indices, both inclusive
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1 + 1, y1 + 1, x2, y2)):
            ET.SubElement(box, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _png(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"OpenCV cannot encode a {pixels.shape} {pixels.dtype} array as PNG")
    return data.tobytes()
