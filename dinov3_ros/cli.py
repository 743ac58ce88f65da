"""``dinov3``: the engine and the node's message conversion without ROS running.

Subcommands:
  run        images (file, folder, glob), a video or a camera -> overlays, JSON, label PNGs, depth, a bag
  bag        a rosbag2 with camera images -> a new bag with the node's topics added
  demo       every built-in head on the bundled photos -> overlays, JSON and an MCAP bag
  heads      the heads found: task, classes, weights
  check      versions, devices and precisions, where weights were looked for and found
  export     the backbone and heads as one ONNX graph, checked against onnxruntime
  bench      per-frame cost stage by stage, ratios, JSON and a plot (README, "Performance")
  backbones  every backbone variant, its size and whether its weights are found

It lives in the ROS layer because bags use ``conversions`` (the node's code);
it needs no ROS install, only ``rosbags`` for the bag outputs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import platform
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from tqdm import tqdm

from dinov3_toolkit.backbone import WeightsNotFoundError, get_backbone_spec, list_backbones, resolve_weights
from dinov3_toolkit.backbone import weights as backbone_weights
from dinov3_toolkit.device import PRECISIONS, autocast
from dinov3_toolkit.engine import Engine, FrameResult
from dinov3_toolkit.heads.loader import discover, weights_candidates
from dinov3_toolkit.preprocess import RESIZE_MODES
from dinov3_toolkit.offline.interrupts import StopOnInterrupt
from dinov3_toolkit.offline.records import RECORDS_FILE, SCHEMA_PATH, RunOutput, check_run_folder
from dinov3_toolkit.results import DepthMap, Detections, SemanticLabels
from dinov3_toolkit.offline.runner import RunSummary, run_frames
from dinov3_toolkit.offline.sources import ImageFiles, SourceFrame, open_source

from .bag import STORAGES, BagImages, BagOutput, check_output_path
from .conversions import CLASS_ID_MODES, DISTROS

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "dinov3_toolkit" / "offline" / "samples"
RVIZ_CONFIG = "config/dinov3.rviz"
EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130  # 130: killed by SIGINT, by convention


def sample_images() -> list[Path]:
    """The bundled sample photos (public domain, from scikit-image's data set; see the README)."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


# ---- shared pieces ------------------------------------------------------------------------------


def build_engine(args: argparse.Namespace, *, random_weights: bool) -> Engine:
    """The engine the options describe; an error when not one head can run (nothing would be produced)."""
    engine = Engine.create(
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
    )
    if not engine.heads:
        reasons = "".join(f"\n  {error}" for error in engine.failed.values()) or " no head was found"
        raise ValueError(f"no head can run:{reasons}")
    return engine


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
    """Print the closing summary; the exit status says whether every frame went through every head."""
    print()
    for line in summary.lines():
        print(line)
    for output in outputs:
        print(f"wrote {output.describe()}")
    if summary.interrupted:
        return EXIT_INTERRUPTED
    for name in engine.failed:
        print(f"head {name} did not run (see above)")
    partial = summary.skipped or summary.head_errors or engine.failed or not summary.frames
    return EXIT_PARTIAL if partial else EXIT_OK


class FrameReport:
    """A line per frame on the terminal: sizes, stage times and what each head found (the demo's table)."""

    wants_overlay = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        print(f"\n{'image':<16} {'original':>10} {'input':>10} {'pre ms':>7} {'backbone ms':>12} {'heads ms':>9}"
              "  results")

    def write(self, item: SourceFrame, frame: FrameResult, overlay: np.ndarray | None) -> None:
        t = frame.timings
        height, width = frame.image_size
        in_h, in_w = self.engine.extractor.preprocess.input_size(height, width)
        results = "; ".join(f"{name}: {_summary(result)}" for name, result in frame.results.items())
        results += "".join(f"; {name}: FAILED ({error})" for name, error in frame.errors.items())
        heads_ms = (t.total - t.preprocess - t.backbone) * 1e3
        tqdm.write(f"{item.name:<16} {width:>4}x{height:<5} {in_w:>4}x{in_h:<5} {t.preprocess * 1e3:>7.1f} "
                   f"{t.backbone * 1e3:>12.1f} {heads_ms:>9.1f}  {results}")


def _summary(result: object) -> str:
    """A few words about one head's result, for the terminal."""
    if isinstance(result, Detections):
        top = ", ".join(f"{name} {score:.2f}" for name, score in zip(result.names()[:3], result.scores[:3]))
        return f"{len(result)} boxes" + (f" ({top}{', ...' if len(result) > 3 else ''})" if len(result) else "")
    if isinstance(result, SemanticLabels):
        present = np.bincount(result.labels.ravel(), minlength=len(result.class_names))
        largest = [result.class_names[i] for i in np.argsort(present)[::-1][:3] if present[i]]
        n = np.count_nonzero(present)
        return f"{n} class{'es' if n != 1 else ''} ({', '.join(largest)}{', ...' if n > 3 else ''})"
    if isinstance(result, DepthMap):
        return f"depth {np.nanmin(result.depth):.2f}..{np.nanmax(result.depth):.2f}"
    return type(result).__name__


def _bag_output(args: argparse.Namespace, engine: Engine, path: Path, **kwargs: Any) -> BagOutput:
    return BagOutput(
        path, engine.heads, storage=args.storage, distro=args.distro, namespace=args.namespace,
        class_id=args.class_id, head_overlays=args.head_overlays, notice=random_notice(engine),
        overwrite=args.overwrite, **kwargs,
    )


# ---- commands -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Images, a video or a camera through the engine into ``--out`` (and a bag with ``--bag``)."""
    out = Path(args.out)
    check_run_folder(out, args.overwrite)  # taken outputs are reported before the (slow) model load
    if args.bag:
        check_output_path(out / "bag", args.overwrite)
    with ExitStack() as stack:  # closes in reverse: outputs first, then Ctrl-C handling ends
        stop = stack.enter_context(StopOnInterrupt())
        source = open_source(args.source, rate=args.rate)
        stack.callback(source.close)
        engine = build_engine(args, random_weights=args.random_weights)
        describe_engine(engine, args)
        overlays = "none" if args.no_overlay else "images" if isinstance(source, ImageFiles) else "video"
        outputs: list[Any] = [
            stack.enter_context(stop.closing(RunOutput(out, overlays=overlays, fps=source.fps,
                                                       overwrite=args.overwrite)))
        ]
        if args.bag:
            bag = _bag_output(args, engine, out / "bag", overlay=not args.no_overlay)
            outputs.append(stack.enter_context(stop.closing(bag)))
        summary = run_frames(engine, source, outputs, total=source.total, notice=random_notice(engine),
                             progress=not args.quiet, stop=stop)
    return finish(summary, outputs, engine)


def cmd_bag(args: argparse.Namespace) -> int:
    """A bag's camera images through the engine into a new bag with the node's topics."""
    check_output_path(args.out, args.overwrite, input_path=args.input)  # before the (slow) model load
    with ExitStack() as stack:
        stop = stack.enter_context(StopOnInterrupt())
        source = BagImages(args.input, args.topic, distro=args.distro)
        stack.callback(source.close)
        engine = build_engine(args, random_weights=args.random_weights)
        describe_engine(engine, args)
        print(f"reading {source.total or 'an unknown number of'} frame(s) of {source.topic} ({source.msgtype}) "
              f"from {source.path}")
        output = stack.enter_context(stop.closing(_bag_output(args, engine, Path(args.out),
                                                              overlay=not args.no_overlay)))
        summary = run_frames(engine, source, [output], total=source.total, notice=random_notice(engine),
                             progress=not args.quiet, stop=stop)
    return finish(summary, [output], engine)


def cmd_demo(args: argparse.Namespace) -> int:
    """`run` on the samples with a bag, random weights where none are found, and directions at the end."""
    images = [Path(p) for p in args.images] or sample_images()
    source = ImageFiles(images)
    engine = build_engine(args, random_weights=True)
    describe_engine(engine, args)
    out = Path(args.out)
    with ExitStack() as stack:
        stop = stack.enter_context(StopOnInterrupt())
        outputs = [
            stack.enter_context(stop.closing(RunOutput(out, overlays="images", overwrite=True))),
            stack.enter_context(stop.closing(_bag_output(args, engine, out / "bag", overlay=True))),
        ]
        summary = run_frames(engine, source, [FrameReport(engine), *outputs], total=source.total,
                             notice=random_notice(engine), progress=False, stop=stop)
    status = finish(summary, outputs, engine)
    rviz = _rviz_config()
    print(f"""
Where to look ({out.resolve()}):
  overlays/       one picture per photo: segmentation colours, labelled boxes, the depth map beside
  {RECORDS_FILE}    one JSON record per photo (schema: {SCHEMA_PATH})
  labels/ depth/  the label maps (PNG) and depth maps (.npy) the records name
  bag/            an MCAP rosbag2: the photos on /camera/image_raw and every /dinov3 topic the node publishes

View the bag:
  ROS 2:     ros2 bag play {out / 'bag'} --loop   and, in a second terminal,   rviz2 -d {rviz}
  Foxglove:  open {next((out / 'bag').glob('*.mcap'), out / 'bag')} in Foxglove (app or foxglove.dev), no ROS needed""")
    if random_notice(engine):
        print(f"\n*** Reminder: {random_notice(engine)}. The outputs show the pipeline at work, not real results. ***")
    return status


def cmd_heads(args: argparse.Namespace) -> int:
    """Every head found, its task, classes and layers, and whether its weights are in place."""
    manifests, failed = discover(args.head_dir)
    print(f"{'head':<16} {'task':<14} {'classes':>7}  {'layers':<10} weights")
    for name, manifest in manifests.items():
        names = manifest.read_class_names() if manifest.classes else ()
        classes = len(names)
        candidates = weights_candidates(manifest)
        found = next((p for p in candidates if p.is_file()), None)
        if found is not None:
            weights = f"found: {found}"
        elif candidates:
            weights = f"MISSING (looked for {', '.join(str(p) for p in candidates)})"
        else:
            weights = "none needed"
        print(f"{name:<16} {manifest.task:<14} {classes:>7}  {str(list(manifest.layers)):<10} {weights}")
        if args.verbose:
            print(f"{'':<16} {manifest.description} [{manifest.folder}]")
            if classes:
                print(f"{'':<16} classes: {', '.join(names[:12])}{', ...' if classes > 12 else ''}")
    for name, error in failed.items():
        print(f"{name:<16} BROKEN: {error}")
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """What this machine offers: versions, devices and precisions that work, where weights are."""
    print(f"python {platform.python_version()} on {platform.platform()}")
    cuda_build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    print(f"torch {torch.__version__} ({cuda_build}), numpy {np.__version__}, opencv {cv2.__version__}")
    for package in ("safetensors", "rosbags", "tqdm", "transformers"):
        print(f"  {package:<13} {_version(package)}")
    for module in ("rclpy", "cv_bridge", "vision_msgs"):
        found = importlib.util.find_spec(module) is not None
        print(f"  {module:<13} {'importable' if found else 'not importable (needed only by the ROS node)'}")

    print("\ndevices and precisions (a small convolution and matmul run under each):")
    devices = [torch.device("cpu")] + [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    for device in devices:
        if device.type == "cuda":
            p = torch.cuda.get_device_properties(device)
            name = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute {p.major}.{p.minor}"
        else:
            name = platform.processor() or platform.machine()
        support = ", ".join(f"{precision} {_precision_works(device, dtype)}" for precision, dtype in PRECISIONS.items())
        print(f"  {str(device):<8} {name}: {support}")
    if not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if not torch.version.cuda else "no CUDA device or driver found"
        print(f"  no CUDA device: {why}; 'cuda' falls back to the CPU")

    print("\nweights are looked for in (first match wins):")
    for folder in backbone_weights.search_dirs():
        print(f"  {folder}" + ("" if folder.is_dir() else "  (does not exist)"))
    found = []
    for backbone in list_backbones():
        try:
            found.append(f"{backbone}: {resolve_weights(get_backbone_spec(backbone))}")
        except WeightsNotFoundError:
            pass
    print("backbone weights found:" + "".join(f"\n  {line}" for line in found) if found else
          "backbone weights found: none (README, Weights: where to get them)")
    print()
    return cmd_heads(argparse.Namespace(head_dir=args.head_dir, verbose=False))


def cmd_export(args: argparse.Namespace) -> int:
    """The backbone and heads as ONNX (fixed input size), compared with onnxruntime unless --no-check."""
    from dinov3_toolkit.tools.export import compare_with_onnxruntime, export_onnx

    engine = build_engine(args, random_weights=args.random_weights)
    describe_engine(engine, args)
    names = export_onnx(engine, args.out)
    side = engine.extractor.preprocess.size
    height, width = engine.extractor.preprocess.input_size(side, side)
    print(f"wrote {Path(args.out).resolve()}: input 'image' (1, 3, {height}, {width}) normalised RGB, "
          f"outputs {', '.join(names)}")
    if not args.no_check:
        print(f"onnxruntime (CPU) vs PyTorch on a random input: max abs difference "
              f"{compare_with_onnxruntime(engine, args.out):.2e}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """Time the stages side by side (``dinov3_toolkit.tools.benchmark``); write bench.json and bench.png."""
    from dinov3_toolkit.tools import benchmark

    engine = build_engine(args, random_weights=True)  # speed does not depend on the weights' values
    height, width = args.frame or (args.size, args.size)
    frame = cv2.resize(cv2.imread(str(sample_images()[0]))[:, :, ::-1], (width, height), interpolation=cv2.INTER_AREA)
    settings = {
        "backbone": args.backbone, "depth": engine.extractor.backbone.num_layers, "size": args.size,
        "frame": [height, width], "precision": args.precision, "rounds": args.rounds, "warmup": args.warmup,
    }
    total = args.rounds + args.warmup
    print(f"timing {args.backbone} at {args.size} ({args.precision}, {engine.device}) with heads "
          f"{', '.join(engine.heads)} on a {width}x{height} frame: {total} rounds of every stage...")
    transformers = not args.no_transformers and engine.extractor.spec.family.name == "vit"
    data = benchmark.run_benchmark(
        engine, frame, rounds=args.rounds, warmup=args.warmup, transformers=transformers, settings=settings,
        to_messages=None if args.no_ros else _message_builder(),
    )
    print()
    print(benchmark.markdown_table(data))
    json_path, plot_path = benchmark.write(data, args.out)
    print(f"\nwrote {json_path.resolve()} and {plot_path.resolve()}")
    if engine.random_weights:
        print(f"(random weights for {', '.join(engine.random_weights)}: the timings hold, the results do not)")
    return EXIT_OK


def _message_builder() -> Any:
    """Stage (c): the node's messages of a frame (no overlay: the node draws those only for subscribers).

    rclpy's message classes when ROS is sourced, else rosbags' (what ``dinov3 bag`` records).
    """
    from . import conversions
    from .topics import frame_messages

    M = conversions.ros_messages() if importlib.util.find_spec("rclpy") else conversions.bag_messages()
    header = conversions.make_header(M, 0, 0, "camera")

    def to_messages(result: FrameResult, rgb: np.ndarray) -> dict[str, Any]:
        return frame_messages(M, header, rgb, result, wanted=lambda topic: not topic.endswith("overlay"))

    return to_messages


def cmd_backbones(args: argparse.Namespace) -> int:
    """Every backbone variant, its parameter count, and its weights file if found."""
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
    return EXIT_OK


def _precision_works(device: torch.device, dtype: torch.dtype) -> str:
    try:
        with torch.inference_mode(), autocast(device, dtype):
            x = torch.randn(1, 8, 16, 16, device=device)
            y = torch.nn.functional.conv2d(x, torch.randn(8, 8, 3, 3, device=device))
            (y.flatten(1) @ y.flatten(1).T).sum().item()
        return "ok"
    except Exception as e:  # the point is to find out, whatever the failure
        return f"FAILS ({type(e).__name__})"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _rviz_config() -> str:
    """The RViz config in this source tree, or where colcon installs it."""
    source = Path(__file__).resolve().parents[1] / RVIZ_CONFIG
    return str(source) if source.is_file() else f"$(ros2 pkg prefix dinov3_ros)/share/dinov3_ros/{RVIZ_CONFIG}"


# ---- arguments ----------------------------------------------------------------------------------


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
    g.add_argument("--backbone", default="vits16plus", help="variant name (see `dinov3 backbones`)")
    g.add_argument("--weights", help="backbone weights file or folder (default: searched, see `dinov3 check`)")
    g.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (cuda falls back to cpu; default %(default)s)")
    g.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    g.add_argument("--size", type=_positive_int, default=640, help="resize target in pixels (default %(default)s)")
    g.add_argument("--resize", default="stretch", choices=RESIZE_MODES)
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
    parser = argparse.ArgumentParser(prog="dinov3", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n")[1])
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
    # ValueError includes SourceError and BagError; ImportError is a missing extra (export, bench).
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C while loading, before any output was opened
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
