"""What every `dinov3` command shares: building the engine from the options, the terminal report, exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dinov3_toolkit import result_kinds
from dinov3_toolkit.backbone import WeightsNotFoundError
from dinov3_toolkit.engine import Engine, FrameResult
from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.heads import HeadError
from dinov3_toolkit.heads.loader import HEAD_UNWEIGHTED
from dinov3_toolkit.offline.runner import RunSummary
from dinov3_toolkit.offline.sources import SourceFrame
from dinov3_toolkit.results import Detections

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "dinov3_toolkit" / "offline" / "samples"
RVIZ_CONFIG = "config/dinov3.rviz"
EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130  # 130: killed by SIGINT, by convention
RANDOM_HINT = ("To try the pipeline without weights, {}: everything without weights then runs on random ones, "
               "and every output says its results are meaningless.")


def sample_images() -> list[Path]:
    """The bundled sample photos (public domain, from scikit-image's data set; see the README)."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


# ---- shared pieces ------------------------------------------------------------------------------


def random_hint(errors: Iterable[Exception], args: argparse.Namespace, *, random_weights: bool) -> str:
    """How to run anyway when one of ``errors`` is missing weights, on a line of its own; else ''.

    ``--random-weights`` where it was not given; where ``--weights`` named a backbone file that is
    missing, also to drop it (random weights never stand in for a file the user named).
    """
    errors = list(errors)
    if any(isinstance(e, WeightsNotFoundError) for e in errors) and args.weights is not None:
        return "\n" + RANDOM_HINT.format("drop --weights and pass --random-weights")
    if not random_weights and any(isinstance(e, WeightsNotFoundError) or HEAD_UNWEIGHTED in str(e) for e in errors):
        return "\n" + RANDOM_HINT.format("pass --random-weights")
    return ""


@contextmanager
def hinting_random_weights(args: argparse.Namespace, *, random_weights: bool) -> Iterator[None]:
    """Missing weights (the backbone's, or a head's) raised inside end with ``random_hint``'s advice."""
    try:
        yield
    except (WeightsNotFoundError, HeadError) as e:
        hint = random_hint([e], args, random_weights=random_weights)
        if not hint:
            raise
        if isinstance(e, HeadError):
            raise HeadError(e.head, e.path, f"{e.message}{hint}") from e
        raise WeightsNotFoundError(f"{e}{hint}") from e


def build_engine(args: argparse.Namespace, *, random_weights: bool) -> Engine:
    """The engine the options describe; an error when not one head can run (nothing would be produced).

    Missing weights are an error that says how to run anyway (``random_hint``).
    """
    with hinting_random_weights(args, random_weights=random_weights):
        engine = _create_engine(args, random_weights)
    if not engine.heads:
        reasons = "".join(f"\n  {error}" for error in engine.failed.values()) or " no head was found"
        hint = random_hint(engine.failed.values(), args, random_weights=random_weights)
        raise ConfigError(f"no head can run:{reasons}{hint}")
    return engine


def _create_engine(args: argparse.Namespace, random_weights: bool) -> Engine:
    return Engine.create(
        backbone=args.backbone,
        backbone_weights=args.weights,
        device=args.device,
        precision=args.precision,
        size=args.size,
        resize_mode=args.resize,
        heads=args.heads,
        head_dirs=args.head_dir,
        head_params=args.param,
        random_weights=random_weights,
        backbone_overrides={"depth": args.depth} if getattr(args, "depth", None) else None,
        stream_gap_s=args.stream_gap,
        allow_backbone_mismatch=args.allow_backbone_mismatch,
    )


def random_notice(engine: Engine) -> str | None:
    """The warning drawn on every overlay when anything runs on random weights (the node's text)."""
    random = engine.random_weights
    return f"RANDOM WEIGHTS ({', '.join(random)}): output is meaningless" if random else None


def describe_engine(engine: Engine, args: argparse.Namespace) -> None:
    """What runs, where, which heads were skipped and why, and the random-weights warning."""
    print(
        f"backbone {engine.extractor.spec.name} on {engine.device} ({args.precision}), resize {args.resize} "
        f"{args.size}, heads {', '.join(engine.heads) or 'none'}"
    )
    for name, error in engine.failed.items():
        print(f"head {name} is skipped: {error}")
    notice = random_notice(engine)
    if notice:
        print(f"\n*** {notice}. Shapes and timings are real; put weights in place for real results "
              "(README, Weights). ***\n")


def finish(summary: RunSummary, outputs: list[Any], engine: Engine) -> int:
    """Print the closing summary; the exit status says whether every frame went through every head.

    Partial (1): frames skipped, a head that failed or never ran, no frame at all, or a source
    that ended before the frames it declared.
    """
    print()
    for line in summary.lines():
        print(line)
    for output in outputs:
        print(f"wrote {output.describe()}")
    if summary.interrupted:
        return EXIT_INTERRUPTED
    for name in engine.failed:
        print(f"head {name} did not run (see above)")
    partial = summary.skipped or summary.head_errors or engine.failed or not summary.frames or summary.shortfall
    return EXIT_PARTIAL if partial else EXIT_OK


class FrameReport:
    """A line per frame on the terminal: sizes, stage times and what each head found (the demo's table)."""

    wants_overlay = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.boxes: dict[str, int] = {}  # detection head -> boxes found over the run
        print(f"\n{'image':<16} {'original':>10} {'input':>10} {'pre ms':>7} {'backbone ms':>12} {'heads ms':>9}"
              "  results")

    def write(self, item: SourceFrame, frame: FrameResult, overlay: np.ndarray | None) -> None:
        t = frame.timings
        height, width = frame.image_size
        in_h, in_w = self.engine.extractor.preprocess.input_size(height, width)
        results = "; ".join(f"{name}: {result_kinds.summary(result)}" for name, result in frame.results.items())
        for name, result in frame.results.items():
            if isinstance(result, Detections):
                self.boxes[name] = self.boxes.get(name, 0) + len(result)
        results += "".join(f"; {name}: FAILED ({error})" for name, error in frame.errors.items())
        heads_ms = (t.total - t.preprocess - t.backbone) * 1e3
        tqdm.write(f"{item.name:<16} {width:>4}x{height:<5} {in_w:>4}x{in_h:<5} {t.preprocess * 1e3:>7.1f} "
                   f"{t.backbone * 1e3:>12.1f} {heads_ms:>9.1f}  {results}")


def rviz_config() -> str:
    """The RViz config in this source tree, or where colcon installs it."""
    source = Path(__file__).resolve().parents[2] / RVIZ_CONFIG
    return str(source) if source.is_file() else f"$(ros2 pkg prefix dinov3_ros)/share/dinov3_ros/{RVIZ_CONFIG}"
