"""Drawing one result: boxes, label maps and flow as RGB pictures, and the banner for untrusted output.

Every function takes RGB uint8 (H, W, 3) images in the original frame and
returns a new image; inputs are never modified. Colours are a fixed function of
the class index, so a class keeps its colour across frames, runs and machines;
a legend names the classes a label map holds and a count says how many boxes
there are. Text size follows the image size so labels read the same at 480p and
1080p. Depth has its own module (``depth_drawing``: colours and their bar).
Which function draws which result, and how a frame's results are put together,
is decided by the result-kind table (``result_kinds``) and ``overlays``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .preprocess import check_rgb_image
from .results import Detections, FlowField, SemanticLabels

FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN = 0.618033988749895  # hue step: consecutive classes land far apart on the colour wheel
_SATURATIONS = (1.0, 0.75, 0.5)
_VALUES = (1.0, 0.8, 0.6)
_LABEL_GRID = 160  # long side of the downscaled mask used to place segmentation labels
_MIN_REGION = 0.005  # regions smaller than this fraction of the image get no name
DARK = (32, 32, 32)
WHITE = (255, 255, 255)
_BANNER_RED = (200, 0, 0)


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB colours, one per class index; row i is the same for every n, run and machine.

    Hue steps by the golden ratio; saturation and value cycle through three levels
    so that classes sharing a hue band still differ in brightness or vividness.
    """
    if n < 0:
        raise ValueError(f"palette size must be >= 0, got {n}")
    i = np.arange(n)
    hue = (i * _GOLDEN) % 1.0
    sat = np.array(_SATURATIONS)[(i // len(_VALUES)) % len(_SATURATIONS)]
    val = np.array(_VALUES)[i % len(_VALUES)]
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6.0) % 6.0  # (n, 3) for R, G, B
    rgb = val[:, None] * (1.0 - sat[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return np.rint(rgb * 255.0).astype(np.uint8)


def text_style(shape: tuple[int, ...]) -> tuple[float, int]:
    """Font scale and stroke thickness proportional to the image, readable from 480p to 1080p and up."""
    scale = max(0.4, min(shape[0], shape[1]) / 900.0)
    return scale, max(1, round(scale * 1.6))


def _label_size(text: str, style: tuple[float, int]) -> tuple[int, int, int]:
    """(box width, box height, padding) of ``text`` drawn by ``_put_label``."""
    (tw, th), baseline = cv2.getTextSize(text, FONT, *style)
    pad = max(2, th // 4)
    return tw + 2 * pad, th + baseline + 2 * pad, pad


def text_colour_on(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black text on light fills, white on dark ones (ITU-R BT.601 luma)."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma > 140 else WHITE


def _put_label(img: np.ndarray, text: str, x: int, y: int, fill: tuple[int, int, int],
               style: tuple[float, int]) -> None:
    """Draw ``text`` on a filled box with top-left (x, y), shifted so the whole box stays in ``img``."""
    bw, bh, pad = _label_size(text, style)
    x = int(min(max(x, 0), max(img.shape[1] - bw, 0)))
    y = int(min(max(y, 0), max(img.shape[0] - bh, 0)))
    cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), fill, cv2.FILLED)
    th = cv2.getTextSize(text, FONT, *style)[0][1]
    cv2.putText(img, text, (x + pad, y + pad + th), FONT, style[0], text_colour_on(fill), style[1], cv2.LINE_AA)


Rect = tuple[int, int, int, int]  # x, y, width, height


def _inside(x: int, y: int, bw: int, bh: int, shape: tuple[int, ...]) -> Rect:
    """The label box at (x, y) shifted into an image of ``shape``, as ``_put_label`` shifts it."""
    return int(min(max(x, 0), max(shape[1] - bw, 0))), int(min(max(y, 0), max(shape[0] - bh, 0))), bw, bh


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _detection_texts(detections: Detections) -> list[str]:
    return [f"{name} {float(score):.2f}" for name, score in zip(detections.names(), detections.scores)]


def place_labels(detections: Detections, shape: tuple[int, ...], taken: Sequence[Rect] = ()) -> list[Rect | None]:
    """Where each detection's label box goes, (x, y, width, height) in an image of ``shape``; None: no room.

    Best score first, each label takes the first free spot of: above its box, inside its
    top edge, below it. A spot is free when it overlaps no label placed before and
    nothing in ``taken``, so labels never pile up; a crowded box keeps its outline only.
    """
    style = text_style(shape)
    placed, spots = list(taken), [None] * len(detections)
    for k, text in sorted(enumerate(_detection_texts(detections)), key=lambda kt: -detections.scores[kt[0]]):
        x1, y1, _, y2 = (int(round(float(v))) for v in detections.boxes[k])
        bw, bh, _ = _label_size(text, style)
        tops = [y for y, fits in ((y1 - bh, y1 >= bh), (y1, True), (y2, y2 + bh <= shape[0])) if fits]
        free = (r for r in (_inside(x1, y, bw, bh, shape) for y in tops) if not any(_overlap(r, p) for p in placed))
        spots[k] = next(free, None)
        if spots[k] is not None:
            placed.append(spots[k])
    return spots


def draw_order(detections: Detections) -> np.ndarray:
    """Indices worst score first, so that where boxes overlap the best is drawn on top (overlays, annotations)."""
    return np.argsort(-detections.scores, kind="stable")[::-1]


def _free_corner(x: int, bw: int, bh: int, shape: tuple[int, ...], taken: Sequence[Rect]) -> Rect:
    """The label box at the top of column ``x`` (shifted inside), moved down below any of ``taken`` it overlaps."""
    spot = _inside(x, 0, bw, bh, shape)
    while (hit := next((r for r in taken if _overlap(spot, r)), None)) is not None and hit[1] + hit[3] + bh <= shape[0]:
        spot = (spot[0], hit[1] + hit[3], bw, bh)
    return spot


def draw_detections(image: np.ndarray, detections: Detections, count: bool = True,
                    taken: list[Rect] | None = None) -> np.ndarray:
    """Class-coloured boxes, best drawn last (on top); "name score" labels on their colour that never overlap
    (``place_labels``), and, if ``count``, how many there are ("7 detections") in the top-right corner.

    ``taken``: text boxes already on the picture (a composite's lower layers, its caption). The labels keep
    out of them, the count moves down below them, and what this drawing wrote is added to the list."""
    out = check_rgb_image(image).copy()
    taken = [] if taken is None else taken
    colours = [tuple(int(c) for c in colour) for colour in palette(len(detections.class_names))]
    style = text_style(out.shape)
    thickness = max(2, round(min(out.shape[:2]) / 240))
    n = len(detections)
    total = f"{n} detection{'' if n == 1 else 's'}"
    corner = _free_corner(out.shape[1], *_label_size(total, style)[:2], out.shape, taken) if count else None
    spots = place_labels(detections, out.shape, [*taken, *([corner] if corner else [])])
    taken += [spot for spot in (corner, *spots) if spot is not None]
    order = draw_order(detections)
    for k in order:
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections.boxes[k])
        cv2.rectangle(out, (x1, y1), (x2, y2), colours[detections.labels[k]], thickness)
    texts = _detection_texts(detections)
    for k in order:
        if spots[k] is not None:
            _put_label(out, texts[k], spots[k][0], spots[k][1], colours[detections.labels[k]], style)
    if corner is not None:
        _put_label(out, total, corner[0], corner[1], DARK, style)
    return out


def _label_anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """(y, x) in ``mask`` farthest from its largest region's border, or None if that region is tiny.

    Unlike the centroid, this point always lies inside the region, even for rings and L shapes.
    """
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < _MIN_REGION * mask.size:
        return None
    region = cv2.copyMakeBorder((components == largest).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(region, cv2.DIST_L2, 3)[1:-1, 1:-1]  # image edges count as region border
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


@dataclass(frozen=True)
class Legend:
    """The classes a segmentation legend lists, largest area first, as (class index, name); ``more``: left out."""

    entries: tuple[tuple[int, str], ...]
    more: int = 0


def legend(labels: SemanticLabels, background: int | None = 0, rows: int | None = None) -> Legend:
    """Every class present in ``labels`` but ``background`` (it is not painted), by pixel count, largest first.

    With ``rows``, what fits that many rows: the largest ``rows - 1`` and a count of the rest.
    """
    counts = np.bincount(labels.labels.ravel(), minlength=len(labels.class_names))
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] and c != background]
    shown = present if rows is None or len(present) <= rows else present[: max(rows - 1, 0)]
    return Legend(tuple((c, labels.class_names[c]) for c in shown), len(present) - len(shown))


def _draw_legend(out: np.ndarray, key: Legend, colours: np.ndarray, style: tuple[float, int]) -> Rect | None:
    """``key`` in the top-left corner: a swatch of each class's colour and its name, then "+N more"; its box."""
    rows = [(tuple(int(v) for v in colours[c]), name) for c, name in key.entries]
    rows += [(None, f"+{key.more} more")] if key.more else []
    if not rows:
        return None
    (_, th), baseline = cv2.getTextSize("Ag", FONT, *style)
    pad = max(2, th // 4)
    row_h = th + baseline + 2 * pad
    width = 3 * pad + th + max(cv2.getTextSize(text, FONT, *style)[0][0] for _, text in rows)
    cv2.rectangle(out, (0, 0), (width - 1, row_h * len(rows) - 1), DARK, cv2.FILLED)
    for i, (colour, text) in enumerate(rows):
        y = i * row_h + pad
        if colour is not None:
            cv2.rectangle(out, (pad, y), (pad + th - 1, y + th - 1), colour, cv2.FILLED)
        cv2.putText(out, text, (2 * pad + th, y + th), FONT, style[0], WHITE, style[1], cv2.LINE_AA)
    return 0, 0, width, row_h * len(rows)


def draw_segmentation(image: np.ndarray, labels: SemanticLabels, alpha: float = 0.5,
                      background: int | None = 0, show_legend: bool = True,
                      taken: list[Rect] | None = None) -> np.ndarray:
    """Blend each pixel with its class colour: ``(1 - alpha) * pixel + alpha * colour``, rounded to nearest.

    Pixels of class ``background`` keep their value (None paints every class).
    With ``show_legend``, the top-left corner lists every class present with its
    colour, as many as fit two thirds of the height (``legend``). Each class present
    is also named inside its largest region, unless that is below 0.5% of the image
    or the name would cover other text: the legend, or ``taken`` (text boxes already
    on the picture, such as a composite's caption), to which this drawing's own are added.
    """
    out = check_rgb_image(image).copy()
    taken = [] if taken is None else taken
    lab = labels.labels
    if lab.shape != out.shape[:2]:
        raise ValueError(f"label map {lab.shape} does not match image {out.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n = len(labels.class_names)
    if int(lab.max()) >= n:
        raise ValueError(f"label {int(lab.max())} is out of range for {n} class names")
    colours = palette(n)
    colour = np.take(colours, lab, axis=0)  # (H, W, 3) uint8
    blend = cv2.addWeighted(out, 1.0 - alpha, colour, alpha, 0.0)  # float32 inside: within 1 of exact
    if background is None:
        out = blend
    else:
        np.copyto(out, blend, where=(lab != background)[..., None])

    h, w = lab.shape
    style = text_style(out.shape)
    if show_legend:
        row_h = _label_size("Ag", style)[1]
        box = _draw_legend(out, legend(labels, background, rows=max(1, 2 * h // 3 // row_h)), colours, style)
        taken += [box] if box else []
    step = max(1.0, max(h, w) / _LABEL_GRID)
    small = cv2.resize(lab, (max(1, round(w / step)), max(1, round(h / step))), interpolation=cv2.INTER_NEAREST)
    for c in np.flatnonzero(np.bincount(small.ravel(), minlength=n)):
        if c == background:
            continue
        anchor = _label_anchor((small == c).astype(np.uint8))
        if anchor is None:
            continue
        text = labels.class_names[c]
        bw, bh, _ = _label_size(text, style)
        cy, cx = (anchor[0] + 0.5) * h / small.shape[0], (anchor[1] + 0.5) * w / small.shape[1]
        spot = _inside(round(cx - bw / 2), round(cy - bh / 2), bw, bh, out.shape)
        if not any(_overlap(spot, r) for r in taken):
            _put_label(out, text, spot[0], spot[1], DARK, style)
            taken.append(spot)
    return out


def add_banner(image: np.ndarray, text: str) -> np.ndarray:
    """White text on a red strip added above the image, for outputs nobody should trust (e.g. random weights).

    The output is taller than ``image`` by the strip; the picture itself is left whole.
    """
    image = check_rgb_image(image)
    scale, thickness = text_style(image.shape)
    (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(3, th // 2)
    if tw > image.shape[1] - 2 * pad:  # shrink long warnings rather than cut them off
        scale *= (image.shape[1] - 2 * pad) / tw
        (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    strip = np.full((th + baseline + 2 * pad, image.shape[1], 3), _BANNER_RED, np.uint8)
    cv2.putText(strip, text, (pad, pad + th), FONT, scale, WHITE, thickness, cv2.LINE_AA)
    return np.vstack([strip, image])


def caption_box(shape: tuple[int, ...], text: str) -> Rect:
    """Where ``caption`` writes ``text`` on an image of ``shape``: the bottom-left corner."""
    return _inside(0, shape[0], *_label_size(text, text_style(shape))[:2], shape)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``text`` on a dark box in the bottom-left corner (``caption_box``): which heads a picture shows."""
    out = check_rgb_image(image).copy()
    x, y, _, _ = caption_box(out.shape, text)
    _put_label(out, text, x, y, DARK, text_style(out.shape))
    return out


def _colour_wheel() -> np.ndarray:
    """(55, 3) the Middlebury flow colour wheel (Baker et al., 2007): red, yellow, green, cyan, blue, magenta."""
    ramps = ((15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True), (11, 2, 1, False), (13, 2, 0, True),
             (6, 0, 2, False))  # (entries, channel held at 255, channel that changes, rising)
    rows = []
    for n, full, changing, rising in ramps:
        for i in range(n):
            row = [0, 0, 0]
            row[full] = 255
            row[changing] = 255 * i // n if rising else 255 - 255 * i // n
            rows.append(row)
    return np.array(rows, dtype=np.float64)


_WHEEL = _colour_wheel()


def flow_to_rgb(flow: np.ndarray, min_motion: float = 0.0, max_motion: float | None = None) -> np.ndarray:
    """Middlebury colour coding of (H, W, 2) flow as RGB uint8: hue = direction, saturation = speed.

    Speeds below ``min_motion`` pixels are white (no motion); speeds are divided by
    ``max_motion``, or by the largest speed in the frame when None, so full colour
    means the fastest motion and the legend says how fast that is.
    """
    u, v = (np.nan_to_num(flow[..., i].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) for i in (0, 1))
    speed = np.hypot(u, v)
    still = speed < min_motion
    u, v, speed = np.where(still, 0.0, u), np.where(still, 0.0, v), np.where(still, 0.0, speed)
    scale = max_motion if max_motion is not None else (float(speed.max()) or 1.0)
    u, v, speed = u / (scale + 1e-5), v / (scale + 1e-5), speed / (scale + 1e-5)
    angle = np.arctan2(-v, -u) / np.pi
    position = (angle + 1) / 2 * (len(_WHEEL) - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % len(_WHEEL)
    f = (position - k0)[..., None]
    colour = ((1 - f) * _WHEEL[k0] + f * _WHEEL[k1]) / 255  # (H, W, 3)
    fast = (speed > 1)[..., None]
    colour = np.where(fast, colour * 0.75, 1 - speed[..., None] * (1 - colour))
    return np.floor(255 * colour).astype(np.uint8)


def draw_flow_panel(image: np.ndarray, result: FlowField) -> np.ndarray:
    """The flow as its own picture at the image's size, with a legend: the colour wheel and the speed of
    full colour; a frame without flow says why."""
    h, w = check_rgb_image(image).shape[:2]
    style = text_style((h, w))
    if result.flow is None:
        out = np.full((h, w, 3), DARK, np.uint8)
        _put_label(out, f"no flow: {result.reason}", 0, h // 2, DARK, style)
        return out
    flow = result.flow
    if flow.shape[:2] != (h, w):  # another size: resample, and scale the vectors into this image's pixels
        scale = np.array([w / flow.shape[1], h / flow.shape[0]], np.float32)
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * scale
    speed = np.hypot(flow[..., 0].astype(np.float64), flow[..., 1])  # float32 overflows for vectors past 2.4e38
    fastest = float(speed[np.isfinite(speed)].max()) if np.isfinite(speed).any() else 0.0
    out = flow_to_rgb(flow, min_motion=min(1.0, fastest / 10))
    side = min(h, w) // 4 if min(h, w) < 96 else max(24, min(h, w) // 6)  # the legend: each direction's colour
    if side >= 8:
        ys, xs = np.mgrid[-1:1:side * 1j, -1:1:side * 1j]
        legend = flow_to_rgb(np.stack([xs, ys], -1).astype(np.float32), max_motion=1.0)
        legend[np.hypot(xs, ys) > 1] = DARK
        out[h - side:, w - side:] = legend
    _put_label(out, f"max {fastest:.1f} px", 0, 0, DARK, style)
    return out
