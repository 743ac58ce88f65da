"""The metrics of `dinov3 eval` and of validation during `dinov3 train`: one streaming meter per task.

A meter sees one image at a time (the head's result and its ground truth, both in the
original image's pixels) and keeps only what its metrics need: the boxes for detection
(small), a confusion matrix for segmentation, per-image sums and a fixed-size 2D
histogram for depth. So memory does not grow with image size, and meters of several
ranks fold into one with ``merge`` (they are gathered with ``all_gather_object``, so
they pickle). Results are deterministic: the same images in the same order give the
same numbers.
"""

from __future__ import annotations

import abc
import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingExtra
from ..heads.training import BoxTargets, DepthTargets, FlowTargets, LabelTargets
from ..results import DepthMap, Detections, FlowField, SemanticLabels
from . import plots

PRIMARY: dict[str, tuple[str, bool]] = {"detection": ("map", True), "segmentation": ("miou", True),
                                        "depth": ("absrel", False), "flow": ("epe", False)}
"""Each task's main metric (the one that picks the best checkpoint) and whether higher is better."""

_PR_CURVES = 5  # per-class precision-recall curves drawn besides the mean: the classes with most objects
_DEPTH_EDGES = np.geomspace(1e-3, 1e4, 141)  # log bins, 20 per decade: any depth from mm to km fits one grid
_EPE_EDGES = np.linspace(0.0, 20.0, 81)  # end-point errors in quarter pixels; larger ones count in the last bin


class Meter(abc.ABC):
    """Streams one task's metrics over an evaluation set."""

    task: str

    @abc.abstractmethod
    def update(self, result: Any, target: Any) -> None:
        """Add one image: the head's result and its ground truth, both in the original image's pixels."""

    @abc.abstractmethod
    def merge(self, other: Meter) -> None:
        """Fold in the meter of another rank (same task and classes), as if this one had seen its images too."""

    @abc.abstractmethod
    def compute(self) -> dict[str, Any]:
        """JSON-ready metrics, with ``"task"`` and ``"primary"`` (the key of the main metric)."""

    @abc.abstractmethod
    def plot(self, folder: Path) -> list[Path]:
        """Write PNG plots into ``folder``; returns their paths (none when nothing was measured)."""

    def _check_merge(self, other: Meter, *settings: str) -> None:
        """Meters fold together only when they measure the same thing: same class and settings."""
        if type(other) is not type(self):
            raise ValueError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        mine, theirs = ({s: getattr(m, s) for s in settings} for m in (self, other))
        if mine != theirs:
            raise ValueError(f"cannot merge a {type(self).__name__} with {theirs} into one with {mine}")


def make_meter(task: str, class_names: Sequence[str], *, relative_depth: bool = False) -> Meter:
    """The meter of ``task``; ``relative_depth`` (depth only) scores predictions after median scaling."""
    if task not in PRIMARY:
        raise ConfigError(f"no metrics for task {task!r}; expected one of {', '.join(PRIMARY)}")
    if relative_depth and task != "depth":
        raise ConfigError(f"relative_depth applies to the depth task only, not to {task!r}")
    if task == "detection":
        return DetectionMeter(class_names)
    if task == "segmentation":
        return SegmentationMeter(class_names)
    if task == "flow":
        return FlowMeter()
    return DepthMeter(relative=relative_depth)


def _check_kinds(result: Any, target: Any, result_type: type, target_type: type) -> None:
    if not isinstance(result, result_type) or not isinstance(target, target_type):
        raise TypeError(f"expected a {result_type.__name__} result and {target_type.__name__} ground truth, got "
                        f"{type(result).__name__} and {type(target).__name__}")


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} has class indices {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}")


