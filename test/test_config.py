"""The engine defaults are defined once (dinov3_toolkit.config) and every entry point uses them."""

from __future__ import annotations

import inspect

import pytest

from dinov3_ros.cli import build_parser
from dinov3_ros.parameters import PARAMS_BY_NAME
from dinov3_toolkit.config import DEFAULTS
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.extractor import FeatureExtractor
from dinov3_toolkit.preprocess import Preprocessor

# Each default under the name each entry point gives it.
NAMES = {  # DEFAULTS field: (Engine.create, FeatureExtractor, Preprocessor, `dinov3` option, node parameter)
    "backbone": ("backbone", None, None, "backbone", "backbone"),
    "device": ("device", "device", None, "device", "device"),
    "precision": ("precision", "precision", None, "precision", "precision"),
    "size": ("size", "size", "size", "size", "image_size"),
    "resize_mode": ("resize_mode", "resize_mode", "mode", "resize", "resize_mode"),
    "stream_gap_s": ("stream_gap_s", None, None, "stream_gap", "stream_gap"),
}


def _signature_defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


def test_every_field_is_covered():
    assert set(NAMES) == set(DEFAULTS.__dataclass_fields__)


@pytest.mark.parametrize("field", sorted(NAMES))
def test_every_entry_point_takes_the_one_default(field):
    value = getattr(DEFAULTS, field)
    create, extractor, preprocessor, option, parameter = NAMES[field]
    assert _signature_defaults(Engine.create)[create] == value
    if extractor:
        assert _signature_defaults(FeatureExtractor.__init__)[extractor] == value
    if preprocessor:
        assert _signature_defaults(Preprocessor.__init__)[preprocessor] == value
    assert getattr(build_parser().parse_args(["run", "x"]), option) == value
    assert PARAMS_BY_NAME[parameter].default == value
