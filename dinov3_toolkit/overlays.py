"""A frame's overlays: each head's own picture, and one composite of all heads.

Which result is drawn how comes from the result-kind table (``result_kinds``):
kinds with a ``layer`` are painted over the camera image, lowest layer first;
the others become panels beside it. A head with its own result type gets an
overlay by registering a kind with a ``draw`` function::

    result_kinds.register(ResultKind(MyResult, task="mine", draw=draw_mine))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import result_kinds
from .drawing import add_banner, caption, caption_box
from .preprocess import check_rgb_image


def composite(image: np.ndarray, results: Mapping[str, object], notice: str | None = None) -> np.ndarray:
    """One picture for all heads: layered results over the camera image, other results as panels to its right.

    The output is H x W * (1 + number of panels); each part is captioned with its
    head names, and ``notice`` becomes a red banner added above it (the output is then
    taller: nothing of the picture is hidden). A result of a type no
    kind draws (a plug-in's own, not registered) gets no panel: the others are still drawn.
    The layers' text is placed in one pass, caption first, then lowest layer first: each
    label keeps out of the boxes of those before it (the segmentation legend and names,
    then the detection count and labels), so no text covers another.
    """
    base = check_rgb_image(image).copy()
    layers = {name: kind.layer for name, result in results.items()
              if (kind := result_kinds.kind_of(result)) is not None and kind.layer is not None}
    order = sorted(layers, key=layers.get)  # stable: heads of one layer in their given order
    heads = " + ".join(order)
    taken = [caption_box(base.shape, heads)] if layers else []
    for name in order:
        base = result_kinds.draw(base, results[name], taken)
    if layers:
        base = caption(base, heads)
    panels = []
    for name, result in results.items():
        if name in layers or not result_kinds.drawable(result):
            continue
        panel = result_kinds.draw(image, result)
        if panel.shape != base.shape:
            raise ValueError(f"overlay of head {name!r} is {panel.shape}, expected the image's {base.shape}")
        panels.append(caption(panel, name))
    out = np.hstack([base, *panels]) if panels else base
    return add_banner(out, notice) if notice else out


@dataclass
class FrameOverlays:
    """The overlays of one frame that somebody asked for: the combined picture and heads' own, by head name."""

    combined: np.ndarray | None = None
    heads: dict[str, np.ndarray] = field(default_factory=dict)


def draw_overlays(image: np.ndarray, results: Mapping[str, object], *, heads: Iterable[str] = (),
                  combined: bool = False, notice: str | None = None) -> FrameOverlays:
    """Draw only what is asked for (overlays cost time): ``heads``' own overlays, and the composite if
    ``combined``; ``notice`` is a banner above every one. Drawn before any message is built, and passed in.
    A head whose result no kind draws has no overlay of its own."""
    own = {}
    for name in heads:
        if not result_kinds.drawable(results[name]):
            continue
        drawn = result_kinds.draw(image, results[name])
        own[name] = add_banner(drawn, notice) if notice else drawn
    return FrameOverlays(composite(image, results, notice=notice) if combined else None, own)
