"""scripts/screenshots.py, the README's screenshots command, writes its three pictures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshots.py"


def test_the_screenshots_command_writes_the_readmes_pictures(tmp_path, no_weights, capsys):
    spec = importlib.util.spec_from_file_location("screenshots", SCRIPT)
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)
    out = tmp_path / "images"
    assert screenshots.main(["--out", str(out), "--size", "32", "--depth", "1", "--max-width", "600"]) == 0
    names = ["demo_overlay.png", "depth_bar.png", "segmentation_legend.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    chelsea = (300, 451)  # the photo: each head's own overlay is its size, plus the banner above
    for name in names:
        picture = cv2.imread(str(out / name))
        assert picture is not None and picture.shape[1] <= 600, name
    height, width = cv2.imread(str(out / "depth_bar.png")).shape[:2]
    assert height > chelsea[0] and width == chelsea[1]  # the random-weights banner adds rows above
    printed = capsys.readouterr().out
    assert all(str(out / name) in printed for name in names)  # each file it wrote, and its size
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    assert all(f"docs/images/{name}" in readme for name in names) and "make screenshots" in readme
