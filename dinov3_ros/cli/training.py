"""`dinov3 train`, `dinov3 eval` and `dinov3 synth`: heads trained and scored on your own data."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

from dinov3_toolkit.backbone import WeightsNotFoundError, get_backbone_spec, resolve_weights
from dinov3_toolkit.config import DEFAULTS
from dinov3_toolkit.errors import ConfigError
from dinov3_toolkit.offline.interrupts import StopOnInterrupt
from dinov3_toolkit.training.data import load_dataset
from dinov3_toolkit.training.data.synthetic import make_synthetic
from dinov3_toolkit.training.eval_head import EvalRequest, eval_head
from dinov3_toolkit.training.evaluate import format_table
from dinov3_toolkit.training.train_head import TrainRequest, find_template, train_head
from dinov3_toolkit.training.trainer import TrainOptions

from .common import EXIT_INTERRUPTED, EXIT_OK, hinting_random_weights


class SynthFormat(NamedTuple):
    """One format of what `dinov3 synth` writes (make_synthetic's layout), as `dinov3 train` reads it."""

    task: str
    name: str  # the head trained on it goes to heads/head_synth_<name>
    data: str  # what --data takes, in the synth folder ('': the folder itself)
    shown: str  # the file or folder that holds this format's labels
    what: str


SYNTH_FORMATS = (
    SynthFormat("detection", "coco", "instances.json", "instances.json", "COCO instances (boxes) for images/"),
    SynthFormat("detection", "voc", "voc", "voc/", "Pascal VOC: Annotations/*.xml and JPEGImages/"),
    SynthFormat("segmentation", "panoptic", "panoptic.json", "panoptic.json",
                "COCO panoptic: segment PNGs in panoptic/, for images/"),
    SynthFormat("segmentation", "masks", "", "masks/", "class-index PNGs for images/, the names in classes.txt"),
    SynthFormat("depth", "depth", "", "depth/", "depth maps for images/, 16-bit PNGs in millimetres"),
    SynthFormat("flow", "flow", "flow_pairs", "flow_pairs/",
                "images/, previous/ (the frame before each) and flow/*.npy (u, v in pixels)"),
)


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
                         "Ctrl-C again to stop now") as stop, \
            hinting_random_weights(args, random_weights=args.random_weights):
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
    head_dirs = tuple(Path(d) for d in args.head_dir)
    params = args.param or {}
    if params:
        name = find_template(args.head, head_dirs).name
        if others := sorted(set(params) - {name}):
            raise ConfigError(f"--param names head {others[0]!r}, but dinov3 eval scores head {name!r}: give its "
                              f"parameters as --param {name}.NAME=VALUE")
    with hinting_random_weights(args, random_weights=args.random_weights):
        metrics = eval_head(EvalRequest(
            head=args.head, data=Path(args.data), images=_path(args.images), classes=_path(args.classes),
            head_dirs=head_dirs, params=next(iter(params.values()), {}),  # the scored head's alone, checked above
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
    """The data set, then what it holds in each format and the train and eval commands for each, to copy."""
    folder = make_synthetic(Path(args.out), images=args.images, height=args.height, width=args.width,
                            seed=args.seed).resolve()
    print(f"wrote a synthetic data set of {args.images} scenes ({args.width}x{args.height}) to {folder}, in every "
          f"format `dinov3 train` reads:")
    for f in SYNTH_FORMATS:
        dataset = load_dataset(f.task, folder / f.data)  # as train reads it: the counts are what it will see
        classes = f", {len(dataset.class_names)} classes" if dataset.class_names else ""
        print(f"  {f.shown:<15} {f.task:<13} {len(dataset)} images{classes}: {f.what}")
    flag = "" if _backbone_weights_found() else " --random-weights"
    why = (f" (no weights for {DEFAULTS.backbone} were found, see `dinov3 check`: a random backbone, so the scores "
           f"mean nothing)") if flag else ""
    print(f"\nTrain a head on one and score it{why}:")
    for f in SYNTH_FORMATS:
        head, data = shlex.quote(str(folder / "heads" / f"head_synth_{f.name}")), shlex.quote(str(folder / f.data))
        print(f"  # {f.task} from {f.shown}\n  dinov3 train {f.task} --data {data} --out {head}{flag}\n"
              f"  dinov3 eval {head} --data {data}{flag}")
    print(f"(train runs the published recipe, {TrainOptions().epochs} epochs at {DEFAULTS.size} px; add --epochs 3 "
          f"--size 224 for a quicker try)")
    return EXIT_OK


def _backbone_weights_found() -> bool:
    """Whether the backbone that `dinov3 train` uses by default has its weights in place."""
    try:
        resolve_weights(get_backbone_spec(DEFAULTS.backbone))
    except WeightsNotFoundError:
        return False
    return True
