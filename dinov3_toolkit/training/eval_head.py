"""``dinov3 eval`` as a function: score any head folder on a labelled data set.

It runs the head through the same ``Engine`` as ``dinov3 run`` and the node
(preprocessing, post-processing and the head's parameters included), one image
at a time, so the score is the score of what the robot would publish.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .. import result_kinds
from ..config import DEFAULTS
from ..engine import Engine
from ..errors import ConfigError, MissingExtra
from ..heads.loader import BUILTIN_DIR
from ..heads.training import TARGET_OF_TASK
from .data import check_samples, load_dataset, read_image
from .evaluate import make_meter
from .train_head import find_template

log = logging.getLogger(__name__)


@dataclass
class EvalRequest:
    head: str  # a head folder, or the name of a head found
    data: Path
    images: Path | None = None
    classes: Path | None = None
    head_dirs: tuple[Path, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # the head's parameters (default: its manifest's)
    backbone: str | None = None  # default: the one the head was trained on
    backbone_weights: Path | None = None
    random_weights: bool = False
    allow_backbone_mismatch: bool = False  # score a head on a backbone other than its trained_on one
    device: str = DEFAULTS.device
    precision: str = "fp32"
    size: int | None = None  # default: the size the head was trained at
    median_scaling: bool = False  # depth: scale each prediction to the truth's median (relative depth)
    out: Path | None = None  # metrics.json, predictions.jsonl (every image's result) and plots
    progress: bool = True


def eval_head(request: EvalRequest) -> dict[str, Any]:
    manifest = find_template(request.head, request.head_dirs)
    if manifest.task not in TARGET_OF_TASK:
        raise ConfigError(f"head {manifest.name!r} has task {manifest.task!r}; dinov3 eval scores "
                          f"{', '.join(TARGET_OF_TASK)}")
    trained_on = manifest.trained_on
    # provenance names the weights tag too (vitl16.sat493m), trained_on only the architecture
    backbone = request.backbone or manifest.provenance.get("backbone") or trained_on.get("backbone", "vits16plus")
    engine = Engine.create(
        backbone=backbone,
        backbone_weights=request.backbone_weights,
        device=request.device,
        precision=request.precision,
        size=request.size or trained_on.get("size", 640),
        resize_mode=trained_on.get("resize_mode", "stretch"),
        heads=[manifest.name],
        head_dirs=[] if manifest.folder.parent == BUILTIN_DIR else [manifest.folder],
        head_params={manifest.name: dict(request.params)},
        random_weights=request.random_weights,
        allow_backbone_mismatch=request.allow_backbone_mismatch,
    )
    if manifest.name in engine.failed:
        raise engine.failed[manifest.name]
    head = engine.heads[manifest.name]
    if head.manifest.folder != manifest.folder:  # discovery keeps the first head of a name: a built-in one
        raise ConfigError(f"{manifest.folder} has the name of head {manifest.name!r} at {head.manifest.folder}, "
                          f"which would be scored instead; rename the folder")
    data = load_dataset(manifest.task, request.data, images=request.images, classes=request.classes)
    if head.class_names and data.class_names != head.class_names:
        raise ConfigError(f"the data's classes {list(data.class_names)} are not the head's "
                          f"{list(head.class_names)} (in order); give the data a --classes file in the head's order")
    check_samples(data)
    meter = make_meter(manifest.task, head.class_names, relative_depth=request.median_scaling)
    predictions = []  # one line per image, as `dinov3 run` records a head's result (files left out)
    for sample in tqdm(data.samples, desc="eval", unit="img", disable=not request.progress):
        if sample.previous is not None:  # a flow pair: the frame before, then this one, as one stream
            engine.forget_streams()
            engine(read_image(sample.previous), stream="eval", stamp_ns=0)
        frame = engine(read_image(sample.image), stream="eval", stamp_ns=1)
        if manifest.name in frame.errors:
            raise frame.errors[manifest.name]
        result = frame.results[manifest.name]
        meter.update(result, sample.load_target())
        predictions.append({"image": sample.name, "result": result_kinds.record(result, None)})
    metrics = meter.compute()
    if request.out is not None:
        request.out.mkdir(parents=True, exist_ok=True)
        (request.out / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n")
        with (request.out / "predictions.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, allow_nan=False) + "\n" for line in predictions)
        try:
            meter.plot(request.out)
        except MissingExtra as e:  # the numbers are all in metrics.json
            log.warning("no plots in %s: %s", request.out, e)
    return metrics
