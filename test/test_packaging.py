"""The package installs both ways: a wheel with the ROS files, and ament/colcon metadata."""

from __future__ import annotations

import ast
import runpy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    # Build from a copy: setuptools caches build/ in the source tree, which could
    # carry deleted files into the wheel.
    src = tmp_path_factory.mktemp("src") / "dinov3_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        cwd=out,
    )
    (wheel,) = out.glob("dinov3_ros-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


@pytest.mark.parametrize(
    "expected",
    [
        "dinov3_toolkit/backbone/vit.py",
        "dinov3_toolkit/backbone/convnext.py",
        "dinov3_toolkit/offline/samples/astronaut.jpg",
        "dinov3_toolkit/head_detection/head.yaml",
        "dinov3_toolkit/head_detection/class_names.txt",
        "dinov3_toolkit/head_segmentation/model.py",
        "dinov3_toolkit/head_segmentation/class_names.txt",
        "dinov3_toolkit/head_depth/head.yaml",
        "dinov3_toolkit/head_depth/weights/README.md",
        "dinov3_ros/__init__.py",
        "data/share/dinov3_ros/package.xml",
        "data/share/dinov3_ros/launch/dinov3.launch.py",
        "data/share/dinov3_ros/config/params.yaml",
        "data/share/dinov3_ros/weights/README.md",
        "data/share/ament_index/resource_index/packages/dinov3_ros",
    ],
)
def test_wheel_contains(wheel_names, expected):
    assert any(name.endswith(expected) for name in wheel_names), expected


# What colcon installs under share/dinov3_ros for `ros2 launch` and `rviz2 -d` to find.
ROS_SHARE_FILES = ("launch/dinov3.launch.py", "config/params.yaml", "config/dinov3.rviz")


def _setup_kwargs(monkeypatch) -> dict:
    """The keyword arguments setup.py hands to setuptools.setup, run as colcon runs it (from the root)."""
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return captured


def test_setup_data_files_install_launch_params_and_rviz(monkeypatch):
    data_files = _setup_kwargs(monkeypatch)["data_files"]
    installed = {f"{dest}/{Path(src).name}" for dest, sources in data_files for src in sources}
    for relative in ROS_SHARE_FILES:
        assert f"share/dinov3_ros/{relative}" in installed, relative
    missing = [src for _, sources in data_files for src in sources if not (ROOT / src).is_file()]
    assert not missing, f"data_files lists files that do not exist: {missing}"


@pytest.mark.parametrize("relative", ROS_SHARE_FILES)
def test_wheel_installs_ros_share_file(wheel_names, relative):
    assert f"dinov3_ros-0.1.0.data/data/share/dinov3_ros/{relative}" in wheel_names


def test_wheel_has_no_tests_or_weights(wheel_names):
    assert not [n for n in wheel_names if n.startswith("test/") or n.endswith((".pth", ".safetensors"))]


def test_package_xml_is_format_3_with_the_ros_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "dinov3_ros"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for dep in ("rclpy", "sensor_msgs", "vision_msgs", "cv_bridge", "std_msgs", "diagnostic_msgs",
                "lifecycle_msgs", "launch_ros", "python3-numpy", "python3-opencv"):
        assert dep in deps, dep
    assert root.find("export/build_type").text == "ament_python"


def test_setup_cfg_sends_colcon_executables_to_lib():
    text = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/dinov3_ros" in text and "install_scripts=$base/lib/dinov3_ros" in text


def test_console_script_is_installed():
    # An editable install leaves dinov3_ros.egg-info in the source tree too; find pip's record.
    installed = [
        d for d in metadata.distributions(name="dinov3_ros") if (d.read_text("INSTALLER") or "").strip() == "pip"
    ]
    if not installed:
        pytest.skip("dinov3_ros is not pip-installed in this environment (make test installs it)")
    assert "dinov3" in {ep.name for ep in installed[0].entry_points if ep.group == "console_scripts"}
    assert (Path(sys.executable).parent / "dinov3").exists()


def test_sources_parse_as_python_3_10():
    """The oldest supported Python (Humble) must accept every source file's syntax."""
    sources = [p for d in ("dinov3_toolkit", "dinov3_ros", "launch", "test") for p in (ROOT / d).rglob("*.py")]
    for path in [*sources, ROOT / "setup.py"]:
        ast.parse(path.read_text(), str(path), feature_version=(3, 10))