class DetectionMeter(Meter):
    """COCO box AP (pycocotools' COCOeval, all object areas, 100 detections per image).

    COCO category ids are class index + 1. Classes without ground-truth objects have no AP
    (null) and, as in COCO, do not count in the mean, even when they have detections.
    """

    task = "detection"

    def __init__(self, class_names: Sequence[str]) -> None:
        _cocoeval_classes()  # a missing pycocotools is said when the meter is made: before a run, not after it
        self.class_names = tuple(class_names)
        # One (gt boxes, gt labels, boxes, scores, labels) per image, in the order seen.
        self.images: list[tuple[np.ndarray, ...]] = []
        self._precision: np.ndarray | None = None  # COCOeval's, cached between compute and plot

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_precision": None}  # ranks send boxes, not a cache

    def update(self, result: Detections, target: BoxTargets) -> None:
        _check_kinds(result, target, Detections, BoxTargets)
        k = len(self.class_names)
        _check_labels(result.labels, k, "the detections")
        _check_labels(target.labels, k, "the ground truth")
        self.images.append((target.boxes.astype(np.float32), target.labels.astype(np.int64),
                            result.boxes.astype(np.float32), result.scores.astype(np.float32),
                            result.labels.astype(np.int64)))
        self._precision = None

    def merge(self, other: Meter) -> None:
        self._check_merge(other, "class_names")
        self.images.extend(other.images)
        self._precision = None

    def compute(self) -> dict[str, Any]:
        precision = self._evaluate()  # (IoU 0.5:0.95, recall, class), -1 where a class has no object
        per_class = {}
        for k, name in enumerate(self.class_names):
            has_gt = bool((precision[:, :, k] > -1).any())
            per_class[name] = {"ap": float(precision[:, :, k].mean()) if has_gt else None,
                               "ap50": float(precision[0, :, k].mean()) if has_gt else None}
        aps = [c["ap"] for c in per_class.values() if c["ap"] is not None]
        ap50s = [c["ap50"] for c in per_class.values() if c["ap50"] is not None]
        return {"task": self.task, "primary": PRIMARY[self.task][0],
                "map": float(np.mean(aps)) if aps else None, "map50": float(np.mean(ap50s)) if ap50s else None,
                "images": len(self.images), "objects": sum(len(i[1]) for i in self.images),
                "detections": sum(len(i[4]) for i in self.images), "per_class": per_class}

    def plot(self, folder: Path) -> list[Path]:
        at50 = self._evaluate()[0]  # (recall, class)
        with_gt = [k for k in range(len(self.class_names)) if (at50[:, k] > -1).any()]
        if not with_gt:
            return []
        counts = np.bincount(np.concatenate([i[1] for i in self.images]), minlength=len(self.class_names))
        shown = sorted(with_gt, key=lambda k: (-counts[k], k))[:_PR_CURVES]
        path = Path(folder) / "precision_recall.png"
        plots.precision_recall(path, np.linspace(0.0, 1.0, at50.shape[0]), at50[:, with_gt].mean(axis=1),
                               {k: (self.class_names[k], at50[:, k]) for k in shown})
        return [path]

    def _evaluate(self) -> np.ndarray:
        """COCOeval's interpolated precision, (10 IoU thresholds, 101 recall points, classes)."""
        if self._precision is None:
            self._precision = self._cocoeval()
        return self._precision

    def _cocoeval(self) -> np.ndarray:
        COCO, COCOeval = _cocoeval_classes()
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": [{"id": i + 1} for i in range(len(self.images))],
                      "categories": [{"id": k + 1, "name": n} for k, n in enumerate(self.class_names)],
                      "annotations": []}
        dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
        for image_id, (gt_boxes, gt_labels, boxes, scores, labels) in enumerate(self.images, start=1):
            _add_boxes(gt.dataset["annotations"], image_id, gt_boxes, gt_labels)
            _add_boxes(dt.dataset["annotations"], image_id, boxes, labels, scores)
        with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print progress
            gt.createIndex()
            dt.createIndex()
            evaluation = COCOeval(gt, dt, iouType="bbox")
            evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0.0, 1e10]], ["all"]
            evaluation.params.maxDets = [100]
            evaluation.evaluate()
            evaluation.accumulate()
        return evaluation.eval["precision"][:, :, :, 0, 0]


def _cocoeval_classes() -> tuple[type, type]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise MissingExtra("detection metrics need pycocotools: pip install pycocotools") from e
    return COCO, COCOeval


def _add_boxes(annotations: list[dict[str, Any]], image_id: int, boxes: np.ndarray, labels: np.ndarray,
               scores: np.ndarray | None = None) -> None:
    """Append one image's boxes as COCO annotations: xywh, category = label + 1, ids from 1 (COCOeval
    takes id 0 for "unmatched")."""
    for n, ((x1, y1, x2, y2), label) in enumerate(zip(boxes.tolist(), labels.tolist())):
        w, h = x2 - x1, y2 - y1
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                            "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
        if scores is not None:
            annotations[-1]["score"] = float(scores[n])


