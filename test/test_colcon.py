"""`colcon build` of this package against the ROS 2 that `make test` installs from PyPI, as a user builds it.

Checks the installed layout that `ros2 run` and `ros2 launch` rely on, and that the installed
node and `dinov3` command run from the install space (head folders shipped with the library).
Skipped where colcon is not installed (it is a test extra: `pip install -e .[test]`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytest.importorskip("colcon_core", reason="needs colcon: pip install colcon-common-extensions (a test extra)")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    """The package built by colcon from this checkout into a scratch workspace; its install space."""
    workspace = tmp_path_factory.mktemp("colcon_ws")
    done = subprocess.run(
        [sys.executable, "-m", "colcon", "--log-base", str(workspace / "log"), "build",
         "--base-paths", str(ROOT), "--packages-select", "dinov3_ros",
         "--build-base", str(workspace / "build"), "--install-base", str(workspace / "install")],
        cwd=workspace, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workspace / "install" / "dinov3_ros"


def _site_packages(install: Path) -> Path:
    relative = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)  # lib/python3.X/site-packages
    return install / relative


def test_installed_layout(install):
    for path in ["lib/dinov3_ros/dinov3_node", "lib/dinov3_ros/dinov3", "share/dinov3_ros/package.xml",
                 "share/dinov3_ros/launch/dinov3.launch.py", "share/dinov3_ros/config/params.yaml",
                 "share/dinov3_ros/config/dinov3.rviz", "share/dinov3_ros/weights/README.md",
                 "share/ament_index/resource_index/packages/dinov3_ros"]:
        assert (install / path).is_file(), path
    assert os.access(install / "lib/dinov3_ros/dinov3_node", os.X_OK)
    library = _site_packages(install)
    for head in ("head_detection", "head_segmentation", "head_depth"):
        assert (library / "dinov3_toolkit" / head / "head.yaml").is_file(), head
    assert (ROOT / "config/params.yaml").read_bytes() == (install / "share/dinov3_ros/config/params.yaml").read_bytes()


def _installed_env(install: Path) -> dict[str, str]:
    """What `source install/setup.bash` adds for this package: its Python path and ament prefix."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(_site_packages(install)), os.environ.get("PYTHONPATH")])),
            "AMENT_PREFIX_PATH": os.pathsep.join(filter(None, [str(install), os.environ.get("AMENT_PREFIX_PATH")]))}


def test_installed_dinov3_command_runs_from_the_install_space(install):
    env = {**os.environ, **_installed_env(install)}
    done = subprocess.run([str(install / "lib/dinov3_ros/dinov3"), "heads"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    for head in ("detection", "segmentation", "depth"):
        assert f"{_site_packages(install)}/dinov3_toolkit/head_{head}/" in done.stdout, done.stdout


def test_installed_node_starts_from_the_install_space_and_logs_where_it_looked_for_heads(install, tmp_path):
    """In a plain install the source tree is not read: the start log says where a head_* folder is found."""
    from ros_helpers import TINY_NODE, NodeProcess

    mine = tmp_path / "my_heads"
    mine.mkdir()
    node = NodeProcess(tmp_path, "/installed", {**TINY_NODE, "heads": ["depth"], "head_dirs": [str(mine)]},
                       executable=str(install / "lib/dinov3_ros/dinov3_node"), env=_installed_env(install))
    try:
        node.wait_for_output("active: subscribed to /installed/image", 120)
        assert f"{_site_packages(install)}/dinov3_toolkit/head_depth/" in node.output()
        templates = f"{_site_packages(install)}/dinov3_toolkit/templates"  # heads are named: templates too
        assert f"looking for head_* folders in {_site_packages(install)}/dinov3_toolkit, {mine}, {templates}\n" \
               in node.output()
        assert node.interrupt() == 0
    finally:
        node.close()
