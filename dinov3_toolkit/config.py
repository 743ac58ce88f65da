"""The engine's defaults, defined once.

`Engine.create`, the feature extractor, the preprocessor, the `dinov3` command and the node's
parameter table (and so `config/params.yaml`) all read them; `test/test_config.py` keeps every
one of those equal to this object.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineDefaults:
    backbone: str = "vits16plus"  # the published detection and segmentation heads were trained on its features
    device: str = "auto"  # the first GPU where CUDA works, else the CPU, silently ('cuda' warns when it falls back)
    precision: str = "fp32"
    size: int = 640  # network input side in pixels: the heads' training resolution
    resize_mode: str = "stretch"  # to size x size, as the heads were trained
    stream_gap_s: float = 1.0  # a stream silent for longer starts anew: flow across the gap would mislead


DEFAULTS = EngineDefaults()