class SegmentationMeter(Meter):
    """Mean IoU and pixel accuracy from a confusion matrix (rows: truth, columns: prediction).

    Pixels marked ``ignore`` in the ground truth are not counted. A class that occurs in
    neither the ground truth nor the prediction has no IoU and stays out of the mean.
    """

    task = "segmentation"

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = tuple(class_names)
        k = len(self.class_names)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.images = 0

    def update(self, result: SemanticLabels, target: LabelTargets) -> None:
        _check_kinds(result, target, SemanticLabels, LabelTargets)
        if result.labels.shape != target.labels.shape:
            raise ValueError(f"the predicted label map is {result.labels.shape} but its ground truth is "
                             f"{target.labels.shape}; both must be (H, W) of the original image")
        keep = np.ones(target.labels.shape, bool) if target.ignore is None else target.labels != target.ignore
        truth, predicted = target.labels[keep].astype(np.int64), result.labels[keep].astype(np.int64)
        k = len(self.class_names)
        _check_labels(truth, k, "the ground truth")
        _check_labels(predicted, k, "the predicted label map")
        self.confusion += np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
        self.images += 1

    def merge(self, other: Meter) -> None:
        self._check_merge(other, "class_names")
        self.confusion += other.confusion
        self.images += other.images

    def compute(self) -> dict[str, Any]:
        hits = np.diag(self.confusion).astype(np.float64)
        truth, predicted = self.confusion.sum(axis=1), self.confusion.sum(axis=0)
        union = truth + predicted - hits
        iou = hits / np.maximum(union, 1)  # union 0: the class is nowhere, no IoU
        pixels = int(truth.sum())
        return {"task": self.task, "primary": PRIMARY[self.task][0],
                "miou": float(iou[union > 0].mean()) if union.any() else None,
                "pixel_accuracy": float(hits.sum() / pixels) if pixels else None,
                "images": self.images, "pixels": pixels,
                "per_class": {name: {"iou": float(iou[k]) if union[k] else None, "pixels": int(truth[k])}
                              for k, name in enumerate(self.class_names)}}

    def plot(self, folder: Path) -> list[Path]:
        if not self.confusion.any():
            return []
        path = Path(folder) / "confusion_matrix.png"
        plots.confusion_matrix(path, self.confusion, self.class_names)
        return [path]


class _PerImageMeter(Meter):
    """Metrics averaged over images (depth, flow): their sums over the images scored, the images that could
    not be scored (``unscored``, reported as ``unscored_key``), and a histogram of every pixel scored."""

    unscored_key: str
    merge_settings: tuple[str, ...] = ()  # attributes two meters must share to fold together

    def __init__(self, sums: dict[str, float], histogram: np.ndarray) -> None:
        self.sums = sums
        self.images = 0
        self.unscored = 0
        self.histogram = histogram

    def merge(self, other: Meter) -> None:
        self._check_merge(other, *self.merge_settings)
        for key in self.sums:
            self.sums[key] += other.sums[key]
        self.images += other.images
        self.unscored += other.unscored
        self.histogram += other.histogram

    def compute(self) -> dict[str, Any]:
        means = {key: total / self.images if self.images else None for key, total in self.sums.items()}
        return {"task": self.task, "primary": PRIMARY[self.task][0], **means, "images": self.images,
                self.unscored_key: self.unscored}


