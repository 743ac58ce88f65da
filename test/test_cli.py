"""The command-line demo and listing, run in-process."""

from __future__ import annotations

import re

import cv2

from dinov3_toolkit.cli import main, sample_images


def test_samples_are_bundled():
    names = [p.name for p in sample_images()]
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]


def test_demo_runs_every_head_and_writes_overlays(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dinov3_toolkit.backbone.weights.search_dirs", lambda: [tmp_path])
    monkeypatch.setattr("dinov3_toolkit.heads.loader.user_weights_dirs", lambda: [tmp_path])
    code = main(["demo", "--backbone", "vits16", "--device", "cpu", "--size", "64", "--resize", "keep_aspect",
                 "--runs", "1", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    assert "RANDOM WEIGHTS (backbone, depth, detection, segmentation)" in out
    # chelsea.jpg is 451x300 -> keep_aspect 64 -> 64x48
    line = re.search(r"chelsea\.jpg\s+451x300\s+64x48\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(.*)", out)
    assert line and re.search(r"depth: depth [\d.]+\.\.[\d.]+; detection: \d+ boxes.*; segmentation: \d+ classes",
                              line[1])
    assert re.search(r"4 image\(s\): [\d.]+ ms per frame", out)
    overlays = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert overlays == [f"{n}_overlay.jpg" for n in ("astronaut", "chelsea", "coffee", "rocket")]
    overlay = cv2.imread(str(tmp_path / "out" / "chelsea_overlay.jpg"))
    assert overlay.shape == (300, 451 * 2, 3)  # the camera image with labels and boxes, and the depth panel


def test_demo_reports_an_unreadable_image_and_goes_on(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    good = sample_images()[0]
    code = main(["demo", "--backbone", "vits16", "--device", "cpu", "--size", "32", "--heads", "depth",
                 "--runs", "1", "--out", str(tmp_path / "out"), str(bad), str(good)])
    out = capsys.readouterr().out
    assert code == 1
    assert "broken.jpg" in out and "cannot read image" in out
    assert "astronaut.jpg" in out and "1 image(s)" in out


def test_demo_with_missing_explicit_weights_is_an_error(tmp_path, capsys):
    code = main(["demo", "--weights", str(tmp_path / "none.pth"), "--device", "cpu"])
    assert code == 2
    assert "none.pth for backbone vits16plus.lvd1689m does not exist" in capsys.readouterr().err


def test_backbones_lists_every_variant(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"vits16plus\.lvd1689m\s+28\.7M", out)
    assert re.search(r"vit7b16\.sat493m\s+6716\.0M", out)
    assert len(re.findall(r"^\w+\.\w+\s+[\d.]+M", out, re.M)) == 13
