"""``head.yaml``: what a head folder is and how to build it.

A complete manifest (only ``task`` and ``model`` are required)::

    description: FCOS detector, COCO 80 classes        # one line, shown by listings
    task: detection          # detection | segmentation | depth | any other word
    model: model.DinoFCOSHead   # <module in this folder>.<class>, a dinov3_toolkit.heads.Head
    args:                    # keyword arguments of the class's constructor
      in_channels: 384
    classes: class_names.txt # one name per line; the class gets them as class_names=(...)
    weights: weights/model.pth  # relative to the folder (.pth / .pt / .safetensors)
    layers: [-1]             # backbone layers the head reads, in the order forward() gets them
    trained_on:              # what the weights expect: another backbone is refused, other sizes warned about
      backbone: vits16plus
      size: 640
      resize_mode: stretch
    params:                  # run-time parameters; users override them, the node can change them live
      score_threshold: {default: 0.2, min: 0.0, max: 1.0, description: keep boxes scoring above this}
    threshold_param: score_threshold  # the parameter vision_msgs/LabelInfo reports as the threshold
    depth: {unit: m, kind: metric}  # depth heads only: what the values mean (metric | relative | inverse)

YAML because ROS users already write ``params.yaml`` and PyYAML is in every
ROS install (rosdep key ``python3-yaml``). The head's name is its folder's name
without ``head_``; the manifest does not repeat it, so the two cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..results import DEPTH_KINDS, DepthMeaning
from .base import HeadError

MANIFEST = "head.yaml"
FOLDER_PREFIX = "head_"
HEAD_NAME = r"[A-Za-z][A-Za-z0-9_]*"  # a ROS name token: topics <name>/..., parameters <name>.<param>
_KEYS = {"description", "task", "model", "args", "classes", "weights", "layers", "trained_on", "params",
         "threshold_param", "loss", "loss_args", "provenance", "depth"}
_PARAM_KEYS = {"default", "description", "min", "max", "choices"}
_TRAINED_ON_KEYS = {"backbone", "size", "resize_mode"}
_PARAM_TYPES = (bool, int, float, str)  # bool first: it is also an int
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class ParamSpec:
    """One run-time parameter: its default (which fixes its type), an optional range or choices."""

    name: str
    default: bool | int | float | str
    description: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def type(self) -> type:
        return next(t for t in _PARAM_TYPES if isinstance(self.default, t))

    def validate(self, value: object) -> bool | int | float | str:
        """``value`` converted to this parameter's type, or a ``ValueError`` saying what was expected."""
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ConfigError(f"parameter {self.name} must be of type {expected.__name__}, got {value!r}")
        if expected is float and not math.isfinite(value):
            raise ConfigError(f"parameter {self.name} must be a finite number, got {value!r}")
        if expected is int and not _INT64[0] <= value <= _INT64[1]:
            raise ConfigError(f"parameter {self.name} must fit a 64-bit integer (a ROS integer parameter), "
                              f"got {value!r}")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ConfigError(f"parameter {self.name} must be in [{self.min}, {self.max}], got {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"parameter {self.name} must be one of {list(self.choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class HeadManifest:
    """A parsed ``head.yaml``; paths are absolute."""

    name: str
    folder: Path
    task: str
    module: str  # module name inside the folder, e.g. "model"
    class_name: str
    description: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    classes: Path | None = None
    weights: Path | None = None
    layers: tuple[int, ...] = (-1,)
    trained_on: dict[str, Any] = field(default_factory=dict)
    params: dict[str, ParamSpec] = field(default_factory=dict)
    threshold_param: str | None = None  # names the param whose value LabelInfo.threshold reports
    loss: tuple[str, str] | None = None  # (module, class) of its HeadLoss; None: the head cannot be trained
    loss_args: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # what `dinov3 train` made it from (free-form)
    depth: DepthMeaning | None = None  # a depth head's stated meaning; the loader passes it to the model as depth=

    def threshold(self, values: dict[str, Any]) -> float:
        """The head's confidence threshold for LabelInfo, from its current parameter ``values``; 0 without one."""
        return float(values[self.threshold_param]) if self.threshold_param else 0.0

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @property
    def module_path(self) -> Path:
        """The file holding the model class."""
        return self.folder / (self.module.replace(".", "/") + ".py")

    def read_class_names(self) -> tuple[str, ...]:
        """The names in ``classes``, one per line (blank lines and surrounding spaces dropped)."""
        if self.classes is None:
            return ()
        if not self.classes.is_file():
            raise HeadError(self.name, self.classes, "class names file does not exist")
        try:
            text = self.classes.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise HeadError(self.name, self.classes, f"cannot be read as UTF-8 text: {e}") from None
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
        if not names:
            raise HeadError(self.name, self.classes, "class names file is empty")
        return names

    def resolve_params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``overrides``, each validated; unknown names are an error."""
        values = {name: spec.default for name, spec in self.params.items()}
        for name, value in (overrides or {}).items():
            if name not in self.params:
                known = ", ".join(self.params) or "none"
                raise HeadError(self.name, self.path, f"has no parameter {name!r} (it has: {known})")
            try:
                values[name] = self.params[name].validate(value)
            except ValueError as e:
                raise HeadError(self.name, self.path, str(e)) from None
        return values


def head_name(folder: Path) -> str:
    """``head_detection`` -> ``detection`` (a folder without the prefix keeps its whole name)."""
    return folder.name.removeprefix(FOLDER_PREFIX)


def parse_head_names(value: str | Sequence[str] | None) -> list[str]:
    """The head names in a list or a string, separated by commas, spaces or both; ``None``: none.

    ``["a", "b"]``, ``"a,b"`` and ``["a,", "b"]`` all give ``["a", "b"]``: whatever a user types reaches
    us in one of these shapes (``--heads a b``, ``--heads a, b``; the node's ``heads:=[a,b]`` is a list,
    ``heads:=a,b`` one string), and the `dinov3` command and the node read every one the same way.
    """
    items = [] if value is None else [value] if isinstance(value, str) else value
    if isinstance(items, (list, tuple)) and all(isinstance(item, str) for item in items):
        names = [name for item in items for name in re.split(r"[,\s]+", item) if name]
        if all(re.fullmatch(HEAD_NAME, name) for name in names):
            return names
    raise ConfigError(f"heads must be head names separated by commas or spaces, e.g. detection,depth or "
                      f"[detection, depth]; got {value!r}")


def load_manifest(folder: str | Path) -> HeadManifest:
    """Read and check ``<folder>/head.yaml``; every problem is a ``HeadError`` naming the file."""
    folder = Path(folder).resolve()
    name = head_name(folder)
    path = folder / MANIFEST
    if not folder.name.startswith(FOLDER_PREFIX) or folder.name == FOLDER_PREFIX:
        raise HeadError(name, folder, f"a head folder's name must be {FOLDER_PREFIX}<name>")
    if not re.fullmatch(HEAD_NAME, name):
        raise HeadError(name, folder, f"a head's name must be letters, digits and '_', beginning with a letter "
                        f"(it names ROS topics and parameters: '{name}/detections', '{name}.<param>'), got {name!r}")
    if not path.is_file():
        raise HeadError(name, path, f"no {MANIFEST} in the head folder")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise HeadError(name, path, f"is not valid YAML: {e}") from None

    def fail(message: str) -> HeadError:
        return HeadError(name, path, message)

    if not isinstance(raw, dict):
        raise fail(f"must be a YAML mapping, got {type(raw).__name__}")
    if unknown := set(raw) - _KEYS:
        raise fail(f"unknown key(s) {sorted(unknown, key=str)}; allowed: {sorted(_KEYS)}")
    for key in ("task", "model"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise fail(f"needs '{key}' (a string), got {raw.get(key)!r}")
    model = _class_path(raw["model"])
    if model is None:
        raise fail(f"'model' must be <module>.<Class>, got {raw['model']!r}")
    loss = _class_path(raw["loss"]) if isinstance(raw.get("loss"), str) else None
    if "loss" in raw and loss is None:
        raise fail(f"'loss' must be <module>.<Class> of a HeadLoss in the folder, got {raw['loss']!r}")
    for key in ("loss_args", "provenance"):
        if not isinstance(raw.get(key) or {}, dict):
            raise fail(f"'{key}' must be a mapping, got {raw[key]!r}")
    args = raw.get("args") or {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise fail(f"'args' must be a mapping of constructor arguments, got {args!r}")
    layers = raw.get("layers", [-1])
    if not isinstance(layers, list) or not layers or not all(type(i) is int for i in layers):
        raise fail(f"'layers' must be a non-empty list of backbone layer indices, got {layers!r}")
    trained_on = raw.get("trained_on") or {}
    if not isinstance(trained_on, dict) or set(trained_on) - _TRAINED_ON_KEYS:
        raise fail(f"'trained_on' may only hold {sorted(_TRAINED_ON_KEYS)}, got {trained_on!r}")
    for key, value in trained_on.items():  # compared with the engine's settings, and eval runs with them
        if not (_is_int(value) and value > 0 if key == "size" else isinstance(value, str) and value):
            kind = "a positive integer" if key == "size" else "a non-empty string"
            raise fail(f"'trained_on' {key} must be {kind}, got {value!r}")
    if not isinstance(raw.get("description", ""), str):
        raise fail(f"'description' must be a string (one line), got {raw['description']!r}")
    params = _parse_params(raw.get("params") or {}, fail)
    threshold_param = raw.get("threshold_param")
    numeric = sorted(n for n, p in params.items() if type(p.default) in (int, float))  # bool excluded
    if threshold_param is not None and threshold_param not in numeric:  # a list compares, never hashes
        raise fail(f"'threshold_param' must name one of its numeric params {numeric}, got {threshold_param!r}")
    depth = _parse_depth(raw, fail) if "depth" in raw else None
    return HeadManifest(
        name=name,
        folder=folder,
        task=raw["task"],
        module=model[0],
        class_name=model[1],
        description=raw.get("description", ""),
        args=args,
        classes=_optional_path(folder, raw, "classes", fail),
        weights=_optional_path(folder, raw, "weights", fail),
        layers=tuple(layers),
        trained_on=trained_on,
        params=params,
        threshold_param=threshold_param,
        loss=loss,
        loss_args=raw.get("loss_args") or {},
        provenance=raw.get("provenance") or {},
        depth=depth,
    )


def _parse_depth(raw: dict, fail) -> DepthMeaning:
    """``depth: {unit: m, kind: metric}``: stated by depth heads only, so that no other head claims a unit."""
    if raw["task"] != "depth":
        raise fail(f"'depth' states what a depth head's values mean, but the task is {raw['task']!r}")
    entry = raw["depth"]
    if not isinstance(entry, dict) or set(entry) != {"unit", "kind"}:
        raise fail(f"'depth' must be a mapping with 'unit' (a string, \"\" for none) and 'kind' "
                   f"({' | '.join(DEPTH_KINDS)}), got {entry!r}")
    try:
        return DepthMeaning(entry["unit"], entry["kind"])
    except (TypeError, ValueError) as e:
        raise fail(f"'depth': {e}") from None


def _class_path(value: str) -> tuple[str, str] | None:
    """``"model.DinoFCOSHead"`` -> ("model", "DinoFCOSHead"); None if it is not <module>.<Class>."""
    match = re.fullmatch(r"([A-Za-z_][\w.]*)\.([A-Za-z_]\w*)", value)
    return (match[1], match[2]) if match else None


def _optional_path(folder: Path, raw: dict, key: str, fail) -> Path | None:
    """A file inside the head folder: the folder is the unit that is copied around."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise fail(f"'{key}' must be a file name relative to the head folder, got {value!r}")
    return folder / value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_params(raw: object, fail) -> dict[str, ParamSpec]:
    if not isinstance(raw, dict):
        raise fail(f"'params' must be a mapping of name: {{default: ...}}, got {raw!r}")
    params = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not name:  # they become ROS parameter names and keyword overrides
            raise fail(f"parameter names must be non-empty strings, got {name!r}")
        if not isinstance(entry, dict) or "default" not in entry or set(entry) - _PARAM_KEYS:
            raise fail(f"parameter {name!r} must be a mapping with 'default' and optionally {sorted(_PARAM_KEYS)}")
        default = entry["default"]
        if not isinstance(default, _PARAM_TYPES):
            raise fail(f"parameter {name!r}: default must be a bool, int, float or string, got {default!r}")
        numeric = _is_int(default) or isinstance(default, float)
        for bound in ("min", "max"):
            value = entry.get(bound)
            if value is not None and not (numeric and (_is_int(value) or isinstance(value, float))
                                          and math.isfinite(value)):  # a NaN bound would silently bound nothing
                raise fail(f"parameter {name!r}: '{bound}' needs a numeric default and a finite number, got {value!r}")
        if entry.get("min") is not None and entry.get("max") is not None and entry["min"] > entry["max"]:
            raise fail(f"parameter {name!r}: 'min' {entry['min']!r} is above 'max' {entry['max']!r}")
        if not isinstance(entry.get("choices", []), list):
            raise fail(f"parameter {name!r}: 'choices' must be a list, got {entry['choices']!r}")
        spec = ParamSpec(
            name=name,
            default=default,
            description=str(entry.get("description", "")),
            min=entry.get("min"),
            max=entry.get("max"),
            choices=tuple(entry.get("choices") or ()),
        )
        try:
            spec.validate(spec.default)
        except ValueError as e:
            raise fail(f"default of {e}") from None
        for choice in spec.choices:  # each must be a value the parameter can take: its type, in its range
            try:
                spec.validate(choice)
            except ValueError as e:
                raise fail(f"choice {choice!r} of parameter {name!r} is not a value it can take: {e}") from None
        params[spec.name] = spec
    return params
