"""The screenshots of the README and docs/heads.md, docs/images/*.png, from a bundled photo: `make screenshots`.

    demo_overlay.png          the composite overlay: segmentation and boxes over the photo, the depth panel beside
    segmentation_legend.png   the segmentation overlay, whose legend names every class present with its colour
    depth_bar.png             the depth overlay, whose colour bar names near and far, the range and its meaning

The built-in heads run with the weights found (README, "Weights"), random ones
elsewhere; a red banner above each picture then says so, as on every overlay.
Generated, not drawn by hand, so that they show what the code draws today.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from dinov3_ros.cli.common import random_notice, sample_images
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.overlays import draw_overlays

ROOT = Path(__file__).resolve().parents[1]
HEADS = ("detection", "segmentation", "depth")
FILES = {"segmentation": "segmentation_legend.png", "depth": "depth_bar.png"}  # and demo_overlay.png
RANDOM_SEED = 3  # of the first seeds, the one whose random segmentation shows the most classes (7) in the legend
RANDOM_BOXES = 12


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder to write (created)")
    parser.add_argument("--photo", default="chelsea", help="bundled sample photo, by stem (default: chelsea)")
    parser.add_argument("--size", type=int, default=640, help="backbone input size (default: 640)")
    parser.add_argument("--depth", type=int, help="backbone blocks to build (default: all; fewer for tests)")
    parser.add_argument("--max-width", type=int, default=960, help="wider pictures are scaled down to this")
    return parser.parse_args(argv)


def write_png(path: Path, rgb: np.ndarray, max_width: int) -> None:
    """``rgb`` no wider than ``max_width``, at 5 bits a channel: PNGs half the size (a repository keeps every
    version), and no banding the eye sees on a photo."""
    if rgb.shape[1] > max_width:  # INTER_AREA: averages, so text stays legible when shrunk
        rgb = cv2.resize(rgb, (max_width, round(rgb.shape[0] * max_width / rgb.shape[1])), interpolation=cv2.INTER_AREA)
    rgb = rgb & 0xF8 | 0x04  # the middle of each 8-level step
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"cannot write {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = {path.stem: path for path in sample_images()}
    if args.photo not in photos:
        raise SystemExit(f"no bundled photo {args.photo!r}; there are: {', '.join(photos)}")
    rgb = cv2.cvtColor(cv2.imread(str(photos[args.photo])), cv2.COLOR_BGR2RGB)
    torch.manual_seed(RANDOM_SEED)  # random weights, where used, are the same every time: files change with drawings
    engine = Engine.create(size=args.size, heads=list(HEADS), random_weights=True,
                           backbone_overrides={"depth": args.depth} if args.depth else None)
    if "detection" in engine.random_weights:  # random boxes all score ~0.03: show the best few, to show their labels
        engine.heads["detection"].set_params(score_threshold=0.0, max_detections=RANDOM_BOXES)
    frame = engine(rgb)
    if frame.errors:
        raise SystemExit("a head failed: " + "; ".join(str(error) for error in frame.errors.values()))
    overlays = draw_overlays(rgb, frame.results, heads=list(FILES), combined=True, notice=random_notice(engine))
    args.out.mkdir(parents=True, exist_ok=True)
    written = {"demo_overlay.png": overlays.combined} | {FILES[head]: overlays.heads[head] for head in FILES}
    for name, picture in written.items():
        write_png(args.out / name, picture, args.max_width)
        print(f"{args.out / name}  {(args.out / name).stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
