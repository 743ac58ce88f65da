"""Drawing one result: boxes, label maps and depth as RGB pictures, and the banner for untrusted output.

Every function takes RGB uint8 (H, W, 3) images in the original frame and
returns a new image; inputs are never modified. Colours are a fixed function of
the class index, so a class keeps its colour across frames, runs and machines.
Text size follows the image size so labels read the same at 480p and 1080p.
Which function draws which result, and how a frame's results are put together,
is decided by the result-kind table (``result_kinds``) and ``overlays``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .preprocess import check_rgb_image
from .results import DepthMap, Detections, FlowField, SemanticLabels

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN = 0.618033988749895  # hue step: consecutive classes land far apart on the colour wheel
_SATURATIONS = (1.0, 0.75, 0.5)
_VALUES = (1.0, 0.8, 0.6)
_LABEL_GRID = 160  # long side of the downscaled mask used to place segmentation labels
_MIN_REGION = 0.005  # regions smaller than this fraction of the image get no name
_DEPTH_FLOOR = 40  # farthest valid depth uses colormap index 40, so only invalid pixels are black
_DARK = (32, 32, 32)
_WHITE = (255, 255, 255)
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


def _text_style(shape: tuple[int, ...]) -> tuple[float, int]:
    """Font scale and stroke thickness proportional to the image, readable from 480p to 1080p and up."""
    scale = max(0.4, min(shape[0], shape[1]) / 900.0)
    return scale, max(1, round(scale * 1.6))


def _label_size(text: str, style: tuple[float, int]) -> tuple[int, int, int]:
    """(box width, box height, padding) of ``text`` drawn by ``_put_label``."""
    (tw, th), baseline = cv2.getTextSize(text, _FONT, *style)
    pad = max(2, th // 4)
    return tw + 2 * pad, th + baseline + 2 * pad, pad


def _contrast(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black text on light fills, white on dark ones (ITU-R BT.601 luma)."""
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma > 140 else _WHITE


def _put_label(img: np.ndarray, text: str, x: int, y: int, fill: tuple[int, int, int],
               style: tuple[float, int]) -> None:
    """Draw ``text`` on a filled box with top-left (x, y), shifted so the whole box stays in ``img``."""
    bw, bh, pad = _label_size(text, style)
    x = int(min(max(x, 0), max(img.shape[1] - bw, 0)))
    y = int(min(max(y, 0), max(img.shape[0] - bh, 0)))
    cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), fill, cv2.FILLED)
    th = cv2.getTextSize(text, _FONT, *style)[0][1]
    cv2.putText(img, text, (x + pad, y + pad + th), _FONT, style[0], _contrast(fill), style[1], cv2.LINE_AA)


def draw_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """Class-coloured boxes, each labelled "name score" on a fill of its colour; best boxes drawn last (on top)."""
    out = check_rgb_image(image).copy()
    colours = palette(len(detections.class_names))
    style = _text_style(out.shape)
    thickness = max(2, round(min(out.shape[:2]) / 240))
    names = detections.names()
    for k in reversed(range(len(detections))):
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections.boxes[k])
        colour = tuple(int(c) for c in colours[detections.labels[k]])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{names[k]} {float(detections.scores[k]):.2f}"
        bh = _label_size(text, style)[1]
        top = y1 - bh if y1 - bh >= 0 else y1  # above the box, or inside it when the box touches the top
        _put_label(out, text, x1, top, colour, style)
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


