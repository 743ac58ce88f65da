"""``dinov3 train`` as a function: a template head, labelled data and a backbone in, a head folder out.

Every check that can fail on the user's input runs before the first feature is
computed: the output folder, the template's loss, the evaluator, the data (every
image and target decoded once), the backbone and the head's constructor, so that
bad input never costs an epoch.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..backbone import get_backbone_spec
from ..backbone.features import resolve_layer_indices
from ..config import DEFAULTS
from ..engine import open_backbone
from ..errors import ConfigError, MissingExtra, NotFound
from ..extractor import FeatureExtractor
from ..heads import HeadError, HeadManifest, load_manifest
from ..heads.loader import discover, import_head_class, import_head_loss
from ..heads.training import TARGET_OF_TASK
from . import plots
from .cache import FeatureCache, weights_checksum
from .data import Dataset, check_samples, load_dataset, read_image
from .distributed import Processes, join, leave
from .evaluate import Meter, make_meter, scores
from .head_folder import check_output, write_head_folder
from .pictures import truth_beside_prediction
from .trainer import Trainer, TrainOptions, TrainOutcome, TrainSetup

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("~/.cache/dinov3_ros/features")
FEW_VAL_IMAGES = 10  # below this one image moves the metric by over 10%, and the best epoch is picked by it


@dataclass
class TrainRequest:
    """What to train (the CLI's options, typed)."""

    head: str  # a head name (built-in, or found in head_dirs) or a head folder: the template
    data: Path
    out: Path  # the head folder to write, named head_<name>
    images: Path | None = None
    classes: Path | None = None
    val_data: Path | None = None  # an explicit validation set (same format); else val_fraction is held out
    val_images: Path | None = None
    val_fraction: float = 0.1
    head_dirs: tuple[Path, ...] = ()
    head_args: Mapping[str, Any] = field(default_factory=dict)  # constructor arguments over the template's
    loss_args: Mapping[str, Any] = field(default_factory=dict)  # loss arguments over the template's loss_args
    backbone: str = DEFAULTS.backbone
    backbone_weights: Path | None = None
    random_weights: bool = False  # a random backbone where no weights are found (tests, smoke runs)
    device: str = DEFAULTS.device
    precision: str = DEFAULTS.precision
    size: int = DEFAULTS.size
    cache_dir: Path = DEFAULT_CACHE
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class TrainReport:
    folder: Path
    outcome: TrainOutcome
    metrics: dict[str, Any] | None  # the kept weights' validation metrics (None if no epoch finished)
    random_backbone: bool
    main: bool = True  # the process that speaks for all (under torchrun, rank 0)


def find_template(head: str, head_dirs: tuple[Path, ...] = ()) -> HeadManifest:
    """A head folder given by path, or a head found by name."""
    if Path(head).expanduser().is_dir():
        return load_manifest(Path(head).expanduser())
    manifests, failed = discover(head_dirs, templates=True)
    if head in failed:
        raise failed[head]
    if head not in manifests:
        raise NotFound(f"no head {head!r} to train (a head name or a head folder); heads found: "
                       f"{', '.join(sorted(manifests)) or 'none'}")
    return manifests[head]


def train_head(request: TrainRequest, options: TrainOptions, stop: Callable[[], bool] = lambda: False) -> TrainReport:
    processes, device = join(request.device)
    try:
        return _train(request, options, stop, processes, device)
    finally:
        leave(processes)


def _train(request: TrainRequest, options: TrainOptions, stop: Callable[[], bool], processes: Processes,
           device: str) -> TrainReport:
    template = find_template(request.head, request.head_dirs)
    if template.task not in TARGET_OF_TASK:
        raise HeadError(template.name, template.path, f"its task {template.task!r} cannot be trained (trainable "
                        f"tasks: {', '.join(TARGET_OF_TASK)})")
    loss_cls = import_head_loss(template)
    folder = request.out.expanduser().resolve()
    if folder == template.folder or folder in template.folder.parents:
        raise ConfigError(f"--out {folder} is the template head's folder (or holds it); write the trained head to "
                          f"a new folder")
    if processes.main:
        check_output(folder, resume=request.resume, overwrite=request.overwrite)
    processes.barrier()

    train, val = _datasets(request, template.task, options.seed)
    make_meter(template.task, train.class_names)  # a missing evaluator (pycocotools) is said now, not after epoch 1
    train_sizes, val_sizes = check_samples(train), check_samples(val)
    log.info("data: %d training and %d validation images, %d classes (%s)", len(train), len(val),
             len(train.class_names), ", ".join(train.class_names[:8]) + (", ..." if len(train.class_names) > 8 else ""))
    if processes.main and len(val) < FEW_VAL_IMAGES:
        log.warning("only %d validation image%s: the metric and the best epoch it picks say little; %s", len(val),
                    "" if len(val) == 1 else "s", _more_validation(request, len(train) + len(val)))

    spec = get_backbone_spec(request.backbone)
    backbone, random_backbone = open_backbone(spec.name, request.backbone_weights,
                                              random_weights=request.random_weights)
    layers = resolve_layer_indices(template.layers, backbone.num_layers)
    extractor = FeatureExtractor(backbone, spec, device=device, precision=request.precision, size=request.size,
                                 resize_mode="stretch", layers=layers)  # stretch: one input size, stacked batches
    probe = extractor(np.zeros((request.size, request.size, 3), np.uint8))  # the maps' width and size
    geometry = (probe.image.input_size, tuple(probe.maps[0].shape[-2:]))
    args = {**template.args, **({"in_channels": probe.maps[0].shape[1]} if "in_channels" in template.args else {}),
            **request.head_args}
    model = _build_head(template, train.class_names, args, options.seed)
    loss_args = {**template.loss_args, **request.loss_args}
    checksum = weights_checksum(backbone)
    cache = FeatureCache(request.cache_dir, backbone=spec.name, checksum=checksum, size=request.size,
                         resize_mode="stretch", precision=request.precision, layers=layers)
    setup = TrainSetup(
        model=model, loss=_build_loss(template, loss_cls, model, loss_args), params=template.resolve_params(),
        extractor=extractor, cache=cache, geometry=geometry, train=train, val=val, train_sizes=train_sizes,
        val_sizes=val_sizes, folder=folder, processes=processes, progress=request.progress,
        fingerprint={"template": str(template.folder), "train": train.source, "val": val.source,
                     "classes": list(train.class_names), "args": args, "loss_args": loss_args},
    )
    trainer = Trainer(setup, options)
    with _TensorBoard(folder / "report" / "tensorboard", processes.main) as tensorboard:
        outcome = trainer.fit(stop, resume=request.resume, on_epoch=tensorboard.log)
    if outcome.best_state is None:
        return TrainReport(folder, outcome, None, random_backbone, processes.main)

    if outcome.stopped:  # be quick: a scheduler's SIGTERM leaves seconds; the kept epoch's numbers will do
        metrics, meter = outcome.best["val"], None
    else:
        model.load_state_dict(outcome.best_state)
        meter = trainer.validate(keep=4)  # the kept weights once more, for the report (every process takes part)
        metrics = meter.compute()
    if processes.main:
        provenance = {
            "template": str(template.folder),
            "data": str(train.source),
            "validation": str(val.source) if request.val_data else f"{request.val_fraction:g} of the data held out "
                                                                      f"(seed {options.seed})",
            "images": {"train": len(train), "val": len(val)},
            "backbone": spec.name,
            "backbone_weights": "RANDOM" if random_backbone else str(request.backbone_weights or "found"),
            "weights_sha256": checksum,
            "epochs": len(outcome.history),
            "best_epoch": outcome.best["epoch"],
            "metrics": scores(metrics),
            "options": asdict(options),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        write_head_folder(folder, template, class_names=train.class_names, args=args, loss_args=loss_args,
                          state_dict=outcome.best_state,
                          trained_on={"backbone": spec.arch, "size": request.size, "resize_mode": "stretch"},
                          provenance=provenance)
        _write_report(folder / "report", metrics, meter, outcome, val, trainer.kept)
    processes.barrier()
    return TrainReport(folder, outcome, metrics, random_backbone, processes.main)


def _datasets(request: TrainRequest, task: str, seed: int) -> tuple[Dataset, Dataset]:
    data = load_dataset(task, request.data, images=request.images, classes=request.classes)
    if request.val_data is None:
        return data.split(request.val_fraction, seed)
    val = load_dataset(task, request.val_data, images=request.val_images, classes=request.classes)
    if val.class_names != data.class_names:
        raise ConfigError(f"the validation set's classes {list(val.class_names)} differ from the training set's "
                          f"{list(data.class_names)}; give both the same --classes file")
    return data, val


def _more_validation(request: TrainRequest, images: int) -> str:
    """How to validate on more images, with numbers for this data set."""
    if request.val_data is not None:
        return f"add images to --val-data {request.val_data}"
    if images < 2 * FEW_VAL_IMAGES:  # holding out more would leave too little to train on
        return f"the data has only {images} images: give a separate --val-data set"
    fraction = FEW_VAL_IMAGES / images
    return f"hold out more with --val-fraction {fraction:.2g} (now {request.val_fraction:g}), or give a --val-data set"


def _build_head(template: HeadManifest, class_names: tuple[str, ...], args: Mapping[str, Any], seed: int) -> Any:
    cls = import_head_class(template)
    torch.manual_seed(seed)  # the head's initial weights are part of the run's seed
    try:
        return cls(**args, **({"class_names": class_names} if class_names else {}))
    except Exception as e:  # the constructor is the head author's code
        raise HeadError(template.name, template.path, f"{cls.__name__}(**args) failed: {type(e).__name__}: {e}") from e


class _TensorBoard:
    """Each epoch's losses and validation metrics as TensorBoard scalars, when tensorboard is installed."""

    def __init__(self, folder: Path, main: bool) -> None:
        self.writer = None
        if main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: report/train_log.jsonl and curves.png hold the same numbers
                return
            self.writer = SummaryWriter(str(folder))

    def log(self, entry: dict[str, Any]) -> None:
        if self.writer is None:
            return
        scalars = {"lr": entry["lr"], **{f"train/{k}": v for k, v in entry["train"].items()},
                   **{f"val/{k}": v for k, v in scores(entry["val"]).items()}}
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, entry["epoch"])
        self.writer.flush()

    def __enter__(self) -> _TensorBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()


def _build_loss(template: HeadManifest, cls: type, model: Any, loss_args: Mapping[str, Any]) -> Any:
    try:
        return cls(model, **loss_args)
    except Exception as e:  # the loss is the head author's code
        raise HeadError(template.name, template.path, f"{cls.__name__}(model, **loss_args) failed: "
                        f"{type(e).__name__}: {e}") from e


def _write_report(report: Path, metrics: dict[str, Any], meter: Meter | None, outcome: TrainOutcome, val: Dataset,
                  kept: list[tuple[int, Any]]) -> None:
    """metrics.json, the training curves and, after a whole run, the metric's plots and the first validation
    images drawn, the ground truth beside the prediction."""
    report.mkdir(parents=True, exist_ok=True)
    (report / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n")
    for index, result in kept:
        sample = val.samples[index]
        drawn = truth_beside_prediction(read_image(sample.image), sample.load_target(), result, val.class_names)
        cv2.imwrite(str(report / f"val_{Path(sample.name).stem}.jpg"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    try:
        plots.training_curves(report / "curves.png", outcome.history, list(scores(metrics)))
        if meter is not None:
            meter.plot(report)
    except MissingExtra as e:  # the numbers are all in metrics.json and train_log.jsonl
        log.warning("no plots in %s: %s", report, e)
