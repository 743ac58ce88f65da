"""Detections as foxglove_msgs/ImageAnnotations: boxes and labels that Foxglove draws over the camera image.

Foxglove does not draw ``vision_msgs/Detection2DArray``, and RViz has no 2D detection display, so
viewers otherwise see detections only burnt into the overlay images. Foxglove's Image panel draws
``ImageAnnotations`` sharply at any zoom, over the raw image. Each box is one ``PointsAnnotation``
(``LINE_LOOP`` through its four corners, outline in its class colour) and one ``TextAnnotation``
("<class> 0.87" on a fill of that colour, its bottom-left at the box's top-left corner, so the
label sits on the box's top edge, inside it when the box touches the image's top). Colours are
the overlay's (``dinov3_toolkit.drawing.palette``) and, as in the overlay, the best box comes last,
so it is drawn on top. ``ImageAnnotations`` has no header: every annotation carries the input
image's stamp instead, which is how Foxglove matches annotations to images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dinov3_toolkit.drawing import draw_order, palette, text_colour_on
from dinov3_toolkit.results import Detections

from .backend import MessageBackend
from .vision import check_labels

LINE_LOOP = 2  # foxglove_msgs/PointsAnnotation.LINE_LOOP: a closed polygon


def detections_to_annotations(M: MessageBackend, det: Detections, header: Any, image_size: tuple[int, int]) -> Any:
    """foxglove_msgs/ImageAnnotations for ``det`` on an image of ``image_size`` (H, W), stamped like ``header``.

    Line thickness and font size grow with the image, as the overlay's do, so labels read the
    same at 480p and 4K.
    """
    check_labels(det)
    height, width = image_size
    thickness = max(2.0, min(height, width) / 240)
    font_size = max(12.0, min(height, width) / 30)
    palette_rgb = [tuple(c) for c in palette(len(det.class_names)).tolist()]  # (C, 3) RGB 0-255, as the overlay
    stamp = header.stamp
    boxes = det.boxes.astype(np.float64).tolist()
    names, scores = det.names(), det.scores.tolist()
    points, texts = [], []
    for k in draw_order(det).tolist():
        x1, y1, x2, y2 = boxes[k]
        fill = palette_rgb[det.labels[k]]
        colour = _colour(M, *(c / 255.0 for c in fill))
        corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        points.append(M.new(
            "foxglove_msgs/msg/PointsAnnotation", timestamp=_time(M, stamp), type=LINE_LOOP,
            points=[_point(M, x, y) for x, y in corners], outline_color=colour, outline_colors=[],
            fill_color=_colour(M, 0.0, 0.0, 0.0, 0.0), thickness=thickness,
        ))
        texts.append(M.new(
            "foxglove_msgs/msg/TextAnnotation", timestamp=_time(M, stamp),
            position=_point(M, x1, max(y1, font_size)),  # the text's bottom-left; kept inside the image
            text=f"{names[k]} {scores[k]:.2f}", font_size=font_size,
            text_color=_colour(M, *(c / 255.0 for c in text_colour_on(fill))), background_color=colour,
        ))
    return M.new("foxglove_msgs/msg/ImageAnnotations", circles=[], points=points, texts=texts)


def _time(M: MessageBackend, stamp: Any) -> Any:
    return M.new("builtin_interfaces/msg/Time", sec=int(stamp.sec), nanosec=int(stamp.nanosec))


def _point(M: MessageBackend, x: float, y: float) -> Any:
    return M.new("foxglove_msgs/msg/Point2", x=float(x), y=float(y))


def _colour(M: MessageBackend, r: float, g: float, b: float, a: float = 1.0) -> Any:
    return M.new("foxglove_msgs/msg/Color", r=float(r), g=float(g), b=float(b), a=float(a))
