"""`dinov3 run`, `bag` and `demo`: frames through the engine into records, overlays and bags."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dinov3_toolkit.engine import Engine
from dinov3_toolkit.offline.interrupts import StopOnInterrupt
from dinov3_toolkit.offline.records import RECORDS_FILE, SCHEMA_PATH, RunOutput, check_run_folder
from dinov3_toolkit.offline.runner import run_frames
from dinov3_toolkit.offline.sources import ImageFiles, open_source

from ..bag import BagImages, BagOutput, check_output_path
from .common import FrameReport, build_engine, describe_engine, finish, random_notice, rviz_config, sample_images


def _bag_output(args: argparse.Namespace, engine: Engine, path: Path, **kwargs: Any) -> BagOutput:
    return BagOutput(
        path, engine.heads, storage=args.storage, distro=args.distro, namespace=args.namespace,
        class_id=args.class_id, head_overlays=args.head_overlays, notice=random_notice(engine),
        overwrite=args.overwrite, **kwargs,
    )


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
        summary.shortfall = source.shortfall
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
    rviz = rviz_config()
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
