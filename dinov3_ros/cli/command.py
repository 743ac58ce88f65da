"""The `dinov3` command itself: options, subcommands, and how errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from dinov3_toolkit.config import DEFAULTS
from dinov3_toolkit.device import PRECISIONS
from dinov3_toolkit.errors import Dinov3Error
from dinov3_toolkit.preprocess import RESIZE_MODES

from ..bag import STORAGES
from ..messages import CLASS_ID_MODES, DISTROS
from .common import EXIT_INTERRUPTED, EXIT_USAGE
from .info import cmd_backbones, cmd_check, cmd_heads
from .offline import cmd_bag, cmd_demo, cmd_run
from .tools import cmd_bench, cmd_export


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _frame_size(text: str) -> tuple[int, int]:
    """``1280x720`` -> (720, 1280), i.e. (H, W)."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"frame size must be WIDTHxHEIGHT, e.g. 1280x720; got {text!r}")
    return int(height), int(width)


class _HeadParam(argparse.Action):
    """``--param detection.score_threshold=0.4`` -> {"detection": {"score_threshold": 0.4}} (YAML-typed value)."""

    def __call__(self, parser, namespace, text, option_string=None):
        key, sep, value = text.partition("=")
        head, dot, name = key.partition(".")
        if not (sep and dot and head and name):
            parser.error(f"{option_string} takes HEAD.NAME=VALUE, e.g. detection.score_threshold=0.4; got {text!r}")
        params = {h: dict(p) for h, p in (getattr(namespace, self.dest) or {}).items()}
        params.setdefault(head, {})[name] = yaml.safe_load(value)
        setattr(namespace, self.dest, params)


def _engine_options(parser: argparse.ArgumentParser, *, random_option: bool = True) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--backbone", default=DEFAULTS.backbone, help="variant name (see `dinov3 backbones`)")
    g.add_argument("--weights", help="backbone weights file or folder (default: searched, see `dinov3 check`)")
    g.add_argument("--device", default=DEFAULTS.device,
                   help="cpu, cuda or cuda:N (cuda falls back to cpu; default %(default)s)")
    g.add_argument("--precision", default=DEFAULTS.precision, choices=list(PRECISIONS))
    g.add_argument("--size", type=_positive_int, default=DEFAULTS.size,
                   help="resize target in pixels (default %(default)s)")
    g.add_argument("--resize", default=DEFAULTS.resize_mode, choices=RESIZE_MODES)
    g.add_argument("--heads", nargs="+", help="heads to run (default: every head found)")
    g.add_argument("--head-dir", action="append", default=[], help="extra folder of head_* folders (repeatable)")
    g.add_argument("--param", action=_HeadParam, metavar="HEAD.NAME=VALUE",
                   help="head parameter, e.g. detection.score_threshold=0.4 (repeatable)")
    if random_option:
        g.add_argument("--random-weights", action="store_true",
                       help="run with random weights where none are found (smoke tests; results are meaningless)")


def _bag_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("bag output")
    g.add_argument("--storage", default="mcap", choices=STORAGES, help="bag storage format (default %(default)s)")
    g.add_argument("--distro", default="jazzy", choices=DISTROS,
                   help="message definitions to record (both distros play the bag; default %(default)s)")
    g.add_argument("--namespace", default="/dinov3", help="namespace of the result topics (the node's; %(default)s)")
    g.add_argument("--class-id", default="name", choices=CLASS_ID_MODES, help="Detection2D class_id: name or index")
    g.add_argument("--head-overlays", action="store_true", help="also record each head's own overlay topic")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the outputs (records, files, bag) of an earlier run")