class DepthMeter(_PerImageMeter):
    """AbsRel, RMSE and delta1 over valid ground-truth pixels, per image, then averaged over images.

    With ``relative=True`` each prediction is first scaled by median(truth) / median(prediction):
    heads trained without metric scale are scored on shape, not on units.
    """

    task = "depth"
    unscored_key = "images_without_depth"
    merge_settings = ("relative",)

    def __init__(self, relative: bool = False) -> None:
        # Pixel counts of (truth, prediction) on log bins: the plot of every pixel, in fixed memory.
        super().__init__({"absrel": 0.0, "rmse": 0.0, "delta1": 0.0},
                         np.zeros((len(_DEPTH_EDGES) - 1,) * 2, dtype=np.int64))
        self.relative = relative

    def update(self, result: DepthMap, target: DepthTargets) -> None:
        _check_kinds(result, target, DepthMap, DepthTargets)
        if result.depth.shape != target.depth.shape:
            raise ValueError(f"the predicted depth map is {result.depth.shape} but its ground truth is "
                             f"{target.depth.shape}; both must be (H, W) of the original image")
        valid = target.valid
        if not valid.any():
            self.unscored += 1
            return
        truth, predicted = target.depth[valid].astype(np.float64), result.depth[valid].astype(np.float64)
        if not np.isfinite(predicted).all():
            raise ValueError(f"the predicted depth map has {int((~np.isfinite(predicted)).sum())} non-finite "
                             "values where the ground truth has depth; expected finite depths")
        if self.relative:
            scale = np.median(predicted)
            if scale <= 0:
                raise ValueError(f"median scaling needs a positive median predicted depth, got {scale:g}")
            predicted *= np.median(truth) / scale
        error = predicted - truth
        with np.errstate(divide="ignore"):
            ratio = np.maximum(predicted / truth, truth / predicted)
        self.sums["absrel"] += float(np.mean(np.abs(error) / truth))
        self.sums["rmse"] += float(np.sqrt(np.mean(error**2)))
        self.sums["delta1"] += float(np.mean((predicted > 0) & (ratio < 1.25)))
        self.images += 1
        self.histogram += np.histogram2d(np.clip(truth, _DEPTH_EDGES[0], _DEPTH_EDGES[-1]),
                                         np.clip(predicted, _DEPTH_EDGES[0], _DEPTH_EDGES[-1]),
                                         bins=(_DEPTH_EDGES, _DEPTH_EDGES))[0].astype(np.int64)

    def compute(self) -> dict[str, Any]:
        return {**super().compute(), "median_scaling": self.relative}

    def plot(self, folder: Path) -> list[Path]:
        if not self.images:
            return []
        path = Path(folder) / "depth_vs_truth.png"
        plots.depth_histogram(path, self.histogram, _DEPTH_EDGES, median_scaled=self.relative)
        return [path]


class FlowMeter(_PerImageMeter):
    """End-point error (the distance between predicted and true motion, pixels) over the known pixels,
    per image then averaged over images, and the share of pixels within 1, 3 and 5 pixels."""

    task = "flow"
    unscored_key = "images_without_flow"  # no prediction (a first frame) or no known pixel

    def __init__(self) -> None:
        super().__init__({"epe": 0.0, "px1": 0.0, "px3": 0.0, "px5": 0.0}, np.zeros(len(_EPE_EDGES) - 1, np.int64))

    def update(self, result: FlowField, target: FlowTargets) -> None:
        _check_kinds(result, target, FlowField, FlowTargets)
        if result.flow is None or not target.valid.any():
            self.unscored += 1
            return
        if result.flow.shape != target.flow.shape:
            raise ValueError(f"the predicted flow is {result.flow.shape} but its ground truth is "
                             f"{target.flow.shape}; both must be (H, W, 2) of the original image")
        known = target.valid
        epe = np.hypot(*(result.flow[known] - target.flow[known]).astype(np.float64).T)  # (known pixels,)
        self.sums["epe"] += float(epe.mean())
        for limit in (1, 3, 5):
            self.sums[f"px{limit}"] += float(np.mean(epe < limit))
        self.images += 1
        self.histogram += np.histogram(np.minimum(epe, _EPE_EDGES[-1]), _EPE_EDGES)[0]

    def plot(self, folder: Path) -> list[Path]:
        if not self.images:
            return []
        path = Path(folder) / "end_point_error.png"
        plots.error_histogram(path, self.histogram, _EPE_EDGES, "end-point error (pixels)")
        return [path]


COUNTS = ("images", "objects", "detections", "pixels", "images_without_depth", "images_without_flow")


def scores(metrics: dict[str, Any]) -> dict[str, float]:
    """The metric values of ``compute``'s output: no counts, flags or per-class tables (logs, provenance)."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in COUNTS}


def format_table(metrics: dict[str, Any]) -> str:
    """``compute``'s metrics as fixed-width text for the terminal: headline values, then one row per class."""
    primary = metrics.get("primary")
    headline = {k: v for k, v in metrics.items() if k not in ("task", "primary", "per_class")}
    width = max(map(len, headline), default=0)
    lines = [f"{metrics.get('task', 'metrics')} (main metric: {primary})"]
    lines += [f"  {k:<{width}}  {_cell(v)}{'  <-' if k == primary else ''}" for k, v in headline.items()]
    per_class = metrics.get("per_class") or {}
    if per_class:
        columns = list(dict.fromkeys(c for row in per_class.values() for c in row))
        name_width = max(len("class"), *map(len, per_class))
        lines.append("")
        lines.append(f"  {'class':<{name_width}}" + "".join(f"  {c:>10}" for c in columns))
        lines += [f"  {name:<{name_width}}" + "".join(f"  {_cell(row.get(c)):>10}" for c in columns)
                  for name, row in per_class.items()]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
