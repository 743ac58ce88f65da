"""``dinov3-toolkit``: the toolkit from the command line, no ROS needed.

Subcommands:
  demo       run the backbone and every head on images (the bundled samples by
             default), print results and per-stage timings, write overlay images
  backbones  list every backbone variant, its size and whether its weights are found
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from .backbone import WeightsNotFoundError, get_backbone_spec, list_backbones, resolve_weights
from .device import PRECISIONS
from .engine import Engine
from .overlays import composite
from .preprocess import RESIZE_MODES
from .results import DepthMap, Detections, SemanticLabels

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def sample_images() -> list[Path]:
    """The bundled sample photos (public domain / CC0, from scikit-image's data set)."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path} (missing, or not an image OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _build_engine(args: argparse.Namespace) -> Engine:
    """Weights are used where found; anything without weights runs on random ones, said loudly."""
    return Engine.create(
        backbone=args.backbone,
        backbone_weights=args.weights,
        device=args.device,
        precision=args.precision,
        size=args.size,
        resize_mode=args.resize,
        heads=args.heads,
        head_dirs=args.head_dir,
        random_weights=True,
    )


def _summary(result: object) -> str:
    """A few words about one head's result, for the terminal."""
    if isinstance(result, Detections):
        top = ", ".join(f"{name} {score:.2f}" for name, score in zip(result.names()[:3], result.scores[:3]))
        return f"{len(result)} boxes" + (f" ({top}{', ...' if len(result) > 3 else ''})" if len(result) else "")
    if isinstance(result, SemanticLabels):
        present = np.bincount(result.labels.ravel(), minlength=len(result.class_names))
        largest = [result.class_names[i] for i in np.argsort(present)[::-1][:3] if present[i]]
        return f"{np.count_nonzero(present)} classes ({', '.join(largest)}, ...)"
    if isinstance(result, DepthMap):
        return f"depth {result.depth.min():.2f}..{result.depth.max():.2f}"
    return type(result).__name__


def cmd_demo(args: argparse.Namespace) -> int:
    engine = _build_engine(args)
    random = engine.random_weights
    notice = f"RANDOM WEIGHTS ({', '.join(random)}): output is meaningless" if random else None
    print(
        f"backbone {engine.extractor.spec.name} on {engine.device} ({args.precision}), resize {args.resize} "
        f"{args.size}, heads {', '.join(engine.heads) or 'none'}, median of {args.runs} run(s)"
    )
    if notice:
        print(f"\n*** {notice}. Shapes and timings are real. ***")
    for name, error in engine.failed.items():
        print(f"head {name} is skipped: {error}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n{'image':<16} {'original':>10} {'input':>10} {'pre ms':>7} {'backbone ms':>12} {'heads ms':>9}  results")
    failures = 0
    totals = []
    for path in args.images or sample_images():
        try:
            image = read_rgb(Path(path))
        except ValueError as e:
            print(f"{Path(path).name:<16} error: {e}")
            failures += 1
            continue
        frames = [engine(image) for _ in range(args.runs)]
        pre = statistics.median(f.timings.preprocess for f in frames) * 1e3
        backbone = statistics.median(f.timings.backbone for f in frames) * 1e3
        total = statistics.median(f.timings.total for f in frames) * 1e3
        totals.append(total)
        frame = frames[-1]
        input_size = engine.extractor.preprocess.input_size(*image.shape[:2])
        results = "; ".join(f"{name}: {_summary(result)}" for name, result in frame.results.items())
        results += "".join(f"; {name}: FAILED ({error})" for name, error in frame.errors.items())
        failures += bool(frame.errors)
        print(
            f"{Path(path).name:<16} {image.shape[1]:>4}x{image.shape[0]:<5} {input_size[1]:>4}x{input_size[0]:<5} "
            f"{pre:>7.1f} {backbone:>12.1f} {total - pre - backbone:>9.1f}  {results}"
        )
        overlay = composite(image, frame.results, notice=notice)
        cv2.imwrite(str(out_dir / f"{Path(path).stem}_overlay.jpg"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    if totals:
        mean = sum(totals) / len(totals)
        print(f"\n{len(totals)} image(s): {mean:.1f} ms per frame on average ({1e3 / mean:.1f} frames/s)")
        print(f"overlays: {out_dir.resolve()}")
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

    demo = sub.add_parser("demo", help="run the backbone and heads on images; timings, results, overlays")
    demo.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    demo.add_argument("--backbone", default="vits16plus", help="variant name (see `backbones`)")
    demo.add_argument("--weights", help="weights file or folder (default: searched, see weights/README.md)")
    demo.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (falls back to cpu)")
    demo.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    demo.add_argument("--size", type=_positive_int, default=640, help="resize target in pixels")
    demo.add_argument("--resize", default="stretch", choices=RESIZE_MODES)
    demo.add_argument("--heads", nargs="+", help="heads to run (default: every head found)")
    demo.add_argument("--head-dir", action="append", default=[], help="extra folder of head_* folders (repeatable)")
    demo.add_argument("--out", default="dinov3_demo", help="folder for the overlay images (default: %(default)s)")
    demo.add_argument("--runs", type=_positive_int, default=3, help="runs per image; timings are their median")
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
