"""The `dinov3` command itself: options, subcommands, and how errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import sys

from dinov3_toolkit.config import DEFAULTS
from dinov3_toolkit.device import PRECISIONS
from dinov3_toolkit.errors import Dinov3Error
from dinov3_toolkit.preprocess import RESIZE_MODES
from dinov3_toolkit.training.train_head import DEFAULT_CACHE
from dinov3_toolkit.training.trainer import AMP, SCHEDULES, TrainOptions

from ..bag import STORAGES
from ..topics import DEFAULT_NAMESPACE
from ..messages import CLASS_ID_MODES, DISTROS
from .common import EXIT_INTERRUPTED, EXIT_USAGE
from .info import cmd_backbones, cmd_check, cmd_heads
from .offline import cmd_bag, cmd_demo, cmd_run
from .option_types import HeadNames, HeadParam, KeyValue, bounded, frame_size, ros_namespace
from .soak import add_soak_parser
from .tools import cmd_bench, cmd_export
from .training import cmd_eval, cmd_synth, cmd_train


DEVICE_HELP = ("auto, cpu, cuda or cuda:N (auto: a GPU where CUDA works, else the CPU; cuda falls back to the "
               "CPU with a warning; default %(default)s)")


def _engine_options(parser: argparse.ArgumentParser, *, random_option: bool = True) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--backbone", default=DEFAULTS.backbone, help="variant name (see `dinov3 backbones`)")
    g.add_argument("--weights", help="backbone weights file or folder (default: searched, see `dinov3 check`)")
    g.add_argument("--device", default=DEFAULTS.device, help=DEVICE_HELP)
    g.add_argument("--precision", default=DEFAULTS.precision, choices=list(PRECISIONS))
    g.add_argument("--size", type=bounded("size"), default=DEFAULTS.size,
                   help="resize target in pixels (default %(default)s)")
    g.add_argument("--resize", default=DEFAULTS.resize_mode, choices=RESIZE_MODES)
    g.add_argument("--heads", nargs="+", action=HeadNames, metavar="HEAD",
                   help="heads to run, e.g. --heads detection depth or --heads detection,depth "
                        "(default: every head found)")
    g.add_argument("--head-dir", action="append", default=[], help="extra folder of head_* folders (repeatable)")
    g.add_argument("--param", action=HeadParam, metavar="HEAD.NAME=VALUE",
                   help="head parameter, e.g. detection.score_threshold=0.4 (repeatable)")
    g.add_argument("--allow-backbone-mismatch", action="store_true",
                   help="run heads whose weights were trained on another backbone (their results are poor)")
    g.add_argument("--stream-gap", type=bounded("stream_gap"), default=DEFAULTS.stream_gap_s,
                   help="seconds between frames beyond which temporal heads (flow) start anew (default %(default)s)")
    if random_option:
        g.add_argument("--random-weights", action="store_true",
                       help="run with random weights where none are found (smoke tests; results are meaningless)")


def _bag_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("bag output")
    g.add_argument("--storage", default="mcap", choices=STORAGES, help="bag storage format (default %(default)s)")
    g.add_argument("--distro", default="jazzy", choices=DISTROS,
                   help="message definitions to record (both distros play the bag; default %(default)s)")
    g.add_argument("--namespace", type=ros_namespace, default=DEFAULT_NAMESPACE,
                   help="namespace of the result topics (the node's; %(default)s)")
    g.add_argument("--class-id", default="name", choices=CLASS_ID_MODES, help="Detection2D class_id: name or index")
    g.add_argument("--head-overlays", action="store_true", help="also record each head's own overlay topic")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the outputs (records, files, bag) of an earlier run")


def build_parser() -> argparse.ArgumentParser:
    overview = sys.modules[__package__].__doc__.split("\n\n")[0]  # the package docstring's first line
    parser = argparse.ArgumentParser(prog="dinov3", description=overview)
    # COMMAND, not {run,bag,...}: argparse lists each subcommand once, from its help=.
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands",
                                help="one of these; dinov3 COMMAND -h shows its options")

    run = sub.add_parser("run", help="images, a video or a camera -> overlays, JSON records, label/depth files")
    run.add_argument("source", help="image file, folder, quoted glob ('shots/*.png'), video file, or camera index")
    run.add_argument("--out", default="dinov3_out", help="output folder (default %(default)s)")
    run.add_argument("--no-overlay", action="store_true", help="write no overlays (faster)")
    run.add_argument("--bag", action="store_true", help="also write a rosbag2 with the node's topics to OUT/bag")
    run.add_argument("--rate", type=bounded("rate"), default=10.0,
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
    demo.set_defaults(func=cmd_demo, storage="mcap", distro="jazzy", namespace=DEFAULT_NAMESPACE, class_id="name",
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
    bench.add_argument("--frame", type=frame_size, metavar="WxH", help="camera frame size (default: SIZExSIZE)")
    bench.add_argument("--rounds", type=bounded("rounds"), default=10,
                       help="timed calls of every stage (default %(default)s)")
    bench.add_argument("--warmup", type=bounded("warmup"), default=2,
                       help="untimed calls of every stage first (default %(default)s)")
    bench.add_argument("--depth", type=bounded("depth"), help="build the backbone with this many blocks (quick runs)")
    bench.add_argument("--no-transformers", action="store_true", help="skip stage (e), transformers' DINOv3ViTModel")
    bench.add_argument("--no-ros", action="store_true", help="skip stage (c), building the ROS messages")
    _engine_options(bench, random_option=False)
    bench.set_defaults(func=cmd_bench)

    _training_parsers(sub)
    add_soak_parser(sub)

    backbones = sub.add_parser("backbones", help="every backbone variant, its size and whether its weights are found")
    backbones.set_defaults(func=cmd_backbones)
    return parser


def _training_parsers(sub: argparse._SubParsersAction) -> None:
    defaults = TrainOptions()
    train = sub.add_parser("train", help="train a head on your data -> a head folder the node loads")
    train.add_argument("head", help="template: a head name (detection, segmentation, depth, ...) or a head folder")
    train.add_argument("--data", required=True, help="COCO/panoptic JSON, VOC folder, mask folder or depth folder")
    train.add_argument("--out", required=True, help="the head folder to write, named head_<name>")
    train.add_argument("--images", help="image folder for a JSON data set (default: images/ beside it)")
    train.add_argument("--classes", help="class names file (one per line) fixing the names and their order")
    train.add_argument("--val-data", help="a separate validation set (default: --val-fraction held out)")
    train.add_argument("--val-images", help="image folder of --val-data")
    train.add_argument("--val-fraction", type=bounded("val_fraction"), default=0.1,
                       help="held out for validation (default 0.1)")
    train.add_argument("--head-arg", action=KeyValue, metavar="NAME=VALUE",
                       help="constructor argument over the template's args, e.g. fpn_channels=96 (repeatable)")
    train.add_argument("--loss-arg", action=KeyValue, metavar="NAME=VALUE",
                       help="loss argument over the template's loss_args, e.g. kind=l1 for depth (repeatable)")
    g = train.add_argument_group("recipe (defaults: the published ones, docs/training.md, 'The recipes')")
    g.add_argument("--epochs", type=bounded("epochs"), default=defaults.epochs)
    g.add_argument("--batch", type=bounded("batch"), default=defaults.batch, help="over all processes together")
    g.add_argument("--lr", type=bounded("lr"), default=defaults.lr)
    g.add_argument("--schedule", default=defaults.schedule, choices=SCHEDULES,
                   help="recipe: lr, then lr/10 for the second half (default)")
    g.add_argument("--weight-decay", type=bounded("weight_decay"), default=defaults.weight_decay)
    g.add_argument("--clip", type=bounded("clip"), default=defaults.clip, help="gradient-norm clip, 0 = off")
    g.add_argument("--amp", default=defaults.amp, choices=list(AMP), help="mixed precision on CUDA")
    g.add_argument("--augment", type=bounded("augment"), default=defaults.augment,
                   help="probability of photometric augmentation in the augmented epochs")
    g.add_argument("--augment-epochs", type=bounded("augment_epochs"),
                   help="epochs with augmentation (default: the first half)")
    g.add_argument("--seed", type=bounded("seed"), default=defaults.seed)
    g.add_argument("--workers", type=bounded("workers"), default=defaults.workers, help="data-loader processes")
    g.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="feature cache (default %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    g.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    _backbone_options(train, size_default=DEFAULTS.size, backbone_default=DEFAULTS.backbone)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="score a head folder on a labelled data set (mAP, mIoU, AbsRel, EPE)")
    evaluate.add_argument("head", help="a head folder, or the name of a head found")
    evaluate.add_argument("--data", required=True, help="as for train")
    evaluate.add_argument("--images", help="image folder for a JSON data set")
    evaluate.add_argument("--classes", help="class names file")
    # HEAD.NAME=VALUE, as for `dinov3 run` and the node's parameters (a line copied between them works);
    # HEAD is the head scored, and the bare NAME=VALUE is refused with the right form, never guessed at.
    evaluate.add_argument("--param", action=HeadParam, metavar="HEAD.NAME=VALUE",
                          help="the scored head's parameter, e.g. detection.score_threshold=0.3 "
                               "(default: its manifest's; repeatable)")
    evaluate.add_argument("--median-scaling", action="store_true", help="depth: scale to the truth's median first")
    evaluate.add_argument("--allow-backbone-mismatch", action="store_true",
                          help="score a head on a backbone other than the one it was trained on")
    evaluate.add_argument("--out", help="folder for metrics.json and plots")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    _backbone_options(evaluate, size_default=None, backbone_default=None)
    evaluate.set_defaults(func=cmd_eval)

    synth = sub.add_parser("synth", help="write a small synthetic data set in every format train reads")
    synth.add_argument("out", help="folder to write")
    synth.add_argument("--images", type=bounded("images"), default=8)
    synth.add_argument("--height", type=bounded("image_side"), default=96)
    synth.add_argument("--width", type=bounded("image_side"), default=128)
    synth.add_argument("--seed", type=bounded("seed"), default=0)
    synth.set_defaults(func=cmd_synth)


def _backbone_options(parser: argparse.ArgumentParser, *, size_default: int | None,
                      backbone_default: str | None) -> None:
    g = parser.add_argument_group("backbone (default: " + ("%s" % backbone_default if backbone_default else
                                                          "what the head was trained on") + ")")
    g.add_argument("--backbone", default=backbone_default, help="variant name (see `dinov3 backbones`)")
    g.add_argument("--weights", help="backbone weights file or folder (default: searched)")
    g.add_argument("--random-weights", action="store_true", help="a random backbone where no weights are found "
                   "(tests, smoke runs: the same random weights every time)")
    g.add_argument("--device", default=DEFAULTS.device, help=DEVICE_HELP)
    g.add_argument("--precision", default=DEFAULTS.precision, choices=list(PRECISIONS))
    g.add_argument("--size", type=bounded("size"), default=size_default, help="input side in pixels")
    g.add_argument("--head-dir", action="append", default=[], help="extra folder of head_* folders (repeatable)")


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