def draw_segmentation(image: np.ndarray, labels: SemanticLabels, alpha: float = 0.5,
                      background: int | None = 0) -> np.ndarray:
    """Blend each pixel with its class colour: ``(1 - alpha) * pixel + alpha * colour``, rounded to nearest.

    Pixels of class ``background`` keep their value (None paints every class).
    Each class present gets its name inside its largest region, unless that is
    below 0.5% of the image.
    """
    out = check_rgb_image(image).copy()
    lab = labels.labels
    if lab.shape != out.shape[:2]:
        raise ValueError(f"label map {lab.shape} does not match image {out.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n = len(labels.class_names)
    if int(lab.max()) >= n:
        raise ValueError(f"label {int(lab.max())} is out of range for {n} class names")
    colour = np.take(palette(n), lab, axis=0)  # (H, W, 3) uint8
    blend = cv2.addWeighted(out, 1.0 - alpha, colour, alpha, 0.0)  # float32 inside: within 1 of exact
    if background is None:
        out = blend
    else:
        np.copyto(out, blend, where=(lab != background)[..., None])

    h, w = lab.shape
    step = max(1.0, max(h, w) / _LABEL_GRID)
    small = cv2.resize(lab, (max(1, round(w / step)), max(1, round(h / step))), interpolation=cv2.INTER_NEAREST)
    style = _text_style(out.shape)
    for c in np.flatnonzero(np.bincount(small.ravel(), minlength=n)):
        if c == background:
            continue
        anchor = _label_anchor((small == c).astype(np.uint8))
        if anchor is None:
            continue
        text = labels.class_names[c]
        bw, bh, _ = _label_size(text, style)
        cy, cx = (anchor[0] + 0.5) * h / small.shape[0], (anchor[1] + 0.5) * w / small.shape[1]
        _put_label(out, text, round(cx - bw / 2), round(cy - bh / 2), _DARK, style)
    return out


def _format_depth(value: float, unit: str) -> str:
    return f"{value:.3g} {unit}" if unit else f"{value:.3g}"


def draw_depth(depth: DepthMap, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """INFERNO depth image, near = bright, invalid (non-finite or <= 0) = black, with its range stated.

    The range is [vmin, vmax] where given, else the 2nd-98th percentile of the
    valid values so a few outliers do not wash out the scene. A colour bar in the
    bottom-right corner shows the near and far ends with their values.
    """
    d = depth.depth
    valid = np.isfinite(d) & (d > 0)
    if vmin is not None and vmax is not None and not vmax > vmin:  # also rejects NaN
        raise ValueError(f"depth range needs vmin < vmax, got vmin={vmin}, vmax={vmax}")
    if vmin is None or vmax is None:
        values = d[valid]
        values = values[:: max(1, values.size // 100_000)]  # ~100k samples pin percentiles down; 3x faster at 1080p
        lo, hi = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
        vmin = float(lo) if vmin is None else vmin
        vmax = float(hi) if vmax is None else vmax
        vmax = max(vmax, vmin + 1e-6)  # a flat wall, or one given bound beyond the data: still a usable span
    near = 1.0 - np.clip((np.where(valid, d, vmax) - vmin) / (vmax - vmin), 0.0, 1.0)  # (H, W) 1 = nearest
    index = np.rint(_DEPTH_FLOOR + (255 - _DEPTH_FLOOR) * near).astype(np.uint8)
    out = cv2.cvtColor(cv2.applyColorMap(index, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    out[~valid] = 0

    style = _text_style(out.shape)
    near_text, far_text = _format_depth(vmin, depth.unit), _format_depth(vmax, depth.unit)
    (nw, th), _ = cv2.getTextSize(near_text, _FONT, *style)
    fw = cv2.getTextSize(far_text, _FONT, *style)[0][0]
    pad = max(2, th // 2)
    bar_w = max(out.shape[1] // 6, nw + fw + 2 * pad)
    x0 = max(0, out.shape[1] - bar_w - 2 * pad)
    y0 = max(0, out.shape[0] - 2 * th - 5 * pad)
    cv2.rectangle(out, (x0, y0), (out.shape[1] - 1, out.shape[0] - 1), _DARK, cv2.FILLED)
    ramp = np.linspace(255, _DEPTH_FLOOR, bar_w).round().astype(np.uint8)[None, :]  # near (left) -> far
    bar = cv2.cvtColor(cv2.applyColorMap(np.repeat(ramp, th, axis=0), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    bx, by = x0 + pad, y0 + pad
    bar = bar[: max(0, out.shape[0] - by), : max(0, out.shape[1] - bx)]  # tiny images: keep what fits
    out[by: by + bar.shape[0], bx: bx + bar.shape[1]] = bar
    ty = by + 2 * th + 2 * pad
    cv2.putText(out, near_text, (bx, ty), _FONT, style[0], _WHITE, style[1], cv2.LINE_AA)
    cv2.putText(out, far_text, (bx + bar_w - fw, ty), _FONT, style[0], _WHITE, style[1], cv2.LINE_AA)
    return out


def add_banner(image: np.ndarray, text: str) -> np.ndarray:
    """White text on a red strip across the top, for outputs nobody should trust (e.g. random weights)."""
    out = check_rgb_image(image).copy()
    scale, thickness = _text_style(out.shape)
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(3, th // 2)
    if tw > out.shape[1] - 2 * pad:  # shrink long warnings rather than cut them off
        scale *= (out.shape[1] - 2 * pad) / tw
        (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    cv2.rectangle(out, (0, 0), (out.shape[1] - 1, th + baseline + 2 * pad - 1), _BANNER_RED, cv2.FILLED)
    cv2.putText(out, text, (pad, pad + th), _FONT, scale, _WHITE, thickness, cv2.LINE_AA)
    return out


def draw_depth_panel(image: np.ndarray, result: DepthMap) -> np.ndarray:
    """Depth as its own picture at the image's size (the camera image's content is not used)."""
    h, w = check_rgb_image(image).shape[:2]
    if result.depth.shape != (h, w):
        result = DepthMap(cv2.resize(result.depth, (w, h), interpolation=cv2.INTER_NEAREST), result.unit)
    return draw_depth(result)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``text`` on a dark box in the bottom-left corner: which heads a picture shows."""
    out = check_rgb_image(image).copy()
    _put_label(out, text, 0, out.shape[0], _DARK, _text_style(out.shape))
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
    style = _text_style((h, w))
    if result.flow is None:
        out = np.full((h, w, 3), _DARK, np.uint8)
        _put_label(out, f"no flow: {result.reason}", 0, h // 2, _DARK, style)
        return out
    flow = result.flow
    if flow.shape[:2] != (h, w):  # another size: resample, and scale the vectors into this image's pixels
        scale = np.array([w / flow.shape[1], h / flow.shape[0]], np.float32)
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * scale
    speed = np.hypot(flow[..., 0], flow[..., 1])
    fastest = float(speed[np.isfinite(speed)].max()) if np.isfinite(speed).any() else 0.0
    out = flow_to_rgb(flow, min_motion=min(1.0, fastest / 10))
    side = min(h, w) // 4 if min(h, w) < 96 else max(24, min(h, w) // 6)  # the legend: each direction's colour
    if side >= 8:
        ys, xs = np.mgrid[-1:1:side * 1j, -1:1:side * 1j]
        legend = flow_to_rgb(np.stack([xs, ys], -1).astype(np.float32), max_motion=1.0)
        legend[np.hypot(xs, ys) > 1] = _DARK
        out[h - side:, w - side:] = legend
    _put_label(out, f"max {fastest:.1f} px", 0, 0, _DARK, style)
    return out
