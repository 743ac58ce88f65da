"""The layer rule: dinov3_toolkit (backbones, engine, heads, offline app, tools) never imports ROS or dinov3_ros.

Read from the source, so imports inside functions count too: a toolkit that imported rclpy
lazily would still fail on a machine without ROS the moment that path ran.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TOOLKIT = Path(__file__).resolve().parents[1] / "dinov3_toolkit"
# dinov3_ros, and the ROS 2 client library and message packages it uses.
FORBIDDEN = ("dinov3_ros", "rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "vision_msgs",
             "diagnostic_msgs", "lifecycle_msgs", "geometry_msgs", "builtin_interfaces", "cv_bridge",
             "launch", "launch_ros", "ament_index_python", "rosbags")


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


MODULES = sorted(TOOLKIT.rglob("*.py"))


def test_the_walk_sees_the_whole_toolkit():
    relative = {p.relative_to(TOOLKIT).as_posix() for p in MODULES}
    assert {"engine.py", "heads/loader.py", "head_detection/model.py", "offline/runner.py",
            "tools/benchmark.py", "backbone/vit.py"} <= relative


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(TOOLKIT).as_posix())
def test_toolkit_module_imports_no_ros(path):
    bad = [name for name in _imported_modules(path) if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.relative_to(TOOLKIT)} imports {bad}: the toolkit must run without ROS"


HEAD_CODE = sorted([*TOOLKIT.glob("head_*/*.py"), *TOOLKIT.glob("templates/head_*/*.py"),
                    *(TOOLKIT.parent / "examples").glob("head_*/*.py")])


@pytest.mark.parametrize("path", HEAD_CODE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_head_code_imports_the_toolkit_only_through_dinov3_toolkit_heads(path):
    """One import point for head authors: the toolkit's inner layout may move without breaking a head."""
    ours = [name for name in _imported_modules(path) if name.split(".")[0] == "dinov3_toolkit"]
    assert set(ours) <= {"dinov3_toolkit.heads"}, f"{path} imports {ours}"


def test_head_code_is_found():
    assert {p.parent.name for p in HEAD_CODE} >= {"head_detection", "head_segmentation", "head_depth",
                                                  "head_linear_probe"}
