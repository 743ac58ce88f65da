"""A `head_*` folder dropped beside the built-in heads is run on the next start, as docs/write_a_head.md promises.

The built-in heads live in `dinov3_toolkit/head_*/`, and discovery looks there first. Where that folder
is the source tree, a dropped folder is found: a source checkout, an editable install (`pip install -e .`,
which `make test` makes) and a colcon `--symlink-install` workspace (its build folder links to the
source). Each test copies the docs' example head in, restarts (a new process) and sees the new head's
topic on the graph. A plain colcon install copies the package into its install space, so a folder
dropped in the source is not run there: the docs send those users to `head_dirs`, and the node's
start log lists every folder it looked in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import dinov3_toolkit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "head_linear_probe"


def _drop_in(toolkit: Path) -> tuple[str, Path]:
    """The example head copied into ``toolkit`` under a fresh name; its name and folder."""
    name = f"dropin_{uuid.uuid4().hex[:8]}"
    folder = toolkit / f"head_{name}"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return name, folder


def _sees_head_topic(tmp_path: Path, name: str, *, env: dict[str, str] | None = None,
                     executable: str | None = None) -> None:
    """A restarted node (a new process, default heads) advertises ``<ns>/<name>/labels``."""
    from ros_helpers import TINY_NODE, NodeProcess, Probe, wait_until

    namespace = f"/dropin_{uuid.uuid4().hex[:6]}"
    node = NodeProcess(tmp_path, namespace, {**TINY_NODE, "allow_backbone_mismatch": True},
                       executable=executable, env=env)
    probe = Probe("dropin_probe")
    try:
        topic = f"{namespace}/{name}/labels"
        wait_until(lambda: topic in dict(probe.node.get_topic_names_and_types()), 180,
                   f"{topic} on the graph (node output:\n{node.output()[-3000:]})")
        assert f"head_{name}" in node.output(), node.output()[-3000:]
        assert node.interrupt() == 0
    finally:
        probe.close()
        node.close()


def test_a_dropped_head_runs_after_a_restart_in_the_source_checkout_or_editable_install(tmp_path):
    toolkit = Path(dinov3_toolkit.__file__).resolve().parent
    if toolkit != ROOT / "dinov3_toolkit":
        pytest.skip(f"dinov3_toolkit is imported from {toolkit}, not from this checkout: a plain install, "
                    f"where a head is added through head_dirs instead")
    name, folder = _drop_in(toolkit)
    try:
        listed = subprocess.run([sys.executable, "-m", "dinov3_ros.cli", "heads"], capture_output=True,
                                text=True, timeout=300)
        assert listed.returncode == 0, listed.stderr
        assert name in listed.stdout and str(folder) in listed.stdout, listed.stdout
        _sees_head_topic(tmp_path, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def symlink_workspace(tmp_path_factory) -> Path:
    """This package's tracked files copied to ``src/`` and built with ``colcon build --symlink-install``."""
    pytest.importorskip("colcon_core", reason="needs colcon: pip install colcon-common-extensions (a test extra)")
    workspace = tmp_path_factory.mktemp("colcon_symlink_ws")
    source = workspace / "src" / "dinov3_ros"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if tracked.returncode != 0:
        pytest.skip("needs a git checkout to copy the package's tracked files from")
    for relative in filter(None, tracked.stdout.decode().split("\0")):
        if (ROOT / relative).is_file():
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, source / relative)
    done = subprocess.run(
        [sys.executable, "-m", "colcon", "--log-base", str(workspace / "log"), "build", "--symlink-install",
         "--base-paths", str(workspace / "src"), "--packages-select", "dinov3_ros",
         "--build-base", str(workspace / "build"), "--install-base", str(workspace / "install")],
        cwd=workspace, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workspace


def test_a_dropped_head_runs_after_a_restart_in_a_colcon_symlink_install(symlink_workspace, tmp_path):
    build = symlink_workspace / "build" / "dinov3_ros"
    install = symlink_workspace / "install" / "dinov3_ros"
    # What `source install/setup.bash` adds for a --symlink-install build: the build folder (whose
    # package folders link to src/) on PYTHONPATH, and the install prefix for ament.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(build), os.environ.get("PYTHONPATH")])),
           "AMENT_PREFIX_PATH": os.pathsep.join(filter(None, [str(install), os.environ.get("AMENT_PREFIX_PATH")]))}
    assert (build / "dinov3_toolkit").resolve() == (symlink_workspace / "src/dinov3_ros/dinov3_toolkit").resolve()
    name, _ = _drop_in(symlink_workspace / "src" / "dinov3_ros" / "dinov3_toolkit")
    _sees_head_topic(tmp_path, name, env=env, executable=str(install / "lib/dinov3_ros/dinov3_node"))
