"""`dinov3 export` and `bench`: ONNX export and the stage-by-stage benchmark."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dinov3_toolkit.engine import FrameResult

from .common import EXIT_OK, build_engine, describe_engine, sample_images


def cmd_export(args: argparse.Namespace) -> int:
    """The backbone and heads as ONNX (fixed input size), compared with onnxruntime unless --no-check."""
    from dinov3_toolkit.tools.export import compare_with_onnxruntime, export_onnx, weights_file

    engine = build_engine(args, random_weights=args.random_weights)
    describe_engine(engine, args)
    names = export_onnx(engine, args.out)
    side = engine.extractor.preprocess.size
    height, width = engine.extractor.preprocess.input_size(side, side)
    print(f"wrote {Path(args.out).resolve()}: input 'image' (1, 3, {height}, {width}) normalised RGB, "
          f"outputs {', '.join(names)}")
    if (data := weights_file(args.out)) is not None:
        print(f"  its weights are in {data.resolve()} (above torch's 1.5 GB limit for one file): keep it beside "
              "the graph")
    if any(name.startswith("features.") for name in names):  # a temporal head (flow) is in the graph
        print("  also inputs previous.<i>: feed each frame the features.<i> the graph gave for the frame before")
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
    from dinov3_toolkit.overlays import FrameOverlays

    from .. import messages
    from ..topics import frame_messages

    ros = importlib.util.find_spec("rclpy") is not None
    M = messages.ros_messages() if ros else messages.bag_messages()
    header = messages.make_header(M, 0, 0, "camera")
    annotations = not ros or importlib.util.find_spec("foxglove_msgs") is not None  # the node's rule: optional

    def wanted(topic: str) -> bool:
        return not topic.endswith("overlay") and (annotations or not topic.endswith("/annotations"))

    def to_messages(result: FrameResult, rgb: np.ndarray) -> dict[str, Any]:  # rgb: the benchmark's signature
        return frame_messages(M, header, result, FrameOverlays(), wanted=wanted)

    return to_messages
