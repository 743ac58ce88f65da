"""Depth as a picture: INFERNO colours, near = bright, and a colour bar that says what they mean.

The bar names its near and far ends with their values, the depth's kind and
unit, and how the range was chosen. Its numbers are the range the colours were
made with: ``depth_bar`` decides that range once and both the colours and the
text read it, so the two cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .drawing import DARK, FONT, WHITE, text_style
from .preprocess import check_rgb_image
from .results import DepthMap, DepthMeaning

_DEPTH_FLOOR = 40  # farthest valid depth uses colormap index 40, so only invalid pixels are black
_SAMPLES = 100_000  # ~100k values pin the percentiles down; 3x faster at 1080p than all of them
_BAR_SHARE = 0.10  # the bar's box covers at most this fraction of the picture (unless the text is at its floor)
_MIN_SCALE = 0.3  # smallest font scale the bar shrinks to for its share: cap height 8 px, still legible


@dataclass(frozen=True)
class DepthBar:
    """The colour range of one depth picture, [vmin, vmax], and everything its bar says about it."""

    vmin: float
    vmax: float
    meaning: DepthMeaning
    chosen: str  # how the range was chosen, as the bar says it

    @property
    def near(self) -> float:
        """The value drawn brightest: the smallest, or the largest for inverse depth (larger = nearer)."""
        return self.vmax if self.meaning.kind == "inverse" else self.vmin

    @property
    def far(self) -> float:
        return self.vmin if self.meaning.kind == "inverse" else self.vmax

    def _value(self, value: float) -> str:
        return f"{value:.3g} {self.meaning.unit}" if self.meaning.unit else f"{value:.3g}"

    @property
    def texts(self) -> tuple[str, str, str, str]:
        """What the bar shows: the near end's label, the far end's, the kind and unit, how the range was chosen."""
        return (f"near {self._value(self.near)}", f"far {self._value(self.far)}", self.meaning.describe(),
                f"range: {self.chosen}")


def depth_bar(depth: DepthMap, vmin: float | None = None, vmax: float | None = None) -> DepthBar:
    """The range ``draw_depth`` colours with: [vmin, vmax] where given, else the 2nd and 98th percentiles of
    the valid (finite, > 0) values, so a few outliers do not wash out the scene."""
    given = [v for v in (vmin, vmax) if v is not None]
    if not np.isfinite(given).all() or (len(given) == 2 and not vmax > vmin):
        raise ValueError(f"depth range needs finite vmin < vmax, got vmin={vmin}, vmax={vmax}")
    chosen = "fixed"
    if vmin is None or vmax is None:
        d = depth.depth
        values = d[np.isfinite(d) & (d > 0)]
        values = values[:: max(1, values.size // _SAMPLES)]
        lo, hi = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
        chosen = {0: "2nd-98th percentile", 1: "2nd percentile to fixed" if vmax is not None else
                  "fixed to 98th percentile"}[len(given)]
        vmin = float(lo) if vmin is None else vmin
        vmax = float(hi) if vmax is None else vmax
        # a flat wall, or one given bound beyond the data: still a usable span (relative: 1e-6 vanishes next to 1e30)
        vmax = max(vmax, vmin + max(1e-6, abs(vmin) * 1e-6))
    return DepthBar(float(vmin), float(vmax), depth.meaning, chosen)


def draw_depth(depth: DepthMap, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """INFERNO depth image, near = bright, invalid (non-finite or <= 0) = black, with its colour bar
    (``depth_bar``) in the bottom-right corner."""
    bar = depth_bar(depth, vmin, vmax)
    d = depth.depth
    valid = np.isfinite(d) & (d > 0)
    # float64: the span of float32 values near their largest (3.4e38) does not fit a float32
    t = np.clip((np.where(valid, d, bar.far).astype(np.float64) - bar.vmin) / (bar.vmax - bar.vmin), 0.0, 1.0)
    near = t if depth.kind == "inverse" else 1.0 - t  # (H, W), 1 = nearest
    index = np.rint(_DEPTH_FLOOR + (255 - _DEPTH_FLOOR) * near).astype(np.uint8)
    out = cv2.cvtColor(cv2.applyColorMap(index, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    out[~valid] = 0
    _draw_bar(out, bar)
    return out


def _draw_bar(out: np.ndarray, bar: DepthBar) -> None:
    """The ramp from near (left) to far with both ends' labels under it, then the kind and how the range was
    chosen, on a dark box in the bottom-right corner. Its text is the image's (``text_style``) unless the box
    would then cover more than ``_BAR_SHARE`` of the picture (small images: smaller text, down to
    ``_MIN_SCALE``) or be wider than the picture (narrow ones: smaller still)."""
    h, w = out.shape[:2]
    near_text, far_text, kind_text, range_text = bar.texts
    scale, thickness = text_style(out.shape)
    for attempt in range(3):  # text size is about linear in the scale: a correction or two fits
        sizes = [cv2.getTextSize(text, FONT, scale, thickness)[0] for text in bar.texts]
        th, pad = sizes[0][1], max(2, sizes[0][1] // 2)
        ramp_w = max(w // 4, sizes[0][0] + sizes[1][0] + 2 * pad, sizes[2][0], sizes[3][0])
        box_w, box_h = ramp_w + 2 * pad, 2 * pad + th + 3 * (th + 2 * pad)
        share = scale * min(1.0, math.sqrt(_BAR_SHARE * h * w / (box_w * box_h)))
        fitted = max(0.2, min(max(share, min(scale, _MIN_SCALE)), scale * w / box_w))
        if fitted >= scale or attempt == 2:  # the sizes measured are those of the scale drawn
            break
        scale = fitted
    line = th + 2 * pad  # one text row, its descenders included
    x0, y0 = max(0, w - ramp_w - 2 * pad), max(0, h - (2 * pad + th + 3 * line))
    cv2.rectangle(out, (x0, y0), (w - 1, h - 1), DARK, cv2.FILLED)
    ramp = np.linspace(255, _DEPTH_FLOOR, ramp_w).round().astype(np.uint8)[None, :]  # near (left) -> far
    colours = cv2.cvtColor(cv2.applyColorMap(np.repeat(ramp, th, axis=0), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    bx, by = x0 + pad, y0 + pad
    colours = colours[: max(0, h - by), : max(0, w - bx)]  # tiny images: keep what fits
    out[by: by + colours.shape[0], bx: bx + colours.shape[1]] = colours
    rows = ((near_text, bx), (far_text, bx + ramp_w - sizes[1][0])), ((kind_text, bx),), ((range_text, bx),)
    for i, row in enumerate(rows):
        for text, x in row:
            cv2.putText(out, text, (x, by + th + (i + 1) * line), FONT, scale, WHITE, thickness, cv2.LINE_AA)


def draw_depth_panel(image: np.ndarray, result: DepthMap) -> np.ndarray:
    """Depth as its own picture at the image's size (the camera image's content is not used)."""
    h, w = check_rgb_image(image).shape[:2]
    if result.depth.shape != (h, w):
        result = DepthMap(cv2.resize(result.depth, (w, h), interpolation=cv2.INTER_NEAREST), result.unit,
                          result.kind)
    return draw_depth(result)
