"""The node's parameters: one table, read by the node, checked against ``config/params.yaml`` by the tests.

Kept free of ROS imports so the table itself is tested everywhere; the node
turns each entry into a ``ParameterDescriptor`` (description, range, choices).
Heads add their own parameters, named ``<head>.<param>``, from their
``head.yaml`` once they are loaded (see ``dinov3_toolkit.heads.manifest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dinov3_toolkit.backbone import get_backbone_spec
from dinov3_toolkit.bounds import BOUNDS, Bound
from dinov3_toolkit.config import DEFAULTS
from dinov3_toolkit.device import PRECISIONS, check_device_name
from dinov3_toolkit.heads.manifest import parse_head_names
from dinov3_toolkit.preprocess import RESIZE_MODES

from .messages import CLASS_ID_MODES

RELIABILITIES = ("best_effort", "reliable", "system_default")


@dataclass(frozen=True)
class NodeParam:
    """A node parameter; ``live`` ones may change while the node runs, the others at the next configure."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    bound: Bound | None = None  # numeric parameters: from the one table the `dinov3` options use too
    live: bool = False

    @property
    def min(self) -> float | None:
        return None if self.bound is None else self.bound.low

    @property
    def max(self) -> float | None:
        return None if self.bound is None else self.bound.high


NODE_PARAMS = (
    NodeParam("backbone", DEFAULTS.backbone, "DINOv3 backbone variant; `dinov3 backbones` lists them"),
    NodeParam("backbone_weights", "", "weights file or folder; empty: searched (see weights/README.md)"),
    NodeParam("device", DEFAULTS.device, "auto (a GPU where CUDA works, else the CPU), cpu, cuda or cuda:N; cuda on "
              "a machine without CUDA falls back to the CPU with a warning"),
    NodeParam("precision", DEFAULTS.precision, "compute precision (autocast); RoPE and norms stay fp32",
              choices=tuple(PRECISIONS)),
    NodeParam("image_size", DEFAULTS.size,
              "network input side in pixels, a multiple of 16 (the heads were trained at 640)", bound=BOUNDS["size"]),
    NodeParam("resize_mode", DEFAULTS.resize_mode, "stretch to image_size squared (as trained), or keep_aspect",
              choices=RESIZE_MODES),
    NodeParam("heads", [], "heads to run, [detection, depth] or detection,depth; empty: every head found"),
    NodeParam("head_dirs", [], "extra folders holding head_* folders (or a head folder itself)"),
    NodeParam("allow_backbone_mismatch", False, "run heads whose weights were trained on another backbone's "
              "features (refused by default: their results would be poor)"),
    NodeParam("random_weights", False, "run with random weights where none are found: smoke tests and demos only"),
    NodeParam("autostart", True, "configure and activate at start; false for managed lifecycle bring-up"),
    NodeParam("compressed", False, "subscribe to sensor_msgs/CompressedImage (jpeg/png) instead of Image"),
    NodeParam("image_reliability", "reliable",
              "reliability of the image subscription (keep last 1); best_effort for a best-effort camera",
              choices=RELIABILITIES),
    NodeParam("frame_timeout", 5.0, "seconds without a frame before the node warns why (0: never)",
              bound=BOUNDS["frame_timeout"], live=True),
    NodeParam("stream_gap", DEFAULTS.stream_gap_s, "seconds between frames beyond which temporal heads (flow) "
              "start anew instead of pairing them", bound=BOUNDS["stream_gap"]),
    NodeParam("class_id", "name", "Detection2D class_id: the class name, or its index as a string",
              choices=CLASS_ID_MODES, live=True),
    NodeParam("diagnostics_period", 1.0, "seconds between /diagnostics messages",
              bound=BOUNDS["diagnostics_period"]),
)
PARAMS_BY_NAME = {p.name: p for p in NODE_PARAMS}


def check_node_param(name: str, value: Any) -> Any:
    """``value`` if it is valid for node parameter ``name``, else a ``ValueError`` saying what is expected."""
    param = PARAMS_BY_NAME[name]
    default = param.default
    if name == "heads":  # `heads:=a,b` reaches us as one string, `heads:=[a,b]` as a list: the CLI's forms too
        return parse_head_names(value)
    if isinstance(default, list):
        if value is None:  # an empty YAML list reaches rclpy as an unset value
            return []
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"{name} must be a list of non-empty strings, got {value!r}")
        return list(value)
    if type(value) is not type(default) and not (isinstance(default, float) and type(value) is int):
        raise ValueError(f"{name} must be of type {type(default).__name__}, got {value!r}")
    if param.choices and value not in param.choices:
        raise ValueError(f"{name} must be one of {', '.join(param.choices)}, got {value!r}")
    if param.bound is not None:
        value = param.bound.check(name, value)  # an OutOfBounds (ValueError) for NaN, inf, out of range
    if name == "backbone":
        get_backbone_spec(value)  # raises a ValueError listing the variants
    if name == "device":
        check_device_name(value)  # the syntax only: whether that GPU exists is decided at configure
    return float(value) if isinstance(default, float) else value
