"""`dinov3 soak`: resident memory over thousands of frames through every head, or through the real node.

``dinov3_toolkit.tools.soak`` runs the engine; ``dinov3_ros.soak_node`` the node (needs rclpy).
Random weights always: memory does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
from typing import Any

from dinov3_toolkit.config import DEFAULTS
from dinov3_toolkit.device import PRECISIONS
from dinov3_toolkit.engine import Engine
from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.heads.loader import discover

from .common import EXIT_OK, EXIT_PARTIAL
from .option_types import HeadNames, bounded

ENGINE_FRAMES, NODE_FRAMES = 10_000, 2_000  # the node is slower per frame: a shorter run


def add_soak_parser(sub: argparse._SubParsersAction) -> None:
    soak = sub.add_parser("soak", help="resident memory over thousands of frames through every head (or the node)")
    soak.add_argument("--frames", type=bounded("frames"),
                      help=f"frames to run (default {ENGINE_FRAMES}; {NODE_FRAMES} with --node)")
    soak.add_argument("--sample-every", type=bounded("sample_every"), default=100,
                      help="frames between RSS samples (default %(default)s)")
    soak.add_argument("--backbone", default="vits16", help="variant name (default %(default)s)")
    soak.add_argument("--size", type=bounded("size"), default=96, help="network input side (default %(default)s)")
    soak.add_argument("--depth", type=bounded("depth"),
                      help="build the backbone with this many blocks (quick runs; not with --node)")
    soak.add_argument("--heads", nargs="+", action=HeadNames, metavar="HEAD",
                      help="heads to run, e.g. --heads detection depth or --heads detection,depth (default: every "
                           "built-in and template head)")
    soak.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    soak.add_argument("--precision", default=DEFAULTS.precision, choices=list(PRECISIONS))
    soak.add_argument("--node", action="store_true",
                      help="through Dinov3Node in this process, over rclpy, every output subscribed to")
    soak.add_argument("--out", default="dinov3_soak",
                      help="folder for soak.json / soak_node.json and their plots (default %(default)s)")
    soak.set_defaults(func=cmd_soak)


def cmd_soak(args: argparse.Namespace) -> int:
    """Run the soak, print a line per sample and the summary, write the JSON and plot; exit 1 if a head
    raised or a frame's output never came back."""
    from dinov3_toolkit.tools import soak

    if args.node and args.depth:
        raise ConfigError("--depth builds a shallower backbone for the engine soak; the node has no such parameter")
    heads = args.heads or every_head()
    frames = args.frames or (NODE_FRAMES if args.node else ENGINE_FRAMES)
    settings = {"backbone": args.backbone, "image_size": args.size, "device": args.device,
                "precision": args.precision, "heads": heads}

    def progress(sample: Any) -> None:
        print(f"frame {sample.frame:>7}: RSS {sample.rss_bytes / 2**20:8.1f} MiB, {sample.elapsed_s:7.1f} s",
              flush=True)

    print(f"soak: {frames} frames through {'the node' if args.node else 'the engine'}, heads {', '.join(heads)}, "
          f"{args.backbone} at {args.size} on {args.device}, RSS every {args.sample_every} frames", flush=True)
    if args.node:
        from ..soak_node import run_node_soak

        result = run_node_soak(settings, frames=frames, sample_every=args.sample_every, on_sample=progress)
    else:
        engine = Engine.create(backbone=args.backbone, device=args.device, precision=args.precision, size=args.size,
                               heads=heads, random_weights=True,
                               backbone_overrides={"depth": args.depth} if args.depth else None)
        for name, values in soak.lowest_thresholds({n: h.manifest for n, h in engine.heads.items()}).items():
            engine.set_params(name, **values)
        settings["depth"] = engine.extractor.backbone.num_layers
        result = soak.run_soak(engine, frames=frames, sample_every=args.sample_every, settings=settings,
                               on_sample=progress)
    print()
    for line in result.lines():
        print(line)
    for path in soak.write(result, args.out):
        print(f"wrote {path.resolve()}")
    troubles = sum(result.head_errors.values()) + result.frames_without_output
    return EXIT_PARTIAL if troubles or len(result.heads) < len(heads) else EXIT_OK


def every_head() -> list[str]:
    """Every built-in and template head (templates run only when named)."""
    manifests, _ = discover((), templates=True)
    return list(manifests)
