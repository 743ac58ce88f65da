"""scripts/screenshots.py, the docs' screenshots command, writes its three pictures, and the docs show them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import cv2

from doc_pages import PAGES, ROOT

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshots.py"


def test_the_screenshots_command_writes_the_docs_pictures(tmp_path, no_weights, capsys):
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
    shown = {(page.parent / link).resolve() for page in PAGES
             for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", page.read_text())}  # every picture, by its file
    assert {ROOT / "docs" / "images" / name for name in names} <= shown
    assert "make screenshots" in (ROOT / "docs" / "development.md").read_text()