def build_parser() -> argparse.ArgumentParser:
    overview = sys.modules[__package__].__doc__.split("\n\n")  # the package docstring lists the subcommands
    parser = argparse.ArgumentParser(prog="dinov3", description=overview[0], epilog=overview[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="images, a video or a camera -> overlays, JSON records, label/depth files")
    run.add_argument("source", help="image file, folder, quoted glob ('shots/*.png'), video file, or camera index")
    run.add_argument("--out", default="dinov3_out", help="output folder (default %(default)s)")
    run.add_argument("--no-overlay", action="store_true", help="write no overlays (faster)")
    run.add_argument("--bag", action="store_true", help="also write a rosbag2 with the node's topics to OUT/bag")
    run.add_argument("--rate", type=_positive_float, default=10.0,
                     help="frames per second that stamp still images (default %(default)s)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _engine_options(run)
    _bag_options(run)
    run.set_defaults(func=cmd_run)

    bag = sub.add_parser("bag", help="a rosbag2 with camera images -> a new bag with the node's topics")
    bag.add_argument("input", help="input bag folder (sqlite3 or MCAP) or .mcap/.db3 file")
    bag.add_argument("--out", required=True, help="output bag folder: new, or an earlier output with --overwrite")
    bag.add_argument("--topic", help="image topic to read (default: the bag's only Image/CompressedImage topic)")
    bag.add_argument("--no-overlay", action="store_true", help="do not record the combined overlay")
    bag.add_argument("--quiet", action="store_true", help="no progress bar")
    _engine_options(bag)
    _bag_options(bag)
    bag.set_defaults(func=cmd_bag)

    demo = sub.add_parser("demo", help="every head on the bundled photos -> overlays, JSON, an MCAP bag")
    demo.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    demo.add_argument("--out", default="dinov3_demo",
                      help="output folder; an earlier demo's outputs there are replaced (default %(default)s)")
    _engine_options(demo, random_option=False)
    demo.set_defaults(func=cmd_demo, storage="mcap", distro="jazzy", namespace="/dinov3", class_id="name",
                      head_overlays=False, overwrite=True)

    heads = sub.add_parser("heads", help="the heads found: task, classes, layers, weights")
    heads.add_argument("--head-dir", action="append", default=[], help="extra folder of head_* folders (repeatable)")
    heads.add_argument("-v", "--verbose", action="store_true", help="also the description, folder and class names")
    heads.set_defaults(func=cmd_heads)

    check = sub.add_parser("check", help="versions, devices, precisions, and where weights are")
    check.add_argument("--head-dir", action="append", default=[], help="extra folder of head_* folders (repeatable)")
    check.set_defaults(func=cmd_check)

    export = sub.add_parser("export", help="the backbone and heads as one ONNX graph, checked with onnxruntime")
    export.add_argument("--out", default="dinov3.onnx", help="ONNX file to write (default %(default)s)")
    export.add_argument("--no-check", action="store_true", help="do not compare with onnxruntime")
    _engine_options(export)
    export.set_defaults(func=cmd_export, device="cpu")

    bench = sub.add_parser("bench", help="per-frame cost stage by stage, ratios, JSON and a plot")
    bench.add_argument("--out", default="dinov3_bench",
                       help="folder for bench.json and bench.png (default %(default)s)")
    bench.add_argument("--frame", type=_frame_size, metavar="WxH", help="camera frame size (default: SIZExSIZE)")
    bench.add_argument("--rounds", type=_positive_int, default=10,
                       help="timed calls of every stage (default %(default)s)")
    bench.add_argument("--warmup", type=int, default=2, help="untimed calls of every stage first (default %(default)s)")
    bench.add_argument("--depth", type=_positive_int, help="build the backbone with this many blocks (quick runs)")
    bench.add_argument("--no-transformers", action="store_true", help="skip stage (e), transformers' DINOv3ViTModel")
    bench.add_argument("--no-ros", action="store_true", help="skip stage (c), building the ROS messages")
    _engine_options(bench, random_option=False)
    bench.set_defaults(func=cmd_bench)

    backbones = sub.add_parser("backbones", help="every backbone variant, its size and whether its weights are found")
    backbones.set_defaults(func=cmd_backbones)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
    for ours in ("dinov3_toolkit", "dinov3_ros"):  # our progress notes, not every library's
        logging.getLogger(ours).setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Dinov3Error as e:  # what the user asked for cannot be used: the message says why; a bug shows its traceback
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C while loading, before any output was opened
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
