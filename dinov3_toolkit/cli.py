"""``dinov3-toolkit``: the toolkit from the command line, no ROS needed.

Subcommands:
  demo       run the backbone on images (the bundled samples by default) and print
             feature shapes and per-stage timings
  backbones  list every backbone variant, its size and whether its weights are found
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .backbone import (
    WeightsNotFoundError,
    get_backbone_spec,
    list_backbones,
    resolve_weights,
)
from .device import PRECISIONS
from .extractor import FeatureExtractor
from .preprocess import RESIZE_MODES

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def sample_images() -> list[Path]:
    """The bundled sample photos (public domain / CC0, from scikit-image's data set)."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path} (missing, or not an image OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build_extractor(args: argparse.Namespace) -> FeatureExtractor:
    spec = get_backbone_spec(args.backbone)
    options = dict(
        device=args.device, precision=args.precision, size=args.size, resize_mode=args.resize, layers=args.layers
    )
    if not args.random_weights:
        try:
            return FeatureExtractor.from_name(spec.name, args.weights, **options)
        except WeightsNotFoundError as e:
            if args.weights is not None:
                raise
            print(f"{e}\n", file=sys.stderr)
    print(
        f"*** {spec.name}: running with RANDOM weights. Shapes and timings are real; "
        "feature values are meaningless. ***\n"
    )
    return FeatureExtractor(spec.build(), spec, **options)


def _time_ms(fn, device: torch.device, runs: int) -> tuple[float, object]:
    """Median wall time of ``fn()`` over ``runs`` calls, after one warm-up call."""
    result = fn()
    times = []
    for _ in range(runs):
        _synchronize(device)
        start = time.perf_counter()
        result = fn()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def cmd_demo(args: argparse.Namespace) -> int:
    extractor = _build_extractor(args)
    device = extractor.device
    print(
        f"backbone {extractor.spec.name} on {device} ({args.precision}), "
        f"resize {args.resize} {args.size}, layers {args.layers}, median of {args.runs} run(s)\n"
    )
    print(f"{'image':<16} {'original':>10} {'input':>10} {'pre ms':>8} {'backbone ms':>12}  feature maps (CxHxW)")
    failures = 0
    totals = []
    for path in args.images or sample_images():
        try:
            image = read_rgb(Path(path))
        except ValueError as e:
            print(f"{Path(path).name:<16} error: {e}")
            failures += 1
            continue
        pre_ms, prepared = _time_ms(lambda: extractor.preprocess(image), device, args.runs)
        bb_ms, maps = _time_ms(lambda: extractor.run_backbone(prepared), device, args.runs)
        totals.append(pre_ms + bb_ms)
        original = "{1}x{0}".format(*image.shape[:2])
        resized = "{1}x{0}".format(*prepared.input_size)
        shapes = ", ".join("x".join(map(str, m.shape[1:])) for m in maps)
        print(f"{Path(path).name:<16} {original:>10} {resized:>10} {pre_ms:>8.1f} {bb_ms:>12.1f}  {shapes}")
    if totals:
        mean = sum(totals) / len(totals)
        print(f"\n{len(totals)} image(s): {mean:.1f} ms per frame on average ({1e3 / mean:.1f} frames/s)")
    return 1 if failures else 0


def cmd_backbones(args: argparse.Namespace) -> int:
    print(f"{'name':<24} {'params':>10}  weights")
    for name in list_backbones():
        spec = get_backbone_spec(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in spec.build().parameters())
        try:
            found = f"found: {resolve_weights(spec)}"
        except WeightsNotFoundError:
            found = f"not found (expects {spec.weights.meta_filename}"
            found += f" or {spec.weights.hf_repo})" if spec.weights.hf_repo else ")"
        print(f"{name:<24} {params / 1e6:>9.1f}M  {found}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinov3-toolkit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the backbone on images and print shapes and timings")
    demo.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    demo.add_argument("--backbone", default="vits16plus", help="variant name (see `backbones`)")
    demo.add_argument("--weights", help="weights file or folder (default: searched, see weights/README.md)")
    demo.add_argument("--random-weights", action="store_true", help="do not look for weights")
    demo.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (falls back to cpu)")
    demo.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    demo.add_argument("--size", type=_positive_int, default=640, help="resize target in pixels")
    demo.add_argument("--resize", default="stretch", choices=RESIZE_MODES)
    demo.add_argument("--layers", type=int, nargs="+", default=[-1], help="layer indices to return")
    demo.add_argument("--runs", type=_positive_int, default=3, help="timed runs per image, after one warm-up")
    demo.set_defaults(func=cmd_demo)

    backbones = sub.add_parser("backbones", help="list backbone variants and where their weights are")
    backbones.set_defaults(func=cmd_backbones)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
