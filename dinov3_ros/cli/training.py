"""`dinov3 train`, `dinov3 eval` and `dinov3 synth`: heads trained and scored on your own data."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from dinov3_toolkit.offline.interrupts import StopOnInterrupt
from dinov3_toolkit.training.data.synthetic import make_synthetic
from dinov3_toolkit.training.eval_head import EvalRequest, eval_head
from dinov3_toolkit.training.evaluate import format_table
from dinov3_toolkit.training.train_head import TrainRequest, train_head
from dinov3_toolkit.training.trainer import TrainOptions

from .common import EXIT_INTERRUPTED, EXIT_OK


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def cmd_train(args: argparse.Namespace) -> int:
    options = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions)})
    request = TrainRequest(
        head=args.head, data=Path(args.data), out=Path(args.out), images=_path(args.images),
        classes=_path(args.classes), val_data=_path(args.val_data), val_images=_path(args.val_images),
        val_fraction=args.val_fraction, head_dirs=tuple(Path(d) for d in args.head_dir),
        head_args=args.head_arg or {}, loss_args=args.loss_arg or {}, backbone=args.backbone,
        backbone_weights=_path(args.weights),
        random_weights=args.random_weights, device=args.device, precision=args.precision, size=args.size,
        cache_dir=Path(args.cache_dir), resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
    )
    with StopOnInterrupt("stopping after this step (a checkpoint is saved; --resume continues); "
                         "Ctrl-C again to stop now") as stop:
        report = train_head(request, options, stop=lambda: stop.requested)
    outcome = report.outcome
    if not report.main:  # under torchrun, one process reports for all
        return EXIT_INTERRUPTED if outcome.stopped else EXIT_OK
    if report.random_backbone:
        print("\n*** the backbone ran with RANDOM weights: this head is only useful with the same random "
              "backbone (tests, smoke runs) ***")
    if report.metrics is not None:
        print(f"\nbest epoch {outcome.best['epoch']} of {len(outcome.history)}; validation:")
        print(format_table(report.metrics))
        print(f"\nwrote head folder {report.folder} (report/ has the curves and plots)")
        print(f"use it: dinov3 run IMAGES --head-dir {report.folder} --heads {report.folder.name[5:]}")
    if outcome.stopped:
        print(f"stopped; continue with the same command and --resume ({report.folder / 'checkpoints' / 'last.pt'})")
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    metrics = eval_head(EvalRequest(
        head=args.head, data=Path(args.data), images=_path(args.images), classes=_path(args.classes),
        head_dirs=tuple(Path(d) for d in args.head_dir), params=args.param or {},
        backbone=args.backbone, backbone_weights=_path(args.weights), random_weights=args.random_weights,
        allow_backbone_mismatch=args.allow_backbone_mismatch,
        device=args.device, precision=args.precision, size=args.size, median_scaling=args.median_scaling,
        out=_path(args.out), progress=not args.quiet,
    ))
    print(format_table(metrics))
    if args.out:
        print(f"\nwrote {Path(args.out) / 'metrics.json'} and plots")
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    folder = make_synthetic(Path(args.out), images=args.images, height=args.height, width=args.width,
                            seed=args.seed)
    print(f"wrote a synthetic data set of {args.images} images in every format to {folder}")
    return EXIT_OK
