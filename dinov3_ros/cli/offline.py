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
from dinov3_toolkit.result_kinds import BY_TYPE

from ..bag import RANDOM_WEIGHTS_KEY, BagImages, BagOutput, check_output_path
from ..bag_diagnostics import BagDiagnostics
from ..names import join_topic
from ..topics import OVERLAY
from .common import FrameReport, build_engine, describe_engine, finish, random_notice, rviz_config, sample_images

# What the demo's outputs are, for the table it ends with: a saved array's folder, and a topic's last name.
SAVED_WHAT = {
    "labels": "segmentation label maps: the class index per pixel (PNG, lossless)",
    "depth": "depth maps: float32 (H, W) arrays, numpy.load reads them",
    "flow": "optical flow: float32 (H, W, 2) arrays, u and v in pixels from the frame before",
}
TOPIC_WHAT = {
    "image_raw": "the photos, as a camera driver would publish them",
    "overlay": "this head alone, drawn on the photo",
    "detections": "boxes with class and score",
    "labels": "the class index per pixel",
    "depth": "depth per pixel (32FC1)",
    "flow": "optical flow per pixel",
    "label_info": "the class names, once (latched)",
    "annotations": "boxes and labels for Foxglove's image panel",
    "diagnostics": "the pipeline's status and one per head (rqt_robot_monitor, Foxglove)",
}


def _bag_output(args: argparse.Namespace, engine: Engine, path: Path, **overrides: Any) -> BagOutput:
    options = dict(storage=args.storage, distro=args.distro, namespace=args.namespace, class_id=args.class_id,
                   head_overlays=args.head_overlays, overwrite=args.overwrite)
    return BagOutput(path, engine.heads, notice=random_notice(engine), random_weights=engine.random_weights,
                     **{**options, **overrides})


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
                                                       overwrite=args.overwrite,
                                                       random_weights=engine.random_weights)))
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
        source = BagImages(args.input, args.topic, distro=args.distro, namespace=args.namespace)
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
    """`run` on the samples into records and a bag of every topic the node publishes, random weights where
    none are found, and a table of what each output is and where at the end."""
    images = [Path(p) for p in args.images] or sample_images()
    source = ImageFiles(images)
    engine = build_engine(args, random_weights=True)
    describe_engine(engine, args)
    out = Path(args.out)
    with ExitStack() as stack:
        stop = stack.enter_context(StopOnInterrupt())
        records = RunOutput(out, overlays="images", overwrite=True, random_weights=engine.random_weights)
        bag = _bag_output(args, engine, out / "bag", overlay=True, head_overlays=True,
                          diagnostics=BagDiagnostics(engine, args.precision, args.namespace))
        outputs = [stack.enter_context(stop.closing(records)), stack.enter_context(stop.closing(bag))]
        report = FrameReport(engine)
        summary = run_frames(engine, source, [report, *outputs], total=source.total,
                             notice=random_notice(engine), progress=False, stop=stop)
    status = finish(summary, outputs, engine)
    print(demo_guide(out, records, bag, combined_overlay=join_topic(args.namespace, OVERLAY)))
    print(no_boxes_hint(engine, report.boxes, args))
    rviz = rviz_config()
    print(f"""
View the bag:
  ROS 2:     ros2 bag play {out / 'bag'} --loop   and, in a second terminal,   rviz2 -d {rviz}
  Foxglove:  open {next((out / 'bag').glob('*.mcap'), out / 'bag')} in Foxglove (app or foxglove.dev), no ROS needed""")
    if random_notice(engine):
        print(f"\n*** Reminder: {random_notice(engine)}. The outputs show the pipeline at work, not real results; "
              f"the records and the bag's metadata say so too. ***")
    return status


def no_boxes_hint(engine: Engine, boxes: dict[str, int], args: argparse.Namespace) -> str:
    """Why a detection head drew no box in the whole demo, and the command that draws them; '' if all drew.

    On random weights every score stays far below the default threshold (a new classifier starts at its
    prior, 0.01), so the demo's pictures have no boxes while the README's, drawn at threshold 0, have a dozen.
    """
    empty = [name for name, n in boxes.items() if n == 0]
    if not empty:
        return ""
    name = empty[0]
    threshold = engine.heads[name].params.get("score_threshold")
    why = (f"{', '.join(empty)} found nothing scoring above its score_threshold ({threshold:g})"
           if threshold is not None else f"{', '.join(empty)} found nothing")
    if name in engine.random_weights or "backbone" in engine.random_weights:
        why += ": on random weights every score stays far below it (a new classifier starts at its prior, 0.01)"
    return (f"\nNo boxes in the overlays: {why}. To see them drawn (meaningless ones, as in the README's "
            f"picture), run the demo again with --param {name}.score_threshold=0, e.g.\n"
            f"  dinov3 demo --param {name}.score_threshold=0")


def demo_guide(out: Path, records: RunOutput, bag: BagOutput, *, combined_overlay: str) -> str:
    """The demo's closing table: each output, what it is, and where (files counted as written)."""
    folders = {kind.saved.folder for kind in BY_TYPE.values() if kind.saved}
    rows = [("overlays/", f"{records.frames} picture(s)", "each photo with every head drawn; the depth map beside"),
            (RECORDS_FILE, f"{records.frames} record(s)", "one JSON record per photo: what each head found, "
             f"the files below, timings, random_weights (schema: {SCHEMA_PATH})")]
    rows += [(f"{folder}/", f"{len(list((out / folder).iterdir()))} file(s)", SAVED_WHAT.get(folder, ""))
             for folder in sorted(folders) if (out / folder).is_dir()]
    rows.append(("bag/", f"{bag.frames} frame(s)", "an MCAP rosbag2: every topic the node publishes (its "
                 f"metadata's custom_data {RANDOM_WEIGHTS_KEY} names what ran on random weights)"))
    lines = [f"\nWhat the demo wrote, and where ({out.resolve()}):"]
    lines += [f"  {where:<14} {count:<14} {what}" for where, count, what in rows]
    topics = bag.topics()
    width = max(map(len, topics), default=0)
    for topic in sorted(topics):
        what = "every head drawn on the photo" if topic == combined_overlay else TOPIC_WHAT.get(
            topic.rsplit("/", 1)[-1], "")
        lines.append(f"    {topic:<{width}} {bag.counts[topic]:>4}  {topics[topic].replace('/msg/', '/'):<32} {what}")
    return "\n".join(lines)
