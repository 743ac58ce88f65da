"""The node's parameter table, config/params.yaml and the heads' manifests agree (no ROS needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dinov3_ros.parameters import NODE_PARAMS, PARAMS_BY_NAME, check_node_param
from dinov3_toolkit.heads.loader import discover

PARAMS_FILE = Path(__file__).resolve().parents[1] / "config" / "params.yaml"


@pytest.fixture(scope="module")
def params_file() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]


def test_params_file_lists_every_node_parameter_with_its_default(params_file):
    node_part = {k: v for k, v in params_file.items() if not isinstance(v, dict)}
    assert node_part == {p.name: p.default for p in NODE_PARAMS}


def test_params_file_head_values_are_the_manifest_defaults(params_file):
    manifests, _ = discover()
    heads = {k: v for k, v in params_file.items() if isinstance(v, dict)}
    assert heads, "params.yaml should show the head parameters"
    for head, values in heads.items():
        specs = manifests[head].params
        assert values == {name: spec.default for name, spec in specs.items()}, head


def test_every_line_of_the_params_file_is_documented():
    lines = PARAMS_FILE.read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert lines[i - 1].strip().startswith("#"), f"params.yaml line {i + 1} has no comment: {line}"


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("precision", "fp8", "precision must be one of fp32, fp16, bf16"),
        ("image_size", 650, r"image_size must be an integer in \[16, 4096\] px, a multiple of 16, got 650"),
        ("image_size", 8, r"image_size must be an integer in \[16"),
        ("image_size", 640.0, "image_size must be of type int"),
        ("device", "gpu", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("image_reliability", "fast", "image_reliability must be one of best_effort, reliable, system_default"),
        ("heads", ["detection", "de-pth"], r"heads must be head names .* e.g. detection,depth or \[detection, depth\]"),
        ("heads", [3], "heads must be head names"),
        ("head_dirs", ["extra", ""], "head_dirs must be a list of non-empty strings"),
        ("backbone", "vitz16", "unknown backbone"),
        ("diagnostics_period", 0.0, r"diagnostics_period must be a finite number in \[0.1, 60\] s, got 0"),
        ("diagnostics_period", float("nan"), r"diagnostics_period must be a finite number .* got nan"),
        ("stream_gap", float("inf"), r"stream_gap must be a finite number .* got inf"),
        ("frame_timeout", -1.0, r"frame_timeout must be a finite number in \[0, 3600\]"),
    ],
)
def test_bad_values_are_refused_with_the_reason(name, value, message):
    with pytest.raises(ValueError, match=message):
        check_node_param(name, value)


@pytest.mark.parametrize(
    "name, value, expected",
    [("device", "cuda:1", "cuda:1"), ("device", "auto", "auto"), ("diagnostics_period", 2, 2.0),
     ("heads", ("depth",), ["depth"]),
     # `-p heads:=detection,depth` reaches the node as a string, `heads:=[detection,depth]` as a list:
     ("heads", "detection,depth", ["detection", "depth"]), ("heads", ["detection", "depth"], ["detection", "depth"]),
     ("heads", "detection, depth", ["detection", "depth"]), ("heads", "", []), ("heads", None, []),
     ("backbone", "vitl16.sat493m", "vitl16.sat493m"), ("class_id", "index", "index"),
     ("head_dirs", None, [])],  # an empty YAML list reaches rclpy as an unset value
)
def test_good_values_pass(name, value, expected):
    assert check_node_param(name, value) == expected


def test_only_the_class_id_mode_and_the_frame_timeout_are_live():
    """The others are read at configure or activate; the node refuses them while configured."""
    assert sorted(p.name for p in NODE_PARAMS if p.live) == ["class_id", "frame_timeout"]
    assert PARAMS_BY_NAME["image_size"].min == 16
